"""Lookup refresh against the fake Metadata API and a real MariaDB, and the BI views."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import threading
from decimal import Decimal

import pytest

from session_stream import tables
from session_stream.errors import ConfigError
from session_stream.metadata import lookups
from session_stream.metadata import refresh as lookup_refresh
from session_stream.metadata.client import MetadataApiError
from session_stream.runs import cli_metadata
from session_stream.warehouse import db, migrations, views

pytestmark = pytest.mark.integration

DAY1 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, epoch ms
DAY2 = DAY1 + 86_400_000

EXPERIENCE = {
    "id": 900,
    "account_domain": "acme.com",
    "experience_name": "Hero banner test",
    "experience_type": "experience",
    "archived": False,
    "create_time": "2024-01-02T03:04:05.000000Z",
    "start_time": "2024-01-03T00:00:00+02:00",
    "end_time": None,
    "status": "active",
    "splits": [501, 502],
    "tags": ["home", "ü-tag"],
    "goals": [{"key": "conversion", "name": "Conversion", "description": "Purchases / sessions"}],
    "variant_splits": [
        {"id": 501, "variant": "A", "split": 0.5},
        {"id": 502, "variant": "B", "split": 0.5},
    ],
    "integration_type": "js-tag",
    "a_field_we_do_not_model": {"kept": "in raw"},
}


def api_objects() -> dict[str, list[dict]]:
    return {
        "customtarget": [
            {
                "id": 11,
                "title": "Loyalty tier",
                "description": "From the CRM",
                "is_identifier": False,
            },
            {"id": 12, "title": "Customer id", "is_identifier": True, "collects_person_id": True},
        ],
        "pageevent": [{"id": 21, "title": "Add to cart"}, {"id": 22, "title": "Checkout 🛒"}],
        "variant": [
            {
                "id": 501,
                "experience_id": 900,
                "experience_name": "Hero banner test",
                "split_name": "A",
            },
            {
                "id": 502,
                "experience_id": 900,
                "experience_name": "Hero banner test",
                "split_name": "B",
            },
        ],
        "experience-summary": [EXPERIENCE],
        "account": [
            {"id": 1, "name": "acme.com", "type": "production", "kind": "retail", "archived": False}
        ],
    }


@pytest.fixture
def conn(fresh_db_url):
    connection = db.connect(fresh_db_url)
    migrations.init_db(connection)
    views.create_lookups_and_views(connection)
    yield connection
    connection.close()


def rows(conn, sql: str, params=()) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(sql, params)
    result = list(cur.fetchall())
    cur.close()
    return result


def table_names(conn) -> set[str]:
    return {r[0] for r in rows(conn, "SHOW TABLES")}


def test_refresh_fills_every_lookup_table(conn, metadata_server, metadata_client_factory):
    metadata_server.objects.update(api_objects())
    counts = lookup_refresh.refresh_lookups(conn, metadata_client_factory())

    assert counts == {
        "customtarget": 2,
        "pageevent": 2,
        "variant": 2,
        "experience-summary": 1,
        "account": 1,
    }
    assert rows(
        conn,
        "SELECT id, title, is_identifier, collects_person_id FROM monetate_custom_targets ORDER BY id",
    ) == [
        (11, "Loyalty tier", 0, None),
        (12, "Customer id", 1, 1),
    ]
    assert rows(conn, "SELECT title FROM monetate_page_events WHERE id = 22") == [("Checkout 🛒",)]
    (exp,) = rows(
        conn,
        "SELECT experience_name, archived, create_time, start_time, end_time, splits, tags, goals, "
        "variant_splits, raw, refreshed_at FROM monetate_experiences",
    )
    name, archived, created, started, ended, splits, tags, goals, variant_splits, raw, refreshed = (
        exp
    )
    assert (name, archived) == ("Hero banner test", 0)
    assert created == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert started == dt.datetime(2024, 1, 2, 22, 0, 0)  # +02:00 stored as UTC
    assert ended is None
    assert json.loads(splits) == [501, 502]
    assert json.loads(tags) == ["home", "ü-tag"]
    assert json.loads(goals) == EXPERIENCE["goals"]
    assert json.loads(variant_splits) == EXPERIENCE["variant_splits"]
    assert json.loads(raw) == EXPERIENCE  # nothing lost, unmodelled fields included
    assert abs(dt.datetime.utcnow() - refreshed) < dt.timedelta(minutes=1)
    assert not {t for t in table_names(conn) if t.endswith(("__new", "__old"))}


def test_refresh_replaces_a_table_whole(conn, metadata_server, metadata_client_factory):
    metadata_server.objects["pageevent"] = [{"id": i, "title": f"old {i}"} for i in (1, 2, 3)]
    lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "pageevent")
    metadata_server.objects["pageevent"] = [
        {"id": 3, "title": "renamed"},
        {"id": 4, "title": "new"},
    ]

    assert lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "pageevent") == 2
    assert rows(conn, "SELECT id, title FROM monetate_page_events ORDER BY id") == [
        (3, "renamed"),
        (4, "new"),
    ]


def test_refresh_that_fails_on_page_two_keeps_previous_contents(
    conn, metadata_server, metadata_client_factory
):
    metadata_server.page_limit = 2
    metadata_server.objects["variant"] = [
        {"id": i, "experience_name": f"old {i}"} for i in range(1, 6)
    ]
    lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "variant")
    before = rows(conn, "SELECT * FROM monetate_variants ORDER BY id")

    metadata_server.objects["variant"] = [
        {"id": i, "experience_name": f"new {i}"} for i in range(1, 6)
    ]
    metadata_server.fail("api", 500, times=None, page=2)
    with pytest.raises(MetadataApiError, match="kept failing"):
        lookup_refresh.refresh_lookup(
            conn, metadata_client_factory(max_wait_seconds=0.3), "variant"
        )

    assert [c.query.get("page", "1") for c in metadata_server.seen("api")][
        -1
    ] == "2"  # page 1 was read
    assert rows(conn, "SELECT * FROM monetate_variants ORDER BY id") == before
    assert "monetate_variants__new" not in table_names(conn)


def test_refresh_with_bad_data_keeps_previous_contents(
    conn, metadata_server, metadata_client_factory
):
    metadata_server.objects["account"] = [{"id": 1, "name": "acme.com"}]
    lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "account")

    metadata_server.objects["account"] = [
        {"id": 2, "name": "ok"},
        {"id": "not-a-number", "name": "bad"},
    ]
    with pytest.raises(lookups.BadMetadataError, match="id='not-a-number'"):
        lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "account")
    metadata_server.objects["account"] = [{"id": 3, "type": "x" * 65}]  # longer than VARCHAR(64)
    with pytest.raises(lookups.BadMetadataError, match="longer than 64"):
        lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "account")

    assert rows(conn, "SELECT id, name FROM monetate_accounts") == [(1, "acme.com")]


def test_readers_never_see_an_empty_table_during_refresh(
    conn, fresh_db_url, metadata_server, metadata_client_factory
):
    metadata_server.page_limit = 2
    metadata_server.objects["pageevent"] = [{"id": i, "title": "v1"} for i in range(1, 6)]
    lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "pageevent")
    metadata_server.objects["pageevent"] = [{"id": i, "title": "v2"} for i in range(1, 8)]
    metadata_server.hang("api", seconds=0.2, page=2)  # keeps the refresh busy mid-way

    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        reader = db.connect(fresh_db_url)
        while not done.is_set():
            seen.append(rows(reader, "SELECT COUNT(*) FROM monetate_page_events")[0][0])
        reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(3):
            lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "pageevent")
    finally:
        done.set()
        thread.join()
    assert len(seen) > 10
    assert set(seen) <= {5, 7}
    assert seen[-1] == 7


def test_refresh_creates_the_lookup_table_when_migration_2_never_ran(
    fresh_db_url, metadata_server, metadata_client_factory
):
    connection = db.connect(fresh_db_url)
    metadata_server.objects["customtarget"] = [{"id": 1, "title": "t"}]
    assert lookup_refresh.refresh_lookup(connection, metadata_client_factory(), "customtarget") == 1
    assert rows(connection, "SELECT id, title FROM monetate_custom_targets") == [(1, "t")]
    connection.close()


def test_create_lookups_and_views_is_idempotent(conn):
    views.create_lookups_and_views(conn)
    assert {lk.table for lk in lookups.LOOKUPS} | set(views.VIEWS) <= table_names(conn)


def insert(conn, table: tables.Table, **values) -> None:
    cur = conn.cursor()
    if table is tables.SESSIONS:
        values.setdefault(tables.SOURCE_FILE_COLUMN, "test.json.gz")
    else:  # a child row is stored under its session's session_key, numbered by row_no
        key, row_no = tables.SESSION_KEY_COLUMN, tables.ROW_NO_COLUMN
        cur.execute(
            f"SELECT `{key}` FROM `{tables.SESSIONS.name}` WHERE session_id = %s",
            (values.pop("session_id"),),
        )
        values[key] = cur.fetchone()[0]
        cur.execute(f"SELECT COUNT(*) FROM `{table.storage}` WHERE `{key}` = %s", (values[key],))
        values[row_no] = cur.fetchone()[0]
    cols = ", ".join(f"`{c}`" for c in values)
    marks = ", ".join(["%s"] * len(values))
    cur.execute(f"INSERT INTO `{table.storage}` ({cols}) VALUES ({marks})", tuple(values.values()))
    cur.close()


def test_views_name_the_ids_of_loaded_sessions(conn, metadata_server, metadata_client_factory):
    metadata_server.objects.update(api_objects())
    lookup_refresh.refresh_lookups(conn, metadata_client_factory())
    insert(conn, tables.SESSIONS, session_id="s1", start_time=DAY1)
    insert(conn, tables.OFFERS, session_id="s1", offer_id="501", timestamp=DAY1 + 1500)
    insert(
        conn, tables.OFFERS, session_id="s1", offer_id="777", timestamp=DAY1
    )  # unknown to the API
    insert(
        conn, tables.OFFERS, session_id="s1", offer_id="x-1", timestamp=DAY1
    )  # not even a number
    insert(conn, tables.PAGE_EVENT_IDS, session_id="s1", event_id="22", timestamp=DAY1)
    insert(
        conn,
        tables.CUSTOM_TARGETS,
        session_id="s1",
        custom_target_id="11",
        custom_target_value="gold",
    )

    assert rows(
        conn,
        "SELECT offer_id, variant_id, experience_id, experience_name, split_name, experience_status, offer_time "
        "FROM v_session_offers ORDER BY offer_id",
    ) == [
        (
            "501",
            501,
            900,
            "Hero banner test",
            "A",
            "active",
            dt.datetime(2023, 11, 14, 22, 13, 21, 500000),
        ),
        ("777", 777, None, None, None, None, dt.datetime(2023, 11, 14, 22, 13, 20)),
        ("x-1", None, None, None, None, None, dt.datetime(2023, 11, 14, 22, 13, 20)),
    ]
    assert rows(
        conn,
        "SELECT session_id, event_id, page_event_id, page_event_title FROM v_session_page_events",
    ) == [("s1", "22", 22, "Checkout 🛒")]
    assert rows(
        conn,
        "SELECT session_id, custom_target_int_id, custom_target_title, custom_target_value FROM v_session_custom_targets",
    ) == [("s1", 11, "Loyalty tier", "gold")]


def test_daily_sessions_rolls_up_by_utc_day_device_and_country(conn):
    common = {"device_type": "Mobile", "country_code": "US"}
    insert(conn, tables.SESSIONS, session_id="a", start_time=DAY1, is_bounce=1, has_cart=0,
           has_purchase=0, purchase_count=0, session_value=Decimal(0), **common)  # fmt: skip
    # Two purchases in one session: revenue adds up, the session still counts once.
    insert(conn, tables.SESSIONS, session_id="b", start_time=DAY1 + 1000, is_bounce=0, has_cart=1,
           has_purchase=1, purchase_count=2, session_value=Decimal("14.75"), **common)  # fmt: skip
    insert(conn, tables.SESSIONS, session_id="c", start_time=DAY1 + 2000, is_bounce=0, has_cart=1,
           has_purchase=0, purchase_count=0, session_value=None, **common)  # fmt: skip
    insert(conn, tables.SESSIONS, session_id="d", start_time=DAY2, is_bounce=0, has_cart=1,
           has_purchase=1, purchase_count=1, session_value=Decimal("99.99"), device_type="Desktop",
           country_code="DE")  # fmt: skip

    got = rows(
        conn,
        "SELECT session_date, device_type, country_code, sessions, bounces, carts, purchases,"
        " orders, revenue, conversion_rate FROM v_daily_sessions ORDER BY session_date",
    )
    assert got == [
        (dt.date(2023, 11, 14), "Mobile", "US", 3, 1, 2, 1, 2, Decimal("14.7500"), Decimal("0.3333")),
        (dt.date(2023, 11, 15), "Desktop", "DE", 1, 0, 1, 1, 1, Decimal("99.9900"), Decimal("1.0000")),
    ]  # fmt: skip


def parse_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="session-stream")
    cli_metadata.add_refresh_metadata(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_refresh_metadata_fills_tables_and_prints_rows_per_kind(
    conn, fresh_db_url, metadata_server, monetate_key_pair, tmp_path, capsys
):
    metadata_server.objects.update(api_objects())
    key_file = tmp_path / "monetate.pem"
    key_file.write_text(monetate_key_pair[0])
    args = parse_cli(
        [
            "refresh-metadata",
            f"--db={fresh_db_url}",
            f"--api-user={metadata_server.api_user}",
            f"--private-key-file={key_file}",
            f"--retailer={metadata_server.retailer}",
            f"--api-base={metadata_server.api_base}",
            f"--auth-base={metadata_server.auth_base}",
            "--kinds=pageevent,variant",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "monetate_page_events" in out and "monetate_variants" in out
    assert "monetate_accounts" not in out
    assert rows(conn, "SELECT COUNT(*) FROM monetate_variants") == [(2,)]
    assert rows(conn, "SELECT COUNT(*) FROM monetate_accounts") == [(0,)]


def test_cli_reads_the_private_key_from_the_environment(
    conn, fresh_db_url, metadata_server, monetate_key_pair, monkeypatch
):
    metadata_server.objects.update(api_objects())
    monkeypatch.setenv(cli_metadata.PRIVATE_KEY_ENV, monetate_key_pair[0])
    monkeypatch.setenv(cli_metadata.API_USER_ENV, metadata_server.api_user)
    monkeypatch.setenv(cli_metadata.RETAILER_ENV, metadata_server.retailer)
    monkeypatch.setenv(db.DB_ENV, fresh_db_url)
    args = parse_cli(
        [
            "refresh-metadata",
            f"--api-base={metadata_server.api_base}",
            f"--auth-base={metadata_server.auth_base}",
            "--kinds=account",
        ]
    )
    assert args.func(args) == 0
    assert rows(conn, "SELECT name FROM monetate_accounts") == [("acme.com",)]


def test_cli_without_a_private_key_is_a_config_error(fresh_db_url, monkeypatch):
    monkeypatch.delenv(cli_metadata.PRIVATE_KEY_ENV, raising=False)
    args = parse_cli(["refresh-metadata", f"--db={fresh_db_url}", "--api-user=u", "--retailer=r"])
    with pytest.raises(ConfigError, match="--private-key-file"):
        args.func(args)


def test_cli_rejects_unknown_kinds():
    with pytest.raises(SystemExit):
        parse_cli(["refresh-metadata", "--kinds=variant,offers"])


def test_client_from_connection_reads_the_airflow_connection_fields(
    metadata_server, monetate_key_pair
):
    pem = monetate_key_pair[0]
    extra = {
        "retailer_shortname": metadata_server.retailer,
        "private_key": pem.replace("\n", "\\n"),  # as pasted into a one-line field
        "api_base": metadata_server.api_base,
        "auth_base": metadata_server.auth_base,
    }
    metadata_server.objects["account"] = [{"id": 1, "name": "acme.com"}]
    with lookup_refresh.client_from_connection(metadata_server.api_user, None, extra) as client:
        assert client.fetch("account") == [{"id": 1, "name": "acme.com"}]
    with pytest.raises(ConfigError, match="no private key"):
        lookup_refresh.client_from_connection("u", "", {"retailer_shortname": "r"})


# ---------------------------------------------------------------- refresh throttle


def test_new_data_refreshes_the_lookups_at_most_once_per_interval(
    conn, metadata_server, metadata_client_factory
):
    new_data = "asset_triggered"
    assert lookup_refresh.refresh_due(conn, new_data) == (
        True,
        "never refreshed: customtarget, pageevent, variant, experience-summary, account",
    )
    metadata_server.objects.update(api_objects())
    metadata_server.objects["customtarget"] = []  # a kind with no objects is refreshed too
    lookup_refresh.refresh_lookups(conn, metadata_client_factory())
    last, now = lookup_refresh.last_refreshes(conn)
    assert all(now - at < dt.timedelta(minutes=1) for at in last.values())

    due, why = lookup_refresh.refresh_due(conn, new_data)
    assert not due and "at most every 6:00:00" in why
    for always in ("scheduled", "manual", None):
        assert lookup_refresh.refresh_due(conn, always)[0], always
    oldest = min(last.values())
    assert not lookup_refresh.refresh_due(conn, new_data, now=oldest + dt.timedelta(hours=5.9))[0]
    assert lookup_refresh.refresh_due(conn, new_data, now=oldest + dt.timedelta(hours=6))[0]
    assert lookup_refresh.refresh_due(conn, new_data, min_interval_hours=0)[0]
    assert not lookup_refresh.refresh_due(conn, new_data, min_interval_hours=48)[0]

    # The oldest kind counts: one refreshed long ago makes the next trigger refresh.
    rows(
        conn,
        f"UPDATE {lookups.REFRESHES_TABLE} SET refreshed_at = refreshed_at - INTERVAL 7 HOUR"
        " WHERE kind = 'variant'",
    )
    due, why = lookup_refresh.refresh_due(conn, new_data)
    assert due and "over 6:00:00 ago" in why


def test_a_refresh_works_on_a_warehouse_without_the_refresh_times(
    conn, metadata_server, metadata_client_factory
):
    rows(conn, f"DROP TABLE {lookups.REFRESHES_TABLE}")  # init-db from before migration 4
    metadata_server.objects.update(api_objects())
    assert lookup_refresh.refresh_lookup(conn, metadata_client_factory(), "pageevent") == 2
    assert lookup_refresh.refresh_due(conn, "asset_triggered")[0]
