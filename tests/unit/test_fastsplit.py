"""The split's fast path stages exactly what the general path stages, and leaves it every line it
cannot judge the same way."""

from __future__ import annotations

import gzip
from datetime import date

import orjson
import pytest
from staged import staged_bytes

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


@pytest.mark.parametrize("style", list(sample.ID_STYLES))
def test_a_drop_of_every_quirk_stages_the_same_bytes_with_the_fast_path_off(
    tmp_path, monkeypatch, style
):
    """The fast path's variants (a line with a backslash, a line with keys the spec does not
    know, integer strings) against no fast path at all, on a whole file: the same staged bytes,
    rejects, key counts and horizon. The sample's quirk sessions carry all three at once; the
    lines below carry each alone, and a second copy of the file has every line's unknown keys
    and escapes, as a drop would where Monetate adds a field or escapes every slash."""
    (path,) = sample.write_drop(
        tmp_path / "drop", DAY, sessions=600, files=1, seed=9, bad_lines=12, id_style=style
    )
    lines = gzip.decompress(path.read_bytes()).splitlines()
    extra = []
    for n, raw in enumerate(lines[:40]):
        try:
            session = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if type(session) is not dict or not isinstance(session.get("session_id"), str):
            continue
        session["session_id"] += f"-v{n}"
        kind = n % 4
        if kind == 0:
            session["browser"] = "a\tb\\c/d"  # escapes alone, in values and map keys
            session.setdefault("custom_targets", {})["t\tab\\key"] = "v"
            bought = session.get("purchase_lines") or {}
            session["purchase_lines"] = {f"{k}\\\n": v for k, v in bought.items()}
        elif kind == 1:
            session["new_field"] = {"nested": [1, {"deep": 2}]}  # an unknown key alone
        elif kind == 2:
            session["page_views"] = " 12 "  # an integer string alone
        else:
            session["page_views"] = "twelve"  # an integer string to reject
        extra.append(orjson.dumps(session))
    # Every line again (a later version of each session: the file is split twice), with a key
    # the spec does not know and escapes where JSON allows them (\/, and \u0041 for "A").
    # Half of them escape only what needs no escaping in the staged files (\/ and \u0041),
    # half a tab too.
    escaped = [
        line.replace(b"/", b"\\/")
        .replace(b'"browser":"', b'"browser":"\\u0041' if n % 2 else b'"browser":"\\t')
        .replace(b'{"session_id"', b'{"added_by_monetate":1,"session_id"')
        for n, line in enumerate(lines)
    ]
    src = tmp_path / "20261101T000000.000Z_PT15M-1.json.gz"
    src.write_bytes(gzip.compress(b"\n".join([*lines, *extra, *escaped]) + b"\n"))

    taken = {"lenient": 0, "escaped": 0}
    decode_lenient, stage_escaped = fastsplit.decode_lenient, fastsplit.stage_escaped

    def lenient(raw):
        found = decode_lenient(raw)
        taken["lenient"] += found is not None
        return found

    def escaped_stage(*args):
        found = stage_escaped(*args)
        taken["escaped"] += found is not None
        return found

    monkeypatch.setattr(fastsplit, "decode_lenient", lenient)
    monkeypatch.setattr(fastsplit, "stage_escaped", escaped_stage)
    monkeypatch.setattr(fastsplit, "stage_line", None)  # Python's variants (C: test_fastrows.py)
    fast = split.split_file(src, tmp_path / "fast")
    assert taken["lenient"] > len(lines) * 0.9 and taken["escaped"] > len(lines) * 0.4
    monkeypatch.setattr(fastsplit, "decode", lambda raw: None)
    monkeypatch.setattr(fastsplit, "decode_lenient", lambda raw: None)
    general_only = split.split_file(src, tmp_path / "general")
    assert fast.rejects == general_only.rejects >= 12
    assert fast.sessions == general_only.sessions >= 600 and fast.repeats >= 500
    assert staged_bytes(fast) == staged_bytes(general_only)
    assert (fast.rows, fast.unknown_keys, fast.missing_keys, fast.horizon, fast.repeats) == (
        general_only.rows,
        general_only.unknown_keys,
        general_only.missing_keys,
        general_only.horizon,
        general_only.repeats,
    )
    assert "session.added_by_monetate" in fast.unknown_keys
    assert "session.new_field" in fast.unknown_keys


ALPHABET = [
    "a",
    "/",
    '"',
    "\\",
    "\t",
    "\n",
    "\r",
    "\0",
    "\b",
    "\f",
    "\x1f",
    "é",
    "\u2028",
    "🛒",
    "u",
    "0",
]


@pytest.mark.parametrize("seed", range(4))
def test_a_line_whose_escapes_decode_to_nothing_the_staged_format_escapes_is_plain(seed):
    """splitter._ESCAPES_SPECIAL: a line it finds nothing in decodes to strings that need no
    escaping (layout.escape leaves them alone), however its escapes are written."""
    import json
    import random

    from session_stream.split.layout import needs_escape

    rng = random.Random(seed)
    for _ in range(3000):
        value = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 6)))
        for raw in (
            json.dumps(value).encode(),
            json.dumps(value, ensure_ascii=False).encode(),
            json.dumps(value).replace("/", "\\/").encode(),
            # every character as \uXXXX, in upper case hex
            (
                '"' + "".join(f"\\u{ord(c):04X}" if ord(c) < 0x10000 else c for c in value) + '"'
            ).encode(),
        ):
            decoded = orjson.loads(raw)
            if split._ESCAPES_SPECIAL(raw) is None:
                assert not needs_escape(decoded), (raw, decoded)
