"""Files loaded together in one transaction (Loader.load_many) end as if loaded one by one:
newest wins across the group as against the warehouse, each file keeps its ledger row, a bad
file fails alone, and the pipeline forms groups of the files split while a load ran."""

from __future__ import annotations

import random
import time
from datetime import date
from pathlib import Path

import pytest
from drop_files import name, write_gz
from warehouse import dump, losing_the_first_commit_answer, query, reset

from session_stream import tables
from session_stream.drop import sample
from session_stream.errors import LoadError
from session_stream.runs import pipeline
from session_stream.split.splitter import split_file
from session_stream.warehouse import db, merge
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)


@pytest.fixture
def empty(url):
    reset(url)
    return url


def splits(paths: list[Path], work: Path) -> list[tuple]:
    """load_many's files: each path split afresh under `work`."""
    out = []
    for i, path in enumerate(paths):
        split = split_file(path, work / f"{i:03d}-{time.monotonic_ns()}")
        out.append((split, path.stat().st_size, None, None))
    return out


def one_by_one(url: str, paths: list[Path], work: Path) -> list:
    loader = Loader(lambda: db.connect(url))
    try:
        return [loader.load(s, size=size) for s, size, _, _ in splits(paths, work)]
    finally:
        loader.close()


def together(url: str, paths: list[Path], work: Path, connect=None) -> list:
    loader = Loader(connect or (lambda: db.connect(url)))
    try:
        return loader.load_many(splits(paths, work))
    finally:
        loader.close()


def ledger_rows(url: str) -> dict[str, tuple]:
    """What a file's ledger row says of the file itself (not of what other files did)."""
    rows = query(
        url,
        f"SELECT file_name, status, sessions, rejects, lines_read, repeats"
        f" FROM {tables.LEDGER_TABLE}",
    )
    return {r[0]: r[1:] for r in rows}


def test_a_group_ends_as_its_files_loaded_one_by_one_whoever_wins(url, empty, tmp_path):
    """Versions of one session in several files of the group and in the warehouse: a later
    file's newer version, a later file's older one, a tie (the later file wins), a stored
    version newer or older than the group's: the group's transaction leaves what loading the
    files one at a time leaves, and writes each winning version once."""
    before = write_gz(
        tmp_path / "before" / name(0, 1),
        [
            {"session_id": "stored-newer", "end_time": 500, "city": "stored"},
            {"session_id": "stored-older", "end_time": 50, "city": "stored"},
        ],
    )
    f1 = write_gz(
        tmp_path / "g" / name(0, 2),
        [
            {"session_id": "a", "end_time": 100, "city": "f1", "cart_lines": [{"sku": "1"}]},
            {"session_id": "tie", "end_time": 100, "city": "f1"},
            {"session_id": "older-later", "end_time": 100, "city": "f1"},
            {"session_id": "stored-newer", "end_time": 400, "city": "f1"},
            {"session_id": "stored-older", "end_time": 60, "city": "f1"},
        ],
    )
    f2 = write_gz(
        tmp_path / "g" / name(15),
        [
            {"session_id": "a", "end_time": 200, "city": "f2", "offers": {"7": 1}},
            {"session_id": "older-later", "end_time": 50, "city": "f2"},
            {"session_id": "stored-older", "end_time": 70, "city": "f2"},
        ],
    )
    f3 = write_gz(
        tmp_path / "g" / name(30),
        [
            {"session_id": "a", "end_time": 150, "city": "f3"},
            {"session_id": "tie", "end_time": 100, "city": "f3"},
            {"session_id": "new", "end_time": 1, "city": "f3"},
        ],
    )
    one_by_one(url, [before, f1, f2, f3], tmp_path / "w1")
    expected, expected_ledger = dump(url), ledger_rows(url)

    reset(url)
    one_by_one(url, [before], tmp_path / "w2")
    outcomes = together(url, [f1, f2, f3], tmp_path / "w3")
    assert [o.status for o in outcomes] == ["loaded"] * 3
    assert dump(url) == expected
    assert ledger_rows(url) == expected_ledger
    cities = dict(query(url, "SELECT session_id, city FROM session_sessions"))
    assert cities == {
        "a": "f2",
        "tie": "f3",
        "older-later": "f1",
        "stored-newer": "stored",
        "stored-older": "f2",
        "new": "f3",
    }
    # f1's a, tie and stored-older lost to a later file of the group: never written
    assert [(o.superseded, o.replaced) for o in outcomes] == [(4, 0), (1, 1), (1, 0)]
    assert [o.rows["session_sessions"] for o in outcomes] == [1, 2, 2]
    assert [o.rows["session_cart_lines"] for o in outcomes] == [0, 0, 0]


