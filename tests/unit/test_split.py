"""The splitter on crafted lines: escaping, conversions, rejects, in-file duplicates, bad gzip."""

from __future__ import annotations

import gzip
from pathlib import Path

import msgspec
import orjson
import pytest
from staged import staged_bytes

from session_stream import tables
from session_stream.errors import BadInputError
from session_stream.split.layout import SplitResult
from session_stream.split.splitter import split_file


def write_gz(path: Path, lines: list) -> Path:
    with gzip.open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line))
            f.write(b"\n")
    return path


def unescape_field(field: str):
    """Read one field back the way LOAD DATA does (ESCAPED BY '\\', no enclosure)."""
    if field == "\\N":
        return None
    out, i = [], 0
    table = {"t": "\t", "n": "\n", "r": "\r", "0": "\0", "\\": "\\", "N": "N"}
    while i < len(field):
        ch = field[i]
        if ch == "\\":
            out.append(table[field[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def staged(result: SplitResult, table: tables.Table) -> list[dict]:
    text = result.files()[table.name].read_text(encoding="utf-8")
    if table.is_child:
        names = ["index", tables.ROW_NO_COLUMN, *table.value_names]
    else:
        names = ["index", *table.value_names, tables.SOURCE_FILE_COLUMN]
    rows = []
    for line in text.split("\n")[:-1]:
        fields = line.split("\t")
        assert len(fields) == len(names), line
        rows.append(dict(zip(names, map(unescape_field, fields), strict=True)))
    return rows


def split_lines(tmp_path, lines, name="20261101T000000.000Z_PT15M-1.json.gz") -> SplitResult:
    return split_file(write_gz(tmp_path / name, lines), tmp_path / "out")


TRICKY = [
    "",
    "NULL",
    "\\N",
    'say "hi", ok',
    "back\\slash",
    "tab\there",
    "cr\rlf\nend",
    "emoji 😀 𝄞",
    "\\",
    "a\\tb",
]


@pytest.mark.parametrize("value", TRICKY)
def test_strings_round_trip_byte_for_byte(tmp_path, value):
    result = split_lines(
        tmp_path, [{"session_id": "s1", "city": value, "custom_targets": {"1": value}}]
    )
    (row,) = staged(result, tables.SESSIONS)
    assert row["city"] == value
    (target,) = staged(result, tables.CUSTOM_TARGETS)
    assert target["custom_target_value"] == value


def test_json_null_becomes_sql_null_and_empty_string_stays_empty(tmp_path):
    result = split_lines(tmp_path, [{"session_id": "s1", "city": None, "region": ""}])
    (row,) = staged(result, tables.SESSIONS)
    assert row["city"] is None
    assert row["region"] == ""
    assert row["country_code"] is None  # absent key


def test_flags_become_0_and_1(tmp_path):
    result = split_lines(
        tmp_path, [{"session_id": "s1", "has_cart": "t", "is_bounce": "f", "is_closed": True}]
    )
    (row,) = staged(result, tables.SESSIONS)
    assert (row["has_cart"], row["is_bounce"], row["is_closed"], row["has_purchase"]) == (
        "1",
        "0",
        "1",
        None,
    )


def test_numbers_may_arrive_as_numeric_strings(tmp_path):
    session = {
        "session_id": "s1",
        "account_id": "42",
        "start_time": "1793491261781",
        "end_time": 1793491261999,
        "purchases": {"P1": "19.99", "P2": 5, "P3": 0.1, "P4": "1e2", "P5": "7.50000"},
        "cart_lines": [{"product_id": 123, "quantity": "3", "time": 1793491261781}],
    }
    result = split_lines(tmp_path, [session])
    (row,) = staged(result, tables.SESSIONS)
    assert (row["account_id"], row["start_time"], row["end_time"]) == (
        "42",
        "1793491261781",
        "1793491261999",
    )
    values = {r["purchase_id"]: r["purchase_value"] for r in staged(result, tables.PURCHASES)}
    assert values == {"P1": "19.99", "P2": "5", "P3": "0.1", "P4": "100", "P5": "7.5"}
    (cart,) = staged(result, tables.CART_LINES)
    assert (cart["product_id"], cart["quantity"], cart["row_no"]) == ("123", "3", "0")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01T01:02:03.456Z", "2026-11-01 01:02:03.456"),
        ("2024-02-29T23:59:59.999Z", "2024-02-29 23:59:59.999"),
        ("1000-01-01T00:00:00.000Z", "1000-01-01 00:00:00.000"),
        ("2026-11-01T03:02:03.456+02:00", "2026-11-01 01:02:03.456"),
        ("2026-10-31T20:02:03-05:00", "2026-11-01 01:02:03.000"),
        (1793494923456, "2026-11-01 01:02:03.456"),
        ("1793494923456", "2026-11-01 01:02:03.456"),
    ],
)
def test_line_times_become_utc_datetime3(tmp_path, value, expected):
    result = split_lines(
        tmp_path, [{"session_id": "s1", "view_lines": [{"product_id": "p", "time": value}]}]
    )
    (line,) = staged(result, tables.VIEW_LINES)
    assert line["time"] == expected


def test_absent_maps_are_empty_and_unknown_keys_are_counted_not_stored(tmp_path):
    result = split_lines(
        tmp_path,
        [
            {
                "session_id": "s1",
                "new_field": {"x": 1},
                "cart_lines": [{"product_id": "p", "mystery": 1}],
            }
        ],
    )
    assert result.rejects == 0
    assert result.rows[tables.CART_LINES.name] == 1
    assert result.unknown_keys == {"cart_lines[].mystery": 1, "session.new_field": 1}
    assert result.missing_keys["cart_lines[].sku"] == 1
    assert result.missing_keys["session.guid"] == 1
    assert "session.custom_targets" not in result.missing_keys, "absent maps are just empty"
    for table in (
        tables.OFFERS,
        tables.CUSTOM_TARGETS,
        tables.PURCHASES,
        tables.PURCHASE_LINES,
        tables.PURCHASE_LINE_ITEMS,
    ):
        assert result.rows[table.name] == 0


def test_purchase_lines_and_items(tmp_path):
    session = {
        "session_id": "s1",
        "purchase_lines": {
            "O1": {
                "time": "2026-11-01T00:00:00Z",
                "total": "30.50",
                "items": [
                    {"product_id": "a", "sku": "a-1", "quantity": 1, "unit_price": 10.5},
                    {"product_id": "b", "sku": "b-1", "quantity": "2", "unit_price": "10.0000"},
                ],
            },
        },
    }
    result = split_lines(tmp_path, [session])
    (line,) = staged(result, tables.PURCHASE_LINES)
    assert (line["purchase_id"], line["total"], line["time"]) == (
        "O1",
        "30.50",
        "2026-11-01 00:00:00.000",
    )
    items = staged(result, tables.PURCHASE_LINE_ITEMS)
    assert [(i["row_no"], i["product_id"], i["quantity"], i["unit_price"]) for i in items] == [
        ("0", "a", "1", "10.5"),
        ("1", "b", "2", "10.0000"),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({"account_id": 1}), "no session_id"),
        (orjson.dumps({"session_id": ""}), "no session_id"),
        (orjson.dumps({"session_id": "s", "city": "x" * 256}), "do not fit VARCHAR(255)"),
        (orjson.dumps({"session_id": "x" * 256}), "do not fit VARCHAR(255)"),
        (orjson.dumps({"session_id": "s", "page_views": 2**31}), "does not fit"),
        (orjson.dumps({"session_id": "s", "purchases": {"p": "1.23456"}}), "without rounding"),
        (orjson.dumps({"session_id": "s", "purchases": {"p": 1e15}}), "without rounding"),
        (orjson.dumps({"session_id": "s", "purchases": {"p": "abc"}}), "not a number"),
        (orjson.dumps({"session_id": "s", "has_cart": "yes"}), "flag"),
        (orjson.dumps({"session_id": "s", "cart_lines": [{"quantity": 2.5}]}), "not an integer"),
        (orjson.dumps({"session_id": "s", "cart_lines": [{"time": "yesterday"}]}), "ISO-8601"),
        (
            orjson.dumps(
                {"session_id": "s", "cart_lines": [{"time": "2026-11-01T00:00:00.123456Z"}]}
            ),
            "sub-millisecond",
        ),
        (orjson.dumps({"session_id": "s", "cart_lines": {"a": 1}}), "expected a JSON list"),
        (orjson.dumps({"session_id": "s", "offers": ["a"]}), "expected a JSON object"),
        (b'{"session_id": "s", "city": "\xff\xfe"}', "not JSON"),
    ],
)
def test_bad_lines_become_rejects_and_the_rest_loads(tmp_path, line, reason):
    good = orjson.dumps({"session_id": "good", "cart_lines": [{"product_id": "p"}]})
    result = split_lines(tmp_path, [good, line, good.replace(b"good", b"good2")])
    assert result.sessions == 2
    assert result.rejects == 1
    ((line_no, why, raw),) = result.read_rejects()
    assert line_no == 2
    assert reason in why
    assert raw == line  # kept whole, byte for byte
    # the rejected line left no rows anywhere
    sessions = staged(result, tables.SESSIONS)
    assert [(r["index"], r["session_id"]) for r in sessions] == [("0", "good"), ("1", "good2")]
    assert [r["index"] for r in staged(result, tables.CART_LINES)] == ["0", "1"]


