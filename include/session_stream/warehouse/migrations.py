"""The warehouse's numbered, idempotent migrations, and the one way to apply them.

`init_db(conn)` applies every migration not yet recorded in session_stream_schema_migrations,
under a named lock so two processes running it at once do not race. A later schema change is a
new entry at the end of MIGRATIONS, never an edit of an old one. The DDL is schema.py's;
migration 3, the one-off conversion to Monetate's full schema, is monetate_schema.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from session_stream import tables
from session_stream.sql import quote
from session_stream.warehouse import monetate_schema, schema

LOCK_NAME = "session_stream_migrations"


def _create_core_tables(conn) -> None:
    collation = schema.key_collation(conn)
    cur = conn.cursor()
    for table in tables.TABLES:
        cur.execute(schema.table_ddl(table, collation))
    for table in tables.CHILD_TABLES:
        cur.execute(schema.child_view_ddl(table))
    cur.execute(schema.ledger_ddl())
    cur.execute(schema.rejects_ddl())
    cur.close()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable  # apply(conn); must be safe to run again (IF NOT EXISTS, OR REPLACE)


def _create_lookups_and_views(conn) -> None:
    from session_stream.warehouse import (
        views,  # imported late: the lookups need the metadata extras only when run
    )

    views.create_lookups_and_views(conn)


def _to_monetate_schema(conn) -> None:
    monetate_schema.to_monetate_schema(conn)


def _add_column(conn, table: str, column: str, definition: str) -> None:
    """ALTER TABLE ... ADD COLUMN, once (MySQL has no ADD COLUMN IF NOT EXISTS)."""
    if not schema.has_column(conn, table, column):
        cur = conn.cursor()
        cur.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {definition}")
        cur.close()


def _ledger_failed_since(conn) -> None:
    # When a file's current run of failures began (UTC), for `check`'s list of files still
    # failing; NULL while it is loaded. `attempts` counts the tries.
    _add_column(conn, tables.LEDGER_TABLE, "failed_since", "DATETIME(3) NULL AFTER `attempts`")


def _lookup_refreshes(conn) -> None:
    from session_stream.metadata import lookups  # imported late, like migration 2

    cur = conn.cursor()
    cur.execute(lookups.refreshes_ddl())
    cur.close()


def _rejects_in_parts(conn) -> None:
    # Rejects loaded before this migration hold their whole line in raw_line: their length and
    # hash are computed from it. A row without them (written by an older loader still running)
    # is read as such a whole line.
    _add_column(conn, tables.REJECTS_TABLE, "raw_length", "BIGINT UNSIGNED NULL AFTER `raw_line`")
    # Hex, in the table's character set, so that it compares with SHA2() as it is.
    _add_column(conn, tables.REJECTS_TABLE, "raw_sha256", "CHAR(64) NULL AFTER `raw_length`")
    cur = conn.cursor()
    cur.execute(
        f"UPDATE {quote(tables.REJECTS_TABLE)}"
        " SET raw_length = LENGTH(raw_line), raw_sha256 = SHA2(raw_line, 256)"
        " WHERE raw_length IS NULL"
    )
    cur.execute(schema.reject_parts_ddl())
    cur.close()


def _session_id_unique(conn) -> None:
    # The index change lives with migration 3's, which makes the same.
    monetate_schema.session_id_index(conn)


def _ledger_lines_and_content(conn) -> None:
    """Issue 20: every line and every listed entry accounted for, and a file known by its
    content. The ledger counts a file's lines (lines_read = sessions + repeats + rejects +
    blank_lines), keeps its SHA-256 and the drop's version of it (an S3 ETag, an mtime) so that a file
    delivered again under the same name and size with other content loads again, says which
    earlier copy a load replaced, and which load wrote the row (`load_token`: a retry after a
    commit whose answer was lost tells its own load from another's). `ignored` is the status of
    an entry the loader does not read. A rejected line longer than the file's rejects may keep
    has `raw_kept` < `raw_length`. Rows from before keep NULL in the new columns."""
    after = "`missing_keys`"
    for column, definition in (
        ("lines_read", f"INT UNSIGNED NULL AFTER {quote('rejects')}"),
        ("blank_lines", "INT UNSIGNED NULL AFTER `lines_read`"),
        ("repeats", "INT UNSIGNED NULL AFTER `blank_lines`"),
        ("sha256", f"CHAR(64) NULL AFTER {after}"),
        ("source_version", "VARCHAR(255) NULL AFTER `sha256`"),
        ("replaced_sha256", "CHAR(64) NULL AFTER `source_version`"),
        ("replaced_at", "DATETIME(3) NULL AFTER `replaced_sha256`"),
        ("load_token", "CHAR(32) NULL AFTER `replaced_at`"),
    ):
        _add_column(conn, tables.LEDGER_TABLE, column, definition)
    cur = conn.cursor()
    # Appending an ENUM value changes no stored row (InnoDB does it in place).
    cur.execute(
        f"ALTER TABLE {quote(tables.LEDGER_TABLE)}"
        " MODIFY `status` ENUM('loaded', 'failed', 'ignored') NOT NULL"
    )
    cur.close()
    _add_column(conn, tables.REJECTS_TABLE, "raw_kept", "BIGINT UNSIGNED NULL AFTER `raw_sha256`")


# Migrations 1 and 2 build from the spec, so a new database gets the current shape from them and
# migration 3 finds nothing to convert; a database made before migration 3 is converted by it.
MIGRATIONS: list[Migration] = [
    Migration(1, "session tables, ledger and rejects", _create_core_tables),
    Migration(2, "metadata lookups and BI views", _create_lookups_and_views),
    Migration(
        3, "Monetate's session columns, child tables read through views", _to_monetate_schema
    ),
    Migration(4, "ledger: failed_since", _ledger_failed_since),
    Migration(5, "when each lookup was last refreshed", _lookup_refreshes),
    Migration(
        6, "rejects of any size: the raw line in parts, its length and SHA-256", _rejects_in_parts
    ),
    Migration(7, "session_sessions: a unique index on the whole session_id", _session_id_unique),
    Migration(
        8,
        "ledger: lines accounted for, content identity, ignored entries; long rejects kept in part",
        _ledger_lines_and_content,
    ),
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
