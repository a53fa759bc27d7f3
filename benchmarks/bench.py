"""Benchmark: session-stream against its floor and Monetate's row-by-row loader, in every id style.

    python -m benchmarks.bench [--server mysql://root@127.0.0.1:3306/] [--styles uuid,...]
    python -m benchmarks.bench --days 12 [--id-style timestamp]     (bench_days.py)

A day (the default): generates a day (80,000 sessions in 16 files) in each id style of the
sample generator (random UUIDs, a window's timestamp first, one long shared prefix, 1
character, 255 characters: the same sessions, other ids). In turns, so that a busy minute skews
every style alike, and each timed load on a quiet server (benchkit.quiet_server), it loads
each day into a fresh database with the pipeline the CLI uses (split in worker processes while
MySQL loads, newest-wins merge, ledger) and times its floor: LOAD DATA of the same split rows
into tables with no keys at all (no merge, no ledger), and the bare gunzip and JSON parse
spread over the cores, whichever is longer. Then it loads one window of 5,000 sessions and one
of 50,000 (four files each, a window's timestamp first) and prints the time per session of
each, and finally each day once more the way Monetate's sample script does, one INSERT per
row, checks that both warehouses hold the same rows and prints the ratio.

A growing warehouse (`--days N`): see bench_days.py.

The databases are dropped afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks import bench_days, rowbyrow
from benchmarks.benchkit import (
    DAY,
    drop_database,
    fresh_database,
    generated,
    load,
    peak_mb,
    quiet_server,
)
from session_stream import tables
from session_stream.drop import sample
from session_stream.runs.workers import DEFAULT_WORKERS
from session_stream.split import splitter as split
from session_stream.split.layout import LOAD_FORMAT, SplitResult, load_columns
from session_stream.sql import quote
from session_stream.warehouse import db, schema

WINDOW_SESSIONS = "5000,50000"
WINDOW_FILES = 4
WINDOW_STYLE = "timestamp"


# --- the floor ---------------------------------------------------------------------------------


def _split_one(job: tuple[str, str]) -> str:
    split.split_file(Path(job[0]), Path(job[1]))
    return job[1]


def split_all(paths: list[Path], work: Path, pool: ProcessPoolExecutor) -> list[Path]:
    """Each file's staged split, under `work` (untimed: the floor loads the same rows)."""
    jobs = [(str(p), str(work / f"{i:04d}")) for i, p in enumerate(paths)]
    return [Path(out) for out in pool.map(_split_one, jobs)]


def load_floor(server: str, splits: list[Path], settle: float = 30.0) -> float:
    """Seconds to LOAD DATA the split rows into tables with no keys at all, a transaction a
    file: what the database cannot avoid, with no merge, no index and no ledger."""
    url = fresh_database(server, "ss_bench_floor", init=False)
    try:
        conn = db.connect(url)
        cur = conn.cursor()
        collation = schema.key_collation(conn)
        for table in tables.TABLES:
            columns = ", ".join(
                f"{quote(name)} {definition.replace(' AUTO_INCREMENT', '')}"
                for name, definition in schema.column_definitions(table, collation)
            )
            cur.execute(
                f"CREATE TABLE {quote(table.storage)} ({columns}) ENGINE=InnoDB"
                " DEFAULT CHARSET=utf8mb4"
            )
        key = quote(tables.SESSION_KEY_COLUMN)
        quiet_server(server, settle)
        started = time.perf_counter()
        for folder in splits:
            files = SplitResult.read(folder).files()
            conn.begin()
            for table in tables.TABLES:
                cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote(table.storage)} {LOAD_FORMAT}"
                    f" ({', '.join(load_columns(table))}) SET {key} = @idx",
                    (str(files[table.name]),),
                )
            conn.commit()
        seconds = time.perf_counter() - started
        conn.close()
        return seconds
    finally:
        drop_database(url)


def _parse_file(path: str) -> int:
    """Gunzip a file and parse each line, nothing else (the split's JSON decoder)."""
    lines = 0
    with gzip.open(path, "rb") as f:
        for line in f:
            try:
                split._decode(line)
            except (ValueError, RecursionError):
                pass
            lines += 1
    return lines


def parse_floor(paths: list[Path], pool: ProcessPoolExecutor) -> float:
    """Seconds to gunzip and parse every line, spread over a warm pool of one process a core."""
    started = time.perf_counter()
    list(pool.map(_parse_file, map(str, paths)))
    return time.perf_counter() - started


# --- a day in each style -------------------------------------------------------------------------


class _Style:
    def __init__(self, name: str, paths: list[Path]):
        self.name, self.paths = name, paths
        self.ours: list[float] = []
        self.load_floor: list[float] = []
        self.parse_floor: list[float] = []
        self.kept: str | None = None  # the last load's database, for the baseline's check
        self.summary = None
        self.baseline: float | None = None
        self.identical: bool | None = None

    @property
    def time(self) -> float:
        return statistics.median(self.ours)

    @property
    def floor(self) -> float:
        return max(statistics.median(self.load_floor), statistics.median(self.parse_floor))

    @property
    def x_floor(self) -> float:
        """The median of each run's own multiple: a load and its floor run back to back, seconds
        apart, so a slow or fast minute of the machine (±20%) moves both; the medians of the two
        columns may come from different minutes."""
        return statistics.median(
            ours / max(load, parse)
            for ours, load, parse in zip(self.ours, self.load_floor, self.parse_floor, strict=True)
        )


