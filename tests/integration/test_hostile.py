"""Hostile files and hung servers (issue 20), each case as a hostile data engineer ran it, on a
real MariaDB: every line and every listed entry accounted for, memory bounded, no silent wait,
one line of error where the README promises one."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import orjson
import pytest
from drop_files import write_gz
from warehouse import losing_the_first_commit_answer, query

from session_stream import tables
from session_stream.errors import ConfigError
from session_stream.warehouse import db

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "session_stream.runs.cli"]
DAY = "2026/11/02"


def name(minute: int, number: int = 1) -> str:
    return f"20261102T00{minute:02d}00.000Z_PT15M-{number}.json.gz"


def session(sid: str, end: int = 1793500000000, **more) -> dict:
    return {"session_id": sid, "end_time": end, **more}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=600, env=env, cwd=REPO
    )


# ---------------------------------------------------------------- 10. a malformed database URL


@pytest.mark.parametrize(
    "url", ["mysql://u:pw@[::1/db", "mysql://u:p[w@host/db", "mysql://u:pw@host:99999/db"]
)
def test_a_malformed_database_url_is_one_line_and_exit_2(url, tmp_path):
    result = cli("load", str(tmp_path), "--db", url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "database URL" in errors[0], result.stderr
    assert "pw" not in result.stderr.replace("password", "")


def test_a_malformed_drop_url_is_a_config_error():
    from session_stream.drop.base import DropUrl

    with pytest.raises(ConfigError, match="drop URL cannot be read"):
        DropUrl.parse("sftp://u:pw@[::1/drop")


README_KEYS_QUERY = re.compile(r"```sql\n(-- Keys Monetate sent[^`]*?)```", re.S)


def test_the_readme_unknown_keys_query_reads_keys_holding_quotes_and_backslashes(url):
    counts = {'session.say "hi"': 3, "session.back\\slash": 2, "session.plain": 1}
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute(
        f"INSERT INTO `{tables.LEDGER_TABLE}` (file_name, size, window_start, status,"
        f" `{tables.UNKNOWN_KEYS_COLUMN}`) VALUES (%s, 1, '2026-11-02 00:00:00', 'loaded', %s)",
        ("quoted-keys.json.gz", orjson.dumps(counts).decode()),
    )
    conn.close()
    (sql,) = README_KEYS_QUERY.findall((REPO / "docs" / "operating.md").read_text())
    rows = query(url, sql)
    found = {path: int(objects) for kind, path, objects, *_ in rows if kind == "unknown"}
    assert found == counts


# ---------------------------------------------------------------- helpers for the loads


@pytest.fixture
def empty(url):
    from warehouse import reset

    reset(url)
    return url


def load(url, paths, **kw):
    from session_stream.runs.pipeline import load_files
    from session_stream.warehouse.load import Loader

    loader = Loader(lambda: db.connect(url), **kw.pop("loader", {}))
    try:
        return load_files([Path(p) for p in paths], loader, **kw)
    finally:
        loader.close()


def ledger(url: str, name: str) -> dict:
    import MySQLdb.cursors

    conn = db.connect(url)
    cur = conn.cursor(MySQLdb.cursors.DictCursor)
    cur.execute(f"SELECT * FROM `{tables.LEDGER_TABLE}` WHERE file_name = %s", (name,))
    row = cur.fetchone()
    conn.close()
    return row


def session_ids(url: str) -> set[str]:
    return {sid for (sid,) in query(url, "SELECT session_id FROM session_sessions")}


def good(n: int, prefix: str = "s") -> list[dict]:
    return [session(f"{prefix}{i}", city="Paris") for i in range(n)]


PEAK = (
    "import resource, subprocess, sys;"
    "code = subprocess.run(sys.argv[1:]).returncode;"
    "print(f'peak_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr);"
    "sys.exit(code)"
)


def cli_load(url: str, *paths, extra=()) -> tuple[subprocess.CompletedProcess, int]:
    """`session-stream load` in a process of its own (one, --jobs 0): its result, and its peak
    memory in KB (the resident set size at its highest, from the kernel)."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK, *CLI, "load", "--jobs", "0", *extra, "--db", url,
         *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )  # fmt: skip
    *stderr, peak = result.stderr.rstrip("\n").split("\n")
    result.stderr = "\n".join(stderr)
    return result, int(peak.removeprefix("peak_kb="))


