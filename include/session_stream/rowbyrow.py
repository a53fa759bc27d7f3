"""The row-by-row baseline: load files the way Monetate's sample script does.

One `cursor.execute` per row (no executemany, no LOAD DATA), one commit per file. Per session:
read the stored `end_time`; when the new version wins (greater end_time; a tie goes to the later
file), delete the old session and its children, then insert the session and each child row.

The benchmark (issue 2) measures the real loader against this; on valid data both must leave
the same table contents, so it doubles as a cross-check. It is not a product: no ledger, no
rejects table, no retries. Lines that are not JSON objects with a session_id are skipped and
counted; a file that cannot be read to its end is rolled back and listed as failed; a value the
server refuses (too long, out of range) raises, as it would in the sample script.
"""

from __future__ import annotations

import gzip
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from . import db, tables
from .sql import quote
from .utc import to_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SID = tables.SESSION_ID.json_key
END = next(c for c in tables.SESSIONS.columns if c.name == "end_time")


def _insert_sql(table: tables.Table, extra: tuple[str, ...] = ()) -> str:
    names = [*table.column_names, *extra]
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
        f"VALUES ({', '.join(['%s'] * len(names))})"
    )


KEY = tables.SESSION_KEY_COLUMN
SELECT_END = f"SELECT {quote(KEY)}, {quote(END.name)} FROM {quote(tables.SESSIONS.name)} WHERE {quote(tables.SESSION_ID.name)} = %s"
DELETES = [f"DELETE FROM {quote(t.name)} WHERE {quote(KEY)} = %s" for t in reversed(tables.TABLES)]
# The session row gets its session_key from AUTO_INCREMENT; its children carry it.
INSERTS = {t.name: _insert_sql(t, (KEY,)) for t in tables.CHILD_TABLES}
INSERTS[tables.SESSIONS.name] = _insert_sql(tables.SESSIONS, (tables.SOURCE_FILE_COLUMN,))


def convert(column: tables.Column, value):
    """A JSON value as the simple MySQL parameter a sample script would pass."""
    if value is None:
        return None
    kind = column.kind
    if kind == tables.FLAG:
        return 1 if value in ("t", True) else 0
    if kind == tables.DATETIME:
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            moment = to_utc(datetime.fromisoformat(value))  # no offset: UTC, as split.py reads it
        else:
            moment = EPOCH + timedelta(milliseconds=int(value))
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if kind == tables.MONEY:
        return str(value)  # the JSON text; MySQL parses it as an exact decimal
    if kind in (tables.INT, tables.BIGINT):
        return int(value)
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _row(table: tables.Table, sid: str, key, seq: int | None, source: dict) -> tuple:
    values = []
    for c in table.columns:
        if c is tables.SESSION_ID:
            values.append(sid)
        elif c.kind == tables.SEQ:
            values.append(seq)
        elif c.key:  # the map key the row hangs under
            values.append(key)
        else:
            values.append(convert(c, source.get(c.json_key)))
    return tuple(values)


def rows(table: tables.Table, obj: dict) -> list[tuple]:
    """The rows one session object gives `table` (absent maps and lists are empty)."""
    sid = obj[SID]
    if table.shape == "session":
        return [_row(table, sid, None, None, obj)]
    found = obj.get(table.path[0]) or {}
    if table.shape == "map":
        value = table.columns[-1]
        return [(sid, key, convert(value, v)) for key, v in found.items()]
    if table.shape == "list":
        return [_row(table, sid, None, i, item) for i, item in enumerate(found)]
    if table.shape == "map_of_objects":
        return [_row(table, sid, key, None, o) for key, o in found.items()]
    return [  # map_of_lists
        _row(table, sid, key, i, item)
        for key, o in found.items()
        for i, item in enumerate(o.get(table.path[1]) or [])
    ]


def _load_session(cur, obj: dict, file_name: str, counts: dict[str, int]) -> bool:
    sid = obj[SID]
    new_end = convert(END, obj.get(END.json_key))
    cur.execute(SELECT_END, (sid,))
    found = cur.fetchone()
    if found is not None:
        old_key, old_end = found
        if old_end is not None and (new_end is None or old_end > new_end):
            return False  # the stored version is newer
        for sql in DELETES:
            cur.execute(sql, (old_key,))
    key = None
    for table in tables.TABLES:
        for row in rows(table, obj):
            if table is tables.SESSIONS:
                cur.execute(INSERTS[table.name], (*row, file_name))
                key = cur.lastrowid
            else:
                cur.execute(INSERTS[table.name], (*row, key))
            counts[table.name] += 1
    return True


def load_files(url: str, paths: list[Path]) -> dict:
    """Load `paths` (oldest name first) one row at a time; returns counts and seconds.

    Result: files, failed (names), sessions (objects read), applied (versions that won),
    skipped_lines, rows (inserted per table, replaced rows included), seconds.
    """
    conn = db.connect(url)
    conn.autocommit(False)
    cur = conn.cursor()
    counts = {t.name: 0 for t in tables.TABLES}
    result = {"files": 0, "failed": [], "sessions": 0, "applied": 0, "skipped_lines": 0}
    started = time.perf_counter()
    try:
        # Names sort by window, then number: the later file wins a tie, as in the contract.
        for path in sorted(map(Path, paths), key=lambda p: p.name):
            before = dict(counts), dict(result)
            try:
                with gzip.open(path, "rb") as f:
                    for line in f:
                        try:
                            obj = orjson.loads(line)
                        except orjson.JSONDecodeError:
                            obj = None
                        if not isinstance(obj, dict) or obj.get(SID) is None:
                            result["skipped_lines"] += 1
                            continue
                        result["sessions"] += 1
                        result["applied"] += _load_session(cur, obj, path.name, counts)
            except (EOFError, OSError, zlib.error):
                conn.rollback()
                counts.update(before[0])
                result.update(before[1])
                result["failed"].append(path.name)
                continue
            conn.commit()
            result["files"] += 1
    finally:
        conn.close()
    result["rows"] = counts
    result["seconds"] = time.perf_counter() - started
    return result
