"""`airflow dags test session_stream <date>` end to end: a generated drop (local, S3, SFTP), the real
MariaDB, and a local SMTP sink for the failure alert.

Each run is compared with the engine loading the same files straight into a reference database
(`db_url`): the DAG must end in the same warehouse as the CLI would.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
import warehouse
from airflow_harness import conn_env, mysql_conn_env, var_env

from session_stream import tables
from session_stream.drop.names import parse_name
from session_stream.drop.sample import truncate_file, write_drop
from session_stream.runs.pipeline import load_files
from session_stream.warehouse import db, migrations
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)
# dags test at 01:00 runs the interval [00:00, 01:00); with the 3-hour look-back it reaches 21:00
# the day before, where the drop has nothing.
FIRST_RUN = "2026-11-01T01:00:00+00:00"
OVERLAPPING_RUN = "2026-11-01T03:00:00+00:00"  # [02:00, 03:00) + look-back: hours 0, 1 and 2
CONF = {"settle_seconds": 0}  # the files were written a moment ago


def make_drop(root: Path, hours: int = 3, seed: int = 7) -> list[Path]:
    """One file per 15-minute window from 00:00, a few bad lines among them."""
    return write_drop(
        root, DAY, sessions=60 * 4 * hours, files=4 * hours, hours=hours, seed=seed, bad_lines=3
    )


def in_hours(paths: list[Path], *hours: int) -> list[Path]:
    return [p for p in paths if parse_name(p.name)[0].hour in hours]


def ledger(url: str) -> dict[str, tuple]:
    rows = warehouse.query(
        url, f"SELECT file_name, status, size, loaded_at FROM `{tables.LEDGER_TABLE}`"
    )
    return {name: (status, size, loaded_at) for name, status, size, loaded_at in rows}


def rejects(url: str) -> list[tuple]:
    return sorted(warehouse.query(url, f"SELECT file_name, line_no FROM `{tables.REJECTS_TABLE}`"))


@pytest.fixture
def reference(db_url):
    """Load files with the engine alone into the module's reference database; returns its URL."""

    def load(paths: list[Path]) -> str:
        conn = db.connect(db_url)
        migrations.init_db(conn)
        conn.close()
        warehouse.reset(db_url)
        loader = Loader(lambda: db.connect(db_url))
        try:
            summary = load_files(paths, loader)
        finally:
            loader.close()
        assert summary.failed == 0, summary.failures
        return db_url

    return load


def assert_same_warehouse(url: str, reference_url: str, files: list[Path]) -> None:
    assert {n: v[:2] for n, v in ledger(url).items()} == {
        p.name: ("loaded", p.stat().st_size) for p in files
    }
    assert warehouse.dump(url) == warehouse.dump(reference_url)
    assert rejects(url) == rejects(reference_url) != []


def asset_events(airflow_home) -> list[dict]:
    """The extras of the session_stream_tables Asset events in Airflow's database, oldest first."""
    import json
    import sqlite3

    with sqlite3.connect(airflow_home.path / "airflow.db") as db:
        rows = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id"
            " WHERE a.name = 'session_stream_tables' ORDER BY e.id"
        ).fetchall()
    return [json.loads(extra) if isinstance(extra, str) else extra for (extra,) in rows]


def test_hourly_runs_load_their_window_once_even_when_rerun_or_overlapping(
    airflow_home, fresh_db_url, reference, tmp_path
):
    drop = make_drop(tmp_path / "drop")
    staging = tmp_path / "staging"
    env = {
        **mysql_conn_env(fresh_db_url),
        **var_env(session_stream_drop_url=tmp_path / "drop", session_stream_staging_url=staging),
    }

    events_before = len(asset_events(airflow_home))
    first = airflow_home.dags_test(FIRST_RUN, env=env, conf=CONF)
    assert first.returncode == 0 and first.run_state == "success", first.explain()
    # check's log ends with the run's report
    assert "session_stream run report" in first.output, first.explain()
    assert re.search(r"loaded by this run\s+│\s+4 ", first.output), first.explain()
    # One Asset event for the run, carrying the run's report.
    events = asset_events(airflow_home)[events_before:]
    assert len(events) == 1 and events[0]["loaded"] == 4, events
    assert events[0]["sessions_written"] > 0 and "session.x_debug" in events[0]["unknown_keys"]
    hour0 = in_hours(drop, 0)
    assert len(hour0) == 4
    assert_same_warehouse(fresh_db_url, reference(hour0), hour0)
    loaded_first = ledger(fresh_db_url)

    again = airflow_home.dags_test(FIRST_RUN, env=env, conf=CONF)
    assert again.returncode == 0 and again.run_state == "success", again.explain()
    assert (
        "4 listed, 4 already loaded, 0 still being written (0 left for the next run), 0 fetched"
        in again.output
    )
    assert len(asset_events(airflow_home)) == events_before + 1, "nothing loaded: no event"
    assert ledger(fresh_db_url) == loaded_first  # same rows, same loaded_at: nothing reloaded

    overlapping = airflow_home.dags_test(OVERLAPPING_RUN, env=env, conf=CONF)
    assert overlapping.returncode == 0 and overlapping.run_state == "success", overlapping.explain()
    assert "12 listed, 4 already loaded" in overlapping.output
    after = ledger(fresh_db_url)
    assert {n: after[n] for n in loaded_first} == loaded_first
    hours012 = in_hours(drop, 0, 1, 2)
    assert_same_warehouse(fresh_db_url, reference(hours012), hours012)
    # Staged files are removed once loaded.
    assert not [p for p in staging.rglob("*") if p.is_file()]