# ---------------------------------------------------------------- 1. keys without bound


def test_a_line_of_900000_unknown_keys_is_rejected_and_its_file_loads(empty, tmp_path):
    """The issue's file: good sessions around a line with 900,000 keys the spec does not know.
    Its ledger row (the keys' counts) outgrew the server's packet and failed the file on every
    run; now the line is a reject and the rest loads, with a small ledger row."""
    many = session("many-keys")
    many.update({f"k{i}": 1 for i in range(900_000)})
    path = write_gz(tmp_path / DAY / name(0), [*good(50), many, *good(50, "t")])
    summary = load(empty, [path], workers=0)
    assert (summary.loaded, summary.failed, summary.rejects) == (1, 0, 1), summary.failures
    assert len(session_ids(empty)) == 100 and "many-keys" not in session_ids(empty)
    row = ledger(empty, path.name)
    assert row["lines_read"] == 101 and row["sessions"] == 100 and row["rejects"] == 1
    ((reason, length),) = query(empty, "SELECT reason, raw_length FROM session_stream_rejects")
    assert "longer than the 4 MiB a line may have" in reason and length > 10_000_000


def test_distinct_unknown_keys_per_file_and_per_line_are_bounded(empty, tmp_path):
    from session_stream.split.key_audit import UNKNOWN_KEYS_PER_LINE
    from session_stream.split.keycounts import KEY_PATHS_PER_FILE, OTHER_PATHS

    # 3,000 lines with a key of their own each, one with a key of 100 kB, one with 2,000 keys.
    lines = [session(f"s{i}", **{f"new_field_{i}": 1}) for i in range(3000)]
    lines.append(session("long-key", **{"k" * 100_000: 1}))
    lines.append(session("crowded", **{f"x{i}": 1 for i in range(2000)}))
    path = write_gz(tmp_path / DAY / name(0), lines)
    summary = load(empty, [path], workers=0)
    assert (summary.loaded, summary.sessions, summary.rejects) == (1, 3001, 1)
    ((reason,),) = query(empty, "SELECT reason FROM session_stream_rejects")
    assert reason == (
        f"carries 2,000 keys the spec does not know, more than the"
        f" {UNKNOWN_KEYS_PER_LINE:,} a line may carry"
    )
    counts = orjson.loads(ledger(empty, path.name)[tables.UNKNOWN_KEYS_COLUMN])
    assert len(counts) == KEY_PATHS_PER_FILE + 1 and sum(counts.values()) == 3001
    assert counts[OTHER_PATHS] == 3001 - KEY_PATHS_PER_FILE
    assert max(map(len, counts)) <= 120  # the 100 kB key is counted under its head
    assert len(ledger(empty, path.name)[tables.UNKNOWN_KEYS_COLUMN]) < 64 << 10


# ---------------------------------------------------------------- 2. a line without bound


