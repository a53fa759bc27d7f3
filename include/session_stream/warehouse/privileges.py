"""Least privilege in the warehouse: who needs which right, and migrating only when needed.

Three MySQL users (README, "Security"):

- the schema owner runs `session-stream init-db`: the only one that needs DDL rights;
- the loader (the CLI's `load`, the DAGs) needs data rights only: SELECT, INSERT, UPDATE, DELETE
  and CREATE TEMPORARY TABLES on the warehouse (LOAD DATA LOCAL needs INSERT, not FILE; the
  named locks need nothing), plus CREATE, DROP and ALTER on the metadata lookup tables, which a
  refresh rebuilds and swaps in with RENAME TABLE;
- the analyst reads the session tables (and the child tables' storage), the BI views and the
  lookups, never the rejected raw
  lines (`session_stream_rejects` and the parts of long ones, `session_stream_reject_parts`)
  nor the ledger (NOT_FOR_ANALYSTS).

`grant_statements` writes those GRANTs from the table spec, so they follow the schema.
`migrate_if_pending` reads the migrations table first and runs DDL only when a migration is
pending: a loader with data rights never needs more once the owner has run init-db, and when it
would, it says which user lacks which right.
"""

from __future__ import annotations

import re

import MySQLdb

from session_stream import tables
from session_stream.errors import ConfigError
from session_stream.sql import quote
from session_stream.warehouse import migrations

# Server errors that mean "this user may not do that".
ER_DBACCESS_DENIED = 1044
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_SPECIFIC_ACCESS_DENIED = 1227
DENIED = {
    ER_DBACCESS_DENIED,
    ER_TABLEACCESS_DENIED,
    ER_COLUMNACCESS_DENIED,
    ER_SPECIFIC_ACCESS_DENIED,
}

OWNER_RIGHTS = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "INDEX",
    "CREATE TEMPORARY TABLES",
    "CREATE VIEW",
    "SHOW VIEW",
)
LOADER_RIGHTS = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE TEMPORARY TABLES")
LOOKUP_SWAP_RIGHTS = ("SELECT", "INSERT", "DELETE", "CREATE", "DROP", "ALTER")
ANALYST_RIGHTS = ("SELECT",)
# A raw line can hold anything a file held; the ledger is the loader's.
NOT_FOR_ANALYSTS = (tables.REJECTS_TABLE, tables.REJECT_PARTS_TABLE, tables.LEDGER_TABLE)


def pending_migrations(conn) -> list[migrations.Migration]:
    """Migrations not yet applied, found with reads only (no CREATE, unlike init_db)."""
    cur = conn.cursor()
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (tables.MIGRATIONS_TABLE,),
    )
    if not cur.fetchone()[0]:
        cur.close()
        return list(migrations.MIGRATIONS)
    cur.execute(f"SELECT version FROM {quote(tables.MIGRATIONS_TABLE)}")
    done = {row[0] for row in cur.fetchall()}
    cur.close()
    return [m for m in migrations.MIGRATIONS if m.version not in done]


def current_user(conn) -> str:
    cur = conn.cursor()
    cur.execute("SELECT CURRENT_USER(), DATABASE()")
    user, database = cur.fetchone()
    cur.close()
    name, _, host = str(user).rpartition("@")
    return f"'{name}'@'{host}' on database {database!r}"


def _denied_right(message: str) -> str:
    """The right a denial names ("CREATE command denied ..." -> CREATE), or a general phrase."""
    m = re.match(r"(\w+(?: \w+)?) command denied", message)
    if m:
        return m.group(1).upper()
    m = re.search(r"need \(at least one of\) the (.+?) privilege", message)
    return m.group(1) if m else "the rights init-db needs"


