"""Benchmark: a generated day loaded by session-stream versus a row-by-row INSERT loader.

    python -m session_stream.bench [--server mysql://root@127.0.0.1:3306/] [--sessions 80000] [--files 16]

Generates a day (default 80,000 sessions in 16 files), loads it into a fresh database with the
pipeline the CLI uses (split ahead in a worker process, LOAD DATA, newest-wins merge), then
loads the same files into another fresh database with one INSERT per row, checks the two
warehouses are identical, and prints sessions/s, rows/s, peak memory and the ratio.
Both databases are dropped afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from . import db, rowbyrow, sample, schema, tables
from .load import Loader
from .pipeline import load_files
from .sql import quote


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def _fresh_database(server: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = db.connect(f"{server.rstrip('/')}/mysql", database=False)
    conn.cursor().execute(f"CREATE DATABASE {quote(name)} CHARACTER SET utf8mb4")
    conn.close()
    url = f"{server.rstrip('/')}/{name}"
    conn = db.connect(url)
    schema.init_db(conn)
    conn.close()
    return url


def _drop_database(url: str) -> None:
    conn = db.connect(url, database=False)
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote(db.DbUrl.parse(url).database)}")
    conn.close()


def _contents(url: str) -> dict[str, list[tuple]]:
    conn = db.connect(url)
    cur = conn.cursor()
    out = {}
    for t in tables.TABLES:
        cur.execute(
            f"SELECT {', '.join(map(quote, t.column_names))} FROM {quote(t.name)} ORDER BY 1, 2, 3"
        )
        out[t.name] = cur.fetchall()
    conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m session_stream.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--server", default="mysql://root@127.0.0.1:3306/", help="MySQL server URL (no database)"
    )
    p.add_argument("--sessions", type=int, default=80_000)
    p.add_argument("--files", type=int, default=16)
    p.add_argument("--jobs", type=int, default=1, help="split worker processes (default 1)")
    p.add_argument(
        "--repeat", type=int, default=3, help="session-stream runs; the median counts (default 3)"
    )
    p.add_argument("--data", type=Path, help="reuse or keep the generated drop in this folder")
    p.add_argument("--skip-baseline", action="store_true", help="time session-stream only")
    p.add_argument("--keep", action="store_true", help="keep the two databases")
    args = p.parse_args(argv)

    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="session-stream-bench-")
        root = Path(tmp.name)
    day = date(2026, 11, 1)
    paths = sorted(root.rglob("*.json.gz"))
    if not paths:
        print(
            f"generating {args.sessions:,} sessions in {args.files} files under {root} ...",
            flush=True,
        )
        paths = sample.write_drop(root, day, sessions=args.sessions, files=args.files, seed=42)
    gz_mb = sum(p.stat().st_size for p in paths) / 1e6

    fast_url = None
    slow_url = None
    try:
        # The fast load is short, so one busy moment on the machine skews it: take the median
        # of --repeat runs, each into a fresh database. The baseline runs once.
        times = []
        for attempt in range(args.repeat):
            if fast_url:
                _drop_database(fast_url)
            fast_url = _fresh_database(args.server, "ss_bench_fast")
            print(
                f"session-stream: loading {len(paths)} files ({gz_mb:.0f} MB gzip), run {attempt + 1}/{args.repeat} ...",
                flush=True,
            )
            loader = Loader(lambda url=fast_url: db.connect(url))
            started = time.perf_counter()
            summary = load_files(paths, loader, workers=args.jobs)
            times.append(time.perf_counter() - started)
            loader.close()
            if summary.failed:
                print(f"FAILED: {summary.failures}")
                return 1
            print(f"  {times[-1]:.2f} s")
        fast = statistics.median(times)
        rows = summary.total_rows
        peak_main, peak_worker = _peak_mb(resource.RUSAGE_SELF), _peak_mb(resource.RUSAGE_CHILDREN)
        print(
            f"session-stream (median of {len(times)}): {fast:.2f} s | {summary.sessions / fast:,.0f} sessions/s | "
            f"{rows / fast:,.0f} rows/s | {summary.sessions:,} session versions, {rows:,} rows"
        )
        print(f"  peak memory: {peak_main:.0f} MB main process, {peak_worker:.0f} MB split worker")
        if args.skip_baseline:
            return 0

        slow_url = _fresh_database(args.server, "ss_bench_rowbyrow")
        print("row-by-row INSERT baseline: loading the same files ...", flush=True)
        started = time.perf_counter()
        rowbyrow.load_files(slow_url, paths)
        slow = time.perf_counter() - started
        print(
            f"  {slow:.2f} s | {summary.sessions / slow:,.0f} sessions/s | {rows / slow:,.0f} rows/s"
        )
        same = _contents(fast_url) == _contents(slow_url)
        print(f"  warehouses identical: {'yes' if same else 'NO'}")
        print(f"ratio: session-stream is {slow / fast:.1f}x faster than row-by-row INSERT")
        return 0 if same else 1
    finally:
        if not args.keep:
            if fast_url:
                _drop_database(fast_url)
            if slow_url:
                _drop_database(slow_url)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