def test_session_twice_in_one_file_keeps_only_the_newest(tmp_path):
    result = split_lines(
        tmp_path,
        [
            {"session_id": "s1", "end_time": 10, "cart_lines": [{"product_id": "old"}]},
            {
                "session_id": "s1",
                "end_time": 20,
                "cart_lines": [{"product_id": "new"}, {"product_id": "new2"}],
            },
            {"session_id": "s1", "end_time": 15, "cart_lines": [{"product_id": "mid"}]},
            {"session_id": "s2", "end_time": 5},
            {"session_id": "s2", "end_time": 5, "city": "later line wins a tie"},
        ],
    )
    assert result.sessions == 2
    rows = {r["session_id"]: r for r in staged(result, tables.SESSIONS)}
    assert rows["s1"]["end_time"] == "20"
    assert rows["s2"]["city"] == "later line wins a tie"
    assert [r["product_id"] for r in staged(result, tables.CART_LINES)] == ["new", "new2"]


def test_truncated_gzip_raises_and_leaves_nothing(tmp_path):
    path = write_gz(
        tmp_path / "f.json.gz", [{"session_id": f"s{i}", "city": "x" * 100} for i in range(2000)]
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cannot be read to its end"):
        split_file(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_manifest_round_trips(tmp_path):
    result = split_lines(tmp_path, [{"session_id": "s1", "offers": {"9": 1}}, b"oops"])
    again = SplitResult.read(result.out_dir)
    assert (again.sessions, again.rejects, again.rows) == (1, 1, result.rows)
    assert again.source_name == "20261101T000000.000Z_PT15M-1.json.gz"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-02-30T00:00:00.000Z", "not an ISO-8601"),
        ("2026-04-31T12:00:00.000Z", "not an ISO-8601"),
        ("2026-11-01T24:00:00.000Z", "not an ISO-8601"),
        ("2026-11-01T23:59:60.000Z", "not an ISO-8601"),
        ("2026-13-01T00:00:00.000Z", "not an ISO-8601"),
        ("0999-12-31T23:59:59.999Z", "before the year 1000"),
    ],
)
def test_impossible_line_times_are_rejected(tmp_path, value, reason):
    result = split_lines(tmp_path, [{"session_id": "s", "view_lines": [{"time": value}]}])
    ((_, why, _),) = result.read_rejects()
    assert reason in why


