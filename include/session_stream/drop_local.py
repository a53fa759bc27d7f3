"""A local folder as the drop location: development, tests, a mounted share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .drop import DropFile, DropLocation
from .errors import ConfigError


class LocalDrop(DropLocation):
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        if not self.root.is_dir():
            raise ConfigError(
                f"drop folder {self.root} does not exist: check the drop location path"
            )

    def _list_folder(self, folder: str) -> list[DropFile]:
        out = []
        try:
            with os.scandir(self.root / folder) as entries:
                for e in entries:
                    if e.is_file(follow_symlinks=True):
                        st = e.stat()
                        out.append(DropFile(f"{folder}/{e.name}", st.st_size, st.st_mtime))
        except FileNotFoundError:
            if not self.root.is_dir():
                raise ConfigError(f"drop folder {self.root} has disappeared") from None
        return out

    def _fetch(self, f: DropFile, local: Path) -> None:
        shutil.copyfile(self.root / f.path, local)