def test_a_drop_and_staging_area_on_s3_through_a_role_the_connection_assumes(
    airflow_home, fresh_db_url, reference, tmp_path, s3_server
):
    """aws_default as AWS users write it: an IAM user's keys and a role_arn. moto checks every
    call here, and the user's own keys may not touch the bucket: the run can only succeed if
    the DAG's S3 clients come from the provider's hook, which assumes the role."""
    from botocore.exceptions import ClientError

    local = tmp_path / "drop"
    drop = make_drop(local, hours=1, seed=11)
    bucket = s3_server.create_bucket()
    s3_server.upload_tree(local, bucket, "monetate/raw_data/session_stream")
    role = s3_server.role_for_bucket(bucket)
    aws = conn_env("aws_default", conn_type="aws", **s3_server.role_connection(role))
    env = {
        **mysql_conn_env(fresh_db_url),
        **aws,
        **var_env(
            session_stream_drop_url=f"s3://{bucket}/monetate/raw_data/session_stream",
            session_stream_staging_url=f"s3://{bucket}/staging",
        ),
    }
    user_only = boto3_s3(s3_server, role.access_key_id, role.secret_access_key)
    with s3_server.enforcing_auth():
        with pytest.raises(ClientError, match="AccessDenied"):
            user_only.list_objects_v2(Bucket=bucket, MaxKeys=1)
        result = airflow_home.dags_test(FIRST_RUN, env=env, conf=CONF)
    assert result.returncode == 0 and result.run_state == "success", result.explain()
    assert_same_warehouse(fresh_db_url, reference(drop), drop)
    left = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="staging/").get("Contents", [])
    assert left == []


def boto3_s3(s3_server, key_id: str, secret: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def test_a_drop_on_sftp_with_key_login_and_pinned_host_key(
    airflow_home, fresh_db_url, reference, tmp_path, sftp_server
):
    root = sftp_server.new_root()
    drop = make_drop(root, hours=1, seed=12)
    sftp = conn_env(
        "session_stream_sftp",
        conn_type="sftp",
        login=sftp_server.username,
        extra={"private_key": sftp_server.private_key, "host_key": sftp_server.host_key},
    )
    env = {
        **mysql_conn_env(fresh_db_url),
        **sftp,
        **var_env(
            session_stream_drop_url=sftp_server.url_for(root),
            session_stream_staging_url=tmp_path / "staging",
        ),
    }
    result = airflow_home.dags_test(FIRST_RUN, env=env, conf=CONF)
    assert result.returncode == 0 and result.run_state == "success", result.explain()
    assert_same_warehouse(fresh_db_url, reference(drop), drop)


def test_a_truncated_file_fails_the_run_alerts_and_the_other_files_load(
    airflow_home, fresh_db_url, reference, tmp_path, smtp_sink
):
    drop = make_drop(tmp_path / "drop", hours=1, seed=13)
    bad = drop[1]
    good = [p for p in drop if p != bad]
    truncate_file(bad)
    env = {
        **mysql_conn_env(fresh_db_url),
        **smtp_sink.conn_env(),
        **var_env(
            session_stream_drop_url=tmp_path / "drop",
            session_stream_staging_url=tmp_path / "staging",
            session_stream_alert_to="data@example.test",
            session_stream_alert_manual_runs="true",  # `dags test` makes a manual run
        ),
        "AIRFLOW__API__BASE_URL": "https://airflow.example.test",
    }
    result = airflow_home.dags_test(FIRST_RUN, env=env, conf=CONF)
    assert result.returncode == 1 and result.run_state == "failed", result.explain()

    files = ledger(fresh_db_url)
    assert files.pop(bad.name)[:2] == ("failed", bad.stat().st_size)  # the next run retries it
    assert {n: v[:2] for n, v in files.items()} == {
        p.name: ("loaded", p.stat().st_size) for p in good
    }
    assert warehouse.dump(fresh_db_url) == warehouse.dump(reference(good))

    # One e-mail for the run, from finish: load[0] failed, and check, which ran all the same,
    # failed naming the same file.
    assert len(smtp_sink.messages) == 1, result.explain()
    msg = smtp_sink.messages[0]
    body = msg.get_body(("html",)).get_content()
    assert msg["To"] == "data@example.test"
    assert "session_stream" in msg["Subject"]
    assert "failed: load[0], check (1 file(s))" in msg["Subject"]
    run = "https://airflow.example.test/dags/session_stream/runs/" + quote(result.run_id)
    for needle in (
        "DAG:   session_stream",
        "  - load[0], try 1, permanent: 1 of 4 file(s) failed",
        "  - check, try 1, permanent: 1 file(s) of window",
        f"{bad.name}: cannot be read to its end",
        f"log: {run}/tasks/load/mapped/0?try_number=1",
    ):
        assert needle in body
    assert "Not run" not in body
    assert body.count(bad.name) == 1  # named once
    assert [p.name for p in good if p.name in body] == []  # only the failed file is named
    states = airflow_home.task_instances("session_stream", result.run_id)
    assert states["load[0]"] == ("failed", 1) and states["finish"] == ("failed", 1)
    assert states["check"] == ("failed", 1)
    # check ran after the failed load: the run's report is in its log. The load removed each
    # file's staged copy once it was done with it, the failed one included (the next run
    # fetches it again from the drop); check left the run's folder, as it does after a failure.
    assert "run report" in result.output
    left = list((tmp_path / "staging").rglob("*"))
    assert left and not [p for p in left if p.is_file()], left
