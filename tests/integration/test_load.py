"""The loader against a real MariaDB: newest wins, idempotence, order independence, rejects,
bad files, a killed load, concurrent loads and the CLI's errors."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from drop_files import name, write_gz
from warehouse import dump, query, reset

from session_stream import tables
from session_stream.drop import sample
from session_stream.drop.local import list_tree
from session_stream.runs.pipeline import load_files
from session_stream.split.splitter import split_file
from session_stream.warehouse import db, migrations
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)
CLI = [sys.executable, "-m", "session_stream.runs.cli"]


@pytest.fixture
def empty(url):
    reset(url)
    return url


@pytest.fixture(scope="module")
def drop(tmp_path_factory):
    """A small realistic drop: 6 files over 2 hours, re-emitted sessions, quirks, a few bad lines."""
    root = tmp_path_factory.mktemp("drop")
    sample.write_drop(root, DAY, sessions=600, files=6, hours=2, seed=7, bad_lines=6)
    return root


def load(url, paths, **kw):
    loader = Loader(lambda: db.connect(url))
    try:
        return load_files(list(paths), loader, **kw)
    finally:
        loader.close()


def test_drop_matches_the_row_by_row_baseline(url, empty, tmp_path, fresh_db_url):
    paths = sample.write_drop(tmp_path, DAY, sessions=800, files=5, hours=2, seed=11)
    summary = load(url, paths, workers=1)
    assert (summary.loaded, summary.failed, summary.rejects) == (5, 0, 0)
    got = dump(url)
    assert all(got[t.name] for t in tables.TABLES), "every table receives rows"

    # An independent implementation (one INSERT per row, into Monetate's sample schema) must
    # hold the same rows.
    from benchmarks import rowbyrow

    rowbyrow.create_sample_schema(fresh_db_url)
    rowbyrow.load_files(fresh_db_url, paths)
    assert rowbyrow.contents(fresh_db_url) == rowbyrow.contents(url)


def test_drop_with_bad_lines_loads_the_rest_and_keeps_rejects(url, empty, drop):
    summary = load(url, list_tree(drop), workers=1)
    assert (summary.loaded, summary.failed) == (6, 0)
    assert summary.rejects == 6
    ledger = query(
        url, f"SELECT status, sessions, rejects, rows_sessions FROM {tables.LEDGER_TABLE}"
    )
    assert len(ledger) == 6 and {r[0] for r in ledger} == {"loaded"}
    assert sum(r[2] for r in ledger) == 6
    (n,) = query(url, f"SELECT COUNT(*) FROM {tables.REJECTS_TABLE}")[0]
    assert n == 6


def test_reemitted_session_replaces_children(url, empty, tmp_path):
    open_version = {
        "session_id": "s1",
        "end_time": 100,
        "is_closed": "f",
        "cart_lines": [{"product_id": "a"}, {"product_id": "b"}],
        "offers": {"1": 5},
    }
    closed = {
        "session_id": "s1",
        "end_time": 200,
        "is_closed": "t",
        "cart_lines": [{"product_id": "c"}],
        "purchases": {"P": "9.99"},
    }
    f1 = write_gz(tmp_path / name(0), [open_version, {"session_id": "other", "end_time": 1}])
    f2 = write_gz(tmp_path / name(15), [closed])
    load(url, [f1, f2])
    assert query(
        url, "SELECT end_time, is_closed, source_file FROM session_sessions WHERE session_id='s1'"
    ) == [(200, 1, f2.name)]
    assert query(url, "SELECT product_id FROM session_cart_lines WHERE session_id='s1'") == [("c",)]
    assert query(url, "SELECT COUNT(*) FROM session_offers WHERE session_id='s1'") == [(0,)]
    assert query(url, "SELECT purchase_value FROM session_purchases WHERE session_id='s1'")[0][
        0
    ] == Decimal("9.99")
    assert query(url, "SELECT COUNT(*) FROM session_sessions") == [(2,)]


def test_older_version_arriving_later_does_not_replace_newer(url, empty, tmp_path):
    newer = write_gz(
        tmp_path / name(15),
        [{"session_id": "s1", "end_time": 200, "cart_lines": [{"product_id": "new"}]}],
    )
    older = write_gz(
        tmp_path / name(0),
        [
            {"session_id": "s1", "end_time": 100, "cart_lines": [{"product_id": "old"}]},
            {"session_id": "s2", "end_time": 1},
        ],
    )
    load(url, [newer, older])
    assert query(url, "SELECT end_time FROM session_sessions WHERE session_id='s1'") == [(200,)]
    assert query(url, "SELECT product_id FROM session_cart_lines") == [("new",)]
    assert query(url, "SELECT COUNT(*) FROM session_sessions") == [(2,)]
    (row,) = query(
        url,
        f"SELECT rows_sessions, rows_cart_lines, sessions FROM {tables.LEDGER_TABLE} WHERE file_name=%s",
        (older.name,),
    )
    assert row == (1, 0, 2)  # its s1 lost; its s2 loaded


def test_end_time_tie_goes_to_the_later_file(url, empty, tmp_path):
    a = write_gz(tmp_path / name(0, 5), [{"session_id": "s1", "end_time": 100, "city": "first"}])
    b = write_gz(tmp_path / name(0, 10), [{"session_id": "s1", "end_time": 100, "city": "second"}])
    load(url, [b, a])  # the later file (greater number) loaded first still wins the tie
    assert query(url, "SELECT city FROM session_sessions") == [("second",)]
    reset(url)
    load(url, [a, b])
    assert query(url, "SELECT city FROM session_sessions") == [("second",)]


def test_same_files_twice_and_in_reverse_order_give_the_same_database(url, empty, drop):
    paths = list_tree(drop)
    load(url, paths)
    forward = dump(url)
    again = load(url, paths)
    assert (again.loaded, again.skipped) == (0, 6)
    assert dump(url) == forward
    forced = load(url, paths, force=True)
    assert forced.loaded == 6
    assert dump(url) == forward
    reset(url)
    load(url, list(reversed(paths)), workers=0)
    assert dump(url) == forward


def test_truncated_gzip_fails_alone_and_is_retried(url, empty, drop, tmp_path):
    paths = list_tree(drop)
    broken = tmp_path / paths[2].name
    broken.write_bytes(paths[2].read_bytes())
    sample.truncate_file(broken)
    files = [paths[0], paths[1], broken, *paths[3:]]
    summary = load(url, files)
    assert (summary.loaded, summary.failed) == (5, 1)
    assert summary.failures[0][0] == broken.name
    ((status, error),) = query(
        url, f"SELECT status, error FROM {tables.LEDGER_TABLE} WHERE file_name=%s", (broken.name,)
    )
    assert status == "failed" and "cannot be read to its end" in error
    assert query(
        url, f"SELECT COUNT(*) FROM {tables.SESSIONS.name} WHERE source_file=%s", (broken.name,)
    ) == [(0,)]
    # the next run tries it again, and once the file is whole it loads
    broken.write_bytes(paths[2].read_bytes())
    retry = load(url, files)
    assert (retry.loaded, retry.skipped, retry.failed) == (1, 5, 0)


def test_a_zero_byte_file_fails_with_one_line_and_loads_once_it_arrives_whole(
    url, empty, drop, tmp_path
):
    """Issue 10, finding 9: an upload cut at its start is no empty window."""
    whole = list_tree(drop)[0]
    folder = tmp_path / "2026" / "11" / "01"
    folder.mkdir(parents=True)
    cut = folder / whole.name
    cut.write_bytes(b"")
    empty_window = folder / name(45, 77)
    empty_window.write_bytes(gzip.compress(b""))  # a whole gzip stream of no line

    first = run_cli("load", "--db", url, str(tmp_path))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "1 loaded" in first.stdout and "1 failed" in first.stdout
    (line,) = [x for x in first.stderr.splitlines() if x.startswith("failed")]
    assert line == (
        f"failed {cut.name}: is empty (0 bytes), not a gzip file: an upload cut at its start?"
        " Nothing was staged from it"
    )
    ledger = f"SELECT file_name, status, sessions, attempts FROM {tables.LEDGER_TABLE} ORDER BY 1"
    assert query(url, ledger) == [
        (cut.name, "failed", None, 1),
        (empty_window.name, "loaded", 0, 1),
    ]

    again = run_cli("load", "--db", url, str(tmp_path))  # retried, still cut
    assert again.returncode == 1 and "1 skipped" in again.stdout and "1 failed" in again.stdout
    assert query(url, ledger)[0] == (cut.name, "failed", None, 2)

    cut.write_bytes(whole.read_bytes())  # the upload completes
    last = run_cli("load", "--db", url, str(tmp_path))
    assert last.returncode == 0 and "1 loaded" in last.stdout, last.stdout + last.stderr
    ((status, sessions, attempts),) = query(
        url,
        f"SELECT status, sessions, attempts FROM {tables.LEDGER_TABLE} WHERE file_name = %s",
        (cut.name,),
    )
    assert status == "loaded" and sessions > 0 and attempts == 3


def test_changed_file_is_reloaded(url, empty, tmp_path):
    f = write_gz(
        tmp_path / name(0),
        [{"session_id": "s1", "end_time": 1, "cart_lines": [{"product_id": "a"}]}],
    )
    load(url, [f])
    write_gz(
        f,
        [
            {
                "session_id": "s1",
                "end_time": 1,
                "cart_lines": [{"product_id": "b"}, {"product_id": "c"}],
            },
            {"session_id": "s2", "end_time": 1},
        ],
    )
    summary = load(url, [f])
    assert summary.loaded == 1
    assert query(url, "SELECT product_id FROM session_cart_lines ORDER BY row_no") == [
        ("b",),
        ("c",),
    ]


def test_strings_survive_the_database_byte_for_byte(url, empty, tmp_path):
    tricky = [
        "",
        "NULL",
        "\\N",
        'say "hi", ok',
        "back\\slash",
        "tab\there",
        "cr\rlf\nend",
        "emoji 😀 𝄞",
        "trailing  ",
    ]
    sessions = [
        {"session_id": f"s{i}", "city": v, "custom_targets": {"7": v}} for i, v in enumerate(tricky)
    ]
    sessions.append({"session_id": "null", "city": None})
    sessions.append({"session_id": "s0 ", "city": "id with a trailing space is another session"})
    load(url, [write_gz(tmp_path / name(0), sessions)])
    got = dict(query(url, "SELECT session_id, city FROM session_sessions"))
    assert got == {
        **{f"s{i}": v for i, v in enumerate(tricky)},
        "null": None,
        "s0 ": "id with a trailing space is another session",
    }
    targets = dict(query(url, "SELECT session_id, custom_target_value FROM session_custom_targets"))
    assert targets == {f"s{i}": v for i, v in enumerate(tricky)}


def test_times_and_money_are_exact(url, empty, tmp_path):
    s = {
        "session_id": "s1",
        "start_time": 1793491261781,
        "end_time": "1793491261999",
        "purchases": {"P": "1234567.8901"},
        "view_lines": [{"product_id": "p", "time": "2026-11-01T03:02:03.456+02:00"}],
    }
    load(url, [write_gz(tmp_path / name(0), [s])])
    assert query(url, "SELECT start_time, end_time FROM session_sessions") == [
        (1793491261781, 1793491261999)
    ]
    assert str(query(url, "SELECT purchase_value FROM session_purchases")[0][0]) == "1234567.8901"
    assert query(url, "SELECT time FROM session_view_lines")[0][0] == datetime(
        2026, 11, 1, 1, 2, 3, 456000
    )


def test_numbers_are_stored_as_written_or_rejected(url, empty, tmp_path):
    """Issue 10, finding 8: a number its column would change is a reject with a reason; its exact
    neighbours are stored unchanged. Raw lines: orjson.dumps would round these literals first."""
    changed = [
        b'{"session_id":"end","end_time":1793492099999.0000001}',
        b'{"session_id":"views","page_views":3.0000000000000001}',
        b'{"session_id":"offer","offers":{"o1":-9223372036854775809}}',
    ]
    exact = (
        b'{"session_id":"exact","end_time":1793492099999,"page_views":3,"page_views_ss":3.0,'
        b'"session_value":12.3456,"session_value_ss":"12.34","customer_id":"12345678901234567890123",'
        b'"offers":{"o1":-9223372036854775808},"purchases":{"P":123456789012.3456}}'
    )
    path = tmp_path / name(0)
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join([*changed, exact]) + b"\n")
    summary = load(url, [path])
    assert (summary.loaded, summary.rejects) == (1, 3)
    rejects = query(
        url, f"SELECT line_no, reason, raw_line FROM {tables.REJECTS_TABLE} ORDER BY line_no"
    )
    assert [(n, bytes(raw)) for n, _, raw in rejects] == [
        (1, changed[0]),
        (2, changed[1]),
        (3, changed[2]),
    ]
    reasons = [reason for _, reason, _ in rejects]
    for reason, field in zip(
        reasons, ["session.end_time", "session.page_views", "offers['o1']"], strict=True
    ):
        assert reason.startswith(field) and reason.endswith("without change"), reason
    assert query(
        url,
        "SELECT session_id, end_time, page_views, page_views_ss, session_value, session_value_ss,"
        " customer_id FROM session_sessions",
    ) == [
        (
            "exact",
            1793492099999,
            3,
            3,
            Decimal("12.3456"),
            Decimal("12.3400"),
            "12345678901234567890123",
        )
    ]
    assert query(url, "SELECT offer_id, timestamp FROM session_offers") == [
        ("o1", -9223372036854775808)
    ]
    assert query(url, "SELECT purchase_value FROM session_purchases") == [
        (Decimal("123456789012.3456"),)
    ]


def test_killed_load_leaves_the_database_as_it_was(url, empty, drop, tmp_path):
    paths = list_tree(drop)
    load(url, paths[:1])
    before = dump(url)
    ledger_before = query(url, f"SELECT file_name FROM {tables.LEDGER_TABLE}")
    big = sample.write_drop(tmp_path, DAY, sessions=40_000, files=1, hours=1, seed=3)[0]
    proc = subprocess.Popen(
        [*CLI, "load", "-q", "--db", url, str(big)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = url.rsplit("/", 1)[1]
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until its LOAD DATA is running inside the transaction
        rows = query(
            url,
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db=%s AND info LIKE %s",
            (database, "LOAD DATA%INTO TABLE `session_%"),
        )
        if rows[0][0]:
            break
        assert proc.poll() is None, "the load finished before it could be killed"
        time.sleep(0.01)
    else:
        pytest.fail("the load never started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the server notices the dropped connection and rolls back
    assert dump(url) == before
    assert query(url, f"SELECT file_name FROM {tables.LEDGER_TABLE}") == ledger_before
    # and the next run loads it whole
    summary = load(url, [big])
    assert summary.loaded == 1 and summary.sessions == 40_000


def test_concurrent_loads_of_the_same_files_load_each_once(url, empty, drop):
    paths = [str(p) for p in list_tree(drop)]
    procs = [
        subprocess.Popen(
            [*CLI, "load", "-q", "--db", url, *order],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for order in (paths, list(reversed(paths)), paths[2:] + paths[:2])
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    concurrent = dump(url)
    assert query(url, f"SELECT SUM(attempts), COUNT(*) FROM {tables.LEDGER_TABLE}") == [(6, 6)]
    reset(url)
    load(url, [Path(p) for p in paths])
    assert dump(url) == concurrent


def test_split_then_load_reports_rows_and_ledger(url, empty, tmp_path):
    f = write_gz(
        tmp_path / name(0),
        [{"session_id": "s1", "end_time": 5, "offers": {"1": 2, "3": 4}}, {"x": 1}],
    )
    split = split_file(f, tmp_path / "split")
    loader = Loader(lambda: db.connect(url))
    outcome = loader.load(
        split, size=f.stat().st_size, window_start=datetime(2026, 11, 1, tzinfo=UTC)
    )
    assert (
        outcome.status == "loaded"
        and outcome.rows[tables.OFFERS.name] == 2
        and outcome.rejects == 1
    )
    assert loader.pending([(f.name, f.stat().st_size)]) == []
    assert loader.pending([(f.name, f.stat().st_size + 1)]) == [f.name]
    assert loader.load(split, size=f.stat().st_size).status == "skipped"
    row = loader.ledger([f.name])[f.name]
    assert (row["status"], row["rows_offers"], row["rejects"]) == ("loaded", 2, 1)
    assert row["window_start"] == datetime(2026, 11, 1)
    loader.close()


# --- the CLI's one-line errors ------------------------------------------------------------


def run_cli(*args, env=None):
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    ("db_arg", "password", "message"),
    [
        ("postgres://x@h/db", "", "must look like mysql://"),
        ("mysql://root@127.0.0.1:1/x", "", "cannot reach MySQL at 127.0.0.1:1"),
        ("mysql://root@127.0.0.1:3306/ss_no_such_database", "", "does not exist"),
        # the password from the environment: one on the command line adds a warning line
        ("mysql://nobody@127.0.0.1:3306/test", "wrong", "refused user"),
    ],
)
def test_bad_database_config_is_one_line_and_exit_2(db_arg, password, message, drop):
    result = run_cli("load", "--db", db_arg, str(drop), env={db.DB_PASSWORD_ENV: password})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_server_that_does_not_answer_is_unreachable_and_a_refused_login_is_not():
    from session_stream.errors import ConfigError, UnreachableError

    with pytest.raises(UnreachableError, match="cannot reach MySQL at 127.0.0.1:1"):
        db.connect("mysql://root@127.0.0.1:1/x")
    with pytest.raises(ConfigError, match="refused user") as refused:
        db.connect("mysql://nobody:wrong@127.0.0.1:3306/test")
    assert not isinstance(refused.value, UnreachableError)


def test_missing_db_setting_and_uninitialised_database(url, drop, fresh_db_url):
    env = {db.DB_ENV: ""}
    result = run_cli("load", str(drop), env=env)
    assert result.returncode == 2 and "SESSION_STREAM_DB" in result.stderr
    result = run_cli("load", "--db", fresh_db_url, str(drop))
    assert result.returncode == 2 and "init-db" in result.stderr


def test_a_schema_behind_this_version_says_to_run_init_db(drop, fresh_db_url):
    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    latest = migrations.MIGRATIONS[-1]
    conn.cursor().execute(
        f"DELETE FROM {tables.MIGRATIONS_TABLE} WHERE version = %s", (latest.version,)
    )
    conn.close()
    result = run_cli("load", "--db", fresh_db_url, str(drop))
    assert result.returncode == 2, result.stderr
    assert f"migration {latest.version}" in result.stderr and "init-db" in result.stderr
    assert run_cli("init-db", "--db", fresh_db_url).returncode == 0
    assert run_cli("load", "-q", "--db", fresh_db_url, str(drop)).returncode == 0


def test_local_infile_off_is_reported(fake_mysql, drop):
    # A server that says local_infile=OFF; the shared test server's own setting is never touched
    # (SET GLOBAL would fail every load running beside this test).
    server = fake_mysql(answers=lambda q: [(0,)] if "@@GLOBAL.local_infile" in q else None)
    result = run_cli("load", "--db", server.url(), str(drop))
    assert result.returncode == 2, result.stderr
    assert "local_infile" in result.stderr and "SET GLOBAL local_infile=1" in result.stderr
    assert any("@@GLOBAL.local_infile" in q for q in server.queries)
    assert not any(q.lstrip().upper().startswith("LOAD DATA") for q in server.queries)


def test_cli_load_summary_and_exit_status(url, empty, drop, tmp_path):
    broken = tmp_path / "bad" / name(0, 999)
    broken.parent.mkdir()
    broken.write_bytes(list_tree(drop)[0].read_bytes()[:200])
    result = run_cli("load", "--db", url, str(drop), str(broken))
    assert result.returncode == 1
    assert "6 loaded" in result.stdout and "1 failed" in result.stdout
    assert "sessions/s" in result.stdout
    assert re.search(r"\d+ replaced an older version", result.stdout)
    result = run_cli("init-db", "--db", url)
    assert result.returncode == 0 and "up to date" in result.stdout


def test_children_carry_their_sessions_key(url, empty, drop):
    load(url, list_tree(drop))
    key = tables.SESSION_KEY_COLUMN
    for table in tables.CHILD_TABLES:
        orphans = query(
            url,
            f"SELECT COUNT(*) FROM `{table.name}` c LEFT JOIN `{tables.SESSIONS.name}` s"
            f" ON s.`{key}` = c.`{key}` WHERE s.session_id IS NULL OR s.session_id <> c.session_id",
        )
        assert orphans == [(0,)], table.name
    ((n_keys, n_sessions),) = query(
        url, f"SELECT COUNT(DISTINCT `{key}`), COUNT(*) FROM `{tables.SESSIONS.name}`"
    )
    assert n_keys == n_sessions


def test_loaded_file_redelivered_broken_is_marked_failed_and_keeps_its_rows(
    url, empty, drop, tmp_path
):
    good = list_tree(drop)[0]
    copy = tmp_path / good.name
    copy.write_bytes(good.read_bytes())
    load(url, [copy])
    before = dump(url)
    sample.truncate_file(copy)
    summary = load(url, [copy])
    assert summary.failed == 1
    ((status, size),) = query(url, f"SELECT status, size FROM {tables.LEDGER_TABLE}")
    assert (status, size) == ("failed", copy.stat().st_size)
    assert dump(url) == before  # the broken copy loaded nothing; the earlier rows stay
    copy.write_bytes(good.read_bytes())
    assert load(url, [copy]).loaded == 1
    assert query(url, f"SELECT status FROM {tables.LEDGER_TABLE}") == [("loaded",)]
    assert dump(url) == before


def test_session_whose_start_time_moved_still_replaces_the_stored_version(url, empty, tmp_path):
    # The second version starts after everything stored (past the ledger's horizon), so the
    # loader first assumes it is new; the duplicate it then meets sends it back to check all.
    first = write_gz(
        tmp_path / name(0),
        [
            {
                "session_id": "s1",
                "start_time": 100,
                "end_time": 200,
                "cart_lines": [{"product_id": "old"}],
            }
        ],
    )
    second = write_gz(
        tmp_path / name(15),
        [
            {
                "session_id": "s1",
                "start_time": 300,
                "end_time": 400,
                "cart_lines": [{"product_id": "new"}],
            },
            {"session_id": "s2", "start_time": 500, "end_time": 600},
        ],
    )
    summary = load(url, [first, second])
    assert summary.failed == 0
    assert query(
        url, "SELECT session_id, start_time, end_time FROM session_sessions ORDER BY 1"
    ) == [("s1", 300, 400), ("s2", 500, 600)]
    assert query(url, "SELECT product_id FROM session_cart_lines") == [("new",)]


def test_session_ids_alike_but_for_their_last_character_stay_apart(url, empty, tmp_path):
    # Ids that share all but their last character (and one that is their common prefix) are
    # still three sessions, and a newer version replaces only its own.
    same = "x" * (tables.SESSION_ID.length - 1)
    first = write_gz(
        tmp_path / name(0),
        [
            {"session_id": same + "a", "end_time": 1, "cart_lines": [{"product_id": "a1"}]},
            {"session_id": same + "b", "end_time": 1, "cart_lines": [{"product_id": "b1"}]},
            {"session_id": same, "end_time": 1},
        ],
    )
    second = write_gz(
        tmp_path / name(15),
        [{"session_id": same + "b", "end_time": 2, "cart_lines": [{"product_id": "b2"}]}],
    )
    assert load(url, [first, second]).replaced == 1
    assert query(
        url,
        "SELECT s.session_id, s.end_time, c.product_id FROM session_sessions s"
        " LEFT JOIN session_cart_lines c ON c.session_id = s.session_id ORDER BY 1",
    ) == [(same, 1, None), (same + "a", 1, "a1"), (same + "b", 2, "b2")]


def test_sessions_stored_outside_the_ledger_are_still_found(url, empty, tmp_path):
    # Two files whose ledger rows are gone (sessions loaded by other means), then all four:
    # the same warehouse as session-stream alone.
    good = sample.write_drop(tmp_path, DAY, sessions=300, files=4, hours=1, seed=5)
    load(url, good[:2])
    query(url, f"DELETE FROM {tables.LEDGER_TABLE}")
    assert query(url, f"SELECT COUNT(*) FROM {tables.LEDGER_TABLE}") == [(0,)]
    assert load(url, good).failed == 0
    mixed = dump(url, with_source=False)
    reset(url)
    load(url, good)
    assert dump(url, with_source=False) == mixed


def test_big_files_use_innodb_temp_tables(url, empty, tmp_path, monkeypatch):
    from session_stream.warehouse import merge

    monkeypatch.setattr(merge, "MEMORY_ROW_BYTES", 2**40)
    f1 = write_gz(tmp_path / name(0), [{"session_id": "s1", "end_time": 1, "offers": {"1": 1}}])
    f2 = write_gz(tmp_path / name(15), [{"session_id": "s1", "end_time": 2, "offers": {"2": 2}}])
    load(url, [f1, f2])
    assert query(url, "SELECT offer_id FROM session_offers") == [("2",)]
