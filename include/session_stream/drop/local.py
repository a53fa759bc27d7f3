"""A local folder as the drop location: development, tests, a mounted share.

Only regular files that really lie inside the folder are read. A symlink is followed only when
it leads to a regular file inside the folder (a day folder that links elsewhere counts as
leading out); FIFOs, devices and sockets are never opened. Such an entry is listed with the
reason it is refused, so the run reports it and the ledger records it, instead of skipping it
silently or reading, say, /etc/shadow into the rejects table.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from session_stream.drop.base import (
    DropFile,
    DropLocation,
    RefusedFile,
    folder_entry,
    ignored_reason,
    ledger_name_chars,
)
from session_stream.drop.names import is_drop_name, is_text, order_key
from session_stream.drop.roots import contained
from session_stream.errors import ConfigError

KINDS = {  # what a non-regular entry is, for a refusal's reason
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def refusal(root: Path, path: Path) -> str | None:
    """Why `path` (under `root`) must not be read, or None for a regular file inside `root`."""
    try:
        lst = os.lstat(path)
    except OSError as exc:
        return f"cannot be examined: {exc.strerror}"
    if not contained(path, root):
        return "a symlink that leads out of the drop folder" + (
            "" if stat.S_ISLNK(lst.st_mode) else " (through a linked folder)"
        )
    try:
        st = os.stat(path)
    except OSError:
        return "a broken symlink"
    if not stat.S_ISREG(st.st_mode):
        kind = KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        return f"{kind}, not a regular file"
    return None


def open_regular(root: Path, path: Path):
    """Open `path` for reading only if it is a regular file inside `root`, checked again on the
    open file itself (the entry may have been swapped since it was listed)."""
    why = refusal(root, path)
    if why:
        raise RefusedFile(f"{path.name} refused: {why}")
    fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefusedFile(f"{path.name} refused: not a regular file")
        proc = f"/proc/self/fd/{fd}"
        if os.path.exists(proc) and not contained(Path(os.readlink(proc)), root):
            raise RefusedFile(f"{path.name} refused: it leads out of the drop folder")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
                    rel = f"{folder}/{e.name}"
                    if e.is_dir(follow_symlinks=False):
                        out.append(folder_entry(rel, e.stat(follow_symlinks=False).st_mtime))
                        continue
                    why = refusal(self.root, self.root / rel)
                    try:
                        st = e.stat(follow_symlinks=why is None)
                    except OSError:
                        st = e.stat(follow_symlinks=False)
                    version = f"mtime:{st.st_mtime_ns}"
                    out.append(DropFile(rel, st.st_size, st.st_mtime, refused=why, version=version))
        except FileNotFoundError:
            if not self.root.is_dir():
                raise ConfigError(f"drop folder {self.root} has disappeared") from None
        return out

    def _fetch(self, f: DropFile, local: Path) -> None:
        with open_regular(self.root, self.root / f.path) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def list_tree(path: Path) -> list[Path]:
    """Monetate files under a local folder laid out YYYY/MM/DD/ (or the file itself), oldest first."""
    return scan_tree(path).files


@dataclass
class Scan:
    """What a local folder holds, every entry once: Monetate files to load (oldest first),
    entries refused (a symlink out of the folder, a FIFO, a folder named like a file: marked
    failed) and entries ignored (other names: recorded as such), each with why."""

    files: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)


def scan_tree(path: Path) -> Scan:
    """Every entry under a local folder (see Scan), or a file named directly, which is read as
    given whatever its name (a name too long for the ledger excepted).

    Inside a folder only regular files that really lie in it are read: a symlink that leads out
    of it, a FIFO or a device is refused (refusal), and so is a folder named like a
    Monetate file. Sub-folders are walked; any other file is ignored, with the reason.
    """
    path = Path(path).expanduser()
    if path.is_file():
        if len(path.name) > ledger_name_chars() or not is_text(path.name):
            return Scan(ignored=[(path, ignored_reason(path.name))])
        return Scan(files=[path])
    if not path.is_dir():
        raise ConfigError(
            f"{path} does not exist: give a .json.gz file or a drop folder laid out YYYY/MM/DD/"
        )
    scan, found = Scan(), []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in dirs:
            if is_drop_name(name):  # walked all the same: what it holds is listed too
                scan.refused.append((Path(folder, name), "a folder, not a regular file"))
        for name in names:
            entry = Path(folder, name)
            why = ignored_reason(name)
            if why is not None:
                scan.ignored.append((entry, why))
                continue
            why = refusal(path, entry)
            if why:
                scan.refused.append((entry, why))
            else:
                found.append((order_key(name), entry))
    found.sort(key=lambda kp: (kp[0], str(kp[1])))
    scan.files = [p for _, p in found]
    scan.refused.sort(key=lambda pr: str(pr[0]))
    scan.ignored.sort(key=lambda pr: str(pr[0]))
    return scan