def test_a_419_mb_line_in_a_408_kb_gzip_loads_the_rest_in_bounded_memory(empty, tmp_path):
    """The issue's file. It peaked at 947 MB and stored all 419 MB in the rejects table: now the
    line is streamed to the rejects a MiB at a time, its first MiB kept with its whole length
    and SHA-256, and the load stays far below 300 MB."""
    import hashlib

    path = tmp_path / DAY / name(0)
    path.parent.mkdir(parents=True)
    digest = hashlib.sha256(b'{"session_id":"huge","city":"')
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(orjson.dumps(session("before")) + b"\n")
        f.write(b'{"session_id":"huge","city":"')
        chunk = b"a" * (1 << 20)
        for _ in range(400):
            f.write(chunk)
            digest.update(chunk)
        f.write(b'"}\n')
        digest.update(b'"}')
        f.write(orjson.dumps(session("after")) + b"\n")
    assert 400_000 < path.stat().st_size < 420_000
    result, peak_kb = cli_load(empty, path)
    assert result.returncode == 0, result.stderr
    assert peak_kb < 300_000, f"peak {peak_kb:,} KB"
    assert session_ids(empty) == {"before", "after"}
    ((length, kept, sha, stored, reason),) = query(
        empty,
        "SELECT raw_length, raw_kept, raw_sha256, LENGTH(raw_line), reason"
        " FROM session_stream_rejects",
    )
    assert (length, kept, stored) == (419_430_431, 1 << 20, 1 << 20)
    assert sha == digest.hexdigest()
    assert "longer than the 4 MiB a line may have" in reason and "only its first" in reason
    assert query(empty, "SELECT COUNT(*) FROM session_stream_reject_parts") == [(0,)]
    reject = cli("reject", path.name, "2", "--db", empty, "-o", str(tmp_path / "line"))
    assert reject.returncode == 0, reject.stderr
    assert "too long to keep whole: wrote its first 1,048,576" in reject.stderr
    assert (tmp_path / "line").read_bytes().startswith(b'{"session_id":"huge","city":"aaa')


# ---------------------------------------------------------------- 4. a key written twice


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (b'{"session_id":"first-id","session_id":"second-id","end_time":1}', "session"),
        # whitespace before the colon: JSON allows it, and the check must not be fooled
        (b'{"session_id":"first-id","session_id" :"second-id","end_time":1}', "session"),
        (b'{"session_id":"first-id","session_id"\t:"second-id","end_time":1}', "session"),
        (
            b'{"session_id":"first-id","cart_lines":[{"product_id":"p","sku":"a","sku":"b",'
            b'"quantity":1,"time":1793500000000}]}',
            "cart_lines[0]",
        ),
        (b'{"session_id":"first-id","offers":{"7":1793500000000,"7":1793500000001}}', "offers"),
    ],
)
def test_a_line_that_writes_a_key_twice_is_rejected_naming_it(empty, tmp_path, line, where):
    path = write_gz(tmp_path / DAY / name(0), [*good(3), line, *good(3, "t")])
    summary = load(empty, [path], workers=0)
    assert (summary.loaded, summary.sessions, summary.rejects) == (1, 6, 1)
    assert not {"first-id", "second-id"} & session_ids(empty)
    ((reason, raw),) = query(empty, "SELECT reason, raw_line FROM session_stream_rejects")
    assert reason.startswith(f"{where}: the key ") and "appears more than once" in reason
    assert bytes(raw) == line


def test_quotes_and_spaces_inside_values_are_not_taken_for_repeated_keys(empty, tmp_path):
    values = ['say \\":hi', 'a " : b', "x :y", "t\tab", "😀"]
    lines = [session(f"v{i}", city=v, region=v) for i, v in enumerate(values)]
    path = write_gz(tmp_path / DAY / name(0), lines)
    summary = load(empty, [path], workers=0)
    assert (summary.sessions, summary.rejects) == (5, 0)


# ---------------------------------------------------------------- 5. entries that vanished


