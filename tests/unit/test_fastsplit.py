"""The split's fast path stages exactly what the general path stages, and leaves it every line it
cannot judge the same way."""

from __future__ import annotations

import gzip
from datetime import date

import orjson
import pytest

from session_stream.drop import sample
from session_stream.split import fastsplit
from session_stream.split import splitter as split

DAY = date(2026, 11, 1)


def general(raw: bytes, index: int):
    """The general path's rows for one line (split._session_rows), or its reject reason, and
    what its struct builders tally for the repeated-key check."""
    session, known = split.parse(raw)
    clean = raw.find(b"\\") < 0
    tally = split._Tally()
    if known:
        dirty, tidy = split._struct_builders(tally)
        builders = tidy if clean else dirty
        sid_value = session.session_id
    else:
        builders = split._CLEAN_BUILDERS if clean else split._BUILDERS
        sid_value = session.get("session_id")
    try:
        sid = split._SESSION_ID(sid_value, "session")
        rows = split._session_rows(session, index, sid, "the-file", builders)
    except split.Reject as exc:
        return str(exc), None, None
    return staged(rows), sid, (tally.absent, tally.items) if known else None


def staged(rows):
    """Rows as the buffers take them (a tuple or a list of lines: the same staged bytes)."""
    return None if rows is None else [list(lines) for lines in rows]


@pytest.mark.parametrize("style", list(sample.ID_STYLES))
def test_the_fast_path_stages_what_the_general_path_stages(tmp_path, style):
    paths = sample.write_drop(
        tmp_path, DAY, sessions=2000, files=4, hours=1, bad_lines=12, id_style=style
    )
    taken = 0
    for path in paths:
        with gzip.open(path, "rb") as f:
            for index, raw in enumerate(f):
                fast = fastsplit.decode(raw) if b"\\" not in raw else None
                if fast is None:
                    continue
                rows, sid, tally = general(raw, index)
                assert sid is not None, (
                    f"the fast path took a line the general path rejects: {rows}"
                )
                out, absent, items = fastsplit.stage(fast, index, "the-file")
                assert staged(out) == rows
                assert (absent, items) == tally
                taken += 1
    assert taken > 0.9 * 2000, "most lines of a drop take the fast path"


# Lines of the contract's every quirk and edge: the fast path either stages them exactly as the
# general path does or leaves them to it (decode gives None, or rows gives None).
BASE = {
    "session_id": "s",
    "account_id": 1,
    "browser": "b",
    "browser_version": None,
    "city": "",
    "country_code": "US",
    "customer_id": "NULL",
    "customer_link": None,
    "device_type": "d",
    "end_time": 2,
    "guid": "g",
    "has_cart": "t",
    "has_new_customer": "f",
    "has_product_view": None,
    "has_purchase": "t",
    "has_stealth": "f",
    "is_bounce": "f",
    "is_closed": "t",
    "os": "o",
    "os_version": "1",
    "page_views": 3,
    "page_views_ss": None,
    "product_view_count": 0,
    "purchase_count": 1,
    "purchase_value_ss": 1.5,
    "region": "r",
    "screen_height": 1,
    "screen_width": 2,
    "session_count": 1,
    "session_value": 12.3456,
    "session_value_ss": 0,
    "start_time": 1,
    "time_on_site": 1,
    "time_on_site_ss": 1,
}
EDGES = [
    {},
    {"browser": "x" * 255},
    {"browser": "x" * 256},  # too long: rejected, by the general path
    {"browser": "🛒" * 255},
    {"account_id": 2**31 - 1},
    {"account_id": 2**31},
    {"account_id": "12"},  # a numeric string
    {"account_id": True},
    {"end_time": 2**63 - 1},
    {"end_time": -(2**63)},
    {"end_time": 2**63},
    {"has_cart": True},
    {"has_cart": "T"},
    {"session_value": 1e3},
    {"session_value": 12.34567},
    {"session_value": "12.5"},
    {"session_value": 10**12},
    {"session_value": 10**12 - 1},
    {"country_code": 44},  # a number in a text column: its JSON text
    {"new_field": 1},  # an unknown key
    {"offers": {"1": 2, "x" * 255: None}},
    {"offers": {"1": "2"}},
    {"purchases": {"p": 1.25, "q": None, "r": "3"}},
    {"custom_targets": {"1": None, "2": "", "3": "NULL"}},
    {
        "cart_lines": [
            {"product_id": "p", "sku": None, "quantity": 2, "time": "2026-11-01T00:00:01.000Z"}
        ]
    },
    {
        "cart_lines": [
            {"product_id": "p", "sku": "s", "quantity": 2, "time": "2026-02-30T00:00:01.000Z"}
        ]
    },
    {"cart_lines": [{"product_id": "p", "sku": "s", "quantity": 2, "time": 1793491200000}]},
    {
        "cart_lines": [
            {"product_id": "p", "sku": "s", "quantity": 2, "time": "2026-11-01T01:00:01+01:00"}
        ]
    },
    {"cart_lines": [{"product_id": "p", "sku": "s", "quantity": 2, "time": None}]},
    {"view_lines": [{"product_id": "p", "time": "2026-11-01T00:00:01.000Z"}] * 3},
    {"view_lines": [{"product_id": "p"}]},  # a missing key
    {
        "purchase_lines": {
            "p": {
                "time": "2026-11-01T00:00:01.000Z",
                "total": 1.5,
                "items": [{"product_id": "a", "sku": "b", "quantity": 1, "unit_price": 1.5}] * 2,
            }
        }
    },
    {
        "purchase_lines": {
            "p": {"time": None, "total": None},
            "q": {"time": None, "total": 2, "items": []},
        }
    },
    {"purchase_lines": {"p": {"time": None, "total": "x"}}},  # a money value to reject
]


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: ",".join(e) or "plain")
def test_edge_lines_are_staged_alike_or_left_to_the_general_path(edge):
    raw = orjson.dumps({**BASE, **edge})
    fast = fastsplit.decode(raw)
    if fast is None:
        return
    rows, sid, tally = general(raw, 7)
    found = fastsplit.stage(fast, 7, "the-file")
    if sid is None:
        assert found is None, f"the general path rejects this line: {rows}"
    elif found is not None:
        out, absent, items = found
        assert staged(out) == rows
        assert tally is None or (absent, items) == tally


def test_a_line_with_a_backslash_or_a_repeated_key_is_the_general_paths():
    # splitter.py sends only lines without a backslash here (no string in them needs escaping);
    # the fast structs refuse what they were not built for.
    assert fastsplit.decode(orjson.dumps({**BASE, "browser": 1.5})) is None
    assert fastsplit.decode(orjson.dumps({k: v for k, v in BASE.items() if k != "os"})) is None
    assert fastsplit.decode(b"{not json") is None
