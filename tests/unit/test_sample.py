"""The sample generator writes a realistic, deterministic Monetate drop tree."""

from __future__ import annotations

import gzip
import re
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from session_stream import tables
from session_stream.drop import sample

DAY = date(2024, 5, 1)
NAME = re.compile(r"^(\d{8}T\d{6}\.\d{3})Z_PT15M-(\d{13})\.json\.gz$")
KEY = {c.name: c.json_key for c in tables.SESSIONS.columns}
SID = KEY["session_id"]
WINDOW = timedelta(minutes=15)
LINE_TIME_KEYS = {("cart_lines", "time"), ("view_lines", "time"), ("purchase_lines", "time")}
OFFSET = re.compile(r"[+-]\d\d:\d\d$")


def lines(path) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return f.read().splitlines()


def objects(paths):
    """(path, object) for every line that is a JSON object, in file-name order."""
    for path in sorted(paths, key=lambda p: p.name):
        for line in lines(path):
            try:
                yield path, orjson.loads(line)
            except orjson.JSONDecodeError:
                continue


def window_of(path) -> datetime:
    return datetime.strptime(NAME.match(path.name).group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def raw_values(obj):
    """(column, raw JSON value) for every column of every row a session object gives."""
    for table in tables.TABLES:
        if table.shape == "session":
            for c in table.columns:
                yield c, obj.get(c.json_key)
            continue
        found = obj.get(table.path[0]) or {}
        key_column, *rest = table.columns
        if table.shape == "map":
            for key, value in found.items():
                yield key_column, key
                yield rest[0], value
        elif table.shape == "list":
            for item in found:
                for c in table.columns:
                    yield c, item.get(c.json_key)
        else:  # the map's key, then the fields of its object or of each item of its list
            for key, o in found.items():
                items = [o] if table.shape == "map_of_objects" else o[table.path[1]]
                for item in items:
                    yield key_column, key
                    for c in rest:
                        yield c, item.get(c.json_key)


def fits(c: tables.Column, v) -> bool:
    if v is None:
        return not c.not_null
    if c.kind == tables.STR:
        return isinstance(v, str) and len(v) <= c.length
    if c.kind in (tables.INT, tables.BIGINT):
        lo, hi = tables.INT_RANGE if c.kind == tables.INT else tables.BIGINT_RANGE
        return re.fullmatch(r"-?\d+", str(v)) is not None and lo <= int(v) <= hi
    if c.kind == tables.MONEY:
        d = Decimal(str(v))
        return d.as_tuple().exponent >= -tables.MONEY_SCALE and abs(d) < 10 ** (
            tables.MONEY_DIGITS - tables.MONEY_SCALE
        )
    if c.kind == tables.FLAG:
        return v in ("t", "f")
    if c.kind == tables.DATETIME:
        if isinstance(v, int):
            return True
        return datetime.fromisoformat(v).tzinfo is not None
    return False


@pytest.fixture(scope="module")
def drop(tmp_path_factory):
    """A small quirky hour: 3 files, 60 sessions, a few bad lines."""
    root = tmp_path_factory.mktemp("drop")
    return sample.write_drop(root, DAY, sessions=60, files=3, start_hour=10, hours=1, seed=11)


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    a = sample.write_drop(tmp_path / "a", DAY, sessions=40, files=3, hours=2, seed=1)
    b = sample.write_drop(tmp_path / "b", DAY, sessions=40, files=3, hours=2, seed=1)
    c = sample.write_drop(tmp_path / "c", DAY, sessions=40, files=3, hours=2, seed=2)
    assert [p.name for p in a] == [p.name for p in b]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [lines(p) for p in a] != [lines(p) for p in c]


def test_names_parse_as_monetate_names_with_windows_inside_the_day(tmp_path):
    paths = sample.write_drop(tmp_path, DAY, sessions=160, files=16, seed=0)
    assert len(paths) == 16 and paths == sorted(paths, key=lambda p: p.name)
    numbers = []
    for path in paths:
        match = NAME.match(path.name)
        assert match, path.name
        numbers.append(match.group(2))
        window = window_of(path)
        assert path.parent == tmp_path / "2024" / "05" / "01"
        assert window.date() == DAY and window.minute % 15 == 0 and window.second == 0
    assert len(set(numbers)) == 16
    assert len({window_of(p) for p in paths}) == 16, "16 files spread over 96 windows"


def test_more_files_than_windows_share_windows(tmp_path):
    paths = sample.write_hour(tmp_path, datetime(2024, 5, 1, 23, tzinfo=UTC), sessions=20, files=6)
    windows = Counter(window_of(p) for p in paths)
    assert len(paths) == 6 and sorted(windows.values()) == [1, 1, 2, 2]
    assert all(w.hour == 23 for w in windows)


def test_every_line_ends_inside_its_files_window(drop):
    for path, obj in objects(drop):
        start, end = ms(window_of(path)), ms(window_of(path) + WINDOW)
        assert start <= obj[KEY["end_time"]] < end
        assert (
            ms(datetime(2024, 5, 1, tzinfo=UTC)) <= obj[KEY["start_time"]] <= obj[KEY["end_time"]]
        )


def test_sessions_are_realistic(tmp_path):
    paths = sample.write_drop(tmp_path, DAY, sessions=2000, files=16, seed=4)
    final = {obj[SID]: obj for _, obj in objects(paths)}
    assert len(final) == 2000
    children = sum(
        len(obj.get(t.path[0]) or ())
        if len(t.path) == 1
        else sum(len(v[t.path[1]]) for v in (obj.get(t.path[0]) or {}).values())
        for obj in final.values()
        for t in tables.CHILD_TABLES
    )
    # ~763k rows and ~115 MB for 80k sessions: ~9.5 rows and ~1.3 kB per line.
    assert 8.5 <= (2000 + children) / 2000 <= 10.5
    size = sum(len(line) for p in paths for line in lines(p))
    n_lines = sum(len(lines(p)) for p in paths)
    assert 1100 <= size / n_lines <= 1500
    bounces = [o for o in final.values() if o[KEY["is_bounce"]] == "t"]
    assert 0.15 <= len(bounces) / 2000 <= 0.35
    assert all(not (o.get("cart_lines") or o.get("view_lines")) for o in bounces)
    assert len({o[KEY["browser"]] for o in final.values()}) >= 5
    assert len({o[KEY["country_code"]] for o in final.values()}) >= 5
    assert all(o[KEY["is_closed"]] == "t" for o in final.values())


def test_sessions_carry_every_field_of_monetates_loader_with_plausible_values(tmp_path):
    paths = sample.write_drop(tmp_path, DAY, sessions=1000, files=4, seed=3, quirks=False)
    final = {obj[SID]: obj for _, obj in objects(paths)}
    for o in final.values():
        assert set(KEY.values()) <= set(o), "every column of the sample schema has its key"
        assert re.fullmatch(r"[A-Z]{2}", o[KEY["country_code"]])
        assert str(uuid.UUID(o[KEY["guid"]])) == o[KEY["guid"]]
        assert o[KEY["screen_width"]] >= 320 and o[KEY["screen_height"]] >= 480
        if o[KEY["device_type"]] == "Smartphone":
            assert o[KEY["screen_width"]] < o[KEY["screen_height"]]
        assert o[KEY["page_views_ss"]] >= o[KEY["page_views"]] >= 1
        assert o[KEY["time_on_site_ss"]] >= o[KEY["time_on_site"]] >= 0
        assert o[KEY["time_on_site"]] == (o[KEY["end_time"]] - o[KEY["start_time"]]) // 1000
        assert Decimal(str(o[KEY["session_value_ss"]])) >= Decimal(str(o[KEY["session_value"]]))
        totals = [Decimal(str(p["total"])) for p in o["purchase_lines"].values()]
        assert Decimal(str(o[KEY["session_value"]])) == sum(totals, Decimal(0))
        assert o[KEY["purchase_count"]] == len(o["purchases"])
        assert o[KEY["product_view_count"]] == len(o["view_lines"])
        new = o[KEY["has_new_customer"]] == "t"
        assert (o[KEY["session_count"]] == 1) == new
        assert o[KEY["customer_link"]] is None or o[KEY["customer_id"]] is not None
    for column in ("browser_version", "os_version", "customer_id", "customer_link", "region"):
        assert len({o[KEY[column]] for o in final.values()}) >= 2, column


def test_session_ids_are_unique_across_days_hours_and_seeds(tmp_path):
    def ids(**kwargs) -> set[str]:
        paths = sample.write_drop(tmp_path / str(len(kwargs) + hash(str(kwargs)) % 10**6), **kwargs)
        return {obj[SID] for _, obj in objects(paths)}

    day1 = ids(day=DAY, sessions=100, files=2)
    day2 = ids(day=DAY + timedelta(days=1), sessions=100, files=2)
    other_seed = ids(day=DAY, sessions=100, files=2, seed=1)
    hour = ids(day=DAY, sessions=100, files=2, start_hour=5, hours=1)
    assert len(day1) == len(day2) == len(other_seed) == len(hour) == 100
    assert not (day1 & day2) and not (day1 & other_seed) and not (day1 & hour)
    assert day1 == ids(day=DAY, sessions=100, files=2), "the same drop, the same ids"


def test_reemitted_sessions_close_later_with_a_greater_end_time_and_different_children(drop):
    versions: dict[str, list] = {}
    for path, obj in objects(drop):
        versions.setdefault(obj[SID], []).append((path.name, obj))
    twice = {sid: v for sid, v in versions.items() if len(v) > 1}
    assert len(twice) == 6, "10% of 60 sessions"
    for versions_of in twice.values():
        (first_file, first), (last_file, last) = versions_of
        assert first_file < last_file
        assert (first[KEY["is_closed"]], last[KEY["is_closed"]]) == ("f", "t")
        assert last[KEY["end_time"]] > first[KEY["end_time"]]
        assert len(last["cart_lines"]) > len(first.get("cart_lines") or [])
        assert last.get("purchases") and not first.get("purchases")
        # One custom target of the open version is gone: replacing, not merging, matters.
        assert set(first["custom_targets"]) - set(last["custom_targets"])


def quirks_found(paths) -> set[str]:
    found = set()
    for _, obj in objects(paths):
        for table in (tables.CART_LINES, tables.VIEW_LINES):
            for line in obj.get(table.path[0]) or []:
                t = line["time"]
                if isinstance(t, int):
                    found.add("time_epoch")
                elif OFFSET.search(t):
                    found.add("time_offset")
                else:
                    assert t.endswith("Z")
                    found.add("time_z")
                if set(line) - {c.json_key for c in table.columns}:
                    found.add("unknown_keys_nested")
        money = [*(obj.get("purchases") or {}).values()]
        for pline in (obj.get("purchase_lines") or {}).values():
            money += [pline["total"], *(i["unit_price"] for i in pline["items"])]
            money += [i["quantity"] for i in pline["items"]]
        if any(isinstance(v, str) for v in money):
            found.add("numeric_strings")
        known = {c.json_key for c in tables.SESSIONS.columns} | {
            t.path[0] for t in tables.CHILD_TABLES
        }
        if set(obj) - known:
            found.add("unknown_keys")
        if any(t.path[0] not in obj for t in tables.CHILD_TABLES):
            found.add("absent_maps")
        strings = [v for c, v in raw_values(obj) if c.kind == tables.STR]
        for label, test in {
            "quote": lambda s: '"' in s,
            "comma": lambda s: "," in s,
            "backslash": lambda s: "\\" in s,
            "tab": lambda s: "\t" in s,
            "cr": lambda s: "\r" in s,
            "lf": lambda s: "\n" in s,
            "NULL": lambda s: s == "NULL",
            "\\N": lambda s: s == "\\N",
            "empty": lambda s: s == "",
            "4-byte": lambda s: any(ord(ch) > 0xFFFF for ch in s),
        }.items():
            if any(isinstance(s, str) and test(s) for s in strings):
                found.add(label)
        if any(v is None for c, v in raw_values(obj) if c in tables.CUSTOM_TARGETS.columns):
            found.add("null")
    return found


ALL_QUIRKS = {
    *("time_z", "time_offset", "time_epoch", "numeric_strings", "absent_maps", "unknown_keys"),
    *("unknown_keys_nested", "quote", "comma", "backslash", "tab", "cr", "lf"),
    *("NULL", "\\N", "empty", "4-byte", "null"),
}


def test_quirks_are_present_when_asked(drop):
    assert quirks_found(drop) == ALL_QUIRKS


def test_without_quirks_lines_are_plain_but_the_sessions_are_the_same(tmp_path, drop):
    plain = sample.write_drop(
        tmp_path, DAY, sessions=60, files=3, start_hour=10, hours=1, seed=11, quirks=False
    )
    # Plain data has Z times (and may have commas); nothing else from the quirk list.
    assert quirks_found(plain) <= {"time_z", "comma"}
    ids = [(p.name, o[SID], o[KEY["end_time"]]) for p, o in objects(plain)]
    assert ids == [(p.name, o[SID], o[KEY["end_time"]]) for p, o in objects(drop)]


def test_every_value_fits_its_column(drop):
    for _, obj in objects(drop):
        for column, value in raw_values(obj):
            assert fits(column, value), (column.name, value)


def test_bad_lines_are_added_when_asked_and_leave_the_good_ones_alone(tmp_path, drop):
    paths = sample.write_drop(
        tmp_path, DAY, sessions=60, files=3, start_hour=10, hours=1, seed=11, bad_lines=6
    )
    kinds = Counter()
    good = []
    for path in paths:
        for line in lines(path):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                kinds["not_json"] += 1
                continue
            if SID not in obj:
                kinds["no_session_id"] += 1
            elif not all(fits(c, v) for c, v in raw_values(obj)):
                assert obj[SID].startswith(sample.BAD_SESSION_PREFIX)
                kinds["too_long"] += 1
            else:
                good.append(line)
    assert kinds == {"not_json": 2, "no_session_id": 2, "too_long": 2}
    assert good == [line for p in drop for line in lines(p)]


def test_a_truncated_file_cannot_be_read_to_its_end(drop, tmp_path):
    copy = tmp_path / drop[0].name
    copy.write_bytes(drop[0].read_bytes())
    sample.truncate_file(copy)
    assert copy.stat().st_size == drop[0].stat().st_size // 2
    with pytest.raises(EOFError), gzip.open(copy, "rb") as f:
        f.read()
    with pytest.raises(ValueError):
        sample.truncate_file(copy, keep_bytes=copy.stat().st_size)


def test_cli_writes_a_drop_and_rejects_bad_arguments_in_one_line(tmp_path, capsys):
    argv = [
        "--out",
        str(tmp_path),
        "--day",
        "2024-02-29",
        "--sessions",
        "10",
        "--files",
        "2",
        "--seed",
        "9",
    ]
    assert sample.main([*argv, "--no-quirks", "--start-hour", "5", "--hours", "1"]) == 0
    written = sorted((tmp_path / "2024" / "02" / "29").iterdir())
    assert [window_of(p).hour for p in written] == [5, 5]
    assert "wrote 2 files" in capsys.readouterr().out

    assert sample.main([*argv, "--start-hour", "20", "--hours", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        sample.main(["--out", str(tmp_path), "--day", "2024-13-01"])
    assert exit_.value.code == 2


def _without_ids(paths) -> list[tuple[str, bytes]]:
    out = []
    for path, obj in objects(paths):
        obj.pop(SID, None)
        out.append((path.name, orjson.dumps(obj)))
    return out


@pytest.mark.parametrize("style", [s for s in sample.ID_STYLES if s != sample.DEFAULT_ID_STYLE])
def test_an_id_style_changes_the_ids_only(tmp_path, style):
    kwargs = dict(day=DAY, sessions=300, files=4, hours=1, seed=3, bad_lines=3)
    plain = sample.write_drop(tmp_path / "uuid", **kwargs)
    styled = sample.write_drop(tmp_path / style, id_style=style, **kwargs)
    assert _without_ids(styled) == _without_ids(plain)
    # One id per session, re-emitted versions included, as in the default style.
    ids = {o.get(SID) for _, o in objects(plain)}
    pairs = {
        (a.get(SID), b.get(SID))
        for (_, a), (_, b) in zip(objects(plain), objects(styled), strict=True)
    }
    assert len(pairs) == len(ids) == len({b for _, b in pairs})


def test_id_styles_have_the_shapes_an_index_must_not_be_fooled_by(tmp_path):
    def ids(style):
        paths = sample.write_drop(
            tmp_path / style, DAY, sessions=400, files=4, hours=1, id_style=style
        )
        return {
            (window_of(p), o[SID])
            for p, o in objects(paths)
            if not o.get(SID, sample.BAD_SESSION_PREFIX).startswith(sample.BAD_SESSION_PREFIX)
        }

    first_window: dict[str, datetime] = {}
    for window, sid in sorted(ids("timestamp")):
        first_window.setdefault(sid, window)
    for sid, window in first_window.items():
        # Every session that starts in a window shares its first 19 characters: the window's
        # epoch ms and the account (a version re-emitted later keeps its id).
        assert sid.startswith(f"{ms(window)}-{sample.ACCOUNT_ID}-") and len(sid) == 51
    prefixed = {sid for _, sid in ids("prefix")}
    assert {sid[:64] for sid in prefixed} == {sample.SHARED_ID_PREFIX}
    long = {sid for _, sid in ids("long")}
    assert {len(sid) for sid in long} == {tables.SESSION_ID.length}
    assert len({sid[:-32] for sid in long}) == 1
    short = [sid for _, sid in ids("short")]
    assert {len(sid) for sid in short} == {1} and len(set(short)) == 400
    # Characters of every UTF-8 length, a control character among them.
    assert {len(sid.encode()) for sid in short} == {1, 2, 3, 4}
    assert any(ord(sid) < 0x20 for sid in short)


def test_an_unknown_id_style_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sample.main(["--out", str(tmp_path), "--id-style", "guid"])
    assert "invalid choice: 'guid'" in capsys.readouterr().err
    with pytest.raises(sample.ConfigError, match="unknown id style 'guid'"):
        sample.write_drop(tmp_path, DAY, sessions=1, files=1, id_style="guid")
