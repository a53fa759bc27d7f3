"""Benchmark of a growing warehouse: `python -m benchmarks.bench --days N [--id-style S]`.

Loads N generated days (80,000 sessions each, ids in style S) one day at a time into one
database and prints each day's time and the pages its load read from disk, then day N against
the same files loaded into an empty warehouse right after. Then Monetate's guide joins:
session_sessions left-joined to each child table on session_id, grouped by a session column
(and the same on session_key, the join the views also offer), and purchase line items to
purchase lines on purchase_id, each against the time to read both of its tables once.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.benchkit import DAY, drop_database, fresh_database, generated, load, quiet_server
from session_stream import tables
from session_stream.sql import quote
from session_stream.warehouse import db

# The guide joins group by a session column; reading session_sessions once groups the same way.
_SESSIONS, _GROUP = quote(tables.SESSIONS.name), quote("device_type")
_READ_SESSIONS = f"SELECT s.{_GROUP}, COUNT(*) FROM {_SESSIONS} s GROUP BY s.{_GROUP}"
JOIN_COLUMNS = (tables.SESSION_ID.name, tables.SESSION_KEY_COLUMN)


def guide_joins() -> list[tuple[str, str, list[str]]]:
    """(label, the guide's join, the queries that read each of its tables once): each child
    table joined on session_id as Monetate's guide does, then on session_key."""
    sessions, group, read_sessions = _SESSIONS, _GROUP, _READ_SESSIONS
    out = []
    for on in JOIN_COLUMNS:
        for table in tables.CHILD_TABLES:
            counted = quote(table.value_names[-1])
            join = (
                f"SELECT s.{group}, COUNT(c.{counted}) FROM {sessions} s"
                f" LEFT JOIN {quote(table.name)} c ON c.{quote(on)} = s.{quote(on)}"
                f" GROUP BY s.{group}"
            )
            read_child = f"SELECT COUNT(c.{counted}) FROM {quote(table.name)} c"
            out.append((f"sessions -> {table.name} on {on}", join, [read_sessions, read_child]))
    lines, items = tables.PURCHASE_LINES, tables.PURCHASE_LINE_ITEMS
    join = (
        f"SELECT COUNT(i.`unit_price`), SUM(i.`quantity`) FROM {quote(lines.name)} l"
        f" LEFT JOIN {quote(items.name)} i ON i.`purchase_id` = l.`purchase_id`"
    )
    reads = [
        f"SELECT COUNT(l.`total`) FROM {quote(lines.name)} l",
        f"SELECT COUNT(i.`unit_price`) FROM {quote(items.name)} i",
    ]
    out.append((f"{lines.name} -> {items.name} on purchase_id", join, reads))
    return out


def join_steps() -> list[tuple[str, str]]:
    """The parts of a guide join, each timed alone: reading the sessions, then adding the lookup
    of each session's child rows by the storage key, or the lookup of each session by its
    session_id (what a join on session_id pays before it can find the rows)."""
    sessions, group = _SESSIONS, _GROUP
    key, sid = quote(tables.SESSION_KEY_COLUMN), quote(tables.SESSION_ID.name)
    child = tables.VIEW_LINES
    counted = quote(child.value_names[-1])
    return [
        ("session_sessions read once", _READ_SESSIONS),
        (
            f"+ {child.name} rows of each session by session_key (one lookup)",
            f"SELECT s.{group}, COUNT(c.{counted}) FROM {sessions} s"
            f" LEFT JOIN {quote(child.storage)} c ON c.{key} = s.{key} GROUP BY s.{group}",
        ),
        (
            "+ each session found again by its session_id (the lookup alone)",
            f"SELECT s.{group}, COUNT(s2.{key}) FROM {sessions} s"
            f" LEFT JOIN {sessions} s2 ON s2.{sid} = s.{sid} GROUP BY s.{group}",
        ),
    ]


def _best_of(cur, sql: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        cur.execute(sql)
        cur.fetchall()
        best = min(best, time.perf_counter() - started)
    return best


def pages_read(cur) -> int:
    """InnoDB pages read from disk since the server started (the buffer pool's misses).
    SHOW GLOBAL STATUS: MySQL 8 has no information_schema.global_status."""
    cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")
    return int(cur.fetchone()[1])


def bench_days(args, root: Path) -> int:
    url = fresh_database(args.server, "ss_bench_days")
    style = args.id_style
    try:
        days = [DAY - timedelta(days=args.days - n) for n in range(args.days)]
        seconds, misses = [], []
        print(f"a growing warehouse: {args.days} days of {args.sessions:,} sessions, {style} ids")
        # A day's time on this shared 2-core machine moves by ±20%; the pages a load has to read
        # from disk do not, and they are what grows when an index a load writes in random order
        # outgrows the buffer pool (the warehouse's own reads: nothing else runs meanwhile).
        status = db.connect(url)
        for n, day in enumerate(days):
            paths = generated(root, day, args, style=style)
            quiet_server(args.server, args.settle)
            before = pages_read(status.cursor())
            summary, took = load(url, paths, args.jobs)
            seconds.append(took)
            misses.append(pages_read(status.cursor()) - before)
            print(
                f"day {n + 1:>2} ({day}): {took:5.2f} s | {summary.sessions:,} session versions,"
                f" {summary.total_rows:,} rows | {misses[-1]:,} pages read from disk",
                flush=True,
            )
        status.close()
        # The last day's files again, right after, into an empty warehouse, twice: the same files
        # at nearly the same moment, so a busy machine skews both alike. After the grown load,
        # not before it: a load into another database just before would fill the buffer pool
        # with its pages and leave them to flush, and the grown load would pay for that (it did:
        # 1.2-1.4x, where days 2 to 11 had stayed level). The empty warehouses are dropped only
        # at the end: InnoDB purges a dropped database in the background.
        last = generated(root, days[-1], args, style=style)
        empty, scratches = [], []
        try:
            for _ in range(2):
                scratches.append(fresh_database(args.server, "ss_bench_day1"))
                quiet_server(args.server, args.settle)
                empty.append(load(scratches[-1], last, args.jobs)[1])
        finally:
            for scratch in scratches:
                drop_database(scratch)
        conn = db.connect(url)
        cur = conn.cursor()
        _print_growth(cur, args, seconds, misses, empty)
        _print_joins(cur, args)
        conn.close()
        return 0
    finally:
        if not args.keep:
            drop_database(url)


def _print_growth(cur, args, seconds: list[float], misses: list[int], empty: list[float]) -> None:
    cur.execute(
        "SELECT SUM(table_rows), SUM(data_length + index_length) FROM information_schema.tables"
        " WHERE table_schema = DATABASE()"
    )
    total_rows, total_bytes = cur.fetchone()
    cur.execute("SELECT @@innodb_buffer_pool_size")
    (pool,) = cur.fetchone()
    cur.execute(f"SELECT COUNT(*) FROM {quote(tables.SESSIONS.name)}")
    (sessions,) = cur.fetchone()
    print(
        f"warehouse: {sessions:,} sessions, about {int(total_rows):,} rows,"
        f" {int(total_bytes) / 2**20:,.0f} MiB (buffer pool {int(pool) / 2**20:,.0f} MiB)"
    )
    first = statistics.mean(empty)
    print(
        f"growth: day {args.days} took {seconds[-1] / first:.2f}x the same files loaded into"
        f" an empty warehouse right after ({seconds[-1]:.2f} s / {first:.2f} s, the mean of"
        f" {empty[0]:.2f} s and {empty[1]:.2f} s)"
    )
    print(f"  day {args.days} against day 1 as loaded first: {seconds[-1] / seconds[0]:.2f}x")
    if args.days >= 6:
        head, tail = statistics.mean(seconds[:3]), statistics.mean(seconds[-3:])
        print(
            f"  the last three days against the first three: {tail / head:.2f}x"
            f" ({tail:.2f} s / {head:.2f} s)"
        )
        print(
            "  pages read from disk while loading, a day: first three"
            f" {statistics.mean(misses[:3]):,.0f}, last three {statistics.mean(misses[-3:]):,.0f}"
        )


def _print_joins(cur, args) -> None:
    print(
        f"Monetate's guide joins (best of {args.repeat}), against reading both tables once"
        " (a full scan of each):"
    )
    worst = dict.fromkeys(JOIN_COLUMNS, 0.0)
    for label, join, reads in guide_joins():
        joined = _best_of(cur, join, args.repeat)
        read = sum(_best_of(cur, sql, args.repeat) for sql in reads)
        on = label.rsplit(" on ", 1)[1]
        if on in worst:
            worst[on] = max(worst[on], joined / read)
        print(f"  {label:<62} {joined:6.2f} s | read once {read:5.2f} s | {joined / read:4.1f}x")
    for on, ratio in worst.items():
        print(f"  slowest join of session_sessions to a child table on {on}: {ratio:.1f}x")
    print("  where a join on session_id goes (best of each, as above):")
    for label, sql in join_steps():
        print(f"    {label:<72} {_best_of(cur, sql, args.repeat):6.2f} s")
