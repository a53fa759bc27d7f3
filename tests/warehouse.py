"""Helpers for tests that read a loaded warehouse back."""

from __future__ import annotations

from session_stream import tables
from session_stream.warehouse import db


def dump(url: str, *, with_source: bool = True) -> dict[str, list[tuple]]:
    """Every session table's rows, sorted, without load-time columns: two equal dumps mean
    two equal warehouses."""
    conn = db.connect(url)
    cur = conn.cursor()
    out = {}
    for table in tables.TABLES:
        cols = table.column_names + (
            [tables.SOURCE_FILE_COLUMN] if table is tables.SESSIONS and with_source else []
        )
        cur.execute(f"SELECT {', '.join(f'`{c}`' for c in cols)} FROM `{table.name}`")
        out[table.name] = sorted(cur.fetchall(), key=_sort_key)
    conn.close()
    return out


def _sort_key(row: tuple) -> tuple:
    return tuple((v is not None, v if v is not None else 0) for v in row)


def query(url: str, sql: str, params=()) -> list[tuple]:
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute(sql, params)
    rows = list(cur.fetchall())
    conn.close()
    return rows


def reset(url: str) -> None:
    """Empty every table of the warehouse (keeps the schema)."""
    conn = db.connect(url)
    cur = conn.cursor()
    own = [tables.LEDGER_TABLE, tables.REJECTS_TABLE, tables.REJECT_PARTS_TABLE]
    for name in [t.storage for t in tables.TABLES] + own:
        cur.execute(f"DELETE FROM `{name}`")
    conn.close()


def losing_the_first_commit_answer(url: str, lost: list):
    """A connect() for a Loader whose first commit reaches the server but whose answer is lost:
    the connection drops right after it, as a network cut would (the thread id goes to `lost`)."""
    import MySQLdb

    def connect():
        conn = db.connect(url)
        commit = conn.commit

        def commit_then_lose_the_answer():
            commit()
            if not lost:
                lost.append(conn.thread_id())
                conn.close()
                raise MySQLdb.OperationalError(2013, "Lost connection to server during query")

        conn.commit = commit_then_lose_the_answer
        return conn

    return connect