def test_every_entry_of_a_folder_ends_somewhere_the_summary_counts(empty, tmp_path):
    drop = tmp_path / "drop"
    day = drop / DAY
    write_gz(day / name(0), good(3))
    write_gz(day / name(15, 2), [*good(2, "b"), b"", b"   ", b"\t"])
    write_gz(day / 'export (copy) "q".json.gz', good(2, "c"))
    (day / "README.txt").write_text("notes")
    (day / name(30, 3)).mkdir()  # a folder named like a session file
    result = cli("load", str(drop), "--jobs", "0", "--db", empty)
    assert result.returncode == 1, result.stderr  # the folder is refused: a failure
    assert (
        "files: 5 listed = 2 loaded + 0 skipped (already loaded) + 1 failed + 2 ignored"
        in result.stdout
    ), result.stdout
    assert (
        "lines of the files loaded: 8 = 5 sessions + 0 older versions later in the same file"
        " + 0 rejects + 3 blank" in result.stdout
    ), result.stdout
    statuses = dict(query(empty, f"SELECT file_name, status FROM `{tables.LEDGER_TABLE}`"))
    assert statuses == {
        name(0): "loaded",
        name(15, 2): "loaded",
        'export (copy) "q".json.gz': "ignored",
        "README.txt": "ignored",
        name(30, 3): "failed",
    }
    row = ledger(empty, name(15, 2))
    assert (row["lines_read"], row["sessions"], row["blank_lines"]) == (5, 2, 3)
    assert "refused: a folder" in ledger(empty, name(30, 3))["error"]
    # Named on the command line, a file of any name loads.
    named = cli("load", str(day / 'export (copy) "q".json.gz'), "--db", empty)
    assert named.returncode == 0 and "1 loaded" in named.stdout, named.stdout


def test_a_file_whose_name_is_not_utf8_is_ignored_and_the_run_goes_on(empty, tmp_path):
    """A name of bytes that are not UTF-8 (a drop written by another system's locale) cannot be
    kept in the ledger or the staged files: it is ignored with a reason and shown with \\x
    escapes, in a folder or named on the command line; the rest loads, no traceback."""
    day = tmp_path / "drop" / DAY
    write_gz(day / name(0), good(3))
    # b"...-2\xff.json.gz" on disk: os.fsdecode gives a surrogate escape for the byte 0xff
    odd = day / os.fsdecode(name(15, 2).replace("-2.", "-2\xff.").encode("latin-1"))
    write_gz(odd, good(2, "b"))
    shown = name(15, 2).replace("-2.", "-2\\xff.")
    result = cli("load", str(tmp_path / "drop"), "--jobs", "0", "--db", empty)
    assert result.returncode == 0, result.stderr
    assert (
        "2 listed = 1 loaded + 0 skipped (already loaded) + 0 failed + 1 ignored" in result.stdout
    )
    assert "Traceback" not in result.stderr and f"ignored {shown}: its name is not UTF-8" in (
        result.stdout + result.stderr
    ), result.stderr
    statuses = dict(query(empty, f"SELECT file_name, status FROM `{tables.LEDGER_TABLE}`"))
    assert statuses == {name(0): "loaded", shown: "ignored"}
    named = cli("load", str(odd), "--db", empty)
    assert named.returncode == 0 and "Traceback" not in named.stderr, named.stderr
    assert "0 loaded" in named.stdout and "1 ignored" in named.stdout, named.stdout


# ---------------------------------------------------------------- 6. a corrected file


def test_a_file_delivered_again_with_other_content_of_the_same_size_loads_again(empty, tmp_path):
    path = tmp_path / DAY / name(0)
    path.parent.mkdir(parents=True)

    def deliver(city: str) -> None:
        # Stored blocks (level 0): the size depends on the length of the content only.
        with gzip.open(path, "wb", compresslevel=0) as f:
            f.write(orjson.dumps(session("s1", city=city)) + b"\n")

    deliver("Paris")
    first = cli("load", str(path), "--db", empty)
    assert first.returncode == 0, first.stderr
    sha_before, size = ledger(empty, path.name)["sha256"], path.stat().st_size
    deliver("Lyons")
    assert path.stat().st_size == size
    again = cli("load", str(path), "--db", empty)
    assert again.returncode == 0, again.stderr
    assert "1 loaded" in again.stdout and "replaced " in again.stdout, again.stdout
    assert query(empty, "SELECT city FROM session_sessions") == [("Lyons",)]
    row = ledger(empty, path.name)
    assert row["replaced_sha256"] == sha_before and row["sha256"] != sha_before
    assert row["replaced_at"] is not None
    same = cli("load", str(path), "--db", empty)
    assert "1 skipped" in same.stdout, same.stdout


