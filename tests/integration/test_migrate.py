"""Migration 3 takes a warehouse made before Monetate's full schema to the new shape, in place.

tests/fixtures/warehouse_v2.sql is a warehouse as `session-stream init-db` made it before
migration 3 (migrations 1 and 2), filled by `session-stream load` with a small sample drop
(mysqldump, DEFINER clauses removed).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from warehouse import query

from session_stream import tables
from session_stream.errors import ConfigError
from session_stream.runs.pipeline import load_files
from session_stream.warehouse import db, migrations
from session_stream.warehouse import monetate_schema as migrate
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "warehouse_v2.sql"
INVENTED = ("mid", "ip_address", "user_agent", "country", "referrer")
ADDED = (
    "browser_version",
    "country_code",
    "customer_link",
    "guid",
    "os_version",
    "page_views_ss",
    "product_view_count",
    "purchase_count",
    "purchase_value_ss",
    "screen_height",
    "screen_width",
    "session_count",
    "session_value",
    "session_value_ss",
    "time_on_site",
    "time_on_site_ss",
)
# The migrations an old warehouse (made with 1 and 2) applies, and a new one.
LATER = [m.version for m in migrations.MIGRATIONS if m.version >= 3]
ALL = [m.version for m in migrations.MIGRATIONS]
# Columns the old session_sessions shares with the new one.
KEPT = [c.name for c in tables.SESSIONS.columns if c.name not in ADDED]


def restore(url: str) -> None:
    conn = db.connect(url)
    cur = conn.cursor()
    for statement in FIXTURE.read_text(encoding="utf-8").split(";\n"):
        if statement.strip():
            cur.execute(statement)
    conn.close()


def shape(url: str) -> dict[str, list[tuple]]:
    """Everything about the schema but the data: tables and views, columns, indexes."""
    where = "WHERE table_schema = DATABASE()"
    return {
        "tables": query(url, f"SELECT table_name, table_type FROM information_schema.tables {where} ORDER BY 1"),
        "columns": query(
            url,
            "SELECT table_name, column_name, ordinal_position, column_type, is_nullable,"
            f" collation_name, column_default, extra FROM information_schema.columns {where}"
            " ORDER BY 1, 3",
        ),
        "indexes": query(
            url,
            "SELECT table_name, index_name, seq_in_index, column_name, non_unique"
            f" FROM information_schema.statistics {where} ORDER BY 1, 2, 3",
        ),
    }  # fmt: skip


def contents(url: str) -> dict[str, list]:
    """The stored values a migration must keep: sessions' shared columns, child rows."""
    out = {
        "sessions": sorted(
            query(url, f"SELECT {', '.join(KEPT)}, source_file FROM session_sessions"),
            key=repr,
        )
    }
    for table in tables.CHILD_TABLES:
        names = ", ".join(table.column_names)
        out[table.name] = sorted(query(url, f"SELECT {names} FROM {table.name}"), key=repr)
    return out


def init(url: str) -> list[int]:
    conn = db.connect(url)
    applied = [m.version for m in migrations.init_db(conn)]
    conn.close()
    return applied


@pytest.fixture
def old(fresh_db_url) -> str:
    restore(fresh_db_url)
    assert query(fresh_db_url, f"SELECT version FROM {tables.MIGRATIONS_TABLE} ORDER BY 1") == [
        (1,),
        (2,),
    ]
    return fresh_db_url


def test_the_fixture_has_the_old_shape_and_data(old):
    columns = {c for (c,) in query(old, "SELECT column_name FROM information_schema.columns"
                                        " WHERE table_schema = DATABASE() AND table_name = 'session_sessions'")}  # fmt: skip
    assert set(INVENTED) <= columns and not set(ADDED) & columns
    assert query(old, "SELECT COUNT(*) FROM session_sessions")[0][0] == 40
    assert query(old, "SELECT COUNT(*) FROM session_cart_lines")[0][0] > 0


def test_migration_3_converts_an_old_warehouse_to_the_shape_of_a_new_one(old, fresh_db_url):
    before = contents(old)
    assert init(old) == LATER
    # A database created now has exactly the same tables, views, columns and indexes.
    new_conn = db.connect(fresh_db_url.rsplit("/", 1)[0] + "/mysql", database=False)
    cur = new_conn.cursor()
    cur.execute("CREATE DATABASE ss_test_migrate_new CHARACTER SET utf8mb4")
    new = fresh_db_url.rsplit("/", 1)[0] + "/ss_test_migrate_new"
    try:
        assert init(new) == ALL
        assert shape(old) == shape(new)
    finally:
        cur.execute("DROP DATABASE ss_test_migrate_new")
        new_conn.close()

    # Every value kept; the added columns are NULL until the files are loaded again.
    assert contents(old) == before
    added = ", ".join(f"COUNT({c})" for c in ADDED)
    assert query(old, f"SELECT {added} FROM session_sessions") == [(0,) * len(ADDED)]
    ledger = query(
        old, f"SELECT COUNT(*), COUNT({tables.UNKNOWN_KEYS_COLUMN}) FROM {tables.LEDGER_TABLE}"
    )
    assert ledger == [(3, 0)]  # fmt: skip
    # Its rejects, stored whole in raw_line, get their length and hash (migration 6).
    assert query(
        old,
        f"SELECT COUNT(*), SUM(raw_length = LENGTH(raw_line) AND raw_sha256 = SHA2(raw_line, 256))"
        f" FROM {tables.REJECTS_TABLE}",
    ) == [(2, 2)]


