"""The warehouse schema: DDL generated from tables.py, and what a database holds of it.

migrations.py applies it; this module imports neither it nor any migration.
"""

from __future__ import annotations

from session_stream import tables
from session_stream.sql import quote

SESSION_ID_INDEX = "ux_session_id"
# The index on session_id's first 16 characters that migration 7 replaces (table_ddl says why).
PREFIX_SESSION_ID_INDEX = "ix_session_id"


def load_lock_name(database: str) -> str:
    """The named lock that serialises loads of one database (load.py), taken by migrations that
    move rows too."""
    return f"session_stream_load:{database}"


def key_collation(conn) -> str:
    """A binary, NO PAD collation: session and item ids compare byte for byte, trailing spaces included."""
    cur = conn.cursor()
    cur.execute("SHOW COLLATION WHERE Collation IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')")
    names = {row[0] for row in cur.fetchall()}
    cur.close()
    for name in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin"):
        if name in names:
            return name
    return "utf8mb4_bin"


def column_definitions(table: tables.Table, key_collation: str) -> list[tuple[str, str]]:
    """(name, definition) of every column of the base table that stores `table`, in order."""
    key = tables.SESSION_KEY_COLUMN
    out = []
    if table.is_child:
        out.append((key, "BIGINT UNSIGNED NOT NULL"))
        out.append((tables.ROW_NO_COLUMN, "SMALLINT UNSIGNED NOT NULL"))
    else:
        out.append((key, "BIGINT UNSIGNED NOT NULL AUTO_INCREMENT"))
    for c in table.columns:
        null = "NOT NULL" if c.not_null else "NULL"
        out.append((c.name, f"{c.sql_type(key_collation)} {null}"))
    if not table.is_child:
        out.append((tables.SOURCE_FILE_COLUMN, "VARCHAR(255) NOT NULL"))
        out.append((tables.LOADED_AT_COLUMN, "TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"))
    return out


