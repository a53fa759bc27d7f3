"""The split's C stager (session_stream_fastrows, fastsplit.stage_line) stages exactly what the
Python paths stage for every line it takes, and leaves them every line it does not: on whole
files of every quirk, on random sessions whose every value may be odd, and on broken lines."""

from __future__ import annotations

import gzip
import json
import random
import re
from datetime import date

import pytest
from staged import staged_bytes

from session_stream import tables
from session_stream.drop import sample
from session_stream.split import fastsplit
from session_stream.split import splitter as split
from session_stream.split.layout import NULL, escape

pytestmark = pytest.mark.skipif(
    fastsplit.stage_line is None, reason="session_stream_fastrows is not built (make setup)"
)

DAY = date(2026, 11, 1)
SOURCE = escape("20261101T000000.000Z_PT15M-1.json.gz")


def python_stage(raw: bytes, index: int):
    """What the Python fast paths give for a line, in stage_line's shape, or None."""
    found, lenient = fastsplit.decode(raw), False
    if found is None:
        found, lenient = fastsplit.decode_lenient(raw), True
    if found is None:
        return None
    plain = raw.find(b"\\") < 0 or split._ESCAPES_SPECIAL(raw) is None
    staged = (fastsplit.stage if plain else fastsplit.stage_escaped)(found, index, SOURCE)
    if staged is None:
        return None
    per_table, absent, items = staged
    sid = found.session_id if plain else escape(found.session_id)
    end = found.end_time
    end = NULL if end is None else str(end) if type(end) is int else split._END_TIME(end, "s")
    start = split._START_TIME(found.start_time, "session")
    return [list(rows) for rows in per_table], absent, items, sid, end, start, lenient


def check_line(raw: bytes, index: int = 7) -> bool:
    """stage_line's answer for `raw` is the Python paths' (when it gives one): whether it did."""
    got = fastsplit.stage_line(raw, index, SOURCE)
    if got is None:
        return False
    assert got == python_stage(raw, index), raw
    return True


# --- random sessions whose every value may be odd ---------------------------------------------

ALPHABET = ["a", "Z", "0", " ", "/", '"', "\\", "\t", "\n", "\r", "\0", "\b", "\x7f", "é", "€",
            "\u2028", "🛒"]  # fmt: skip


def odd_string(rng: random.Random, longest: int = 6) -> str:
    # now and then a lone surrogate, which is not UTF-8 (written as \ud800, or as bytes)
    alphabet = ALPHABET + ["\ud800"] if rng.random() < 0.02 else ALPHABET
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, longest)))


ODD = [0.0, 0.0, 0.003, 0.01, 0.05]  # a line's share of values to refuse or judge


def value_of(rng: random.Random, column: tables.Column, odd: float = 0.01):
    """A value for `column`: mostly what it takes, at a rate `odd` what it must refuse or judge."""
    kind, roll, edge = column.kind, rng.random(), rng.random() < odd * 3
    if roll < odd:
        return rng.choice([None, True, 1.5, "", [], {}, "x", -0, 10**30, "1e3", " 7 "])
    if kind == tables.STR:
        if edge:
            return "é" * column.length + rng.choice(["", "x"])  # at the limit, or past it
        return odd_string(rng) if roll < 0.4 else f"v{rng.randrange(10**6)}"
    if kind in (tables.INT, tables.BIGINT):
        hi = 2**31 if kind == tables.INT else 2**63
        if edge:
            return rng.choice([hi - 1, -hi, hi, -hi - 1, f"{hi}", f"{hi - 1}", "12.0", "1" * 21])
        n = rng.randrange(-1000, 10**6 if kind == tables.INT else 10**13)
        if roll < 0.2:
            return rng.choice([str(n), f" {n} ", f"+{n}", f"000{n}", "-0", "0" * 19 + "1"])
        return n
    if kind == tables.MONEY:
        if edge:
            return rng.choice(["1.23456", "1234567890123", "abc", 1e-5, "1e3", " 5"])
        return rng.choice([12.5, 0, -3, "19.99", "19.990", "123456789012.1234", "-0.5", 7])
    if kind == tables.FLAG:
        return rng.choice(["T", "1", "yes", True]) if edge else rng.choice(["t", "f"])
    # DATETIME: the usual form, an offset, epoch ms, and what a calendar refuses
    if edge:
        return rng.choice(
            [
                "2025-02-29T00:00:00.000Z",
                "1000-01-01T00:30:00.000+01:00",
                "9999-12-31T23:30:00.000-01:00",
                "2026-11-01T00:11:05.299+24:00",
                "2026-11-01T24:00:00.000Z",
                "2026-11-01 00:11:05.299Z",
                "2026-11-01T00:11:05Z",
                -30610224000001,
                -30610224000000,
                253402300799999,
                253402300800000,
                rng.randrange(-(10**16), 10**16),
            ]
        )
    ms = rng.randrange(-(10**13), 2 * 10**12)
    return rng.choice(
        [
            "2026-11-01T00:11:05.299Z",
            "2024-02-29T23:59:59.999Z",
            "2026-11-01T01:11:05.299+01:00",
            "2026-11-01T00:11:05.299-23:59",
            "2000-03-01T00:00:00.000+00:30",
            ms,
            str(ms),
        ]
    )