def bench_day(args, root: Path) -> int:
    styles = [
        _Style(name, generated(root, DAY, args, style=name)) for name in args.styles.split(",")
    ]
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="session-stream-bench-splits-"))
    windows = []
    try:
        with ProcessPoolExecutor(cores) as pool:
            list(pool.map(_parse_file, []))  # start the workers before anything is timed
            splits = {s.name: split_all(s.paths, work / s.name, pool) for s in styles}
            gz_mb = sum(p.stat().st_size for p in styles[0].paths) / 1e6
            print(
                f"a day: {args.sessions:,} sessions in {args.files} files ({gz_mb:.0f} MB gzip) in"
                f" each id style, {args.repeat} runs of each in turns (the median counts);"
                f" up to {args.jobs} split workers (one file at a time until a load waits),"
                f" {cores} cores",
                flush=True,
            )
            for attempt in range(args.repeat):
                for s in styles:
                    if s.kept:
                        drop_database(s.kept)
                    s.kept = fresh_database(args.server, "ss_bench_day")
                    quiet_server(args.server, args.settle)
                    s.summary, seconds = load(s.kept, s.paths, args.jobs)
                    s.ours.append(seconds)
                    s.load_floor.append(load_floor(args.server, splits[s.name], args.settle))
                    s.parse_floor.append(parse_floor(s.paths, pool))
                    print(
                        f"  run {attempt + 1}/{args.repeat} {s.name:<10} session-stream"
                        f" {seconds:5.2f} s | floor: LOAD DATA {s.load_floor[-1]:5.2f} s,"
                        f" parse {s.parse_floor[-1]:5.2f} s",
                        flush=True,
                    )
        peak_main, peak_worker = peak_mb(resource.RUSAGE_SELF), peak_mb(resource.RUSAGE_CHILDREN)
        if not args.skip_windows:
            windows = bench_windows(args, root)
        if not args.skip_baseline:
            for s in styles:
                print(f"row-by-row INSERT baseline, {s.name} ids ...", flush=True)
                s.baseline, s.identical = baseline(args.server, s.paths, s.kept)
        _print_day(styles, args)
        print(f"peak memory: {peak_main:.0f} MB main process, {peak_worker:.0f} MB a worker")
        _print_windows(windows)
        audited, plain = audit_seconds(styles[0].paths)
        audit = max(0.0, audited - plain)
        print(
            f"unknown-key audit: {audit:.2f} s of CPU for the day's sessions"
            f" = {100 * audit / styles[0].time:.1f}% of the day's load time (parsing with the key"
            f" check {audited:.2f} s, a plain parse without it {plain:.2f} s)"
        )
        return 0 if all(s.identical is not False for s in styles) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            for s in styles:
                if s.kept:
                    drop_database(s.kept)


def _print_day(styles: list[_Style], args) -> None:
    print(
        f"\n{'id style':<10} {'session-stream':>14} {'floor':>8} {'x floor':>8}"
        f" {'row-by-row':>11} {'x faster':>9}  identical"
    )
    for s in styles:
        slow = f"{s.baseline:9.1f} s" if s.baseline else f"{'-':>11}"
        ratio = f"{s.baseline / s.time:8.1f}x" if s.baseline else f"{'-':>9}"
        same = {True: "yes", False: "NO", None: "-"}[s.identical]
        print(
            f"{s.name:<10} {s.time:12.2f} s {s.floor:6.2f} s {s.x_floor:7.2f}x"
            f" {slow} {ratio}  {same}"
        )
    summary = styles[0].summary
    print(
        f"each: {summary.sessions:,} session versions, {summary.total_rows:,} rows;"
        f" {styles[0].summary.sessions / styles[0].time:,.0f} session versions/s"
        f" ({styles[0].name}); floor = the longer of LOAD DATA into tables without keys and the"
        " bare gunzip + parse over the cores; x floor = the median of each run's multiple of the"
        " floor timed right after it (the medians' ratio: "
        + ", ".join(f"{s.name} {s.time / s.floor:.2f}x" for s in styles)
        + ")"
    )
    by_name = {s.name: s for s in styles}
    if "uuid" in by_name:
        for s in styles:
            if s.name != "uuid":
                print(f"  {s.name} ids against random UUIDs: {s.time / by_name['uuid'].time:.2f}x")