# ---------------------------------------------------------------- 3. waits without a word


@pytest.fixture
def quick_waits(monkeypatch):
    """Minutes made seconds: the log line every second, table locks waited for 3 s."""
    from session_stream.warehouse import waits

    monkeypatch.setattr(waits, "INTERVAL", 1.0)
    monkeypatch.setattr(db, "LOCK_WAIT_TIMEOUT", 3)


def test_a_load_waiting_for_the_load_lock_says_who_holds_it_and_gives_up(
    empty, tmp_path, quick_waits, caplog
):
    from session_stream.warehouse import schema

    path = write_gz(tmp_path / DAY / name(0), good(3))
    holder = db.connect(empty)
    holder_id = holder.thread_id()
    cur = holder.cursor()
    cur.execute("SELECT GET_LOCK(%s, 0)", (schema.load_lock_name(empty.rsplit("/", 1)[1]),))
    try:
        with caplog.at_level("WARNING"):
            summary = load(empty, [path], workers=0, loader={"lock_timeout": 3})
    finally:
        holder.close()
    (error,) = [e for _, e in summary.failures]
    who = f"held by connection {holder_id} (root@"
    assert "waited 3 s for the lock" in error and who in error, error
    assert "the next run retries it" in error
    waits_logged = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert waits_logged and all(who in m for m in waits_logged), waits_logged
    assert ledger(empty, path.name)["status"] == "failed"
    assert load(empty, [path], workers=0).loaded == 1  # the next run


def test_a_table_lock_held_elsewhere_is_logged_bounded_and_named(
    empty, tmp_path, quick_waits, caplog
):
    """LOCK TABLES session_sessions WRITE in another client: the load waited in silence for as
    long as it was held (a day by default), holding the load lock. Now it says each minute what
    it waits for, gives up at lock_wait_timeout naming whom to ask, and the next run loads."""
    path = write_gz(tmp_path / DAY / name(0), good(3))
    holder = db.connect(empty)
    holder_id = holder.thread_id()
    holder.cursor().execute("LOCK TABLES session_sessions WRITE")
    started = time.monotonic()
    try:
        with caplog.at_level("WARNING"):
            summary = load(empty, [path], workers=0, loader={"retry_seconds": 1})
    finally:
        holder.close()
    assert time.monotonic() - started < 60
    (error,) = [e for _, e in summary.failures]
    assert "MySQL error 1205" in error and "a table lock" in error, error
    assert f"connection {holder_id} (root@" in error, error  # whom to ask
    assert "the next run retries it" in error
    logged = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert any("Waiting for table metadata lock" in m for m in logged), logged
    assert load(empty, [path], workers=0).loaded == 1


def test_reads_and_connections_have_bounds(monkeypatch, fresh_db_url):
    import socket

    import MySQLdb

    monkeypatch.setattr(db, "READ_TIMEOUT", 1)
    conn = db.connect(fresh_db_url)
    started = time.monotonic()
    with pytest.raises(MySQLdb.OperationalError) as lost:
        conn.cursor().execute("SELECT SLEEP(5)")
    assert lost.value.args[0] == 2013 and time.monotonic() - started < 3
    conn.close()
    # A server that takes the connection and never says a word.
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(1)
    monkeypatch.setattr(db, "CONNECT_TIMEOUT", 1)
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError) as refused:
            db.connect(f"mysql://u:pw@127.0.0.1:{mute.getsockname()[1]}/x")
    finally:
        mute.close()
    assert time.monotonic() - started < 5
    assert "\n" not in str(refused.value) and "pw" not in str(refused.value)


# ---------------------------------------------------------------- 7. a killed split worker


