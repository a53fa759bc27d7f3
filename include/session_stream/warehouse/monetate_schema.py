"""Migration 3: a warehouse created before Monetate's full schema, converted in place.

What it changes (see tables.py for the shape it converts to):
- session_sessions gets exactly the 35 columns of Monetate's sample schema: the 16 it lacked are
  added (NULL for sessions already loaded: `session-stream load --force`, or the DAG with
  `start`/`end`/`force`, refills them), the 5 invented ones (mid, ip_address, user_agent,
  country, referrer) are dropped, session_id is widened to 255 characters and keeps a unique
  index on the whole id (schema.table_ddl says why; migration 7 brings the same index to
  warehouses made between migrations 3 and 6, which indexed only its first 16 characters).
- Each child table's rows move to its storage table (session_stream_<name>, numbered by row_no,
  ids widened to 255) and the child table becomes a view of the same name.
- The ledger gets its unknown_keys / missing_keys columns; the BI views are made again.

Every step looks at what is there before it acts, so running it again, or after an interrupted
run, finishes the job instead of failing. It holds the loaders' lock, so no load writes while
tables move.
"""

from __future__ import annotations

import MySQLdb

from session_stream import tables
from session_stream.errors import ConfigError
from session_stream.sql import quote
from session_stream.warehouse import schema

LOCK_SECONDS = 6 * 3600  # a long load may hold the lock; a migration waits for it


def to_monetate_schema(conn) -> None:
    cur = conn.cursor()
    cur.execute("SELECT DATABASE()")
    lock = schema.load_lock_name(cur.fetchone()[0])
    cur.execute("SELECT GET_LOCK(%s, %s)", (lock, LOCK_SECONDS))
    try:
        collation = schema.key_collation(conn)
        reconcile_columns(conn, tables.SESSIONS, collation)
        session_id_index(conn)
        for table in tables.CHILD_TABLES:
            _move_child_rows(conn, table, collation)
        _add_ledger_columns(conn)
        from session_stream.warehouse import views

        views.create_lookups_and_views(conn)
    finally:
        cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        cur.close()


def _table_type(cur, name: str) -> str | None:
    cur.execute(
        "SELECT table_type FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (name,),
    )
    row = cur.fetchone()
    return row[0] if row else None


def _columns(cur, name: str) -> dict[str, tuple]:
    """Each column's attributes, by name, in table order."""
    cur.execute(
        "SELECT column_name, column_type, is_nullable, collation_name, column_default, extra"
        " FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = %s"
        " ORDER BY ordinal_position",
        (name,),
    )
    return {row[0]: tuple(row[1:]) for row in cur.fetchall()}


def reconcile_columns(conn, table: tables.Table, collation: str) -> bool:
    """Alter `table`'s base table so its columns are the spec's, in order, with the spec's types.
    Returns whether anything changed.

    The spec's shape is read from a scratch table made with the same DDL, so the comparison
    does not depend on how the server spells a type (MariaDB's int(11), MySQL's int).
    """
    cur = conn.cursor()
    scratch = f"{tables.STORAGE_PREFIX}reference"
    cur.execute(f"DROP TABLE IF EXISTS {quote(scratch)}")
    cur.execute(schema.table_ddl(table, collation, name=scratch))
    try:
        wanted = _columns(cur, scratch)
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {quote(scratch)}")
    have = _columns(cur, table.storage)
    if list(have.items()) == list(wanted.items()):
        cur.close()
        return False
    changes = [f"DROP COLUMN {quote(name)}" for name in have if name not in wanted]
    previous = None
    for name, definition in schema.column_definitions(table, collation):
        where = f"AFTER {quote(previous)}" if previous else "FIRST"
        verb = "MODIFY" if name in have else "ADD"
        changes.append(f"{verb} COLUMN {quote(name)} {definition} {where}")
        previous = name
    cur.execute(f"ALTER TABLE {quote(table.storage)} " + ", ".join(changes))
    cur.close()
    return True