def table_ddl(table: tables.Table, key_collation: str, name: str | None = None) -> str:
    """The base table behind `table`: session_sessions itself, or a child table's storage.

    Clustered keys that only ever grow: a load appends its rows at the end of every table
    instead of writing pages all over it. The one index a load writes in the order of the ids
    it gets is session_sessions' unique index on the whole session_id: the newest-wins merge
    finds sessions there, and so do the child tables' views, which is how Monetate's joins on
    session_id find a session's rows without a session_id index in every child table (such
    indexes doubled LOAD DATA's cost on the first day, and grow worse as the tables outgrow the
    buffer pool).

    The whole id, not its first characters: a session_id is opaque (CONTRACT), and ids that
    share their first characters (an epoch-ms or account prefix, the same for every session of a
    window) made an index on a prefix walk every session of the window for each lookup, so a
    day cost the square of its sessions per window. A B-tree on the whole id finds any id in
    the same few steps whatever it looks like, and, being unique, lets the database itself keep
    session_id unique, under the loader's lock or not.
    """
    key = quote(tables.SESSION_KEY_COLUMN)
    cols = [f"  {quote(n)} {d}" for n, d in column_definitions(table, key_collation)]
    if table.is_child:
        cols.append(f"  PRIMARY KEY ({key}, {quote(tables.ROW_NO_COLUMN)})")
    else:
        cols.append(f"  PRIMARY KEY ({key})")
        cols.append(f"  UNIQUE KEY {quote(SESSION_ID_INDEX)} ({quote(tables.SESSION_ID.name)})")
    for index in table.indexes:
        cols.append(
            f"  KEY {quote('ix_' + '_'.join(index))} ({', '.join(quote(n) for n in index)})"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(name or table.storage)} (\n"
        + ",\n".join(cols)
        + "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


def child_view_ddl(table: tables.Table) -> str:
    """The view analysts read a child table through: Monetate's columns (`id`, session_id, the
    values) over the storage table, plus session_key and row_no.

    session_id comes from session_sessions by session_key. A LEFT JOIN on its primary key lets
    the optimizer drop session_sessions from a query that does not use session_id (MariaDB's
    table elimination); a query that joins on session_id, as Monetate's guide does, turns it into
    an inner join that finds the session by its session_id index, then its rows by the storage table's
    primary key. `id` is unique per row like the sample's AUTO_INCREMENT id (and, like it,
    changes when a newer version of the session replaces the rows).
    """
    key, row_no = quote(tables.SESSION_KEY_COLUMN), quote(tables.ROW_NO_COLUMN)
    values = ", ".join(f"c.{quote(n)}" for n in table.value_names)
    return (
        f"CREATE OR REPLACE VIEW {quote(table.name)} AS\n"
        f"SELECT c.{key} * {tables.ROW_NO_MAX + 1} + c.{row_no} AS {quote(tables.ID_COLUMN)},"
        f" s.{quote(tables.SESSION_ID.name)}, {values}, c.{key}, c.{row_no}\n"
        f"FROM {quote(table.storage)} c\n"
        f"LEFT JOIN {quote(tables.SESSIONS.name)} s ON s.{key} = c.{key}"
    )


def ledger_ddl() -> str:
    counts = ",\n".join(
        f"  {quote(tables.rows_column(t))} INT UNSIGNED NULL" for t in tables.TABLES
    )
    return f"""CREATE TABLE IF NOT EXISTS {quote(tables.LEDGER_TABLE)} (
  `file_name` VARCHAR(255) NOT NULL,
  `size` BIGINT NOT NULL,
  `window_start` DATETIME(3) NULL,
  `status` ENUM('loaded', 'failed') NOT NULL,
  `sessions` INT UNSIGNED NULL,
{counts},
  `rejects` INT UNSIGNED NULL,
  `horizon` BIGINT NULL,
  `split_seconds` DECIMAL(10,3) NULL,
  `load_seconds` DECIMAL(10,3) NULL,
  `attempts` INT UNSIGNED NOT NULL DEFAULT 1,
  `error` TEXT NULL,
  {quote(tables.UNKNOWN_KEYS_COLUMN)} JSON NULL,
  {quote(tables.MISSING_KEYS_COLUMN)} JSON NULL,
  `loaded_at` TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`file_name`),
  KEY `ix_window_start` (`window_start`),
  KEY `ix_status` (`status`),
  KEY `ix_horizon` (`horizon`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def rejects_ddl() -> str:
    # raw_line is binary: the rejected line is kept whole, even when it is not valid UTF-8.
    return f"""CREATE TABLE IF NOT EXISTS {quote(tables.REJECTS_TABLE)} (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `file_name` VARCHAR(255) NOT NULL,
  `line_no` INT UNSIGNED NOT NULL,
  `reason` VARCHAR(1024) NOT NULL,
  `raw_line` LONGBLOB NOT NULL,
  `rejected_at` TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (`id`),
  UNIQUE KEY `ux_file_line` (`file_name`, `line_no`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def reject_parts_ddl() -> str:
    # Part 0 of a rejected line is its raw_line in session_stream_rejects; parts 1, 2, ... of a
    # longer one are here, each small enough for one statement (rejects.py).
    return f"""CREATE TABLE IF NOT EXISTS {quote(tables.REJECT_PARTS_TABLE)} (
  `file_name` VARCHAR(255) NOT NULL,
  `line_no` INT UNSIGNED NOT NULL,
  `part_no` INT UNSIGNED NOT NULL,
  `chunk` LONGBLOB NOT NULL,
  PRIMARY KEY (`file_name`, `line_no`, `part_no`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def has_column(conn, table: str, column: str) -> bool:
    cur = conn.cursor()
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s AND column_name = %s",
        (table, column),
    )
    (found,) = cur.fetchone()
    cur.close()
    return bool(found)


def missing_tables(conn) -> list[str]:
    """Tables of the spec that the connected database lacks (init-db not run yet)."""
    cur = conn.cursor()
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
    present = {row[0] for row in cur.fetchall()}
    cur.close()
    wanted = [t.storage for t in tables.TABLES] + [tables.LEDGER_TABLE, tables.REJECTS_TABLE]
    return [name for name in wanted if name not in present]