def test_a_killed_split_worker_fails_only_its_own_file(empty, tmp_path, monkeypatch):
    """Two workers split two files; one is killed. The executor then stops the other too, and
    its file had been failed, saying its process died. Now only the killed one's file fails,
    saying how it died; the other is split again and loads."""
    import psutil

    from session_stream.drop.sample import write_drop
    from session_stream.runs import pipeline

    # Two files split at once from the start, as when the split is the slower half.
    monkeypatch.setattr(pipeline, "FIRST_AT_ONCE", 2)

    paths = write_drop(tmp_path / "drop", date(2026, 11, 2), sessions=30_000, files=4, seed=3)
    work = tmp_path / "work"
    work.mkdir()
    killed = {}

    def kill_one_worker():
        deadline = time.time() + 120
        while time.time() < deadline:
            # (the first file is split in this process: its marker holds this process's pid)
            markers = sorted(work.glob("*.started"))
            pids = {m: m.read_text() for m in markers}
            pids = {m: p for m, p in pids.items() if p.isdigit() and int(p) != os.getpid()}
            if len(pids) >= 2:
                victim, pid = next(iter(pids.items()))
                psutil.Process(int(pid)).kill()
                killed[int(victim.name.split(".")[0])] = int(pid)
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        summary = load(empty, paths, workers=2, work_dir=work)
    finally:
        killer.join()
    assert killed, "two workers were never seen splitting at once"
    ((index, pid),) = killed.items()
    victim = paths[index]
    assert [name for name, _ in summary.failures] == [victim.name], summary.failures
    assert (summary.loaded, summary.failed) == (3, 1)
    error = ledger(empty, victim.name)["error"]
    assert f"split worker process (pid {pid}) was killed by SIGKILL" in error


# ---------------------------------------------------------------- 9. reconnects, and counts


def test_a_connection_killed_right_after_it_was_reopened_is_retried(empty, tmp_path):
    from session_stream.runs.pipeline import load_files
    from session_stream.warehouse.load import Loader

    first, second = (write_gz(tmp_path / DAY / name(m, m), good(3, f"f{m}")) for m in (0, 15))
    admin = db.connect(empty)
    made = []

    def connect():
        conn = db.connect(empty)
        made.append(conn.thread_id())
        if len(made) == 2:  # the reconnect after the idle one was killed: killed at once too
            admin.cursor().execute(f"KILL CONNECTION {conn.thread_id()}")
        return conn

    loader = Loader(connect)

    def between(path, outcome):
        if path == first:
            admin.cursor().execute(f"KILL CONNECTION {loader.conn.thread_id()}")

    try:
        summary = load_files([first, second], loader, workers=0, on_file=between)
    finally:
        loader.close()
        admin.close()
    assert (summary.loaded, summary.failed) == (2, 0), summary.failures
    assert len(made) >= 3


def test_a_commit_whose_answer_was_lost_counts_as_loaded_by_this_run(empty, tmp_path):
    """The server commits, the connection drops before the client hears it; the retry finds the
    file loaded. It is this run's load (the ledger row carries its token), not a skip."""
    from session_stream.runs.pipeline import load_files
    from session_stream.warehouse.load import Loader

    path = write_gz(tmp_path / DAY / name(0), good(5))
    lost = []

    connect = losing_the_first_commit_answer(empty, lost)

    loader = Loader(connect)
    try:
        summary = load_files([path], loader, workers=0)
    finally:
        loader.close()
    assert lost
    assert (summary.loaded, summary.skipped, summary.sessions) == (1, 0, 5)
    assert ledger(empty, path.name)["attempts"] == 1


# ---------------------------------------------------------------- the ledger row, bounded


def test_the_ledger_upsert_is_built_from_its_columns_without_values():
    """MySQL 8.4 deprecates VALUES() in ON DUPLICATE KEY UPDATE and MariaDB lacks MySQL's
    `AS new` row alias: the upsert inserts from a derived table `new`, which both accept."""
    from session_stream.warehouse import ledger

    for columns in (ledger.LOADED, ledger.FAILED, ledger.IGNORED):
        sql = ledger.upsert_sql(columns)
        assert "VALUES(" not in sql.upper().replace(" ", "")
        assert sql.count("%s") == len(columns)
        assert all(f"`{c.name}`" in sql for c in columns)