def test_unknown_and_missing_keys_of_cart_lines_and_items_are_counted_each_time(
    tmp_path, monkeypatch
):
    """KeyAudit judges an object's list of keys once and counts each object that has it: every
    cart line, view line, purchase line and line item that carries a key the spec does not know
    (or lacks one) is counted, and the keys inside the unknown values too (the repeated-key
    check adds them up: a miscount there would split the file twice, or reject a good line)."""
    full = {c.json_key: None for c in tables.SESSIONS.columns}
    cart = {"product_id": "p", "sku": "s", "quantity": 1, "time": None}
    item = {"product_id": "a", "sku": "b", "quantity": 1, "unit_price": "1.5"}
    lines = []
    for n in range(30):
        lines.append(
            {
                **full,
                "session_id": f"s{n}",
                "cart_lines": [
                    {**cart, "color": "navy"},
                    {**cart, "color": "red", "size": {"eu": 40, "us": [7, {"w": 1}]}},
                    {**{k: v for k, v in cart.items() if k != "sku"}, "color": "x"},
                    cart,
                ][: 1 + n % 4],
                "view_lines": [{"product_id": "p", "time": None, "rank": [n, {"k": n}]}] * (n % 3),
                "purchase_lines": {
                    "P": {"time": None, "total": "1", "currency": "USD", "items": [item] * 2},
                    "Q": {"time": None, "total": "1", "items": [{**item, "discount": {"c": 1}}]},
                },
            }
        )
    from session_stream.split import splitter

    passes = []
    real = splitter._split_pass
    monkeypatch.setattr(
        splitter, "_split_pass", lambda *a, **k: passes.append(k["careful"]) or real(*a, **k)
    )
    result = split_lines(tmp_path, lines)
    assert (result.sessions, result.rejects, passes) == (30, 0, [False])  # keys added up
    carts = [1 + n % 4 for n in range(30)]
    assert result.unknown_keys == {
        "cart_lines[].color": sum(min(c, 3) for c in carts),
        "cart_lines[].size": sum(c >= 2 for c in carts),
        "view_lines[].rank": sum(n % 3 for n in range(30)),
        "purchase_lines{}.currency": 30,
        "purchase_lines{}.items[].discount": 30,
    }
    assert result.missing_keys == {"cart_lines[].sku": sum(c >= 3 for c in carts)}


def test_key_counts_add_up_over_sessions_of_the_same_and_other_shapes(tmp_path):
    full = {c.json_key: None for c in tables.SESSIONS.columns}
    lines = [
        {**full, "session_id": "a", "new_field": 1},
        {**full, "session_id": "b", "new_field": 2},
        {**full, "session_id": "c"},
        {**{k: v for k, v in full.items() if k != "guid"}, "session_id": "d", "new_field": 3},
        {**full, "session_id": "e", "other": 1},
    ]
    result = split_lines(tmp_path, lines)
    assert result.unknown_keys == {"session.new_field": 3, "session.other": 1}
    assert result.missing_keys == {"session.guid": 1}


