"""What the CLI's pipeline survives (issue 10, finding 10): a connection the server drops between
files, a split worker that dies, and `kill -9` of the load itself."""

from __future__ import annotations

import time
from datetime import date

import pytest
from warehouse import query

from session_stream import cli, db, schema, tables
from session_stream.load import Loader
from session_stream.pipeline import load_files
from session_stream.sample import truncate_file, write_drop

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)


@pytest.fixture
def url(fresh_db_url):
    conn = db.connect(fresh_db_url)
    schema.init_db(conn)
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

    monkeypatch.setattr(Loader, "load", killed_first(original_load))
    monkeypatch.setattr(Loader, "record_failure", killed_first(original_failure))
    status = cli.main(["load", "--db", url, "--jobs", "0", str(tmp_path / "drop")])
    out = capsys.readouterr()
    assert status == 1, out  # one file failed, the others loaded
    assert "Traceback" not in out.out + out.err
    assert "2 loaded, 0 skipped, 1 failed" in out.out
    assert ledger(url)[paths[1].name][0] == "failed"
