"""The row-by-row baseline: load files the way Monetate's sample script does, into its schema.

The database holds Monetate's sample schema (../shared/seed/000_2f25791046f21e93.txt): session
rows keyed by session_id, child rows with an AUTO_INCREMENT id and a session_id index
(purchase_line_items keyed to their purchase line by purchase_id), with this project's column
types so values compare exactly. One `cursor.execute` per row (no executemany, no LOAD DATA),
one commit per file. Per session: read the stored `end_time`; when the new version wins (greater
end_time; a tie goes to the later file), delete the old session and its children, then insert
the session and each child row.

The benchmark measures the real loader against this; on valid data both must hold the same rows
(`contents` reads either warehouse the same way), so it doubles as a cross-check. It is not a
product: no ledger, no rejects table, no retries. Lines that are not JSON objects with a
session_id are skipped and counted; a file that cannot be read to its end is rolled back and
listed as failed; a value the server refuses (too long, out of range) raises, as it would in the
sample script.
"""

from __future__ import annotations

import gzip
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from session_stream import tables
from session_stream.sql import quote
from session_stream.utc import to_utc
from session_stream.warehouse import db, schema

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SID = tables.SESSION_ID.json_key
END = next(c for c in tables.SESSIONS.columns if c.name == "end_time")
ITEMS, LINES = tables.PURCHASE_LINE_ITEMS, tables.PURCHASE_LINES


def sample_columns(table: tables.Table) -> list[str]:
    """The source columns of `table` in Monetate's sample schema: purchase_line_items has no
    session_id there (its rows hang on purchase_id)."""
    return table.value_names if table is ITEMS else table.column_names


def sample_schema_ddl(key_collation: str) -> list[str]:
    """CREATE TABLE statements of Monetate's sample schema, with this project's column types."""
    out = []
    for table in tables.TABLES:
        cols, keys = [], []
        if table.is_child:
            cols.append("`id` INT NOT NULL AUTO_INCREMENT")
            keys.append("PRIMARY KEY (`id`)")
            if table is not ITEMS:
                cols.append(f"`session_id` {tables.SESSION_ID.sql_type(key_collation)} NOT NULL")
                keys.append("KEY `session_id_idx` (`session_id`)")
            if table in (LINES, ITEMS):
                keys.append("KEY `purchase_id_idx` (`purchase_id`)")
        else:
            keys.append("PRIMARY KEY (`session_id`)")
        for c in table.columns:
            null = "NOT NULL" if c.not_null else "NULL"
            cols.append(f"{quote(c.name)} {c.sql_type(key_collation)} {null}")
        out.append(
            f"CREATE TABLE IF NOT EXISTS {quote(table.name)} ({', '.join(cols + keys)})"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
    return out


def create_sample_schema(url: str) -> None:
    conn = db.connect(url)
    cur = conn.cursor()
    for ddl in sample_schema_ddl(schema.key_collation(conn)):
        cur.execute(ddl)
    conn.close()


def _insert_sql(table: tables.Table) -> str:
    names = sample_columns(table)
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
        f"VALUES ({', '.join(['%s'] * len(names))})"
    )


SELECT_END = (
    f"SELECT {quote(END.name)} FROM {quote(tables.SESSIONS.name)}"
    f" WHERE {quote(tables.SESSION_ID.name)} = %s"
)
# A replaced session's line items go first, found through its purchase lines.
DELETES = [
    f"DELETE i FROM {quote(ITEMS.name)} i JOIN {quote(LINES.name)} l"
    " ON l.`purchase_id` = i.`purchase_id` WHERE l.`session_id` = %s",
    *(
        f"DELETE FROM {quote(t.name)} WHERE `session_id` = %s"
        for t in reversed(tables.TABLES)
        if t is not ITEMS
    ),
]
INSERTS = {t.name: _insert_sql(t) for t in tables.TABLES}


def convert(column: tables.Column, value):
    """A JSON value as the simple MySQL parameter a sample script would pass."""
    if value is None:
        return None
    kind = column.kind
    if kind == tables.FLAG:
        return 1 if value in ("t", True) else 0
    if kind == tables.DATETIME:
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            moment = to_utc(
                datetime.fromisoformat(value)
            )  # no offset: UTC, as splitter.py reads it
        else:
            moment = EPOCH + timedelta(milliseconds=int(value))
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if kind == tables.MONEY:
        return str(value)  # the JSON text; MySQL parses it as an exact decimal
    if kind in (tables.INT, tables.BIGINT):
        return int(value)
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def rows(table: tables.Table, obj: dict) -> list[tuple]:
    """The rows (sample_columns) one session object gives `table`; absent maps and lists are
    empty."""
    sid = obj[SID]
    if table.shape == "session":
        return [(sid, *(convert(c, obj.get(c.json_key)) for c in table.columns[1:]))]
    found = obj.get(table.path[0]) or {}
    first, *rest = table.columns
    if table.shape == "map":
        return [(sid, key, convert(rest[0], v)) for key, v in found.items()]
    if table.shape == "list":
        return [(sid, *(convert(c, item.get(c.json_key)) for c in table.columns)) for item in found]
    if table.shape == "map_of_objects":
        return [
            (sid, key, *(convert(c, o.get(c.json_key)) for c in rest)) for key, o in found.items()
        ]
    return [  # map_of_lists: no session_id in the sample's purchase_line_items
        (key, *(convert(c, item.get(c.json_key)) for c in rest))
        for key, o in found.items()
        for item in o.get(table.path[1]) or []
    ]


def _load_session(cur, obj: dict, counts: dict[str, int]) -> bool:
    sid = obj[SID]
    new_end = convert(END, obj.get(END.json_key))
    cur.execute(SELECT_END, (sid,))
    found = cur.fetchone()
    if found is not None:
        (old_end,) = found
        if old_end is not None and (new_end is None or old_end > new_end):
            return False  # the stored version is newer
        for sql in DELETES:
            cur.execute(sql, (sid,))
    for table in tables.TABLES:
        for row in rows(table, obj):
            cur.execute(INSERTS[table.name], row)
            counts[table.name] += 1
    return True


def load_files(url: str, paths: list[Path]) -> dict:
    """Load `paths` (oldest name first) one row at a time into a database holding the sample
    schema (create_sample_schema); returns counts and seconds.

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
                        result["applied"] += _load_session(cur, obj, counts)
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


def contents(url: str) -> dict[str, list[tuple]]:
    """Every table's source columns (sample_columns), rows sorted, read by table name: the same
    for the sample schema and for session-stream's (whose child tables are views of those
    names), so equal contents mean equal warehouses."""
    conn = db.connect(url)
    cur = conn.cursor()
    out = {}
    for table in tables.TABLES:
        names = ", ".join(map(quote, sample_columns(table)))
        cur.execute(f"SELECT {names} FROM {quote(table.name)}")
        out[table.name] = sorted(cur.fetchall(), key=_sort_key)
    conn.close()
    return out


def _sort_key(row: tuple) -> tuple:
    return tuple((v is not None, v if v is not None else 0) for v in row)
