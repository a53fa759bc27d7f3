"""Session ids of every shape the contract allows load, read back and join exactly.

A session_id is an opaque string of 1 to 255 characters (CONTRACT). Each id style of the
sample generator (a window's timestamp first, one long shared prefix, 1 character, 255
characters) is loaded by session-stream and by the row-by-row baseline, an independent
implementation: the two warehouses must hold the same rows, and every session of the files must
be there under its exact id. Ids that only a case-, accent- or space-insensitive comparison
would take for one another stay apart: the index that finds a session compares bytes.
"""

from __future__ import annotations

import gzip
from datetime import date

import orjson
import pytest
from warehouse import dump, query, reset

from benchmarks import rowbyrow
from session_stream import tables
from session_stream.drop import sample
from session_stream.runs.pipeline import load_files
from session_stream.warehouse import db
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)
SID = tables.SESSION_ID.json_key


@pytest.fixture
def empty(url):
    reset(url)
    return url


def load(url, paths):
    loader = Loader(lambda: db.connect(url))
    try:
        return load_files(list(paths), loader)
    finally:
        loader.close()


def newest(paths) -> dict[str, int]:
    """Each session id of the files and its newest end_time (files in name order)."""
    out: dict[str, int] = {}
    for path in sorted(paths, key=lambda p: p.name):
        with gzip.open(path, "rb") as f:
            for line in f:
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                sid = obj.get(SID)
                if isinstance(sid, str) and not sid.startswith(sample.BAD_SESSION_PREFIX):
                    out[sid] = max(out.get(sid, -1), obj["end_time"])
    return out


@pytest.mark.parametrize("style", list(sample.ID_STYLES))
def test_every_id_style_loads_and_reads_back_exactly(url, empty, tmp_path, fresh_db_url, style):
    # One hour in four files: every file after the first looks its sessions up among the
    # earlier files' sessions of the same windows, re-emitted ones included.
    paths = sample.write_drop(
        tmp_path, DAY, sessions=1200, files=4, hours=1, seed=5, id_style=style
    )
    summary = load(url, paths)
    expected = newest(paths)
    assert (summary.loaded, summary.failed, summary.rejects) == (4, 0, 0)
    assert summary.replaced > 0, "re-emitted sessions replace their open versions"
    stored = dict(query(url, "SELECT session_id, end_time FROM session_sessions"))
    assert stored == expected
    # Each session's child rows are found by its session_id (Monetate's join) and the
    # warehouse equals the row-by-row baseline's, row for row.
    joined = query(
        url,
        "SELECT COUNT(*), COUNT(DISTINCT s.session_id) FROM session_sessions s"
        " JOIN session_view_lines v ON v.session_id = s.session_id",
    )[0]
    assert (
        joined
        == query(
            url, "SELECT COUNT(*), COUNT(DISTINCT session_key) FROM session_stream_view_lines"
        )[0]
    )
    rowbyrow.create_sample_schema(fresh_db_url)
    rowbyrow.load_files(fresh_db_url, paths)
    assert rowbyrow.contents(url) == rowbyrow.contents(fresh_db_url)


def test_an_id_style_gives_the_same_warehouse_but_for_the_ids(url, empty, tmp_path):
    kwargs = dict(sessions=600, files=3, hours=1, seed=9)
    load(url, sample.write_drop(tmp_path / "uuid", DAY, **kwargs))
    plain = dump(url, with_source=False)
    reset(url)
    load(url, sample.write_drop(tmp_path / "short", DAY, id_style="short", **kwargs))
    short = dump(url, with_source=False)

    def without_ids(tables_rows):
        return {
            name: sorted(
                (
                    tuple(v for v, c in zip(row, t.column_names, strict=True) if c != SID)
                    for row in rows
                ),
                key=repr,
            )
            for (name, rows), t in zip(tables_rows.items(), tables.TABLES, strict=True)
        }

    assert without_ids(short) == without_ids(plain)
    assert len(short[tables.SESSIONS.name]) == len(plain[tables.SESSIONS.name])


# Distinct strings that a case-, accent-, width- or pad-insensitive collation, or a Unicode
# normalisation, would take for one another: each is a session of its own.
LOOKALIKES = [
    "session",
    "Session",
    "SESSION",
    "session ",
    "session\t",
    " session",
    "séssion",  # é as one code point
    "se\u0301ssion",  # e + combining acute
    "ｓｅｓｓｉｏｎ",  # full width
    "strasse",
    "straße",
    "🛒",
    "🛒\u200d",
    "\\N",
    "NULL",
    "x" * 255,
    "x" * 254 + "y",
]


def test_ids_alike_to_any_collation_but_a_binary_one_stay_apart(url, empty, tmp_path):
    first = tmp_path / "20261101T000000.000Z_PT15M-1.json.gz"
    with gzip.open(first, "wb") as f:
        for n, sid in enumerate(LOOKALIKES):
            f.write(
                orjson.dumps({SID: sid, "end_time": 1, "view_lines": [{"product_id": f"p{n}"}]})
            )
            f.write(b"\n")
    # A newer version of each second id replaces that session alone.
    second = tmp_path / "20261101T001500.000Z_PT15M-2.json.gz"
    newer = LOOKALIKES[1::2]
    with gzip.open(second, "wb") as f:
        for sid in newer:
            f.write(orjson.dumps({SID: sid, "end_time": 2, "view_lines": [{"product_id": "new"}]}))
            f.write(b"\n")
    summary = load(url, [first, second])
    assert (summary.failed, summary.replaced) == (0, len(newer))
    got = query(
        url,
        "SELECT s.session_id, s.end_time, v.product_id FROM session_sessions s"
        " JOIN session_view_lines v ON v.session_id = s.session_id",
    )
    assert sorted(got) == sorted(
        (sid, 2, "new") if sid in newer else (sid, 1, f"p{n}") for n, sid in enumerate(LOOKALIKES)
    )
    # Each one is found by an equality on its own bytes, as an analyst's WHERE finds it.
    for sid in LOOKALIKES:
        assert query(url, "SELECT COUNT(*) FROM session_sessions WHERE session_id = %s", (sid,)) == [
            (1,)
        ]  # fmt: skip


def test_the_database_keeps_session_id_unique_without_the_loader(url, empty):
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute("INSERT INTO session_sessions (session_id, source_file) VALUES ('once', 'a')")
    with pytest.raises(Exception, match="Duplicate entry"):
        cur.execute("INSERT INTO session_sessions (session_id, source_file) VALUES ('once', 'b')")
    conn.close()
