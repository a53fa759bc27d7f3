"""What the CLI's pipeline survives (issue 10, finding 10): a connection the server drops between
files, a split worker that dies, and `kill -9` of the load itself."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import psutil
import pytest
from warehouse import query

from session_stream import tables
from session_stream.drop.sample import truncate_file, write_drop
from session_stream.runs import cli
from session_stream.runs.pipeline import load_files
from session_stream.runs.workers import reclaim_abandoned, scratch_folder
from session_stream.warehouse import db, migrations
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)
CLI = [sys.executable, "-m", "session_stream.runs.cli"]


@pytest.fixture
def url(fresh_db_url):
    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    conn.close()
    return fresh_db_url


def ledger(url: str) -> dict[str, tuple]:
    rows = query(url, f"SELECT file_name, status, error FROM `{tables.LEDGER_TABLE}`")
    return {name: (status, error) for name, status, error in rows}


def kill_connection(url: str, thread_id: int) -> None:
    """KILL CONNECTION from another session, and wait until the server has closed it."""
    admin = db.connect(url)
    cur = admin.cursor()
    cur.execute(f"KILL CONNECTION {int(thread_id)}")
    deadline = time.time() + 10
    while time.time() < deadline:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s", (thread_id,)
        )
        if cur.fetchone()[0] == 0:
            break
        time.sleep(0.02)
    admin.close()


# ---------------------------------------------------------------- which files are read twice


def test_only_a_file_the_ledger_has_at_its_size_is_hashed_before_its_split(
    url, tmp_path, monkeypatch
):
    """New files go straight to the split (which hashes what it reads); a file the ledger has
    loaded at the same size is hashed first, so the same content is skipped (other content of
    that size loads again: test_hostile.py)."""
    from session_stream.runs import pipeline

    paths = write_drop(tmp_path / "drop", DAY, sessions=300, files=3, seed=11)
    hashed = []
    file_sha256 = pipeline.file_sha256
    monkeypatch.setattr(pipeline, "file_sha256", lambda p: hashed.append(p.name) or file_sha256(p))
    loader = Loader(lambda: db.connect(url))
    try:
        assert load_files(paths, loader, workers=0).loaded == 3
        assert hashed == []
        again = load_files(paths, loader, workers=0)
        assert (again.loaded, again.skipped) == (0, 3)
        assert sorted(hashed) == sorted(p.name for p in paths)
    finally:
        loader.close()


# ---------------------------------------------------------------- a dropped connection


def test_a_connection_killed_between_files_is_reopened_before_the_ledger_is_written(url, tmp_path):
    good1, bad, good2 = write_drop(tmp_path / "drop", DAY, sessions=90, files=3, hours=1, seed=5)
    truncate_file(bad)
    loader = Loader(lambda: db.connect(url))
    thread_ids = []

    def between_files(path, outcome):
        # After each file the connection sits idle; the server kills it (as wait_timeout would).
        thread_ids.append(loader.conn.thread_id())
        kill_connection(url, thread_ids[-1])

    try:
        summary = load_files([good1, bad, good2], loader, workers=0, on_file=between_files)
    finally:
        loader.close()
    assert (summary.loaded, summary.failed) == (2, 1), summary.failures
    found = ledger(url)
    assert found[good1.name] == ("loaded", None) and found[good2.name] == ("loaded", None)
    # the failure was written on a new connection, with the file's own reason
    assert found[bad.name][0] == "failed" and "cannot be read" in found[bad.name][1]
    assert len(set(thread_ids)) == 3  # a new connection for each file after a kill


def test_a_connection_closed_by_wait_timeout_is_reopened(url, tmp_path):
    good1, bad, good2 = write_drop(tmp_path / "drop", DAY, sessions=60, files=3, hours=1, seed=7)
    truncate_file(bad)

    def connect_with_a_short_wait_timeout():
        conn = db.connect(url)
        conn.cursor().execute("SET SESSION wait_timeout = 1")
        return conn

    loader = Loader(connect_with_a_short_wait_timeout)
    try:
        summary = load_files(
            [good1, bad, good2], loader, workers=0, on_file=lambda *_: time.sleep(2.5)
        )
    finally:
        loader.close()
    assert (summary.loaded, summary.failed) == (2, 1), summary.failures
    assert ledger(url)[bad.name][0] == "failed"


def test_the_cli_reconnects_after_a_kill_without_a_traceback(url, tmp_path, monkeypatch, capsys):
    paths = write_drop(tmp_path / "drop", DAY, sessions=90, files=3, hours=1, seed=6)
    truncate_file(paths[1])
    original_load, original_failure = Loader.load, Loader.record_failure

    def killed_first(method):
        def wrapper(self, *args, **kwargs):
            if self._conn is not None:  # the connection of the previous file, idle since
                kill_connection(url, self._conn.thread_id())
            return method(self, *args, **kwargs)

        return wrapper

    # As in a fresh process: cli.main's logging setup writes to this test's stderr, not to a
    # stream an earlier in-process CLI call left behind.
    monkeypatch.setattr(logging.root, "handlers", [])
    monkeypatch.setattr(Loader, "load", killed_first(original_load))
    monkeypatch.setattr(Loader, "record_failure", killed_first(original_failure))
    status = cli.main(["load", "--db", url, "--jobs", "0", str(tmp_path / "drop")])
    out = capsys.readouterr()
    assert status == 1, out  # one file failed, the others loaded
    assert "Traceback" not in out.out + out.err
    assert "3 listed = 2 loaded + 0 skipped (already loaded) + 1 failed + 0 ignored" in out.out
    assert ledger(url)[paths[1].name][0] == "failed"


# ---------------------------------------------------------------- a split worker that dies


def test_a_killed_split_worker_fails_its_file_and_the_run_goes_on(url, tmp_path):
    paths = write_drop(tmp_path / "drop", DAY, sessions=24_000, files=6, hours=2, seed=8)
    work = tmp_path / "work"
    work.mkdir()
    victim = paths[2]  # split by a worker (the first file is split in this process)
    killed = []

    def kill_the_worker():
        deadline = time.time() + 60
        while time.time() < deadline and not (work / "000002").exists():
            time.sleep(0.002)
        for child in psutil.Process().children():
            if "spawn_main" in " ".join(child.cmdline()):
                child.kill()
                killed.append(child.pid)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    loader = Loader(lambda: db.connect(url))
    try:
        summary = load_files(paths, loader, workers=1, work_dir=work)
    finally:
        loader.close()
        killer.join()
    assert killed, "the worker was never seen splitting its file"
    assert [name for name, _ in summary.failures] == [victim.name]
    assert (summary.loaded, summary.failed) == (5, 1)  # the rest went on, in a new pool
    status, error = ledger(url)[victim.name]
    assert status == "failed"
    assert f"split worker process (pid {killed[0]}) was killed by SIGKILL" in error
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie"
    assert list(work.iterdir()) == []  # no split folder or marker left behind


def _most_splits_at_once(paths, work: Path, load_seconds: float) -> int:
    """Run the pipeline's split with loads of `load_seconds` a file; the most split workers
    seen splitting at the same time (their .started markers)."""
    from session_stream.runs.pipeline import _split_groups

    seen, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            pids = set()
            for marker in work.glob("*.started"):
                try:
                    pids.add(marker.read_text())
                except OSError:
                    continue
            pids.discard(str(os.getpid()))  # the first file, split in this process
            seen[0] = max(seen[0], len(pids - {""}))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for ((_, split),) in _split_groups(paths, work, workers=2, most=1):
            assert isinstance(split, Path)
            time.sleep(load_seconds)
    finally:
        done.set()
        watcher.join()
    return seen[0]


def test_one_file_is_split_at_a_time_until_a_load_waits_for_its_split(tmp_path):
    """On two cores beside MySQL, a second split worker only slows the server: while the split
    keeps ahead of the loads, one file is split at a time; once a load waits for its split,
    two are. (8,000 sessions a file: ~0.1 s of split in C, so that a load of no time waits.)"""
    paths = write_drop(tmp_path / "drop", DAY, sessions=48_000, files=6, hours=2, seed=4)
    (tmp_path / "slow").mkdir()
    (tmp_path / "fast").mkdir()
    assert _most_splits_at_once(paths, tmp_path / "slow", load_seconds=1.0) == 1
    assert _most_splits_at_once(paths, tmp_path / "fast", load_seconds=0.0) == 2


# ---------------------------------------------------------------- kill -9 of a CLI load


def alive(process: psutil.Process) -> bool:
    """Running, and not a zombie waiting for init to reap it (is_running sees pid reuse)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_a_cli_load_leaves_no_worker_and_its_temp_folder_is_reclaimed(url, tmp_path):
    drop = tmp_path / "drop"
    write_drop(drop, DAY, sessions=60_000, files=6, hours=2, seed=9)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err:
        proc = subprocess.Popen(
            [*CLI, "load", "-q", "--jobs", "1", "--db", url, str(drop)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.time() + 60
    # Files after the first are split by the worker: wait until it writes one.
    while time.time() < deadline and not list(tmp.glob("session-stream-*/00000[1-9]")):
        assert proc.poll() is None, f"the load ended first: {stderr.read_text()}"
        time.sleep(0.01)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("multiprocessing" in " ".join(c.cmdline()) for c in children), [
        c.cmdline() for c in children
    ]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    deadline = (
        time.time() + 15
    )  # a loaded machine: the kernel's SIGKILL is immediate, init's reaping is not
    while time.time() < deadline and any(alive(c) for c in children):
        time.sleep(0.05)
    assert [(c.pid, c.cmdline()) for c in children if alive(c)] == []
    abandoned = list(tmp.glob("session-stream-*"))
    assert len(abandoned) == 1, abandoned  # kill -9 gave the load no chance to remove it

    again = subprocess.run(
        [*CLI, "load", "-q", "--jobs", "1", "--db", url, str(drop)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert list(tmp.iterdir()) == []  # the abandoned folder was reclaimed, its own removed
    assert {s for s, _ in ledger(url).values()} == {"loaded"}, ledger(url)


def test_a_live_loads_scratch_folder_is_never_reclaimed(tmp_path):
    with scratch_folder(tmp_path) as mine:
        (mine / "split").mkdir()
        assert reclaim_abandoned(tmp_path) == []
        assert mine.is_dir()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- a daemonic process


def _load_in_daemon(url: str, paths: list[str], results) -> None:
    logging.basicConfig(level=logging.INFO)
    loader = Loader(lambda: db.connect(url))
    try:
        summary = load_files([Path(p) for p in paths], loader, workers=2)
        results.put((summary.loaded, summary.failed, summary.failures))
    except BaseException as exc:  # the test reads what went wrong
        results.put(("raised", repr(exc), None))
    finally:
        loader.close()


def test_a_daemonic_process_loads_with_the_split_in_itself(url, tmp_path):
    """Airflow's CeleryExecutor runs a task in a Celery prefork pool's process, which is daemonic
    and may not start processes: the load splits in itself instead of failing every file with
    'daemonic processes are not allowed to have children' (as the stack test found)."""
    import multiprocessing

    paths = write_drop(tmp_path / "drop", DAY, sessions=120, files=4, hours=1, seed=8)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    proc = ctx.Process(
        target=_load_in_daemon, args=(url, [str(p) for p in paths], results), daemon=True
    )
    proc.start()
    try:
        outcome = results.get(timeout=120)
    finally:
        proc.join(30)
    assert outcome == (4, 0, []), outcome
    assert query(url, "SELECT COUNT(*) FROM session_sessions") == [(120,)]
