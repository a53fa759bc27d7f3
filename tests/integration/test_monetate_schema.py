"""The warehouse holds Monetate's own schema: every column of its sample schema, every field of its
sample loader byte for byte, Tableau's joins on session_id by index, and no key dropped silently."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from drop_files import write_gz
from warehouse import query

from session_stream import tables
from session_stream.drop import sample
from session_stream.runs import cli
from session_stream.warehouse import db

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Monetate's "Session Stream Data" page, when the checkout sits next to it, and the repository's
# excerpt of its CREATE TABLE statements, which a clean clone has on its own.
SEED = REPO.parent / "shared" / "seed" / "000_2f25791046f21e93.txt"
EXCERPT = REPO / "tests" / "fixtures" / "monetate_sample_schema.sql"
BOOKKEEPING = {tables.SESSION_KEY_COLUMN, tables.SOURCE_FILE_COLUMN, tables.LOADED_AT_COLUMN}
FILE = "20261101T000000.000Z_PT15M-1793491200000.json.gz"


def sample_schema(text: str) -> dict[str, dict[str, str]]:
    """{table: {column: type}} from the page's CREATE TABLE statements. The page breaks its code
    blocks in odd places (a column name without its opening backtick, one column twice), so it
    is read line by line, not parsed as SQL."""
    found: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"\s*CREATE TABLE `(\w+)`", line):
            current = found.setdefault(m.group(1), {})
            continue
        stripped = line.strip()
        if current is None or stripped.startswith(")"):
            current = None if stripped.startswith(")") and "CHARSET" in stripped else current
            continue
        m = re.match(r"`?(\w+)`\s+([a-z]+(?:\(\d+(?:,\d+)?\))?)", stripped)
        if m and m.group(1).upper() not in ("PRIMARY", "UNIQUE", "KEY", "CONSTRAINT"):
            current.setdefault(m.group(1), m.group(2))
    return found


@pytest.fixture(scope="module")
def monetate() -> dict[str, dict[str, str]]:
    return sample_schema(EXCERPT.read_text())


def columns(url: str, table: str) -> dict[str, tuple]:
    return {
        name: (data_type, length, precision, scale)
        for name, data_type, length, precision, scale in query(
            url,
            "SELECT column_name, data_type, character_maximum_length, numeric_precision,"
            " numeric_scale FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
    }


@pytest.mark.skipif(not SEED.exists(), reason="Monetate's page is not next to this checkout")
def test_the_repository_excerpt_has_the_columns_of_monetates_page():
    assert sample_schema(EXCERPT.read_text()) == sample_schema(SEED.read_text())


def test_the_excerpt_has_the_nine_tables_and_34_session_columns(monetate):
    assert set(monetate) == {t.name for t in tables.TABLES}
    # The page lists start_time twice (once each side of a page break): 34 distinct columns.
    assert len(monetate["session_sessions"]) == 34


def test_every_table_has_every_column_of_monetates_sample_schema(url, monetate):
    for table, wanted in monetate.items():
        have = columns(url, table)
        missing = [c for c in wanted if c not in have]
        assert not missing, f"{table} lacks {missing}"


def test_session_sessions_has_exactly_the_sample_columns_with_their_types_and_widths(url, monetate):
    wanted = monetate["session_sessions"]
    have = columns(url, "session_sessions")
    assert set(have) - BOOKKEEPING == set(wanted), "no invented column, none missing"
    assert [c for c in have if c not in BOOKKEEPING] == list(wanted), "in the sample's order"
    for name, sample_type in wanted.items():
        base, _, size = sample_type.partition("(")
        data_type, length, precision, scale = have[name]
        assert data_type == base, (name, data_type, sample_type)
        if base == "varchar":
            assert length >= int(size.rstrip(")")), (name, length, sample_type)
        if base == "decimal":
            digits, places = map(int, size.rstrip(")").split(","))
            assert (precision, scale) == (digits, places), (name, sample_type)
    for child in tables.CHILD_TABLES:  # ids as wide as the sample's
        for name in ("session_id", "offer_id", "purchase_id", "product_id", "sku"):
            if name in columns(url, child.name):
                assert columns(url, child.name)[name][1] >= 255, (child.name, name)


TRICKY = 'a "quoted", comma\\back\ttab\r\nNULL \\N 🛒'


def every_field() -> dict:
    """One session with every field of Monetate's sample loader, values at their limits."""
    long_id = "S" * 254 + "🎉"  # 255 characters, one of them 4 bytes
    return {
        "session_id": long_id,
        "account_id": 2147483647,
        "browser": TRICKY,
        "browser_version": "124.0.6367.82",
        "city": "Zürich 🏔️",
        "country_code": "CH",
        "customer_id": "",
        "customer_link": "NULL",
        "device_type": "Smartphone",
        "end_time": 1793492099999,
        "guid": "8c1e6d9e-5b5c-4b8e-9f0e-2a1c3d4e5f60",
        "has_cart": "t",
        "has_new_customer": "f",
        "has_product_view": "t",
        "has_purchase": "t",
        "has_stealth": "f",
        "is_bounce": "f",
        "is_closed": "t",
        "os": "iOS",
        "os_version": "17.4.1",
        "page_views": 12,
        "page_views_ss": "240",
        "product_view_count": 3,
        "purchase_count": 1,
        "purchase_value_ss": "123456789012.3456",
        "region": None,
        "screen_height": 844,
        "screen_width": 390,
        "session_count": 17,
        "session_value": 40.5,
        "session_value_ss": "-0.0001",
        "start_time": -1,
        "time_on_site": 0,
        "time_on_site_ss": -2147483648,
        "custom_targets": {"10037": TRICKY, "7": None},
        "offers": {"o" * 255: 1793491200000, "12": "-9223372036854775808"},
        "page_event_ids": {"90001": 9223372036854775807},
        "purchases": {"ORD-1": "40.50"},
        "cart_lines": [
            {"product_id": "P" * 255, "sku": TRICKY, "quantity": "3", "time": 1793491200123},
            {"product_id": "p2", "sku": "", "quantity": None, "time": "2026-11-01T02:00:00+02:00"},
        ],
        "view_lines": [{"product_id": "p3", "time": "2026-11-01T00:00:00.007Z"}],
        "purchase_lines": {
            "ORD-1": {
                "time": "2026-11-01T00:14:59.999Z",
                "total": "40.50",
                "items": [
                    {"product_id": "p1", "sku": "p1-XL", "quantity": 2, "unit_price": "20.25"},
                    {"product_id": "p9", "sku": "K" * 255, "quantity": 0, "unit_price": 0},
                ],
            }
        },
    }