def migrate_if_pending(conn) -> list[migrations.Migration]:
    """Apply pending migrations; do nothing (and need no DDL right) when the schema is current.

    A user without the rights a pending migration needs gets one ConfigError naming the user,
    the right and what to do, instead of a traceback.
    """
    pending = pending_migrations(conn)
    if not pending:
        return []
    try:
        return migrations.init_db(conn)
    except MySQLdb.Error as exc:
        code = exc.args[0] if exc.args else None
        if code not in DENIED:
            raise
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        first = pending[0]
        raise ConfigError(
            f"the warehouse schema needs migration {first.version} ({first.name}), but MySQL user "
            f"{current_user(conn)} lacks the {_denied_right(message)} right it takes "
            f"(MySQL: {message}): the schema owner must run `session-stream init-db` "
            f"(rights: {', '.join(OWNER_RIGHTS)} on the database)"
        ) from None


# ---------------------------------------------------------------- the GRANTs


def account(spec: str) -> str:
    """'user' or 'user@host' as a quoted MySQL account name ('user'@'host'; host '%' by default)."""
    spec = spec.strip()
    if re.fullmatch(r"'[^']*'@'[^']*'", spec):
        return spec
    user, _, host = spec.partition("@")
    if not user or "'" in user or "'" in host or "\\" in spec:
        raise ConfigError(f"give a MySQL account as user or user@host, got {spec!r}")
    return f"'{user}'@'{host or '%'}'"


def analyst_objects() -> list[str]:
    """What analysts read: the session tables (or their views), the child tables' storage (the
    same rows keyed by session_key: on MySQL, which cannot drop a view's join to
    session_sessions, the way to read a child table alone), the BI views, the lookups."""
    from session_stream.metadata.lookups import LOOKUPS
    from session_stream.warehouse import views

    names = [t.name for t in tables.TABLES] + [t.storage for t in tables.CHILD_TABLES]
    names += list(views.VIEWS) + [lk.table for lk in LOOKUPS]
    return [name for name in dict.fromkeys(names) if name not in NOT_FOR_ANALYSTS]


def lookup_tables() -> list[str]:
    """The lookup tables and the two names their refresh swaps through (lookup_refresh)."""
    from session_stream.metadata.lookups import LOOKUPS
    from session_stream.metadata.refresh import NEW_SUFFIX, OLD_SUFFIX

    return [
        name for lk in LOOKUPS for name in (lk.table, lk.table + NEW_SUFFIX, lk.table + OLD_SUFFIX)
    ]


def grant_statements(
    database: str,
    *,
    owner: str | None = None,
    loader: str | None = None,
    analyst: str | None = None,
) -> list[str]:
    """GRANT statements for the three users (any may be left out), for an admin to run.

    The analyst's grants name each table and view, so they can only be given once init-db has
    created them (MySQL grants SELECT only on tables that exist), and again after a migration
    adds one; they never include the rejected lines or the ledger (NOT_FOR_ANALYSTS).
    """
    db = quote(database)
    out = []
    if owner:
        out.append(f"GRANT {', '.join(OWNER_RIGHTS)} ON {db}.* TO {account(owner)};")
    if loader:
        out.append(f"GRANT {', '.join(LOADER_RIGHTS)} ON {db}.* TO {account(loader)};")
        for name in lookup_tables():
            out.append(
                f"GRANT {', '.join(LOOKUP_SWAP_RIGHTS)} ON {db}.{quote(name)} TO {account(loader)};"
            )
    if analyst:
        for name in analyst_objects():
            out.append(
                f"GRANT {', '.join(ANALYST_RIGHTS)} ON {db}.{quote(name)} TO {account(analyst)};"
            )
    return out


def apply_grants(conn, statements: list[str]) -> None:
    """Run GRANT statements; a user not allowed to grant gets one ConfigError saying so."""
    cur = conn.cursor()
    try:
        for statement in statements:
            cur.execute(statement.rstrip(";"))
    except MySQLdb.Error as exc:
        code = exc.args[0] if exc.args else None
        if code not in DENIED | {1410}:  # 1410: you are not allowed to create a user with GRANT
            raise
        raise ConfigError(
            f"MySQL user {current_user(conn)} may not grant these rights ({exc.args[-1]}): "
            "apply them as the schema owner holding GRANT OPTION, or as an admin"
        ) from None
    finally:
        cur.close()