def test_migration_3_run_again_changes_nothing(old):
    init(old)
    snapshot = shape(old), contents(old)
    conn = db.connect(old)
    migrate.to_monetate_schema(conn)  # as if the migrations table had lost its row
    migrate.to_monetate_schema(conn)
    conn.close()
    assert (shape(old), contents(old)) == snapshot
    assert init(old) == []


def test_an_interrupted_migration_finishes_when_run_again(old, monkeypatch):
    real = migrate._move_child_rows
    calls = []

    def crash_after_two(conn, table, collation):
        if len(calls) == 2:
            raise RuntimeError("the server went away")
        calls.append(table.name)
        real(conn, table, collation)

    before = contents(old)
    monkeypatch.setattr(migrate, "_move_child_rows", crash_after_two)
    with pytest.raises(RuntimeError):
        init(old)
    monkeypatch.setattr(migrate, "_move_child_rows", real)
    assert init(old) == LATER
    assert contents(old) == before


def test_loading_after_the_migration_refills_and_replaces_old_sessions(old, tmp_path):
    init(old)
    (sid, end, key) = query(
        old,
        "SELECT session_id, end_time, session_key FROM session_sessions"
        " WHERE session_id IN (SELECT session_id FROM session_cart_lines) ORDER BY 1 LIMIT 1",
    )[0]
    newer = {
        "session_id": sid,
        "end_time": end + 1,
        "start_time": end - 1000,
        "country_code": "US",
        "guid": "g-1",
        "cart_lines": [{"product_id": "replaced", "sku": "s", "quantity": 1}],
    }
    path = tmp_path / "20240501T110000.000Z_PT15M-1714561200999.json.gz"
    with gzip.open(path, "wb") as f:
        f.write(orjson.dumps(newer) + b"\n")
    loader = Loader(lambda: db.connect(old))
    summary = load_files([path], loader)
    loader.close()
    assert (summary.loaded, summary.replaced) == (1, 1)
    assert query(old, "SELECT country_code, guid FROM session_sessions WHERE session_id = %s", (sid,)) == [
        ("US", "g-1")
    ]  # fmt: skip
    assert query(old, "SELECT product_id FROM session_cart_lines WHERE session_id = %s", (sid,)) == [
        ("replaced",)
    ]  # fmt: skip
    assert query(old, "SELECT COUNT(*) FROM session_stream_cart_lines WHERE session_key = %s", (key,)) == [
        (0,)
    ]  # fmt: skip


def _index_of_migrations_3_to_6(url: str) -> None:
    """Give a new warehouse the index migrations 3 to 6 made: session_id's first 16 characters."""
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute(
        "ALTER TABLE session_sessions DROP INDEX ux_session_id,"
        " ADD KEY ix_session_id (session_id(16))"
    )
    cur.execute(f"DELETE FROM {tables.MIGRATIONS_TABLE} WHERE version >= 7")
    conn.close()


def _indexes(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT index_name, non_unique, column_name, sub_part FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = 'session_sessions' ORDER BY 1, 3",
    )


def test_migration_7_indexes_the_whole_session_id_uniquely(fresh_db_url):
    init(fresh_db_url)
    new = _indexes(fresh_db_url)
    assert ("ux_session_id", 0, "session_id", None) in new
    _index_of_migrations_3_to_6(fresh_db_url)
    conn = db.connect(fresh_db_url)
    conn.cursor().execute(
        "INSERT INTO session_sessions (session_id, source_file) VALUES"
        " ('1793491200000-4521-a', 'f'), ('1793491200000-4521-b', 'f')"
    )
    conn.close()
    assert init(fresh_db_url) == [v for v in ALL if v >= 7]
    assert _indexes(fresh_db_url) == new
    assert init(fresh_db_url) == []


def test_migration_7_names_the_way_out_when_a_session_id_is_held_twice(fresh_db_url):
    init(fresh_db_url)
    _index_of_migrations_3_to_6(fresh_db_url)
    conn = db.connect(fresh_db_url)
    conn.cursor().execute(
        "INSERT INTO session_sessions (session_id, source_file) VALUES ('twice', 'a'), ('twice', 'b')"
    )
    conn.close()
    with pytest.raises(ConfigError, match="more than once.*twice.*init-db again"):
        init(fresh_db_url)
    conn = db.connect(fresh_db_url)
    conn.cursor().execute("DELETE FROM session_sessions WHERE source_file = 'a'")
    conn.close()
    assert 7 in init(fresh_db_url)
    assert ("ux_session_id", 0, "session_id", None) in _indexes(fresh_db_url)
