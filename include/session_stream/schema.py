"""The warehouse schema: DDL generated from tables.py, applied by numbered, idempotent migrations.

`init_db(conn)` applies every migration not yet recorded in session_stream_schema_migrations,
under a named lock so two processes running it at once do not race. A later schema change is a
new entry at the end of MIGRATIONS, never an edit of an old one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import tables
from .sql import quote

LOCK_NAME = "session_stream_migrations"


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


def table_ddl(table: tables.Table, key_collation: str) -> str:
    """Clustered keys that only ever grow: a load appends its rows at the end of every table
    instead of writing pages all over it (a random session_id clustered key, or a secondary
    index on it in every child table, doubled LOAD DATA's cost and grows worse as the tables
    outgrow the buffer pool). session_sessions maps session_id to session_key with a unique
    index, which is all the newest-wins merge looks up; per-session deletes go by session_key.
    """
    key = quote(tables.SESSION_KEY_COLUMN)
    if table is tables.SESSIONS:
        cols = [f"  {key} BIGINT UNSIGNED NOT NULL AUTO_INCREMENT"]
    else:
        cols = [f"  {key} BIGINT UNSIGNED NOT NULL"]
    for c in table.columns:
        null = " NOT NULL" if c.not_null else " NULL"
        cols.append(f"  {quote(c.name)} {c.sql_type(key_collation)}{null}")
    if table is tables.SESSIONS:
        cols.append(f"  {quote(tables.SOURCE_FILE_COLUMN)} VARCHAR(255) NOT NULL")
        cols.append(
            f"  {quote(tables.LOADED_AT_COLUMN)} TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)"
        )
        cols.append(f"  PRIMARY KEY ({key})")
        cols.append(f"  UNIQUE KEY `ux_session_id` ({quote(tables.SESSION_ID.name)})")
    else:
        rest = [quote(n) for n in table.primary_key if n != tables.SESSION_ID.name]
        cols.append(f"  PRIMARY KEY ({', '.join([key, *rest])})")
    for index in table.indexes:
        cols.append(
            f"  KEY {quote('ix_' + '_'.join(index))} ({', '.join(quote(n) for n in index)})"
        )
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(table.name)} (\n"
        + ",\n".join(cols)
        + "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
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


def _create_core_tables(conn) -> None:
    collation = key_collation(conn)
    cur = conn.cursor()
    for table in tables.TABLES:
        cur.execute(table_ddl(table, collation))
    cur.execute(ledger_ddl())
    cur.execute(rejects_ddl())
    cur.close()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable  # apply(conn); must be safe to run again (IF NOT EXISTS, OR REPLACE)


def _create_lookups_and_views(conn) -> None:
    from . import views  # imported late: the lookups need the metadata extras only when run

    views.create_lookups_and_views(conn)


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


def _add_column(conn, table: str, column: str, definition: str) -> None:
    """ALTER TABLE ... ADD COLUMN, once (MySQL has no ADD COLUMN IF NOT EXISTS)."""
    if not has_column(conn, table, column):
        cur = conn.cursor()
        cur.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {definition}")
        cur.close()


def _ledger_failed_since(conn) -> None:
    # When a file's current run of failures began (UTC), for `check`'s list of files still
    # failing; NULL while it is loaded. `attempts` counts the tries.
    _add_column(conn, tables.LEDGER_TABLE, "failed_since", "DATETIME(3) NULL AFTER `attempts`")


def _lookup_refreshes(conn) -> None:
    from . import lookups  # imported late, like migration 2

    cur = conn.cursor()
    cur.execute(lookups.refreshes_ddl())
    cur.close()


MIGRATIONS: list[Migration] = [
    Migration(1, "session tables, ledger and rejects", _create_core_tables),
    Migration(2, "metadata lookups and BI views", _create_lookups_and_views),
    Migration(3, "ledger: failed_since", _ledger_failed_since),
    Migration(4, "when each lookup was last refreshed", _lookup_refreshes),
]


def applied_versions(conn) -> set[int]:
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {quote(tables.MIGRATIONS_TABLE)} ("
        " `version` INT NOT NULL PRIMARY KEY,"
        " `name` VARCHAR(255) NOT NULL,"
        " `applied_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )
    cur.execute(f"SELECT version FROM {quote(tables.MIGRATIONS_TABLE)}")
    versions = {row[0] for row in cur.fetchall()}
    cur.close()
    return versions


def init_db(conn) -> list[Migration]:
    """Apply pending migrations; returns the ones applied now (empty when up to date)."""
    cur = conn.cursor()
    cur.execute("SELECT GET_LOCK(%s, 60)", (LOCK_NAME,))
    try:
        done = applied_versions(conn)
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            migration.apply(conn)
            cur.execute(
                f"INSERT INTO {quote(tables.MIGRATIONS_TABLE)} (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            conn.commit()
            applied.append(migration)
        return applied
    finally:
        cur.execute("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))
        cur.close()


def pending_migrations(conn) -> list[Migration]:
    """Migrations the connected database has not applied yet (without creating anything)."""
    cur = conn.cursor()
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (tables.MIGRATIONS_TABLE,),
    )
    done: set[int] = set()
    if cur.fetchone()[0]:
        cur.execute(f"SELECT version FROM {quote(tables.MIGRATIONS_TABLE)}")
        done = {row[0] for row in cur.fetchall()}
    cur.close()
    return [m for m in MIGRATIONS if m.version not in done]


def missing_tables(conn) -> list[str]:
    """Tables of the spec that the connected database lacks (init-db not run yet)."""
    cur = conn.cursor()
    cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
    present = {row[0] for row in cur.fetchall()}
    cur.close()
    wanted = [t.name for t in tables.TABLES] + [tables.LEDGER_TABLE, tables.REJECTS_TABLE]
    return [name for name in wanted if name not in present]
