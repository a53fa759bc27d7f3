"""The drop location: where Monetate writes Session Stream files, opened from its URL.

Monetate writes `<root>/YYYY/MM/DD/YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz` (see
Monetate's "Session Stream Data" page and names.py). Every location lists only the day folders a time range
touches, so a backfill over 820 days never walks the whole tree, and downloads atomically (temp
name + rename) so a reader never sees half a file. Failures a user can fix are `ConfigError`s.

This module holds what every transport shares; each transport is its own module (local.py,
s3.py, sftp.py), imported by opener.py when its URL is opened, so the S3 and SFTP libraries stay
optional. Which listed files are whole is settle.py's call.
"""

from __future__ import annotations

import logging
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from session_stream.drop.names import (
    day_folders,
    is_drop_name,
    is_text,
    order_key,
    text_name,
    window_start,
)
from session_stream.errors import BadInputError, ConfigError
from session_stream.redact import mask_url
from session_stream.tables import NAME_CHARS
from session_stream.utc import to_utc

if TYPE_CHECKING:
    pass

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
    # What the store says of this copy of the file (an S3 ETag, "mtime:<ns>"): a file delivered
    # again with other content under the same name and size has another (ledger.same_content).
    version: str | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def window_start(self) -> datetime | None:
        return window_start(self.name)


FOLDER = "a folder, not a regular file"


def folder_entry(rel: str, mtime: float | None = None) -> DropFile:
    """A folder found in a day folder. `list_files` refuses it when it is named like a Monetate
    file (a run fails and reports it) and ignores it otherwise (a run records and reports it)."""
    return DropFile(rel, 0, mtime, refused=FOLDER)


NOT_TEXT = "its name is not UTF-8 text (shown with \\x escapes): rename it to load it"


def ignored_reason(name: str) -> str | None:
    """Why a listed entry is not a file the loader reads, or None for a Monetate file name."""
    if not is_text(name):
        return NOT_TEXT
    if len(name) > ledger_name_chars():
        return f"its name is longer than the {ledger_name_chars()} characters the warehouse keeps"
    if not is_drop_name(name):
        return (
            "not a Monetate Session Stream file name (YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz);"
            " to load it anyway, give the file itself to `session-stream load`"
        )
    return None


def ledger_name_chars() -> int:
    return NAME_CHARS


class DropLocation(ABC):
    """A drop root. Subclasses list one day folder and fetch one file; the rest is shared."""

    url: str  # for logs and messages: never holds a password
    # The entries of the day folders last listed that are not Monetate files, with why: a run
    # records them in the ledger as ignored and reports them (nothing listed goes unseen).
    ignored: Sequence[tuple[DropFile, str]] = ()

    def list_files(self, start: datetime, end: datetime) -> list[DropFile]:
        """Monetate files whose window start lies in [start, end), oldest first by `order_key`.
        Other entries of the day folders listed are kept in `ignored`."""
        start, end = to_utc(start), to_utc(end)
        found: list[tuple[tuple, DropFile]] = []
        self.ignored = []
        for folder in day_folders(start, end):
            for f in self._list_folder(folder):
                why = ignored_reason(f.name)
                if why is not None and f.refused == FOLDER:
                    why = "a folder: the drop's files are directly in its YYYY/MM/DD/ folders"
                if why is not None:
                    log.info("ignoring %s/%s: %s", self.url, text_name(f.path), why)
                    self.ignored.append((f, why))
                    continue
                key = order_key(f.name)
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
