"""The drop location: where Monetate writes Session Stream files, opened from its URL.

Monetate writes `<root>/YYYY/MM/DD/YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz` (see
shared/CONTRACT.md and names.py). Every location lists only the day folders a time range
touches, so a backfill over 820 days never walks the whole tree, and downloads atomically (temp
name + rename) so a reader never sees half a file. Failures a user can fix are `ConfigError`s.

This module holds what every transport shares; each transport is its own module
(drop_local, drop_s3, drop_sftp), imported when its URL is opened, so the S3 and SFTP libraries
stay optional. Which listed files are whole is settle.py's call.
"""

from __future__ import annotations

import logging
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .errors import BadInputError, ConfigError
from .names import day_folders, order_key, parse_name
from .redact import mask_url
from .utc import to_utc

if TYPE_CHECKING:
    from .drop_sftp import SftpCredentials
    from .s3 import S3Source

log = logging.getLogger(__name__)

URL_FORMS = "sftp://user@host[:port]/path, s3://bucket/prefix, /local/path or file:///local/path"


@dataclass(frozen=True)
class DropUrl:
    """A drop URL, parsed and checked once. `scheme` is "file" for a local folder (a bare path
    too), "s3" or "sftp"; `host` is the S3 bucket or the SFTP host; `path` is unquoted."""

    scheme: str
    path: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str | None) -> DropUrl:
        if not url or not url.strip():
            raise ConfigError(f"no drop location given: use {URL_FORMS}")
        url = url.strip()
        try:
            parts = urlsplit(url)
            parts.hostname, parts.username, parts.password  # noqa: B018 - they raise too
        except ValueError as exc:  # "Invalid IPv6 URL": an unclosed '[' in the host
            raise ConfigError(
                f"the drop URL cannot be read ({exc}): use {URL_FORMS}; percent-encode '[', ']',"
                " '/', '?', '#' and '@' in a user name or password"
            ) from None
        scheme = parts.scheme.lower()
        if scheme == "":
            return cls("file", url)
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(
                    f"file:// URLs must be local (file:///path), got host {parts.hostname!r}"
                )
            return cls("file", unquote(parts.path))
        if scheme == "s3":
            if not parts.netloc:
                raise ConfigError(
                    f"S3 drop URL needs a bucket: s3://bucket/prefix, got {mask_url(url)!r}"
                )
            if "@" in parts.netloc or ":" in parts.netloc:
                raise ConfigError(
                    f"S3 drop URL {mask_url(url)!r} names a bucket only (s3://bucket/prefix): "
                    "credentials come from the aws_default connection or the boto3 chain"
                )
            return cls("s3", unquote(parts.path), host=parts.netloc)
        if scheme == "sftp":
            try:
                port = parts.port
            except ValueError:
                raise ConfigError(
                    f"SFTP drop URL {mask_url(url)!r} has a bad port: percent-encode '/', '?', '#' "
                    "and '@' in a user name or password"
                ) from None
            return cls(
                "sftp",
                unquote(parts.path),
                host=parts.hostname or None,
                port=port or None,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
            )
        raise ConfigError(f"unsupported drop location {mask_url(url)!r}: use {URL_FORMS}")


class RefusedFile(BadInputError):
    """A drop entry the loader will not read (a symlink out of the drop folder, a device, a FIFO):
    recorded as failed in the ledger with this reason, and reported by the run."""


@dataclass(frozen=True)
class DropFile:
    path: str  # relative to the root: 'YYYY/MM/DD/<name>'
    size: int
    mtime: float | None = None  # epoch seconds, when the store tells
    refused: str | None = None  # why the loader will not read it (see RefusedFile)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def window_start(self) -> datetime:
        return parse_name(self.name)[0]


class DropLocation(ABC):
    """A drop root. Subclasses list one day folder and fetch one file; the rest is shared."""

    url: str  # for logs and messages: never holds a password

    def list_files(self, start: datetime, end: datetime) -> list[DropFile]:
        """Monetate files whose window start lies in [start, end), oldest first by `order_key`."""
        start, end = to_utc(start), to_utc(end)
        found: list[tuple[tuple, DropFile]] = []
        for folder in day_folders(start, end):
            for f in self._list_folder(folder):
                try:
                    key = order_key(f.name)
                except ValueError:
                    log.info("skipping %s/%s: not a Monetate file name", self.url, f.path)
                    continue
                if start <= key[0] < end:
                    found.append((key, f))
        found.sort(key=lambda kf: kf[0])
        return [f for _, f in found]

    def restat(self, files: Iterable[DropFile]) -> dict[str, DropFile]:
        """Look again at the given files (one listing per day folder): path -> current state."""
        files = list(files)
        folders = sorted({posixpath.dirname(f.path) for f in files})
        wanted = {f.path for f in files}
        return {
            f.path: f for folder in folders for f in self._list_folder(folder) if f.path in wanted
        }

    def download(self, f: DropFile, dest: Path) -> Path:
        """Copy `f` to `dest` under a temporary name, then rename: `dest` is whole or absent."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self._fetch(f, tmp)
            size = tmp.stat().st_size
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if size != f.size:
            log.warning(
                "%s/%s was %d bytes when listed, %d when downloaded", self.url, f.path, f.size, size
            )
        return dest

    @abstractmethod
    def _list_folder(self, folder: str) -> list[DropFile]:
        """Regular files directly in `folder` (relative to the root); a missing folder is empty."""

    @abstractmethod
    def _fetch(self, f: DropFile, local: Path) -> None:
        """Write the bytes of `f` to `local`."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass

    def __enter__(self) -> DropLocation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def open_drop(
    url: DropUrl | str, *, sftp: SftpCredentials | None = None, s3: S3Source = None
) -> DropLocation:
    """Open a drop location from its URL (one of URL_FORMS, or a parsed DropUrl).

    `s3`: S3Options or a factory of ready boto3 S3 clients (see s3.py); `sftp`: the login.

    SFTP paths are absolute; `sftp://user@host/~/dir` is `dir` under the login folder.
    """
    if not isinstance(url, DropUrl):
        url = DropUrl.parse(url)
    if url.scheme == "s3":
        from .drop_s3 import S3Drop

        return S3Drop(url.host, url.path, s3)
    if url.scheme == "sftp":
        from .drop_sftp import SftpDrop

        return SftpDrop.from_url(url, sftp)
    from .drop_local import LocalDrop

    return LocalDrop(url.path)


def list_tree(path: Path) -> list[Path]:
    """Monetate files under a local folder laid out YYYY/MM/DD/ (or the file itself), oldest first."""
    return scan_tree(path)[0]


def scan_tree(path: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(Monetate files under a local folder, oldest first; (path, reason) of those refused).

    Inside a folder only regular files that really lie in it are read: a symlink that leads out
    of it, a FIFO or a device is refused (drop_local.refusal). A file named directly is read as
    given.
    """
    from .drop_local import refusal

    path = Path(path).expanduser()
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise ConfigError(
            f"{path} does not exist: give a .json.gz file or a drop folder laid out YYYY/MM/DD/"
        )
    found, refused = [], []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in names:
            try:
                key = order_key(name)
            except ValueError:
                if name.endswith(".json.gz"):
                    log.warning("skipping %s: not a Monetate file name", Path(folder, name))
                continue
            why = refusal(path, Path(folder, name))
            if why:
                refused.append((Path(folder, name), why))
            else:
                found.append((key, Path(folder, name)))
    found.sort(key=lambda kp: (kp[0], str(kp[1])))
    refused.sort(key=lambda pr: str(pr[0]))
    return [p for _, p in found], refused