@pytest.mark.parametrize("collide", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_versions_in_a_group_end_as_loaded_one_by_one(
    url, empty, tmp_path, monkeypatch, seed, collide
):
    """Forty sessions sent 0-3 times each over four files, with random end times (ties and
    missing ones included), some stored before: the same warehouse either way; also when every
    session_id has the same hash (beaten_within's first pass then shares them all)."""
    if collide:
        monkeypatch.setattr(merge, "hash", lambda _: 7, raising=False)
    rng = random.Random(seed)
    files: list[list[dict]] = [[] for _ in range(5)]
    for n in range(40):
        sid = f"s{n}" if n % 3 else "x" * 16 + f"-{n}"  # a shared prefix for some
        for k in rng.sample(range(5), rng.randint(1, 4)):
            end = rng.choice([None, 5, 10, 10, 20, rng.randint(0, 30)])
            session = {"session_id": sid, "city": f"f{k}", "page_views": rng.randint(0, 9)}
            if end is not None:
                session["end_time"] = end
            if rng.random() < 0.5:
                session["view_lines"] = [{"product_id": str(i)} for i in range(rng.randint(0, 3))]
            files[k].append(session)
    paths = [write_gz(tmp_path / "d" / name(15 * k % 60, k + 1), s) for k, s in enumerate(files)]
    one_by_one(url, paths, tmp_path / "w1")
    expected, expected_ledger = dump(url), ledger_rows(url)
    reset(url)
    one_by_one(url, paths[:1], tmp_path / "w2")  # one file stored before the group
    outcomes = together(url, paths[1:], tmp_path / "w3")
    assert all(o.status == "loaded" for o in outcomes)
    assert dump(url) == expected
    assert ledger_rows(url) == expected_ledger


def test_a_generated_drop_loaded_together_writes_each_session_once(url, empty, tmp_path):
    """A drop whose open sessions are sent again, closed, by the next files (and every input
    quirk and bad line): the same warehouse and ledger as file by file, and no version written
    that a later file of the group replaces."""
    paths = sample.write_drop(
        tmp_path / "drop", DAY, sessions=900, files=5, hours=2, seed=5, quirks=True, bad_lines=5
    )
    separate = one_by_one(url, paths, tmp_path / "w1")
    expected, expected_ledger = dump(url), ledger_rows(url)
    reset(url)
    grouped = together(url, paths, tmp_path / "w2")
    assert dump(url) == expected
    assert ledger_rows(url) == expected_ledger
    assert sum(o.replaced for o in separate) > 50
    assert sum(o.replaced for o in grouped) == 0  # each re-emitted session written once
    assert sum(o.superseded for o in grouped) == sum(o.replaced + o.superseded for o in separate)
    assert sum(o.rows["session_sessions"] for o in grouped) == len(expected["session_sessions"])


def test_a_bad_file_in_a_group_fails_alone_and_the_others_load(url, empty, tmp_path, monkeypatch):
    """The group's transaction fails on its second file: it is rolled back whole, each file
    loads on its own, and only the bad one fails (recorded in the ledger, nothing of it kept)."""
    paths = [
        write_gz(
            tmp_path / name(15 * k), [{"session_id": f"s{k}-{i}", "end_time": i} for i in range(5)]
        )
        for k in range(3)
    ]
    real = merge.merge
    calls = []

    def failing_on_the_second_file(cur, split, *args, **kwargs):
        calls.append(split.source_name)
        if split.source_name == paths[1].name:
            raise LoadError(f"{split.source_name}: loaded 4 rows, the staged file holds 5")
        return real(cur, split, *args, **kwargs)

    monkeypatch.setattr("session_stream.warehouse.load.merge", failing_on_the_second_file)
    outcomes = together(url, paths, tmp_path / "w")
    assert [o.status for o in outcomes] == ["loaded", "failed", "loaded"]
    assert "staged file holds 5" in outcomes[1].error
    # the group's attempt (files 1 and 2), then each on its own
    assert calls == [paths[0].name, paths[1].name, paths[0].name, paths[1].name, paths[2].name]
    assert ledger_rows(url)[paths[1].name][0] == "failed"
    assert query(url, "SELECT COUNT(*) FROM session_sessions WHERE session_id LIKE 's1-%%'") == [
        (0,)
    ]
    assert query(url, "SELECT COUNT(*) FROM session_sessions") == [(10,)]


def test_a_group_with_a_file_the_ledger_knows_loads_each_on_its_own(url, empty, tmp_path):
    """A file loaded before (or failed, or ignored) is judged by load(): skipped when its content
    is the same; the group's other files still load, and the end is the same."""
    paths = [
        write_gz(
            tmp_path / name(15 * k),
            [{"session_id": "same", "end_time": k, "city": f"f{k}"}]
            + [{"session_id": f"s{k}-{i}", "end_time": i} for i in range(3)],
        )
        for k in range(3)
    ]
    one_by_one(url, paths, tmp_path / "w1")
    expected = dump(url)
    reset(url)
    one_by_one(url, paths[1:2], tmp_path / "w2")
    outcomes = together(url, paths, tmp_path / "w3")
    assert [o.status for o in outcomes] == ["loaded", "skipped", "loaded"]
    assert dump(url) == expected


def test_a_group_whose_commit_answer_was_lost_counts_as_loaded(url, empty, tmp_path):
    """The server commits the group, the connection drops before the client hears it: the retry
    finds the group's ledger rows (its tokens) and returns the loads, not skips."""

    paths = [
        write_gz(
            tmp_path / name(15 * k), [{"session_id": f"s{k}-{i}", "end_time": i} for i in range(4)]
        )
        for k in range(3)
    ]
    lost = []

    connect = losing_the_first_commit_answer(url, lost)

    outcomes = together(url, paths, tmp_path / "w", connect=connect)
    assert lost
    assert [(o.status, o.sessions) for o in outcomes] == [("loaded", 4)] * 3
    assert query(url, f"SELECT SUM(attempts) FROM {tables.LEDGER_TABLE}") == [(3,)]
    assert query(url, "SELECT COUNT(*) FROM session_sessions") == [(12,)]


def test_the_pipeline_loads_the_files_split_meanwhile_together(url, empty, tmp_path, monkeypatch):
    """While a load runs, the worker splits the next files; the next load takes every file split
    by then. Same warehouse as a load with no worker (one file at a time)."""
    paths = sample.write_drop(tmp_path / "drop", DAY, sessions=1200, files=6, hours=2, seed=9)
    loader = Loader(lambda: db.connect(url))
    try:
        pipeline.load_files(paths, loader, workers=0)
    finally:
        loader.close()
    expected, expected_ledger = dump(url), ledger_rows(url)
    reset(url)

    sizes = []
    real = Loader.load_many

    def slow_load_many(self, files, **kwargs):
        sizes.append(len(files))
        time.sleep(1.0)  # a slow server: the splits get ahead
        return real(self, files, **kwargs)

    monkeypatch.setattr(Loader, "load_many", slow_load_many)
    loader = Loader(lambda: db.connect(url))
    try:
        summary = pipeline.load_files(paths, loader, workers=1)
    finally:
        loader.close()
    assert (summary.loaded, summary.failed) == (6, 0)
    assert sum(sizes) == 6 and max(sizes) > 1, sizes
    assert dump(url) == expected
    assert ledger_rows(url) == expected_ledger
