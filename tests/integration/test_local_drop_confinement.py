"""A local drop reads only regular files inside its folder: a symlink out of it, a FIFO or a device
is refused, reported by the run and recorded in the ledger, and its content reaches no table.
(The same through `airflow dags test`: tests/dags/test_security_dag.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import warehouse

from session_stream import tables
from session_stream.drop.base import RefusedFile
from session_stream.drop.local import LocalDrop, scan_tree
from session_stream.drop.sample import write_drop
from session_stream.runs import dag_tasks
from session_stream.runs.staging import open_staging
from session_stream.warehouse import db, migrations
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)
HOUR0 = dag_tasks.Window(datetime(2026, 11, 1, 0, tzinfo=UTC), datetime(2026, 11, 1, 1, tzinfo=UTC))
SECRET_LINE = "root:$6$not-a-real-hash:19000:0:99999:7:::"
LINK = "20261101T003000.000Z_PT15M-4242.json.gz"
FIFO = "20261101T004500.000Z_PT15M-4343.json.gz"
LINKED_DAY = "20261102T001500.000Z_PT15M-4444.json.gz"


@pytest.fixture
def drop(tmp_path):
    """A drop hour of good files, a symlink to a secret outside the drop, and a FIFO."""
    root = tmp_path / "drop"
    good = write_drop(root, DAY, sessions=40, files=2, hours=1, seed=5)
    secret = tmp_path / "shadow"
    secret.write_text(SECRET_LINE + "\n")
    day = root / "2026" / "11" / "01"
    (day / LINK).symlink_to(secret)
    os.mkfifo(day / FIFO)
    return root, good, secret


def test_listing_marks_links_out_and_fifos_refused_and_keeps_regular_files(drop):
    root, good, _ = drop
    files = {f.name: f for f in LocalDrop(root).list_files(HOUR0.start, HOUR0.end)}
    assert {n for n, f in files.items() if not f.refused} == {p.name for p in good}
    assert "leads out of the drop folder" in files[LINK].refused
    assert "FIFO" in files[FIFO].refused


def test_a_link_inside_the_drop_is_read_but_a_linked_day_folder_outside_it_is_not(tmp_path, drop):
    root, good, _ = drop
    day = root / "2026" / "11" / "01"
    (day / "20261101T005900.000Z_PT15M-1.json.gz").symlink_to(good[0])
    elsewhere = tmp_path / "elsewhere" / "01"
    elsewhere.mkdir(parents=True)
    (elsewhere / LINKED_DAY).write_bytes(good[0].read_bytes())
    (root / "2026" / "11" / "02").symlink_to(elsewhere)
    location = LocalDrop(root)
    inside = location.list_files(HOUR0.start, HOUR0.end)
    link = next(f for f in inside if f.name.endswith("-1.json.gz"))
    assert link.refused is None
    assert location.download(link, tmp_path / "x.gz").read_bytes() == good[0].read_bytes()
    outside = location.list_files(
        datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 2, 1, tzinfo=UTC)
    )
    assert [f.refused for f in outside] == [
        "a symlink that leads out of the drop folder (through a linked folder)"
    ]


def test_a_file_swapped_for_a_link_after_listing_is_not_read(drop, tmp_path):
    root, good, secret = drop
    location = LocalDrop(root)
    listed = next(f for f in location.list_files(HOUR0.start, HOUR0.end) if f.name == good[0].name)
    good[0].unlink()
    good[0].symlink_to(secret)
    with pytest.raises(RefusedFile, match="leads out"):
        location.download(listed, tmp_path / "copy.gz")
    assert not (tmp_path / "copy.gz").exists()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused(tmp_path, device):
    root = tmp_path / "drop"
    day = root / "2026" / "11" / "01"
    day.mkdir(parents=True)
    (day / LINK).symlink_to(device)
    (f,) = LocalDrop(root).list_files(HOUR0.start, HOUR0.end)
    assert f.refused  # leads out of the folder, and is a character device besides


def test_the_dag_tasks_record_refused_files_failed_and_the_check_names_them(drop, fresh_db_url):
    root, good, _ = drop
    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    conn.close()
    loader = Loader(lambda: db.connect(fresh_db_url))
    staging = open_staging(str(root.parent / "staging"))
    prefix = dag_tasks.staging_prefix("manual__2026-11-01T01:00:00+00:00")
    try:
        fetched = dag_tasks.fetch(
            LocalDrop(root),
            loader,
            staging,
            HOUR0,
            dag_tasks.FetchSettings(prefix=prefix, settle_seconds=0),
        )
        assert sorted(fetched["refused"]) == sorted([LINK, FIFO])
        assert fetched["fetched"] == [p.name for p in good]
        for batch in fetched["batches"]:
            dag_tasks.split_and_load(batch, staging, loader, workers=0)
        with pytest.raises(dag_tasks.FilesFailedError) as failed:
            dag_tasks.check(fetched, loader, staging=staging, prefix=prefix)
        assert sorted(failed.value.files) == sorted([LINK, FIFO])
        assert "leads out of the drop folder" in str(failed.value)
    finally:
        loader.close()
    ledger = dict(
        warehouse.query(fresh_db_url, f"SELECT file_name, status FROM `{tables.LEDGER_TABLE}`")
    )
    assert ledger == {**{p.name: "loaded" for p in good}, LINK: "failed", FIFO: "failed"}
    (error,) = warehouse.query(
        fresh_db_url, f"SELECT error FROM `{tables.LEDGER_TABLE}` WHERE file_name = %s", (LINK,)
    )[0:1]
    assert error[0].startswith("refused: a symlink that leads out")
    assert_secret_nowhere(fresh_db_url)


def assert_secret_nowhere(url: str) -> None:
    rows = warehouse.query(url, f"SELECT raw_line FROM `{tables.REJECTS_TABLE}`")
    assert not any(b"not-a-real-hash" in bytes(r[0]) for r in rows)
    assert warehouse.query(
        url,
        f"SELECT COUNT(*) FROM `{tables.SESSIONS.name}` WHERE source_file IN (%s, %s)",
        (LINK, FIFO),
    ) == [(0,)]


def test_the_cli_reports_and_ledgers_refused_files_and_exits_1(drop, fresh_db_url):
    root, good, _ = drop
    scan = scan_tree(root)
    assert [p.name for p in scan.files] == sorted(p.name for p in good)
    assert sorted(p.name for p, _ in scan.refused) == sorted([LINK, FIFO])
    cli = [sys.executable, "-m", "session_stream.runs.cli"]
    subprocess.run([*cli, "init-db", "--db", fresh_db_url], check=True, capture_output=True)
    result = subprocess.run(
        [*cli, "load", "--db", fresh_db_url, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert f"failed {LINK}: refused: a symlink that leads out" in result.stdout
    assert "2 loaded" in result.stdout and "2 failed" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    statuses = dict(
        warehouse.query(fresh_db_url, f"SELECT file_name, status FROM `{tables.LEDGER_TABLE}`")
    )
    assert statuses[LINK] == statuses[FIFO] == "failed"
    assert_secret_nowhere(fresh_db_url)


def test_a_file_named_on_the_command_line_is_read_as_given(tmp_path):
    target = tmp_path / "x.json.gz"
    target.write_bytes(b"")
    link = tmp_path / LINK
    link.symlink_to(target)
    assert scan_tree(Path(link)).files == [link]
