"""Where a run may read and write: roots an admin configured, which a run's params may only narrow.

Whoever can trigger a DAG run chooses its params and (through the REST API) its run id, so
neither may widen what the deployment allows:

- a drop location given as a param must lie inside one of the configured drop roots (the
  Variable `session_stream_drop_url` and the allow-list `session_stream_drop_roots`): the same
  scheme, the same S3 bucket or SFTP host, port and user, and a path under the root's path once
  normalised. The run then reads the ROOT's location with the narrower path: its credentials
  never come from a param;
- a staging area given as a param must lie inside the staging root (`session_stream_staging_url`);
- each run stages its files under `runs/<run prefix>` of the staging area, a name derived from
  the run id that is one safe path segment whatever the run id holds, so deleting a run's files
  can only ever remove what that run wrote.

Anything else is a ConfigError that says what was refused without quoting a password.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import quote

from session_stream.drop.base import DropUrl
from session_stream.errors import ConfigError
from session_stream.redact import mask_url

RUNS_FOLDER = "runs"


def _segments(path: str, what: str) -> tuple[str, ...]:
    """The '/'-separated parts of a remote path; '.' and '..' are refused, not resolved."""
    if "\x00" in path:
        raise ConfigError(f"{what}: the path holds a NUL character")
    parts = tuple(p for p in path.split("/") if p)
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"{what}: '.' and '..' are not allowed in the path")
    return parts


def _local_segments(path: str, what: str, *, relative_ok: bool) -> tuple[str, ...]:
    """A local folder as the parts of its real path (symlinks resolved), for containment tests."""
    if "\x00" in path:
        raise ConfigError(f"{what}: the path holds a NUL character")
    expanded = os.path.expanduser(path)
    if not relative_ok and not os.path.isabs(expanded):
        raise ConfigError(f"{what}: give an absolute path")
    if not relative_ok and ".." in expanded.split(os.sep):
        raise ConfigError(f"{what}: '..' is not allowed in the path")
    return tuple(p for p in os.path.realpath(expanded).split(os.sep) if p)


def _key(url: DropUrl, what: str, *, relative_ok: bool) -> tuple:
    """What two locations must share for one to lie inside the other, then the path's parts."""
    if url.scheme == "file":
        return ("file",), _local_segments(url.path, what, relative_ok=relative_ok)
    if url.scheme == "s3":
        return ("s3", url.host), _segments(url.path, what)
    host = (url.host or "").lower()
    return ("sftp", host, url.port or 22, url.username), _segments(url.path, what)


def parse_location(text: str, what: str) -> DropUrl:
    """A drop or staging URL, with the userinfo tricks a root check must not be fooled by refused."""
    url = DropUrl.parse(text)
    if url.scheme == "s3" and ("@" in (url.host or "") or ":" in (url.host or "")):
        raise ConfigError(
            f"{what} {mask_url(text)!r}: an S3 URL names a bucket only (s3://bucket/prefix); "
            "credentials come from the aws_default connection"
        )
    return url


def inside(candidate: DropUrl, root: DropUrl, what: str = "location") -> bool:
    """Whether `candidate` is `root` or lies under it (see the module docstring)."""
    (ckind, cparts), (rkind, rparts) = (
        _key(candidate, what, relative_ok=False),
        _key(root, "the configured root", relative_ok=True),
    )
    return ckind == rkind and cparts[: len(rparts)] == rparts


def narrow(param: str, roots: list[str], what: str) -> DropUrl:
    """The location a run asked for with a param, checked against the configured `roots`.

    Returns the matching root's location with the param's (longer) path, so the root's
    credentials, host and user are what get used; raises ConfigError when it lies in none.
    """
    url = parse_location(param, f"param {what}")
    if url.password:
        raise ConfigError(
            f"param {what} may not carry a password: the login comes from the configured root "
            "and its connection"
        )
    for text in roots:
        root = parse_location(text, "the configured root")
        candidate = url
        if url.scheme == "sftp" and root.scheme == "sftp" and not url.username:
            candidate = dataclasses.replace(url, username=root.username)
        if inside(candidate, root, f"param {what}"):
            path = url.path
            if url.scheme == "file":
                path = os.path.realpath(os.path.expanduser(url.path))
            return dataclasses.replace(root, path=path)
    shown = ", ".join(mask_url(r) for r in roots) or "none configured"
    raise ConfigError(
        f"param {what} {mask_url(param)!r} is outside the allowed roots ({shown}): a run may only "
        "narrow to a folder inside one; an admin adds roots in the Airflow Variables"
    )


def as_text(url: DropUrl) -> str:
    """A location as a URL again, for the openers that take text (never with a password)."""
    if url.scheme == "file":
        return url.path
    if url.scheme == "s3":
        return f"s3://{url.host}{quote(url.path, safe='/')}"
    raise ConfigError(f"a staging area is a local folder or s3://bucket/prefix, not {url.scheme}")


def configured_roots(text: str | None) -> list[str]:
    """The allow-list Variable: a JSON list of URLs, or one URL per line."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise ConfigError(
                "the drop roots Variable is not a JSON list: give a JSON list of URLs, or one URL per line"
            ) from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError("the drop roots Variable must be a JSON list of URL strings")
        return [v.strip() for v in value if v.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def run_prefix(run_id: str) -> str:
    """The staging key prefix of one run: `runs/<readable part>-<hash>`, one path segment whatever
    the run id holds ('/', '..', NUL), and distinct for distinct run ids (two ids the readable
    part maps alike still differ by their hash)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", str(run_id)).strip("_")[:80] or "run"
    digest = hashlib.sha256(str(run_id).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{RUNS_FOLDER}/{readable}-{digest}"


def is_run_prefix(prefix: str) -> bool:
    return bool(re.fullmatch(rf"{RUNS_FOLDER}/[A-Za-z0-9_-]+-[0-9a-f]{{12}}", prefix or ""))


def contained(path: Path, root: Path) -> bool:
    """Whether the real `path` (symlinks resolved) lies inside the real `root`."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return posixpath.commonpath([real, real_root]) == real_root