def bench_windows(args, root: Path) -> list[tuple[int, float]]:
    """(sessions, seconds) of loading one window of each size of --window-sessions, in turns."""
    drops = {
        n: generated(
            root / f"window-{n}",
            DAY,
            args,
            style=WINDOW_STYLE,
            sessions=n,
            files=WINDOW_FILES,
            hours=1,
            window_count=1,
        )
        for n in map(int, args.window_sessions.split(","))
    }
    times: dict[int, list[float]] = {n: [] for n in drops}
    print(
        f"one window of {' and '.join(f'{n:,}' for n in drops)} sessions ({WINDOW_FILES} files,"
        f" {WINDOW_STYLE} ids), {args.repeat} runs in turns ...",
        flush=True,
    )
    for _ in range(args.repeat):
        for n, paths in drops.items():
            url = fresh_database(args.server, "ss_bench_window")
            try:
                quiet_server(args.server, args.settle)
                times[n].append(load(url, paths, args.jobs)[1])
            finally:
                drop_database(url)
    return [(n, statistics.median(t)) for n, t in times.items()]


def _print_windows(windows: list[tuple[int, float]]) -> None:
    if not windows:
        return
    per = [(n, seconds / n * 1e6) for n, seconds in windows]
    parts = " | ".join(f"{n:,} sessions {us:.0f} µs a session" for n, us in per)
    print(f"one window ({WINDOW_STYLE} ids): {parts} | {per[-1][1] / per[0][1]:.2f}x")


def baseline(server: str, paths: list[Path], ours: str) -> tuple[float, bool]:
    """Seconds to load `paths` one INSERT per row, and whether that warehouse equals `ours`."""
    url = fresh_database(server, "ss_bench_rowbyrow", init=False)
    try:
        rowbyrow.create_sample_schema(url)
        started = time.perf_counter()
        rowbyrow.load_files(url, paths)
        seconds = time.perf_counter() - started
        return seconds, rowbyrow.contents(url) == rowbyrow.contents(ours)
    finally:
        drop_database(url)


def audit_seconds(paths: list[Path], repeat: int = 3) -> tuple[float, float]:
    """CPU seconds to parse every line of `paths` as the split does, with the unknown-key
    audit (into the spec's structs, which checks the keys in C; into dicts and KeyAudit for a
    line with other keys), and to parse them into dicts with no audit at all: the best of
    `repeat` runs of each, taken in turns, over lines read beforehand, so that the noise of a
    whole split does not drown the difference."""
    lines = []
    for path in paths:
        with gzip.open(path, "rb") as f:
            lines.extend(line for line in f if line.strip())

    def audited():
        audit = split.KeyAudit()
        for line in lines:
            try:
                session, known = split.parse(line)
            except (ValueError, RecursionError):
                continue
            if not known and type(session) is dict:
                audit.check(session)

    def plain():
        for line in lines:
            try:
                split._decode(line)
            except (ValueError, RecursionError):
                continue

    best = {audited: float("inf"), plain: float("inf")}
    for _ in range(repeat):
        for run in best:
            started = time.process_time()
            run()
            best[run] = min(best[run], time.process_time() - started)
    return best[audited], best[plain]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--server", default="mysql://root@127.0.0.1:3306/", help="MySQL server URL (no database)"
    )
    p.add_argument("--sessions", type=int, default=80_000, help="sessions a day (default 80000)")
    p.add_argument("--files", type=int, default=16, help="files a day (default 16)")
    p.add_argument(
        "--styles",
        default=",".join(sample.ID_STYLES),
        help=f"id styles of a day, comma-separated (default all: {','.join(sample.ID_STYLES)})",
    )
    p.add_argument(
        "--id-style",
        choices=tuple(sample.ID_STYLES),
        default=sample.DEFAULT_ID_STYLE,
        help="id style of --days (default uuid)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"split worker processes (default {DEFAULT_WORKERS}, as session-stream load)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each timed step; the median (a day) or best (joins) counts (default 3)",
    )
    p.add_argument(
        "--days", type=int, default=0, help="load this many days into one warehouse, then join"
    )
    p.add_argument("--data", type=Path, help="reuse or keep the generated drops in this folder")
    p.add_argument("--skip-baseline", action="store_true", help="no row-by-row loads")
    p.add_argument(
        "--window-sessions",
        default=WINDOW_SESSIONS,
        help=f"sessions of the one-window loads, comma-separated (default {WINDOW_SESSIONS})",
    )
    p.add_argument("--skip-windows", action="store_true", help="no one-window loads")
    p.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="before a timed load, wait at most this long for the server to flush and purge"
        " what the one before left (default 30; 0: no wait)",
    )
    p.add_argument("--keep", action="store_true", help="keep the databases")
    args = p.parse_args(argv)
    unknown = set(args.styles.split(",")) - set(sample.ID_STYLES)
    if unknown:
        p.error(f"unknown id style {sorted(unknown)[0]!r}: use {', '.join(sample.ID_STYLES)}")

    with tempfile.TemporaryDirectory(prefix="session-stream-bench-") as tmp:
        root = args.data or Path(tmp)
        if args.days:
            return bench_days.bench_days(args, root)
        return bench_day(args, root)


if __name__ == "__main__":
    sys.exit(main())