def random_session(rng: random.Random) -> list[tuple[str, object]]:
    """A session as (key, value) pairs: keys may be shuffled, repeated, unknown or missing."""
    odd = rng.choice(ODD)
    pairs = [(c.json_key, value_of(rng, c, odd)) for c in tables.SESSIONS.columns]
    if rng.random() < odd * 3:
        pairs[0] = ("session_id", rng.choice(["", None, 5]))
    else:
        pairs[0] = ("session_id", odd_string(rng, 12) or "s")

    def obj(columns):
        return {c.json_key: value_of(rng, c, odd) for c in columns}

    for table in tables.CHILD_TABLES:
        top, n = table.path[0], rng.randrange(0, 4)
        if rng.random() < 0.2 or table.shape == "map_of_lists":
            continue  # absent (the items are inside the purchase lines)
        if table.shape == "map":
            value = {
                odd_string(rng) + str(i): value_of(rng, table.columns[1], odd) for i in range(n)
            }
        elif table.shape == "list":
            value = [obj(table.columns) for _ in range(n)]
        else:
            value = {}
            for i in range(n):
                line = obj(table.columns[1:])
                if rng.random() < 0.8:
                    line["items"] = [
                        obj(tables.PURCHASE_LINE_ITEMS.columns[1:]) for _ in range(rng.randrange(3))
                    ]
                value[f"P{i}{odd_string(rng, 3)}"] = line
        pairs.append((top, rng.choice([value, value, value, None])))
    roll = rng.random()
    if roll < 0.1:
        pairs.append((f"new_{odd_string(rng, 3)}", {"a": [1, {"b": None}], "c": "\\"}))
    elif roll < 0.15:
        pairs.append(rng.choice(pairs))  # a key written twice
    elif roll < 0.2:
        pairs.pop(rng.randrange(1, len(pairs)))  # a key missing
    if rng.random() < 0.3:
        rng.shuffle(pairs)
    return pairs


def write(pairs, rng: random.Random) -> bytes:
    """JSON text of the pairs, escaped or not, spaced or not."""
    ascii_only = rng.random() < 0.5
    space = rng.choice(["", " ", "\t", "\r\n"])
    body = f",{space}".join(
        f"{json.dumps(k, ensure_ascii=ascii_only)}:{space}{json.dumps(v, ensure_ascii=ascii_only)}"
        for k, v in pairs
    )
    text = "{" + space + body + space + "}"
    if rng.random() < 0.2:
        text = text.replace("/", "\\/")
    return text.encode("utf-8", "surrogatepass") + b"\n"


@pytest.mark.parametrize("seed", range(6))
def test_every_random_line_it_takes_stages_as_python_does(seed):
    rng = random.Random(seed)
    taken = 0
    lines = 1500
    for _ in range(lines):
        taken += check_line(write(random_session(rng), rng))
    # Not vacuous: lines of odd but valid values are its to take (a third of these carry a
    # value Python must judge or refuse).
    assert taken > lines * 0.08, taken


@pytest.mark.parametrize("seed", range(3))
def test_a_broken_line_is_never_taken_wrongly_and_never_crashes_it(tmp_path, seed):
    """Every cut and every changed byte of real lines: no crash, and a line it takes is one the
    Python paths stage the same (most such lines are not JSON, or lack a key)."""
    rng = random.Random(seed)
    (path,) = sample.write_drop(tmp_path, DAY, sessions=60, files=1, seed=seed)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    for raw in lines:
        for _ in range(30):
            cut = raw[: rng.randrange(len(raw) + 1)]
            check_line(cut)
            at = rng.randrange(len(raw))
            check_line(raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :])