def test_lines_without_a_backslash_stage_what_the_checked_path_stages(tmp_path, monkeypatch):
    """A line without a backslash has no string to escape, so its strings are not looked at
    (split._CLEAN_BUILDERS): the staged files are the same byte for byte as when every string
    is checked, on sample sessions with every quirk and with escapes mixed in."""
    from session_stream.drop import sample
    from session_stream.split import splitter as split

    (path,) = sample.write_drop(tmp_path / "drop", sample_day(), sessions=400, files=1, seed=3)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    tricky = [orjson.loads(line) for line in lines[:20]]
    for n, session in enumerate(tricky):
        session["city"] = TRICKY[n % len(TRICKY)]
        session["session_id"] += "-tricky"
    src = write_gz(tmp_path / "20261101T000000.000Z_PT15M-1.json.gz", [*lines, *tricky])
    fast = split_file(src, tmp_path / "fast")
    monkeypatch.setattr(split, "_CLEAN_BUILDERS", split._BUILDERS)
    struct_builders = split._struct_builders
    monkeypatch.setattr(split, "_struct_builders", lambda tally: (struct_builders(tally)[0],) * 2)
    checked = split_file(src, tmp_path / "checked")
    assert fast.sessions == checked.sessions == 420
    assert staged_bytes(fast) == staged_bytes(checked)
    assert (fast.rows, fast.unknown_keys, fast.missing_keys) == (
        checked.rows,
        checked.unknown_keys,
        checked.missing_keys,
    )


def test_lines_with_the_spec_keys_stage_what_the_audited_path_stages(tmp_path, monkeypatch):
    """A line with exactly the spec's keys is parsed into structs (split._spec_structs) and not
    audited key by key; every other line is parsed into dicts and audited. Both paths stage the
    same bytes and count the same keys: here every line is sent down the dict path once, on
    sample sessions with every quirk (unknown and missing keys, bad values, escapes)."""
    from session_stream.drop import sample
    from session_stream.split import splitter as split

    (path,) = sample.write_drop(
        tmp_path / "drop", sample_day(), sessions=600, files=1, seed=5, bad_lines=12
    )
    lines = gzip.decompress(path.read_bytes()).splitlines()
    tricky = [orjson.loads(line) for line in lines[:30]]
    for n, session in enumerate(tricky):
        session["city"] = TRICKY[n % len(TRICKY)]
        session["session_id"] += "-tricky"
    # Spec-shaped lines whose values are wrong, and lines that lack a key.
    tricky[20]["page_views"] = "many"
    tricky[21]["cart_lines"] = "none"
    tricky[22]["purchase_lines"] = {"P": 5}
    tricky[23]["view_lines"] = [{"product_id": "p", "time": "yesterday"}]
    del tricky[24]["guid"]
    tricky[25]["cart_lines"] = [{"product_id": "p"}]
    tricky[26]["session_id"] = None
    src = write_gz(tmp_path / "20261101T000000.000Z_PT15M-1.json.gz", [*lines, *tricky])

    audited = []
    check = split.KeyAudit.check
    monkeypatch.setattr(
        split.KeyAudit, "check", lambda self, s: (audited.append(1), check(self, s))
    )
    both = split_file(src, tmp_path / "both")
    assert 0 < len(audited) < both.sessions / 2  # most sample lines carry the spec's keys only

    def refuse(raw):
        raise msgspec.ValidationError("sent down the dict path")

    monkeypatch.setattr(split, "_decode_known", refuse)
    dicts = split_file(src, tmp_path / "dicts")
    assert both.sessions == dicts.sessions and both.rejects == dicts.rejects > 0
    assert staged_bytes(both) == staged_bytes(dicts)
    assert (both.rows, both.unknown_keys, both.missing_keys, both.horizon) == (
        dicts.rows,
        dicts.unknown_keys,
        dicts.missing_keys,
        dicts.horizon,
    )
    assert both.unknown_keys and both.missing_keys


def test_a_line_with_exactly_the_spec_keys_is_not_audited_key_by_key(tmp_path, monkeypatch):
    from session_stream.split import splitter as split

    monkeypatch.setattr(split.KeyAudit, "check", lambda self, s: pytest.fail(f"audited {s}"))
    full = {key: None for key in tables.object_paths()[tables.SESSION_PATH]}
    line = {
        **full,
        "session_id": "s",
        "cart_lines": [{"product_id": "p", "sku": "k", "quantity": 1, "time": 1793492099999}],
        "view_lines": [],
        "purchase_lines": {"P": {"time": None, "total": "1.5", "items": None}},
        "offers": {"o": 1},
    }
    result = split_lines(tmp_path, [line])
    assert (result.sessions, result.rejects, result.unknown_keys) == (1, 0, {})


def sample_day():
    from datetime import date

    return date(2026, 11, 1)


def test_json_never_holds_a_raw_control_character(tmp_path):
    """The clean path's premise: the parser refuses a raw tab, CR, LF or NUL inside a string, so a
    line with such a value either carries it escaped (with a backslash) or is rejected."""
    for char in "\t\r\n\0":
        raw = b'{"session_id": "s", "city": "a' + char.encode() + b'b"}'
        result = split_lines(tmp_path, [raw], name="20261101T000000.000Z_PT15M-9.json.gz")
        assert result.sessions == 0 and result.rejects >= 1  # a raw LF splits the line in two