def test_a_line_with_every_field_lands_byte_for_byte(url, tmp_path, capsys):
    session = every_field()
    path = write_gz(tmp_path / "drop" / FILE, [session])
    assert cli.main(["load", "--db", url, "--force", str(path.parent)]) == 0
    sid = session["session_id"]

    names = [c.name for c in tables.SESSIONS.columns]
    (row,) = query(
        url,
        f"SELECT {', '.join(f'`{n}`' for n in names)} FROM session_sessions WHERE session_id = %s",
        (sid,),
    )
    got = dict(zip(names, row, strict=True))
    flags = {"t": 1, "f": 0}
    for column in tables.SESSIONS.columns:
        raw = session[column.json_key]
        value = got[column.name]
        if raw is None:
            assert value is None, column.name
        elif column.kind == tables.FLAG:
            assert value == flags[raw], column.name
        elif column.kind == tables.MONEY:
            assert value == Decimal(str(raw)), column.name
        elif column.kind in (tables.INT, tables.BIGINT):
            assert value == int(raw), column.name
        else:
            assert value == raw, column.name  # strings byte for byte, '' and 'NULL' included

    def child(table: tables.Table, names: str, order: str = "row_no") -> list[tuple]:
        return query(
            url,
            f"SELECT {names} FROM {table.name} WHERE session_id = %s ORDER BY {order}",
            (sid,),
        )

    assert child(tables.CUSTOM_TARGETS, "custom_target_id, custom_target_value") == [
        ("10037", TRICKY),
        ("7", None),
    ]
    assert child(tables.OFFERS, "offer_id, `timestamp`") == [
        ("o" * 255, 1793491200000),
        ("12", -9223372036854775808),
    ]
    assert child(tables.PAGE_EVENT_IDS, "event_id, `timestamp`") == [("90001", 9223372036854775807)]
    assert child(tables.PURCHASES, "purchase_id, purchase_value") == [("ORD-1", Decimal("40.5"))]
    assert child(tables.CART_LINES, "product_id, sku, quantity, `time`") == [
        ("P" * 255, TRICKY, 3, datetime(2026, 11, 1, 0, 0, 0, 123000)),
        ("p2", "", None, datetime(2026, 11, 1, 0, 0)),
    ]
    assert child(tables.VIEW_LINES, "product_id, `time`") == [
        ("p3", datetime(2026, 11, 1, 0, 0, 0, 7000))
    ]
    assert child(tables.PURCHASE_LINES, "purchase_id, `time`, total") == [
        ("ORD-1", datetime(2026, 11, 1, 0, 14, 59, 999000), Decimal("40.5"))
    ]
    assert child(
        tables.PURCHASE_LINE_ITEMS, "purchase_id, product_id, sku, quantity, unit_price"
    ) == [
        ("ORD-1", "p1", "p1-XL", 2, Decimal("20.25")),
        ("ORD-1", "p9", "K" * 255, 0, Decimal(0)),
    ]
    # Monetate's join of line items to their purchase line, on purchase_id.
    assert query(
        url,
        "SELECT COUNT(*) FROM session_purchase_lines l JOIN session_purchase_line_items i"
        " ON i.purchase_id = l.purchase_id WHERE l.session_id = %s",
        (sid,),
    ) == [(2,)]
    # Every child row has an id of its own, as in the sample schema.
    ids = query(url, "SELECT id FROM session_cart_lines WHERE session_id = %s", (sid,))
    assert len({i for (i,) in ids}) == 2
    out = capsys.readouterr().out
    assert "keys the spec does not know" not in out and "expected keys missing" not in out


