"""The ledger, session_stream_files: one row per source file the drop listed, and how it ended.

`loaded` (its rows, rejects and this row committed together), `failed` (nothing of the last
attempt kept; the next run tries again) or `ignored` (not a file the loader reads: another name,
a name too long to keep; listed so that nothing the drop holds goes unseen). A loaded row also
says what the file held, line by line (lines_read = sessions + repeats + rejects + blank_lines),
and which content it was (`sha256`, and the drop's own `source_version`, its ETag or mtime): a
file delivered again under the same name and size with other content loads again, and its row
says what it replaced.

Rows are written with one upsert built from the columns below (LOADED, FAILED, IGNORED), in a
form MariaDB and MySQL 8.4 both accept without the deprecated VALUES(): the new row is a derived
table `new`, and `ON DUPLICATE KEY UPDATE col = new.col`. Every field that input can make long
is bounded here (error, key counts), so a row stays far below any server's max_allowed_packet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import MySQLdb
import MySQLdb.cursors
import orjson

from session_stream import tables
from session_stream.drop.names import is_text, text_name
from session_stream.split.keycounts import OTHER_PATHS
from session_stream.sql import quote

TABLE = quote(tables.LEDGER_TABLE)
ERROR_CHARS = 4000  # a TEXT column holds 65,535 bytes: 4,000 characters of 4 bytes fit
COUNTS_BYTES = 64 << 10  # unknown_keys / missing_keys JSON
NAME_CHARS = tables.NAME_CHARS  # file_name, and source_file in the session tables


@dataclass(frozen=True)
class Column:
    """One column the upsert writes: its name, and on a duplicate key either `new` (take the
    new row's value) or an SQL expression over the stored row (the table's own name qualifies
    its columns) and `new`."""

    name: str
    update: str = "new"


def _rows_columns() -> list[Column]:
    return [Column(tables.rows_column(t)) for t in tables.TABLES]


T = TABLE  # the stored row, in update expressions
LOADED = [
    Column("file_name"),
    Column("size"),
    Column("window_start"),
    Column("status"),
    Column("sessions"),
    *_rows_columns(),
    Column("rejects"),
    Column("lines_read"),
    Column("blank_lines"),
    Column("repeats"),
    # A reload may leave sessions of the earlier version: the horizon only grows.
    Column(
        "horizon",
        f"GREATEST(COALESCE({T}.horizon, new.horizon), COALESCE(new.horizon, {T}.horizon))",
    ),
    Column("split_seconds"),
    Column("load_seconds"),
    Column("error"),
    Column("failed_since"),
    Column(tables.UNKNOWN_KEYS_COLUMN),
    Column(tables.MISSING_KEYS_COLUMN),
    Column("sha256"),
    Column("source_version"),
    Column("replaced_sha256"),
    Column("replaced_at"),
    Column("load_token"),
    Column("attempts", f"{T}.attempts + 1"),
]
FAILED = [
    Column("file_name"),
    Column("size"),
    Column("window_start", f"{T}.window_start"),
    # failed_since before status: assignments run left to right, and it must still see whether
    # the file was failing already.
    Column(
        "failed_since",
        f"IF({T}.status = 'failed', COALESCE({T}.failed_since, new.failed_since),"
        " new.failed_since)",
    ),
    Column("status"),
    Column("error"),
    Column("attempts", f"{T}.attempts + 1"),
]
# An entry the loader does not read. A row of a file loaded before (named on the command line,
# say) stays as it is.
IGNORED = [
    Column("file_name"),
    Column("size", f"IF({T}.status = 'loaded', {T}.size, new.size)"),
    Column("error", f"IF({T}.status = 'loaded', {T}.error, new.error)"),
    Column("status", f"IF({T}.status = 'loaded', {T}.status, new.status)"),
]


def upsert_sql(columns: Sequence[Column]) -> str:
    """INSERT ... SELECT from a derived table `new` of one row (one %s per column, in order),
    updating a stored row of the same file_name as `columns` say."""
    names = [quote(c.name) for c in columns]
    updates = [
        f"{name} = {'new.' + name if c.update == 'new' else c.update}"
        for name, c in zip(names, columns, strict=True)
        if c.name != "file_name"
    ]
    return (
        f"INSERT INTO {TABLE} ({', '.join(names)})"
        f" SELECT * FROM (SELECT {', '.join(f'%s AS {n}' for n in names)}) AS new"
        f" ON DUPLICATE KEY UPDATE {', '.join(updates)}"
    )


def write(cur, columns: Sequence[Column], values: dict) -> None:
    """Upsert one row: `values` by column name (every column of `columns`)."""
    cur.execute(upsert_sql(columns), [values[c.name] for c in columns])


def error_text(error: str) -> str:
    return error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…"


def file_name(name: str) -> str:
    """The name a file is kept under: itself, or for one longer than a VARCHAR(255) its head and
    a hash of the whole, or for a name of bytes that are not UTF-8 those bytes as \\xNN escapes
    (only an ignored entry can have such names: it is never loaded)."""
    if not is_text(name):
        name = text_name(name)
    if len(name) <= NAME_CHARS:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"{name[: NAME_CHARS - 17]}…{digest}"


def counts_json(counts: dict[str, int] | None) -> str | None:
    """Key counts as the ledger keeps them: a JSON object (most frequent paths first, the rest
    under OTHER_PATHS once COUNTS_BYTES are used), or NULL when there are none."""
    if not counts:
        return None
    text = orjson.dumps(counts)
    if len(text) <= COUNTS_BYTES:
        return text.decode()
    kept: dict[str, int] = {}
    size, other = 2, 0
    for path, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        item = len(orjson.dumps({path: n})) + 1
        if path != OTHER_PATHS and size + item <= COUNTS_BYTES - 64:
            kept[path] = n
            size += item
        else:
            other += n
    kept[OTHER_PATHS] = kept.get(OTHER_PATHS, 0) + other
    return orjson.dumps(kept).decode()


def read(conn, names: Iterable[str]) -> dict[str, dict]:
    """The rows of `names` (absent names have none), by file name."""
    names = [file_name(n) for n in names]
    out: dict[str, dict] = {}
    cur = conn.cursor(MySQLdb.cursors.DictCursor)
    for i in range(0, len(names), 1000):
        chunk = names[i : i + 1000]
        cur.execute(
            f"SELECT * FROM {TABLE} WHERE file_name IN ({', '.join(['%s'] * len(chunk))})", chunk
        )
        for row in cur.fetchall():
            out[row["file_name"]] = row
    cur.close()
    return out


def same_content(entry: dict | None, size: int, identity: str | None) -> bool:
    """Whether the ledger row `entry` says this file is loaded with the content it has now, as
    far as `identity` tells: None (size alone), "sha256:<hex>" (the file's bytes), or the drop's
    version of it (an S3 ETag, an mtime). A row from before content was recorded (no sha256, no
    version) goes by size, as it did."""
    if not entry or entry["status"] != "loaded" or entry["size"] != size:
        return False
    if identity is None:
        return True
    if identity.startswith("sha256:"):
        return entry.get("sha256") in (None, identity[7:])
    stored = entry.get("source_version")
    return stored == identity or (stored is None and entry.get("sha256") is None)
