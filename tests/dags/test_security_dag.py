"""Issue 9 through `airflow dags test session_stream`: hostile params and run ids stay inside the
admin's roots, a local drop's symlink out is refused and reported, an SFTP password never reaches
a task log or an alert, and a loader with data rights only loads once the owner ran init-db.

The quick, exhaustive forms of each check are in tests/unit/test_roots.py,
tests/integration/test_local_drop_confinement.py, test_secrets.py and test_least_privilege.py;
these runs prove the DAG wires them in.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import warehouse
from airflow_harness import conn_env, mysql_conn_env, var_env

from session_stream import tables
from session_stream.drop.sample import write_drop
from session_stream.runs import dag_tasks
from session_stream.warehouse import db
from session_stream.warehouse.privileges import migrate_if_pending

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 1)
FIRST_RUN = "2026-11-01T01:00:00+00:00"  # the interval [00:00, 01:00)
CONF = {"settle_seconds": 0}
PASSWORD = "Sftp-Kn0wn-Pw"


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def site(tmp_path):
    """A drop hour, a staging root, and victims: folders a run must never touch."""
    drop = tmp_path / "drops" / "acme"  # one drop of several an admin's root may hold
    paths = write_drop(drop, DAY, sessions=60, files=2, hours=1, seed=31, bad_lines=1)
    staging = tmp_path / "staging-root"
    victims = [
        tmp_path / "victim",
        staging / "victim",
        staging / "team-a" / "victim",
        staging / "team-a" / "runs" / "victim",
    ]
    for victim in victims:
        victim.mkdir(parents=True)
        (victim / "precious.txt").write_text("keep me")
    return tmp_path, drop, staging, paths, victims


def env_for(url: str, drop: Path, staging: Path, **more) -> dict[str, str]:
    return {
        **mysql_conn_env(url),
        **var_env(session_stream_drop_url=drop, session_stream_staging_url=staging, **more),
    }


def assert_victims_intact(victims: list[Path]) -> None:
    for victim in victims:
        assert (victim / "precious.txt").read_text() == "keep me", victim


def ledger(url: str) -> dict[str, tuple]:
    rows = warehouse.query(url, f"SELECT file_name, status, error FROM `{tables.LEDGER_TABLE}`")
    return {name: (status, error) for name, status, error in rows}


def test_a_data_only_loader_backfills_with_narrowed_params_and_a_victim_named_run_id(
    airflow_home, accounts, site
):
    """As a loader with data rights only, once the owner ran init-db: a reprocessing run over
    the day (start/end/force, the backfill path) with params narrowed inside the roots and the
    run id "victim", which once made a run delete <staging>/victim. (Run ids holding '/' or
    '..', like '../../victim', cannot run in Airflow 3.3 at all: its execution API puts the run
    id in URL paths; the engine's handling of them is in tests/unit/test_roots.py.)"""
    _, drop, staging, paths, victims = site
    owner = db.connect(accounts.urls["owner"])
    migrate_if_pending(owner)
    owner.close()
    result = airflow_home.dags_test(
        FIRST_RUN,
        env=env_for(accounts.urls["loader"], drop.parent, staging),  # the root: every drop
        conf={
            **CONF,
            "drop_url": str(drop),
            "staging_url": str(staging / "team-a"),
            "start": "2026-11-01T00:00:00+00:00",
            "end": "2026-11-02T00:00:00+00:00",
            "force": True,
        },
        run_id="victim",
    )
    assert result.returncode == 0 and result.run_state == "success", result.explain()
    assert {n: s for n, (s, _) in ledger(accounts.urls["owner"]).items()} == {
        p.name: "loaded" for p in paths
    }
    assert_victims_intact(victims)
    # The run staged under team-a/runs/<one segment>, and removed exactly that.
    prefix = dag_tasks.staging_prefix("victim")
    assert prefix != "runs/victim" and not (staging / "team-a" / prefix).exists()
    assert files_under(staging) == sorted(v / "precious.txt" for v in victims[1:])


@pytest.mark.parametrize(
    ("conf", "run_id", "refusal"),
    [
        # The demonstration: staging_url at a folder holding <run id>/, run id "victim".
        ({"staging_url": "{tmp}"}, "victim", "param staging_url"),
        (
            {"drop_url": f"sftp://monetate:{PASSWORD}@sftp.example.com/~/other"},
            None,
            "may not carry a password",
        ),
        ({"drop_url": "s3://another-bucket/raw"}, None, "outside the allowed roots"),
        # a file: URL climbing out with a percent-encoded '..'
        ({"staging_url": "file://{staging}/%2e%2e/victim"}, None, "'..' is not allowed"),
        # other hosts, ports, users, userinfo tricks, s3://bucket/../x: tests/unit/test_roots.py
    ],
)
def test_hostile_params_fail_the_run_at_once_and_touch_nothing(
    airflow_home, fresh_db_url, site, conf, run_id, refusal
):
    tmp, drop, staging, _, victims = site
    conf = {k: v.format(tmp=tmp, staging=staging, drop=drop) for k, v in conf.items()}
    result = airflow_home.dags_test(
        FIRST_RUN,
        env=env_for(fresh_db_url, drop, staging),
        conf={**CONF, **conf},
        run_id=run_id,
    )
    assert result.returncode == 1 and result.run_state == "failed", result.explain()
    assert refusal in result.output, result.explain()
    assert "ConfigError" in result.output
    assert_victims_intact(victims)
    assert files_under(staging) == sorted(v / "precious.txt" for v in victims[1:])
    assert PASSWORD not in result.output
    assert warehouse.query(fresh_db_url, "SHOW TABLES") == []  # fetch stopped before anything


def test_a_symlink_out_of_the_drop_is_refused_ledgered_and_alerted(
    airflow_home, fresh_db_url, site, smtp_sink
):
    tmp, drop, staging, paths, _ = site
    secret = tmp / "shadow"
    secret.write_text("root:$6$top-secret-hash:19000:0:99999:7:::\n")
    link = paths[0].parent / "20261101T003000.000Z_PT15M-4242.json.gz"
    link.symlink_to(secret)
    env = {
        **env_for(
            fresh_db_url,
            drop,
            staging,
            session_stream_alert_to="data@example.test",
            session_stream_alert_manual_runs="true",  # `dags test` makes a manual run
        ),
        **smtp_sink.conn_env(),
    }
    result = airflow_home.dags_test(FIRST_RUN, env=env, conf=CONF)
    assert result.returncode == 1 and result.run_state == "failed", result.explain()
    status = ledger(fresh_db_url)
    assert status.pop(link.name) == (
        "failed",
        "refused: a symlink that leads out of the drop folder",
    )
    assert {n: s for n, (s, _) in status.items()} == {p.name: "loaded" for p in paths}
    rejects = warehouse.query(fresh_db_url, f"SELECT raw_line FROM `{tables.REJECTS_TABLE}`")
    assert not any(b"top-secret-hash" in bytes(r[0]) for r in rejects)
    (mail,) = smtp_sink.messages
    body = mail.get_body(("html",)).get_content()
    assert link.name in body and "leads out of the drop folder" in body


def test_an_sftp_password_never_reaches_the_task_log_or_the_alert(
    airflow_home, fresh_db_url, site, sftp_server, smtp_sink
):
    tmp, _, staging, _, _ = site
    root = sftp_server.new_root()
    drop_url = (
        f"sftp://{sftp_server.username}:{PASSWORD}@{sftp_server.host}:{sftp_server.port}{root}"
    )
    env = {
        **mysql_conn_env(fresh_db_url),
        **smtp_sink.conn_env(),
        # The server accepts keys only: the password is tried and refused.
        **conn_env(
            "session_stream_sftp", conn_type="sftp", extra={"host_key": sftp_server.host_key}
        ),
        **var_env(
            session_stream_drop_url=drop_url,
            session_stream_staging_url=staging,
            session_stream_alert_to="data@example.test",
        ),
    }
    # A manual run (dags test) asking for its alert with the param.
    result = airflow_home.dags_test(FIRST_RUN, env=env, conf={**CONF, "alert": True})
    assert result.returncode == 1 and result.run_state == "failed", result.explain()
    assert "SFTP login as" in result.output, result.explain()
    assert PASSWORD not in result.output
    (mail,) = smtp_sink.messages
    assert "SFTP login as" in mail.get_body(("html",)).get_content()
    assert PASSWORD not in mail.as_string()


def test_a_data_only_loader_is_told_which_right_it_lacks_when_a_migration_is_pending(
    airflow_home, accounts, site
):
    _, drop, staging, _, _ = site
    pending = airflow_home.dags_test(
        FIRST_RUN, env=env_for(accounts.urls["loader"], drop, staging), conf=CONF
    )
    assert pending.returncode == 1 and pending.run_state == "failed", pending.explain()
    user = accounts.names["loader"].split("@")[0]
    assert f"'{user}'@'%'" in pending.output and "lacks the CREATE right" in pending.output
    assert "the schema owner must run `session-stream init-db`" in pending.output
