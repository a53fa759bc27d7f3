"""The row-by-row baseline loads a generated drop into Monetate's sample schema, newest version
winning."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
import pytest

from benchmarks import rowbyrow
from session_stream import tables
from session_stream.drop import sample
from session_stream.warehouse import db

pytestmark = pytest.mark.integration

DAY = date(2024, 5, 1)
SID = tables.SESSION_ID.json_key
END_KEY = next(c for c in tables.SESSIONS.columns if c.name == "end_time").json_key
CLOSED_KEY = next(c for c in tables.SESSIONS.columns if c.name == "is_closed").json_key


@pytest.fixture
def url(fresh_db_url):
    rowbyrow.create_sample_schema(fresh_db_url)
    return fresh_db_url


def read_lines(paths):
    """Every good session object, in file-name order."""
    for path in sorted(paths, key=lambda p: p.name):
        with gzip.open(path, "rb") as f:
            for line in f:
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if SID in obj:
                    yield obj


def newest(paths) -> dict[str, dict]:
    """Newest wins: greater end_time, a tie going to the later file (written independently here)."""
    best: dict[str, dict] = {}
    for obj in read_lines(paths):
        old = best.get(obj[SID])
        if old is None or int(obj[END_KEY]) >= int(old[END_KEY]):
            best[obj[SID]] = obj
    return best


def query(url, sql):
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    conn.close()
    return rows


def cols(table: tables.Table, *names: str) -> str:
    assert all(n in table.column_names for n in names)
    return ", ".join(f"`{n}`" for n in names)


def utc(value) -> datetime:
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None)
    return datetime.fromisoformat(value).astimezone(UTC).replace(tzinfo=None)


def test_baseline_keeps_one_row_per_session_with_the_newest_version_and_its_children(tmp_path, url):
    paths = sample.write_drop(tmp_path, DAY, sessions=60, files=3, start_hour=10, hours=1, seed=7)
    expected = newest(paths)
    reemitted = {o[SID] for o in read_lines(paths) if o[CLOSED_KEY] == "f"}
    assert reemitted, "the drop should hold re-emitted sessions"

    result = rowbyrow.load_files(url, paths)

    assert result["files"] == 3 and result["failed"] == []
    assert result["sessions"] == 60 + len(reemitted)
    sessions = {
        sid: (end, closed)
        for sid, end, closed in query(
            url,
            f"SELECT {cols(tables.SESSIONS, 'session_id', 'end_time', 'is_closed')} FROM {tables.SESSIONS.name}",
        )
    }
    assert sessions == {sid: (int(o[END_KEY]), 1) for sid, o in expected.items()}

    # Custom targets carry the tricky strings: they must come back byte for byte, NULL as None.
    targets = set(
        query(
            url,
            f"SELECT {cols(tables.CUSTOM_TARGETS, 'session_id', 'custom_target_id', 'custom_target_value')} "
            f"FROM {tables.CUSTOM_TARGETS.name}",
        )
    )
    want = {
        (sid, k, v)
        for sid, o in expected.items()
        for k, v in (o.get("custom_targets") or {}).items()
    }
    assert targets == want
    assert {v for _, _, v in targets} >= set(sample.TRICKY_STRINGS)

    carts, seen = {}, Counter()
    for sid, pid, sku, qty, when in query(
        url,
        f"SELECT {cols(tables.CART_LINES, 'session_id', 'product_id', 'sku', 'quantity', 'time')} "
        f"FROM {tables.CART_LINES.name} ORDER BY id",
    ):
        carts[(sid, seen[sid])] = (pid, sku, qty, when)
        seen[sid] += 1
    assert carts == {
        (sid, n): (line["product_id"], line["sku"], int(line["quantity"]), utc(line["time"]))
        for sid, o in expected.items()
        for n, line in enumerate(o.get("cart_lines") or [])
    }

    purchases = {
        (sid, pid): value
        for sid, pid, value in query(
            url,
            f"SELECT {cols(tables.PURCHASES, 'session_id', 'purchase_id', 'purchase_value')} FROM {tables.PURCHASES.name}",
        )
    }
    assert purchases == {
        (sid, pid): Decimal(str(v))
        for sid, o in expected.items()
        for pid, v in (o.get("purchases") or {}).items()
    }
    assert any(sid in reemitted for sid, _ in purchases), "closed versions add a purchase"

    # Every other child table: the newest version's rows and none of the older version's.
    # The sample's line items hang on their purchase line, by purchase_id.
    by_session = {
        table: f"SELECT session_id, COUNT(*) FROM {table.name} GROUP BY session_id"
        for table in (
            tables.OFFERS,
            tables.PAGE_EVENT_IDS,
            tables.VIEW_LINES,
            tables.PURCHASE_LINES,
        )
    }
    by_session[tables.PURCHASE_LINE_ITEMS] = (
        f"SELECT l.session_id, COUNT(*) FROM {tables.PURCHASE_LINE_ITEMS.name} i"
        f" JOIN {tables.PURCHASE_LINES.name} l ON l.purchase_id = i.purchase_id GROUP BY l.session_id"
    )
    for table, sql in by_session.items():
        stored = dict(query(url, sql))
        for sid, o in expected.items():
            found = o.get(table.path[0]) or {}
            if len(table.path) == 2:
                n = sum(len(v[table.path[1]]) for v in found.values())
            else:
                n = len(found)
            assert stored.get(sid, 0) == n, (table.name, sid)


def children(url, table):
    """A child table's source columns, sorted (the surrogate id changes on reload)."""
    names = ", ".join(rowbyrow.sample_columns(table))
    return sorted(query(url, f"SELECT {names} FROM {table.name}"))


def test_loading_the_same_files_again_changes_nothing(tmp_path, url):
    paths = sample.write_drop(tmp_path, DAY, sessions=30, files=3, start_hour=0, hours=1, seed=3)
    rowbyrow.load_files(url, paths)
    snapshot = [children(url, t) for t in tables.CHILD_TABLES]
    ends = sorted(query(url, f"SELECT session_id, end_time FROM {tables.SESSIONS.name}"))

    rowbyrow.load_files(url, list(reversed(paths)))

    assert [children(url, t) for t in tables.CHILD_TABLES] == snapshot
    assert sorted(query(url, f"SELECT session_id, end_time FROM {tables.SESSIONS.name}")) == ends


def test_lines_without_a_session_are_skipped_and_a_truncated_file_loads_nothing(tmp_path, url):
    # Two bad lines: one not JSON (file 0), one without session_id (file 1); the baseline, like
    # the sample script, has no answer to over-long values (the third kind), so none here.
    paths = sample.write_drop(
        tmp_path, DAY, sessions=30, files=3, start_hour=0, hours=1, seed=5, bad_lines=2
    )
    only_last = {o[SID] for o in read_lines(paths[2:])} - {o[SID] for o in read_lines(paths[:2])}
    sample.truncate_file(paths[2])

    result = rowbyrow.load_files(url, paths)

    assert result["failed"] == [paths[2].name] and result["files"] == 2
    assert result["skipped_lines"] == 2
    stored = dict(query(url, f"SELECT session_id, is_closed FROM {tables.SESSIONS.name}"))
    assert only_last and not stored.keys() & only_last
    # Sessions closed in the lost file stay open: its rows were all rolled back.
    assert stored == {sid: int(o[CLOSED_KEY] == "t") for sid, o in newest(paths[:2]).items()}
    assert 0 in stored.values()
