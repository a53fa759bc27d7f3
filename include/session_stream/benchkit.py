"""What the benchmarks share: generated drops, throwaway databases, a timed load."""

from __future__ import annotations

import resource
import time
import uuid
from datetime import date
from pathlib import Path

from . import db, sample, schema
from .load import Loader
from .pipeline import load_files

DAY = date(2026, 11, 1)


def peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def fresh_database(server: str, prefix: str, *, init: bool = True) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = db.connect(f"{server.rstrip('/')}/mysql", database=False)
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    url = f"{server.rstrip('/')}/{name}"
    if init:
        conn = db.connect(url)
        schema.init_db(conn)
        conn.close()
    return url


def drop_database(url: str) -> None:
    conn = db.connect(url, database=False)
    conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db.DbUrl.parse(url).database}`")
    conn.close()


def generated(root: Path, day: date, args, *, style: str, seed: int = 42, **kwargs) -> list[Path]:
    """The drop of `day` in `style` under `root/style` (kept for --data), written if absent."""
    tree = root / style
    folder = tree / f"{day:%Y/%m/%d}"
    paths = sorted(folder.glob("*.json.gz")) if folder.exists() else []
    if not paths:
        kwargs = {"sessions": args.sessions, "files": args.files, **kwargs}
        paths = sample.write_drop(tree, day, seed=seed, id_style=style, **kwargs)
    return paths


def load(url: str, paths: list[Path], jobs: int):
    """Load `paths` as `session-stream load` does: (summary, seconds)."""
    loader = Loader(lambda: db.connect(url))
    started = time.perf_counter()
    summary = load_files(paths, loader, workers=jobs)
    seconds = time.perf_counter() - started
    loader.close()
    if summary.failed:
        raise SystemExit(f"FAILED: {summary.failures}")
    return summary, seconds
