"""Failures through `airflow dags test`, both DAGs: a permanent error fails its task at once (one try,
with retries configured), a transient one is retried with back-off; either way the run sends
one e-mail, from `finish`, naming every failed task with a log link from the base URL."""

from __future__ import annotations

import html
from urllib.parse import quote

import pytest
from airflow_harness import conn_env, mysql_conn_env, var_env
from servers import free_port

pytestmark = pytest.mark.integration

RUN_DATE = "2026-11-01T01:00:00+00:00"
BASE_URL = "https://airflow.example.test/team"
REFRESH_TASKS = [
    "refresh_customtarget",
    "refresh_pageevent",
    "refresh_variant",
    "refresh_experience_summary",
    "refresh_account",
]


def alert_env(smtp_sink) -> dict[str, str]:
    return {
        **smtp_sink.conn_env(),
        # `airflow dags test` makes a manual run: it alerts only when this says so.
        **var_env(
            session_stream_alert_to="data@example.test", session_stream_alert_manual_runs="true"
        ),
        "AIRFLOW__API__BASE_URL": BASE_URL,
    }


def task_link(dag_id: str, run_id: str, task: str, try_number: int) -> str:
    return f"{BASE_URL}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task}?try_number={try_number}"


def only_email(smtp_sink, result) -> tuple[str, str]:
    assert len(smtp_sink.messages) == 1, result.explain()
    msg = smtp_sink.messages[0]
    assert msg.get_body(("plain",)) is not None  # every mail has a text part
    return msg["Subject"], html.unescape(msg.get_body(("html",)).get_content())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("refused MySQL login", "MySQL refused user 'nobody' at 127.0.0.1:3306"),
        ("bad params", "give both params 'start' and 'end'"),
    ],
)
def test_a_permanent_error_fails_at_once_without_retries_and_alerts_once(
    case, message, airflow_home, fresh_db_url, tmp_path, smtp_sink
):
    mysql = mysql_conn_env(fresh_db_url)
    conf = {"settle_seconds": 0}
    if case == "refused MySQL login":
        mysql = mysql_conn_env(fresh_db_url.replace("root@", "nobody:wrong@"))
    else:
        conf["start"] = "2026-11-01T00:00:00+00:00"
    (tmp_path / "drop").mkdir()
    env = {
        **mysql,
        **alert_env(smtp_sink),
        # Three retries, one minute apart at least: a retry would show in try_number and time.
        **var_env(session_stream_retries=3, session_stream_drop_url=tmp_path / "drop"),
    }
    result = airflow_home.dags_test(RUN_DATE, env=env, conf=conf)
    assert result.returncode == 1 and result.run_state == "failed", result.explain()

    states = airflow_home.task_instances("session_stream", result.run_id)
    assert states["fetch"] == ("failed", 1), states
    assert states["finish"] == ("failed", 1)
    assert states["check"][0] == "skipped"  # fetch did not finish: nothing to check

    subject, body = only_email(smtp_sink, result)
    assert subject == f"[Airflow] session_stream run {result.run_id} failed: fetch"
    assert f"  - fetch, try 1, permanent: ConfigError: {message}" in body
    assert f"log: {task_link('session_stream', result.run_id, 'fetch', 1)}" in body


def test_dags_test_sends_no_alert_unless_asked_and_says_so(
    airflow_home, fresh_db_url, tmp_path, smtp_sink
):
    """`airflow dags test` makes a manual run: trying the DAG out does not page the list."""
    (tmp_path / "drop").mkdir()
    env = {
        **mysql_conn_env(fresh_db_url),
        **smtp_sink.conn_env(),
        "AIRFLOW__API__BASE_URL": BASE_URL,
        **var_env(
            session_stream_alert_to="data@example.test", session_stream_drop_url=tmp_path / "drop"
        ),
    }
    conf = {"start": "2026-11-01T00:00:00+00:00"}  # without end: a permanent error
    result = airflow_home.dags_test(RUN_DATE, env=env, conf=conf)
    assert result.returncode == 1 and result.run_state == "failed", result.explain()
    assert smtp_sink.messages == []
    assert "no alert is sent for manual runs and `airflow dags test`" in result.output
    assert "session_stream_alert_manual_runs" in result.output


def test_an_unreachable_mysql_is_retried_with_back_off_then_alerts_once(
    airflow_home, tmp_path, smtp_sink
):
    port = free_port()  # nothing listens there
    (tmp_path / "drop").mkdir()
    env = {
        **mysql_conn_env(f"mysql://root@127.0.0.1:{port}/warehouse"),
        **alert_env(smtp_sink),
        **var_env(
            session_stream_retries=2,
            session_stream_retry_delay_seconds=1,
            session_stream_drop_url=tmp_path / "drop",
        ),
    }
    result = airflow_home.dags_test(RUN_DATE, env=env, conf={"settle_seconds": 0})
    assert result.returncode == 1 and result.run_state == "failed", result.explain()

    states = airflow_home.task_instances("session_stream", result.run_id)
    assert states["fetch"] == ("failed", 3), states  # the first try and both retries
    subject, body = only_email(smtp_sink, result)
    assert subject.endswith("failed: fetch")
    assert (
        f"  - fetch, try 3, transient: UnreachableError: cannot reach MySQL at 127.0.0.1:{port}"
        in body
    )
    assert f"log: {task_link('session_stream', result.run_id, 'fetch', 3)}" in body


@pytest.mark.parametrize("case", ["revoked API key", "no monetate_api connection"])
def test_the_metadata_dag_fails_at_once_on_a_permanent_error_with_one_alert_for_all_kinds(
    case, airflow_home, metadata_server, monetate_key_pair, fresh_db_url, smtp_sink
):
    private_pem, _ = monetate_key_pair
    env = {**mysql_conn_env(fresh_db_url), **alert_env(smtp_sink)}
    if case == "revoked API key":
        metadata_server.fail("auth", 403, times=None)
        env |= conn_env(
            "monetate_api",
            conn_type="generic",
            login=metadata_server.api_user,
            password=private_pem,
            extra={
                "retailer_shortname": metadata_server.retailer,
                "api_base": metadata_server.api_base,
                "auth_base": metadata_server.auth_base,
                "timeout": 5,
                "max_wait_seconds": 10,
            },
        )
        message = "Monetate refused the API key of user"
    else:
        message = "no Airflow connection monetate_api: create it"
    # The DAG keeps its 3 retries, 2 minutes apart at least.
    result = airflow_home.run("dags", "test", "monetate_metadata_refresh", "2026-11-20", env=env)
    assert result.returncode == 1 and result.run_state == "failed", result.explain()

    states = airflow_home.task_instances("monetate_metadata_refresh", result.run_id)
    assert {t: states[t] for t in REFRESH_TASKS} == {t: ("failed", 1) for t in REFRESH_TASKS}
    subject, body = only_email(smtp_sink, result)
    assert subject.endswith("failed: " + ", ".join(REFRESH_TASKS))
    for task in REFRESH_TASKS:
        assert f"  - {task}, try 1, permanent: " in body
        assert task_link("monetate_metadata_refresh", result.run_id, task, 1) in body
    assert body.count(message) == len(REFRESH_TASKS)