@pytest.mark.parametrize("style", list(sample.ID_STYLES))
def test_it_takes_every_good_line_of_a_sample_day_quirks_included(tmp_path, style):
    """The generated drop's every session line, the every-quirk ones too (escapes, integer
    strings, times with an offset or in epoch ms, keys the spec does not know): all its own."""
    (path,) = sample.write_drop(tmp_path, DAY, sessions=400, files=1, seed=3, id_style=style)
    lines = gzip.decompress(path.read_bytes()).splitlines()
    assert all(check_line(raw, n) for n, raw in enumerate(lines))
    # the quirks are there: escapes, times with an offset, keys the spec does not know
    assert any(b"\\" in raw for raw in lines)
    assert any(re.search(rb'\.\d{3}[+-]\d\d:\d\d"', raw) for raw in lines)
    assert any(fastsplit.stage_line(raw, 0, SOURCE)[6] for raw in lines)


@pytest.mark.parametrize("style", list(sample.ID_STYLES))
def test_a_whole_file_splits_to_the_same_bytes_with_it_and_without(tmp_path, monkeypatch, style):
    """split_file with the C stager and with the Python paths alone: the same staged bytes,
    rejects, counts, unknown keys and horizon, on a file of every quirk, bad lines, sessions
    written twice, escapes everywhere and keys the spec does not know."""
    (path,) = sample.write_drop(
        tmp_path / "drop", DAY, sessions=500, files=1, seed=5, bad_lines=12, id_style=style
    )
    lines = gzip.decompress(path.read_bytes()).splitlines()
    escaped = [
        line.replace(b"/", b"\\/").replace(
            b'{"session_id"', b'{"added_by_monetate":[1],"session_id"'
        )
        for line in lines
    ]
    src = tmp_path / "20261101T000000.000Z_PT15M-1.json.gz"
    src.write_bytes(gzip.compress(b"\n".join([*lines, *escaped]) + b"\n"))

    calls = {"taken": 0}
    stage_line = fastsplit.stage_line

    def counted(*args):
        found = stage_line(*args)
        calls["taken"] += found is not None
        return found

    monkeypatch.setattr(fastsplit, "stage_line", counted)
    with_c = split.split_file(src, tmp_path / "c")
    assert calls["taken"] >= 2 * 500
    monkeypatch.setattr(fastsplit, "stage_line", None)
    without = split.split_file(src, tmp_path / "python")
    assert staged_bytes(with_c) == staged_bytes(without)
    assert (with_c.rows, with_c.rejects, with_c.sessions, with_c.repeats) == (
        without.rows,
        without.rejects,
        without.sessions,
        without.repeats,
    )
    assert with_c.rejects >= 12 and with_c.repeats >= 400
    assert (with_c.unknown_keys, with_c.missing_keys, with_c.horizon) == (
        without.unknown_keys,
        without.missing_keys,
        without.horizon,
    )
    assert "session.added_by_monetate" in with_c.unknown_keys


def test_a_repeated_key_is_left_to_python_at_every_level(tmp_path):
    """A key written twice is the repeated-key check's to name: in the session, in a map, in a
    list's object and in a purchase line's items, the line is not taken."""
    (path,) = sample.write_drop(tmp_path, DAY, sessions=40, files=1, seed=1)
    raw = next(
        line
        for line in gzip.decompress(path.read_bytes()).splitlines()
        if b'"items":[{' in line and b"\\" not in line and b'"cart_lines":[{' in line
    )
    assert check_line(raw)
    for twice in (
        raw.replace(b'"browser":', b'"city":"x","browser":', 1),
        raw.replace(b'"custom_targets":{', b'"custom_targets":{"k":"1","k":"2",', 1),
        raw.replace(b'"cart_lines":[{', b'"cart_lines":[{"sku":"x",', 1),
        raw.replace(b'"items":[{', b'"items":[{"sku":"x",', 1),
        raw.replace(b'"offers":', b'"offers":null,"offers":', 1),
    ):
        assert twice != raw
        assert fastsplit.stage_line(twice, 0, SOURCE) is None, twice


def test_a_source_name_that_is_not_utf8_is_left_to_python(tmp_path):
    """A file name read with surrogate escapes (bytes that are not UTF-8): C declines the line
    instead of raising, so the Python paths do what they always did with it."""
    (path,) = sample.write_drop(tmp_path, DAY, sessions=5, files=1, seed=2)
    raw = gzip.decompress(path.read_bytes()).splitlines()[0]
    assert fastsplit.stage_line(raw, 0, SOURCE) is not None
    assert fastsplit.stage_line(raw, 0, "bad-\udcff-name.json.gz") is None