# ---- files that hold no gzip member (issue 10, finding 9) -----------------------------------

EMPTY_MEMBER = gzip.compress(b"", mtime=0)  # a complete gzip stream of no text: 20 bytes


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "is empty (0 bytes), not a gzip file"),  # an upload cut at its start
        (EMPTY_MEMBER[:2], "cannot be read to its end"),  # the magic alone
        (EMPTY_MEMBER[:10], "cannot be read to its end"),  # a header alone
        (EMPTY_MEMBER[:12], "cannot be read to its end"),  # a header and an empty block, no trailer
        (b"\0" * 4096, "cannot be read to its end"),  # space reserved, never written
    ],
    ids=["zero-bytes", "magic-only", "header-only", "no-trailer", "zeros"],
)
def test_a_file_without_a_whole_gzip_member_is_unreadable_and_named(tmp_path, data, error):
    name = "20261101T000000.000Z_PT15M-1.json.gz"
    (tmp_path / name).write_bytes(data)
    with pytest.raises(BadInputError) as unreadable:
        split_file(tmp_path / name, tmp_path / "out")
    message = str(unreadable.value)
    assert message.startswith(f"{name}: ") and error in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_a_whole_gzip_stream_of_no_lines_is_an_empty_window(tmp_path):
    name = "20261101T000000.000Z_PT15M-1.json.gz"
    (tmp_path / name).write_bytes(EMPTY_MEMBER)
    result = split_file(tmp_path / name, tmp_path / "out")
    assert (result.sessions, result.rejects, result.lines) == (0, 0, 0)


# ---- rejected lines staged raw, once (issue 10, finding 7) ----------------------------------


def test_rejected_lines_are_staged_raw_with_their_length_and_hash(tmp_path):
    import hashlib

    binary = bytes(b for b in range(256) if b != 10) * 50  # every byte but the newline
    lines = [b"{oops", {"session_id": "good"}, b"\r{\r", binary, b"not json at the end"]
    path = write_gz(tmp_path / "f.json.gz", lines)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-1]))  # no last newline
    result = split_file(path, tmp_path / "out")
    staged = list(SplitResult.read(result.out_dir).staged_rejects())
    assert [r.line_no for r in staged] == [1, 3, 4, 5]
    wanted = [b"{oops", b"\r{\r", binary, b"not json at the end"]
    assert [r.length for r in staged] == [len(w) for w in wanted]
    assert [r.sha256 for r in staged] == [hashlib.sha256(w).hexdigest() for w in wanted]
    assert [raw for _, _, raw in result.read_rejects()] == wanted
    # A long line comes back in parts of the size asked for, the last one shorter.
    parts = list(result.reject_parts(staged[2], 1000))
    assert [len(p) for p in parts] == [1000] * 12 + [len(binary) - 12000]
    assert b"".join(parts) == binary


def test_a_damaged_staged_reject_is_a_load_error(tmp_path):
    from session_stream.errors import LoadError
    from session_stream.split.layout import REJECTS_RAW_FILE

    result = split_lines(tmp_path, [b"x" * 5000, {"session_id": "good"}])
    raw = result.out_dir / REJECTS_RAW_FILE
    raw.write_bytes(raw.read_bytes()[:-1] + b"y")
    (reject,) = result.staged_rejects()
    with pytest.raises(LoadError, match="rejected line 1 is damaged"):
        list(result.reject_parts(reject, 1024))
    raw.write_bytes(raw.read_bytes()[:100])  # cut short
    with pytest.raises(LoadError, match="rejected line 1 is damaged"):
        list(result.reject_parts(reject, 1024))


# --- numbers: judged as the line wrote them, never through a binary float (issue 10, 8) -------
# The literals below cannot be written with orjson.dumps (it would round them first): the lines
# are raw bytes.


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b'{"session_id":"s","end_time":1793492099999.0000001}', "session.end_time"),
        (b'{"session_id":"s","page_views":3.0000000000000001}', "session.page_views"),
        (b'{"session_id":"s","offers":{"o1":-9223372036854775809}}', "offers['o1'].timestamp"),
        (b'{"session_id":"s","page_event_ids":{"e":9223372036854775808}}', "page_event_ids['e']"),
        (b'{"session_id":"s","session_value":12.34560000000000000001}', "session.session_value"),
        (b'{"session_id":"s","purchases":{"p":"1.00000000000000000000000000001"}}', "purchases"),
        (b'{"session_id":"s","purchases":{"p":1e-400}}', "purchases['p']"),
        (b'{"session_id":"s","cart_lines":[{"quantity":2.0000000000000001}]}', "cart_lines[0]"),
        (b'{"session_id":"s","view_lines":[{"time":1793494923456.0000001}]}', "view_lines[0].time"),
    ],
)
def test_a_number_its_column_would_change_is_rejected_naming_the_field(tmp_path, line, field):
    good = b'{"session_id":"good"}'
    result = split_lines(tmp_path, [good, line])
    assert (result.sessions, result.rejects) == (1, 1)
    ((line_no, why, raw),) = result.read_rejects()
    assert (line_no, raw) == (2, line)
    assert field in why
    assert "cannot be stored" in why and why.endswith("without change"), why