def session_id_index(conn) -> None:
    """session_sessions' index on session_id becomes the unique one on the whole id
    (schema.table_ddl says why), in place of the index on its first 16 characters (migrations 3
    to 6) or of a unique one on a narrower session_id (before migration 3). Readers are not
    blocked while the index is built; loads are (the caller holds their lock, or no loader
    runs an older schema). Fails, naming one, if two sessions share an id: the loaders kept
    ids unique, so that means rows written by hand."""
    cur = conn.cursor()
    cur.execute(
        "SELECT DISTINCT index_name FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (tables.SESSIONS.storage,),
    )
    have = {row[0] for row in cur.fetchall()}
    changes = []
    if schema.SESSION_ID_INDEX not in have:
        changes.append(
            f"ADD UNIQUE KEY {quote(schema.SESSION_ID_INDEX)} ({quote(tables.SESSION_ID.name)})"
        )
    if schema.PREFIX_SESSION_ID_INDEX in have:
        changes.append(f"DROP INDEX {quote(schema.PREFIX_SESSION_ID_INDEX)}")
    if not changes:
        cur.close()
        return
    try:
        cur.execute(
            f"ALTER TABLE {quote(tables.SESSIONS.storage)} {', '.join(changes)},"
            " ALGORITHM=INPLACE, LOCK=NONE"
        )
    except MySQLdb.IntegrityError as exc:  # 1062: a session_id held twice
        raise ConfigError(
            f"session_sessions holds a session_id more than once ({exc.args[-1]}), so it cannot"
            " get its unique index: keep the newest row of each such session (SELECT session_id"
            " FROM session_sessions GROUP BY session_id HAVING COUNT(*) > 1), then run init-db"
            " again"
        ) from None
    finally:
        cur.close()


def _primary_key(cur, name: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.statistics WHERE table_schema = DATABASE()"
        " AND table_name = %s AND index_name = 'PRIMARY' ORDER BY seq_in_index",
        (name,),
    )
    return [row[0] for row in cur.fetchall()]


def _move_child_rows(conn, table: tables.Table, collation: str) -> None:
    """An old child table (a base table holding session_id) becomes its storage table and a view.

    row_no numbers a session's rows in the order of the old primary key (the list position
    for lists, the id for maps): the same rows, the same session_key, nothing recomputed.
    """
    cur = conn.cursor()
    if _table_type(cur, table.name) == "BASE TABLE":
        cur.execute(schema.table_ddl(table, collation))
        cur.execute(f"DELETE FROM {quote(table.storage)}")  # an interrupted copy starts again
        key = tables.SESSION_KEY_COLUMN
        order = [c for c in _primary_key(cur, table.name) if c != key]
        values = ", ".join(quote(n) for n in table.value_names)
        cur.execute(
            f"INSERT INTO {quote(table.storage)}"
            f" ({quote(key)}, {quote(tables.ROW_NO_COLUMN)}, {values})"
            f" SELECT {quote(key)}, ROW_NUMBER() OVER (PARTITION BY {quote(key)}"
            f" ORDER BY {', '.join(quote(c) for c in order)}) - 1, {values}"
            f" FROM {quote(table.name)}"
        )
        conn.commit()
        cur.execute(f"DROP TABLE {quote(table.name)}")
    else:
        cur.execute(schema.table_ddl(table, collation))
        reconcile_columns(conn, table, collation)
    cur.execute(schema.child_view_ddl(table))
    cur.close()


def _add_ledger_columns(conn) -> None:
    cur = conn.cursor()
    have = _columns(cur, tables.LEDGER_TABLE)
    previous = "error"
    for name in (tables.UNKNOWN_KEYS_COLUMN, tables.MISSING_KEYS_COLUMN):
        if name not in have:
            cur.execute(
                f"ALTER TABLE {quote(tables.LEDGER_TABLE)}"
                f" ADD COLUMN {quote(name)} JSON NULL AFTER {quote(previous)}"
            )
        previous = name
    cur.close()
