"""What the benchmarks share: generated drops, throwaway databases, a timed load."""

from __future__ import annotations

import resource
import time
import uuid
from datetime import date
from pathlib import Path

from session_stream.drop import sample
from session_stream.runs.pipeline import load_files
from session_stream.warehouse import db, migrations
from session_stream.warehouse.load import Loader

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
        migrations.init_db(conn)
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


def _status(cur, name: str) -> int | None:
    cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
    row = cur.fetchone()
    return int(row[1]) if row else None


def _history_length(cur) -> int | None:
    """Undo records InnoDB has yet to purge: MariaDB's status variable, or MySQL's metric."""
    found = _status(cur, "Innodb_history_list_length")
    if found is not None:
        return found
    try:
        cur.execute(
            "SELECT `COUNT` FROM information_schema.INNODB_METRICS"
            " WHERE NAME = 'trx_rseg_history_len'"
        )
    except Exception:  # noqa: BLE001 - a server without the metric: nothing to wait for
        return None
    row = cur.fetchone()
    return int(row[0]) if row else None


def quiet_server(server: str, timeout: float = 30.0, stall: float = 2.0) -> float:
    """Wait until InnoDB has written out the pages the last load left dirty and purged what it
    deleted, so that a timed load does not pay for the one before it (a load right after
    another, or after a dropped database, took up to 2.7x as long here); returns the seconds
    waited. Gives up when neither count has fallen for `stall` seconds (a server others keep
    busy never gets there) or after `timeout`. An hourly run finds the server quiet; a load of
    the next file right away does not, but that is one load paying for itself."""
    if timeout <= 0:
        return 0.0
    conn = db.connect(f"{server.rstrip('/')}/mysql", database=False)
    cur = conn.cursor()
    started = time.perf_counter()
    try:
        total = _status(cur, "Innodb_buffer_pool_pages_total") or 1
        best, progress = None, started
        while (now := time.perf_counter()) - started < timeout and now - progress < stall:
            left = (_status(cur, "Innodb_buffer_pool_pages_dirty") or 0, _history_length(cur) or 0)
            if left[0] <= total // 100 and left[1] <= 1000:
                break
            if best is None or left[0] < best[0] or left[1] < best[1]:
                best, progress = left, now
            time.sleep(0.25)
    finally:
        conn.close()
    return time.perf_counter() - started