def test_the_findings_numbers_are_named_as_written(tmp_path):
    lines = [
        b'{"session_id":"a","end_time":1793492099999.0000001}',
        b'{"session_id":"b","page_views":3.0000000000000001}',
        b'{"session_id":"c","offers":{"o1":-9223372036854775809}}',
    ]
    reasons = [why for _, why, _ in split_lines(tmp_path, lines).read_rejects()]
    assert reasons == [
        "session.end_time: 1793492099999.0000001 is not an integer, so it cannot be stored in"
        " BIGINT without change",
        "session.page_views: 3.0000000000000001 is not an integer, so it cannot be stored in INT"
        " without change",
        "offers['o1'].timestamp: -9223372036854775809 does not fit BIGINT, so it cannot be stored"
        " without change",
    ]


def test_exact_neighbours_load_unchanged(tmp_path):
    line = (
        b'{"session_id":"s1","end_time":1793492099999,"start_time":1.793492099e12,'
        b'"page_views":3,"page_views_ss":3.0,"time_on_site":1e3,"has_cart":1.0,'
        b'"session_value":12.3456,"session_value_ss":"12.34","purchase_value_ss":1e2,'
        b'"customer_id":"12345678901234567890123","guid":12345678901234567890123,'
        b'"browser_version":1.50,"city":0.1000000000000000055,'
        b'"offers":{"o1":-9223372036854775808,"o2":9223372036854775807},'
        b'"purchases":{"P":123456789012.3456},'
        b'"custom_targets":{"1":[1.0000000000000001,123456789012345678901234,true,null]},'
        b'"cart_lines":[{"product_id":"98765432109876543210987","quantity":"2",'
        b'"time":1793494923456.0}]}'
    )
    result = split_lines(tmp_path, [line])
    assert result.rejects == 0, result.read_rejects()
    (row,) = staged(result, tables.SESSIONS)
    assert {k: row[k] for k in ("end_time", "start_time", "page_views", "page_views_ss")} == {
        "end_time": "1793492099999",
        "start_time": "1793492099000",
        "page_views": "3",
        "page_views_ss": "3",
    }
    assert (row["time_on_site"], row["has_cart"]) == ("1000", "1")
    assert (row["session_value"], row["session_value_ss"], row["purchase_value_ss"]) == (
        "12.3456",
        "12.34",
        "100",
    )
    # Long digit runs in strings are text, and numbers in text columns keep their JSON text.
    assert row["customer_id"] == "12345678901234567890123"
    assert row["guid"] == "12345678901234567890123"
    assert (row["browser_version"], row["city"]) == ("1.50", "0.1000000000000000055")
    offers = {r["offer_id"]: r["timestamp"] for r in staged(result, tables.OFFERS)}
    assert offers == {"o1": "-9223372036854775808", "o2": "9223372036854775807"}
    assert [r["purchase_value"] for r in staged(result, tables.PURCHASES)] == ["123456789012.3456"]
    (target,) = staged(result, tables.CUSTOM_TARGETS)
    assert (
        target["custom_target_value"] == "[1.0000000000000001,123456789012345678901234,true,null]"
    )
    (cart,) = staged(result, tables.CART_LINES)
    assert (cart["product_id"], cart["quantity"], cart["time"]) == (
        "98765432109876543210987",
        "2",
        "2026-11-01 01:02:03.456",
    )


@pytest.mark.parametrize(
    ("value", "page_views", "reasons"),
    [
        # Past int()'s 4,300-digit limit, and exactly 1.
        (b'"' + b"0" * 5000 + b'1"', "1", []),
        (b'"' + b"9" * 5000 + b'"', None, ["does not fit INT", "does not fit DECIMAL(16,4)"]),
        # Past Decimal's exponent range.
        (b"1e999999999999999999999", None, ["does not fit INT", "does not fit DECIMAL(16,4)"]),
    ],
)
def test_huge_numbers_are_judged_not_raised(tmp_path, value, page_views, reasons):
    lines = [
        b'{"session_id":"s","page_views":' + value + b"}",
        b'{"session_id":"t","purchases":{"p":' + value + b"}}",
    ]
    result = split_lines(tmp_path, lines)
    if page_views:
        assert staged(result, tables.SESSIONS)[0]["page_views"] == page_views
        assert staged(result, tables.PURCHASES)[0]["purchase_value"] == page_views
    got = [why for _, why, _ in result.read_rejects()]
    assert len(got) == len(reasons)
    for why, part in zip(got, reasons, strict=True):
        assert part in why and why.endswith("without change") and len(why) < 200, why