def test_every_field_input_controls_is_bounded_in_the_ledger(empty):
    from session_stream.warehouse import ledger as spec
    from session_stream.warehouse.load import Loader

    loader = Loader(lambda: db.connect(empty))
    try:
        loader.record_failure(name(0), 1, None, "x" * 10_000_000)
        loader.record_ignored("k" * 1000 + ".json.gz", 5, "its name is too long")
    finally:
        loader.close()
    assert len(ledger(empty, name(0))["error"]) <= 4000
    ((kept, error),) = query(
        empty, f"SELECT file_name, error FROM `{tables.LEDGER_TABLE}` WHERE status = 'ignored'"
    )
    assert len(kept) == 255 and kept.startswith("kkk") and "too long" in error
    counts = {f"session.{'k' * 90}{i}": i for i in range(5000)}
    text = spec.counts_json(counts)
    assert len(text) <= spec.COUNTS_BYTES and sum(orjson.loads(text).values()) == sum(
        counts.values()
    )


# ---------------------------------------------------------------- the same, through the DAG


def test_the_dag_records_entries_it_does_not_read_and_reloads_a_corrected_file(empty, tmp_path):
    """The DAG's tasks (no Airflow): a stray file in a day folder is in the ledger and the run's
    report as ignored, once; a file delivered again with other content (same name and size)
    is fetched again by the store's version of it (mtime) and loaded, replacing the first."""
    import os
    from datetime import UTC, datetime, timedelta

    from session_stream.drop.opener import open_drop
    from session_stream.runs import dag_tasks
    from session_stream.runs.report import format_report, run_report
    from session_stream.runs.staging import open_staging
    from session_stream.warehouse.load import Loader

    drop_root = tmp_path / "drop"
    path = drop_root / DAY / name(0)
    path.parent.mkdir(parents=True)

    def deliver(city: str, mtime: int) -> None:
        with gzip.open(path, "wb", compresslevel=0) as f:
            f.write(orjson.dumps(session("s1", city=city)) + b"\n")
        os.utime(path, (mtime, mtime))

    deliver("Paris", 1_700_000_000)
    (path.parent / "notes.txt").write_text("not sessions")
    start = datetime(2026, 11, 2, tzinfo=UTC)
    window = dag_tasks.Window(start, start + timedelta(hours=1))
    loader = Loader(lambda: db.connect(empty))

    def run(prefix):
        with open_drop(str(drop_root)) as drop:
            staging = open_staging(str(tmp_path / "staging"))
            fetched = dag_tasks.fetch(
                drop,
                loader,
                staging,
                window,
                dag_tasks.FetchSettings(prefix=dag_tasks.staging_prefix(prefix), settle_seconds=0),
            )
            for batch in fetched["batches"]:
                dag_tasks.split_and_load(batch, staging, loader, workers=0)
            return fetched

    try:
        first = run("first")
        assert first["ignored"] == {"notes.txt": first["ignored"]["notes.txt"]}
        assert "not a Monetate Session Stream file name" in first["ignored"]["notes.txt"]
        report = format_report(run_report(first, loader))
        assert ledger(empty, "notes.txt")["status"] == "ignored"
        size = path.stat().st_size
        deliver("Lyons", 1_700_000_600)
        assert path.stat().st_size == size
        second = run("second")
        assert second["ignored"] == {}  # known already: not reported again
        assert second["fetched"] == [path.name], second
        assert query(empty, "SELECT city FROM session_sessions") == [("Lyons",)]
        row = ledger(empty, path.name)
        assert row["replaced_sha256"] and row["source_version"] == f"mtime:{1_700_000_600 * 10**9}"
        third = run("third")
        assert third["fetched"] == [] and third["already_loaded"] == 1
    finally:
        loader.close()
    assert "ignored, not Monetate files (new)" in report and "notes.txt" in report