def test_unknown_and_missing_keys_are_counted_in_the_ledger_and_the_cli_summary(
    url, tmp_path, capsys
):
    name = FILE.replace("-1793491200000", "-1793491200001")
    full = every_field()
    lacking = orjson.loads(orjson.dumps(full))  # a deep copy
    del lacking["guid"]
    lacking["session_id"] = "s-lacking"
    lacking["new_field"] = {"nested": True}
    lacking["cart_lines"] = [{**line, "discount": "0.10"} for line in full["cart_lines"]]
    del lacking["purchase_lines"]["ORD-1"]["items"][0]["sku"]
    path = write_gz(tmp_path / "drop" / name, [full | {"session_id": "s-full"}, lacking])
    assert cli.main(["load", "--db", url, str(path.parent)]) == 0

    unknown, missing = query(
        url,
        f"SELECT {tables.UNKNOWN_KEYS_COLUMN}, {tables.MISSING_KEYS_COLUMN}"
        f" FROM {tables.LEDGER_TABLE} WHERE file_name = %s",
        (name,),
    )[0]
    assert orjson.loads(unknown) == {"session.new_field": 1, "cart_lines[].discount": 2}
    assert orjson.loads(missing) == {"session.guid": 1, "purchase_lines{}.items[].sku": 1}
    out = capsys.readouterr().out
    assert "keys the spec does not know" in out
    assert "cart_lines[].discount: 2 items in 1 file" in out
    assert "session.new_field: 1 session in 1 file" in out
    assert "session.guid: 1 session in 1 file" in out
    # The value of the field the spec lacks was not stored, and the session was.
    assert query(url, "SELECT guid FROM session_sessions WHERE session_id = 's-lacking'") == [
        (None,)
    ]


README_KEYS_QUERY = re.compile(r"```sql\n(-- Keys Monetate sent[^`]*?)```", re.S)


def test_the_readme_query_lists_unknown_keys_across_a_date_range(url):
    (sql,) = README_KEYS_QUERY.findall((REPO / "docs" / "operating.md").read_text())
    rows = query(url, sql.replace("2026-11-01", "2026-10-01").replace("2026-12-01", "2026-12-31"))
    found = {(kind, path): (sessions, files) for kind, path, sessions, files, *_ in rows}
    assert found[("unknown", "session.new_field")] == (1, 1)
    assert found[("unknown", "cart_lines[].discount")] == (2, 1)
    assert found[("missing", "session.guid")][1] >= 1


@pytest.fixture(scope="module")
def busy(url, tmp_path_factory):
    """The module's warehouse with a few thousand sessions in it and fresh statistics, so the
    optimizer plans as it does for a real warehouse (tiny tables get other plans)."""
    from session_stream.runs.pipeline import load_files
    from session_stream.warehouse.load import Loader

    root = tmp_path_factory.mktemp("busy")
    paths = sample.write_drop(root, date(2026, 10, 1), sessions=4000, files=4, seed=8)
    loader = Loader(lambda: db.connect(url))
    assert load_files(paths, loader).failed == 0
    loader.close()
    for table in tables.TABLES:
        query(url, f"ANALYZE TABLE `{table.storage}`")
    return url


def plan(url: str, sql: str) -> list[dict]:
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute("EXPLAIN " + sql)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.close()
    return rows


@pytest.mark.parametrize("table", tables.CHILD_TABLES, ids=lambda t: t.name)
def test_the_guides_join_on_session_id_reads_child_rows_by_index(busy, table):
    steps = plan(
        busy,
        f"SELECT s.device_type, COUNT(c.session_id) FROM session_sessions s"
        f" LEFT JOIN {table.name} c ON c.session_id = s.session_id GROUP BY s.device_type",
    )
    # One scan of session_sessions; every other step an index lookup (no join buffer, no scan).
    assert [step["type"] for step in steps].count("ALL") == 1, steps
    assert steps[0]["table"] == "s" and steps[0]["type"] == "ALL", steps
    for step in steps[1:]:
        assert step["type"] in ("eq_ref", "ref") and step["key"], steps
        assert "join buffer" not in (step["Extra"] or ""), steps


