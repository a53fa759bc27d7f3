"""Helpers for tests that write source files of their own: a gzip of JSON lines and its name."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson


def write_gz(path: Path, lines: list) -> Path:
    """A source file of `lines`: each a session (dumped as JSON) or bytes written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line))
            f.write(b"\n")
    return path


def name(minute: int, number: int = 1) -> str:
    """A Monetate file name of the window starting at 00:`minute` on 2026-11-01."""
    return f"20261101T00{minute:02d}00.000Z_PT15M-{number}.json.gz"