@pytest.mark.parametrize("text", ["1_000", "1_000.50", "NaN", "Infinity", "-inf", "0x10", "１２"])
def test_money_strings_that_are_not_numbers_are_rejected(tmp_path, text):
    # Decimal reads each of these (underscores as digit groups, NaN and Infinity as values,
    # full-width digits as digits); none is a number's text, so storing 1000 for "1_000" would
    # change what was sent.
    line = b'{"session_id":"s","session_value":"' + text.encode() + b'"}'
    result = split_lines(tmp_path, [line])
    (why,) = [why for _, why, _ in result.read_rejects()]
    assert why.startswith("session.session_value:") and "is not a number" in why, why
    assert staged(result, tables.SESSIONS) == []


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        # Python's \d and int() read any Unicode digit; MySQL reads ASCII ones only.
        ("page_views", '"１２"', "is not an integer"),
        ("end_time", '"１７９３４９２０９９９９９"', "is not an integer"),
    ],
)
def test_non_ascii_digits_are_not_numbers(tmp_path, field, value, reason):
    line = b'{"session_id":"s","' + field.encode() + b'":' + value.encode() + b"}"
    result = split_lines(tmp_path, [line])
    (why,) = [why for _, why, _ in result.read_rejects()]
    assert why.startswith(f"session.{field}:") and reason in why, why


def test_non_ascii_digits_in_a_line_time_are_rejected_not_staged(tmp_path):
    # The date part is checked by date.fromisoformat; the time of day only by the pattern.
    line = b'{"session_id":"s","view_lines":[{"product_id":"p","time":"2026-11-01T0\xef\xbc\x91:02:03.456Z"}]}'
    result = split_lines(tmp_path, [line])
    (why,) = [why for _, why, _ in result.read_rejects()]
    assert why.startswith("view_lines[0].time:"), why


def test_a_huge_bad_value_gives_a_short_reason(tmp_path):
    """The reason shows the head of the value: a 3 MB string or a nested value of half a million
    items is not written out whole first (the reject keeps the line itself)."""
    huge = "9" * 3_000_000
    lines = [
        {"session_id": "a", "view_lines": [{"product_id": "p", "time": huge}]},
        {"session_id": "b", "has_cart": {"x": list(range(500_000))}},
        {"session_id": "c", "purchase_lines": {huge: 5}},
    ]
    result = split_lines(tmp_path, lines)
    reasons = [why for _, why, _ in result.read_rejects()]
    assert len(reasons) == 3 and all(len(why) < 200 for why in reasons), reasons
    assert "(3,000,000 characters)" in reasons[0] and reasons[0].startswith("view_lines[0].time:")
    assert reasons[1] == "session.has_cart: {'x': [0, 1, 2, 3, ...]} is not a 't'/'f' flag"
    assert "(3,000,000 characters)" in reasons[2] and "expected a JSON object" in reasons[2]


def test_only_sessions_starting_by_the_stored_reach_are_looked_up(tmp_path):
    from session_stream.split.layout import sessions_starting_by

    src = tmp_path / "20261101T000000.000Z_PT15M-1.json.gz"
    with gzip.open(src, "wb") as f:
        for sid, start in (("old", 100), ("edge", 200), ("new", 300), ("timeless", None)):
            f.write(orjson.dumps({"session_id": sid, "start_time": start, "end_time": 400}) + b"\n")
    keys = split_file(src, tmp_path / "out").keys_path

    def looked_up(reach):
        path, n = sessions_starting_by(keys, reach)
        rows = [line.split("\t")[1] for line in path.read_text().splitlines()]
        assert len(rows) == n
        return rows

    # A session that starts no later than every stored session reaches may be stored; one with
    # no start_time may be anywhere; nothing stored, nothing to look up.
    assert looked_up(200) == ["old", "edge", "timeless"]
    assert looked_up(10**13) == ["old", "edge", "new", "timeless"]
    assert looked_up(99) == ["timeless"]
    assert looked_up(None) == []


def _keys_in_json(value) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_keys_in_json(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys_in_json(v) for v in value)
    return 0