def test_line_items_join_their_purchase_line_on_purchase_id_by_index(busy):
    steps = plan(
        busy,
        "SELECT l.purchase_id, SUM(i.quantity) FROM session_purchase_lines l"
        " LEFT JOIN session_purchase_line_items i ON i.purchase_id = l.purchase_id"
        " GROUP BY l.purchase_id",
    )
    assert all(s["type"] in ("ref", "eq_ref") for s in steps[1:]), steps
    assert any(s["key"] == "ix_purchase_id" for s in steps[1:]), steps


# MySQL has no table elimination (make test-mysql84 turns MariaDB's off): there every read of a
# child view joins session_sessions for its session_id, needed or not, so these two fail in that
# mode, and must. The views keep that join because it is what answers Monetate's join on
# session_id fast on both servers (the child rows carry no session_id of their own: an index on
# one in every child table would make each load write in random order); on MySQL a child table
# is read alone, or joined on session_key, through its storage table (the tests after these).
NEEDS_TABLE_ELIMINATION = pytest.mark.xfail(
    db.as_mysql84(), strict=True, reason="counts on MariaDB's table elimination, which MySQL lacks"
)


@NEEDS_TABLE_ELIMINATION
def test_a_child_table_read_alone_does_not_touch_session_sessions(busy):
    steps = plan(busy, "SELECT product_id, COUNT(*) FROM session_view_lines GROUP BY product_id")
    assert len(steps) == 1, steps  # session_sessions is eliminated when session_id is not read


@NEEDS_TABLE_ELIMINATION
@pytest.mark.parametrize("table", tables.CHILD_TABLES, ids=lambda t: t.name)
def test_a_join_on_session_key_gives_the_guides_rows_with_one_lookup(busy, table):
    """The README's advice for warehouses far beyond the buffer pool: the same rows as the
    guide's join on session_id, found by the child table's own key alone."""
    by_id, by_key = (
        f"SELECT s.device_type, s.session_id, COUNT(c.row_no), COUNT(*)"
        f" FROM session_sessions s LEFT JOIN {table.name} c ON c.{on} = s.{on}"
        f" GROUP BY s.device_type, s.session_id ORDER BY s.session_id"
        for on in ("session_id", "session_key")
    )
    rows = query(busy, by_id)
    assert rows == query(busy, by_key)
    assert sum(r[2] for r in rows) > 0  # the sample's sessions have rows in every child table
    steps = plan(busy, by_key)
    assert [(s["table"], s["type"], s["key"]) for s in steps] == [
        ("s", "ALL", None),
        ("c", "ref", "PRIMARY"),
    ], steps


def test_a_child_tables_storage_read_alone_is_one_table_on_either_planner(busy):
    # MySQL's way to read a child table alone (the README, "The warehouse"): the same values,
    # with session_key instead of session_id, and no join whatever the planner.
    storage = tables.VIEW_LINES.storage
    steps = plan(busy, f"SELECT product_id, COUNT(*) FROM {storage} GROUP BY product_id")
    assert [s["table"] for s in steps] == [storage], steps
    assert query(busy, f"SELECT product_id, COUNT(*) FROM {storage} GROUP BY product_id ORDER BY 1") == query(
        busy, "SELECT product_id, COUNT(*) FROM session_view_lines GROUP BY product_id ORDER BY 1"
    )  # fmt: skip


@pytest.mark.parametrize("table", tables.CHILD_TABLES, ids=lambda t: t.name)
def test_a_join_on_session_key_to_the_storage_gives_the_guides_rows_on_either_planner(busy, table):
    by_id = (
        f"SELECT s.device_type, s.session_id, COUNT(c.row_no), COUNT(*)"
        f" FROM session_sessions s LEFT JOIN {table.name} c ON c.session_id = s.session_id"
        f" GROUP BY s.device_type, s.session_id ORDER BY s.session_id"
    )
    by_key = by_id.replace(
        f"JOIN {table.name} c ON c.session_id = s.session_id",
        f"JOIN {table.storage} c ON c.session_key = s.session_key",
    )
    assert query(busy, by_id) == query(busy, by_key)
    steps = plan(busy, by_key)
    assert [(s["table"], s["type"], s["key"]) for s in steps] == [
        ("s", "ALL", None),
        ("c", "ref", "PRIMARY"),
    ], steps