@pytest.mark.parametrize("seed", range(4))
def test_colon_keys_never_counts_fewer_than_the_keys_and_exactly_without_escaped_backslashes(
    seed,
):
    """The repeated-key check's premise (repeated_keys._colon_keys): at least the keys a line
    holds, for any key or value text, and exactly as many when no string holds a backslash."""
    import random

    from session_stream.split.repeated_keys import _colon_keys

    rng = random.Random(seed)
    alphabet = ['"', ":", "\\", " ", "\t", "a", "é", "}", ",", '\\"']

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    def value(depth: int):
        kind = rng.randint(0, 3 if depth < 3 else 1)
        if kind == 0:
            return text()
        if kind == 1:
            return rng.randint(-5, 5)
        if kind == 2:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {text(): value(depth + 1) for _ in range(rng.randint(0, 4))}

    def strings(v):
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, dict):
            for k, x in v.items():
                yield k
                yield from strings(x)

    exact = 0
    for _ in range(3000):
        obj = {text(): value(0) for _ in range(rng.randint(1, 5))}
        raw = orjson.dumps(obj)
        keys = _keys_in_json(obj)
        counted = _colon_keys(raw)
        assert counted >= keys, raw
        # Exact unless a string holds a backslash of its own, or opens with ':' or whitespace
        # (its opening quote then reads as a key's end: one too many, never too few).
        if b"\\\\" not in raw and not any(t[:1] in (":", " ") for t in strings(obj)):
            assert counted == keys, raw
            exact += 1
    assert exact > 150  # the exact case was tried often


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_count_is_the_keys_of_any_json_however_written(seed):
    """session_stream_keycount (C, built by `make setup`) counts exactly the keys a JSON text
    holds (a repeated key twice), whatever its strings hold (quotes, colons, backslashes,
    whitespace, strings opening with ':' or a space) and however it is spaced; the Python count
    an install without a compiler uses never counts fewer. Any bytes at all are counted without
    a crash."""
    import json
    import random

    from session_stream.split.repeated_keys import _colon_keys, compiled_colon_keys

    assert compiled_colon_keys is not None, "the C count was not built: see pyproject.toml"
    rng = random.Random(seed)
    alphabet = ['"', ":", "\\", " ", "\t", "a", "é", "}", ",", "{", "[", '\\"', ": ", "\n"]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    def value(depth: int):
        kind = rng.randint(0, 3 if depth < 3 else 1)
        if kind == 0:
            return text()
        if kind == 1:
            return rng.choice([0, -5, 1.5, None, True])
        if kind == 2:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return [(text(), value(depth + 1)) for _ in range(rng.randint(0, 4))]

    def dump(v, space) -> str:  # a repeated key stays repeated; spacing at random
        if isinstance(v, list) and v and isinstance(v[0], tuple) or v == []:
            if v == [] and rng.random() < 0.5:
                return "[]"
            items = [f"{json.dumps(k)}{space()}:{space()}{dump(x, space)}" for k, x in v]
            return "{" + space() + ("," + space()).join(items) + space() + "}"
        if isinstance(v, list):
            return "[" + ",".join(dump(x, space) for x in v) + "]"
        return json.dumps(v, ensure_ascii=rng.random() < 0.5)

    def keys_in(v) -> int:
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            return len(v) + sum(keys_in(x) for _, x in v)
        if isinstance(v, list):
            return sum(keys_in(x) for x in v)
        return 0

    for n in range(4000):
        obj = [(text(), value(0)) for _ in range(rng.randint(1, 5))]
        if n % 3 == 0:
            obj.append(obj[0])  # a key written twice
        spaced = n % 2 == 0
        raw = dump(obj, lambda s=spaced: rng.choice(["", " ", "\t", "\r\n "]) if s else "").encode()
        keys = keys_in(obj)
        assert compiled_colon_keys(raw) == keys, raw
        assert _colon_keys(raw) >= keys, raw
    for _ in range(20_000):
        noise = bytes(rng.choice(b'"\\: \t{}[],a') for _ in range(rng.randint(0, 40)))
        assert compiled_colon_keys(noise) >= 0
    line = b'{"a":"x\\":y","b" :[1,2],"c"\t: "\\\\","d:":":"}' * 1000
    assert compiled_colon_keys(line) == compiled_colon_keys(bytearray(line)) == 4000


@pytest.mark.parametrize("compiled", [True, False], ids=["C count", "Python count"])
def test_ids_holding_a_quote_before_a_colon_are_split_in_one_pass(tmp_path, monkeypatch, compiled):
    """An id like 'a":b' (JSON: "a\\":b") is no repeated key: the file is split once, not again
    line by line; a key that is repeated beside such a value is still found. With the count in
    C, and with the Python one an install without a compiler runs."""
    from session_stream.split import repeated_keys, splitter

    if not compiled:
        monkeypatch.setattr(splitter, "colon_keys", repeated_keys._colon_keys)
        monkeypatch.setattr(repeated_keys, "colon_keys", repeated_keys._colon_keys)

    passes = []
    real = splitter._split_pass
    monkeypatch.setattr(
        splitter, "_split_pass", lambda *a, **k: passes.append(k["careful"]) or real(*a, **k)
    )
    base = {"end_time": 1793492099999, "start_time": 1793492000000}
    lines = [{"session_id": sid, **base} for sid in ('a":b', 'q" :', '":', "plain")]
    result = split_lines(tmp_path, lines)
    assert (result.sessions, result.rejects, passes) == (4, 0, [False])

    passes.clear()
    repeated = b'{"session_id":"x\\":y","city":"a","city":"b","end_time":1793492099999}'
    (tmp_path / "again").mkdir()
    result = split_lines(tmp_path / "again", [*lines, repeated])
    assert (result.sessions, result.rejects, passes) == (4, 1, [False, True])
    ((line_no, why, raw),) = result.read_rejects()
    assert (line_no, raw) == (5, repeated)
    assert "city" in why and "appears more than once" in why

    # Ids that open with ':' or a space: exact in C (one pass); the Python count reads their
    # opening quote as a key's end, one too many, and the file is split again line by line.
    passes.clear()
    (tmp_path / "opening").mkdir()
    lines = [{"session_id": sid, **base} for sid in (":", " ", "\t:", ": x", "plain")]
    result = split_lines(tmp_path / "opening", lines)
    assert (result.sessions, result.rejects) == (5, 0)
    assert passes == ([False] if compiled else [False, True])
