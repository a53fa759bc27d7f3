"""Every DAG file parses, is known, and every task alerts on failure, retries transient errors
with back-off, and has a time limit; each DAG ends with a `finish` task that reports the run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

# Every file in dags/ and the dag_ids it must yield: a new DAG file is added here on purpose.
EXPECTED = {
    "session_stream.py": ["session_stream", "session_stream_daily"],
    "monetate_metadata_refresh.py": ["monetate_metadata_refresh"],
}
TASKS = {
    "session_stream": {"fetch", "load", "check", "finish"},
    "session_stream_daily": {"fetch", "load", "check", "finish"},
    "monetate_metadata_refresh": {
        "refresh_customtarget",
        "refresh_pageevent",
        "refresh_variant",
        "refresh_experience_summary",
        "refresh_account",
        "due",
        "finish",
    },
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_file_is_known_and_yields_its_dags(dagbag):
    files = sorted(p.name for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
    assert files == sorted(EXPECTED)
    for name, dag_ids in EXPECTED.items():
        found = sorted(d.dag_id for d in dagbag.dags.values() if Path(d.fileloc).name == name)
        assert found == sorted(dag_ids), name


def test_dags_have_the_expected_tasks(dagbag):
    assert {dag_id: set(dagbag.dags[dag_id].task_ids) for dag_id in TASKS} == TASKS


def test_every_task_retries_with_exponential_backoff_and_alerts_on_failure(dagbag):
    from session_stream_alerts import SessionStreamNotifier
    from session_stream_retry import SessionStreamRetryPolicy

    for dag in dagbag.dags.values():
        for t in dag.tasks:
            callbacks = t.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(c, SessionStreamNotifier) for c in callbacks), t.task_id
            assert isinstance(t.retry_policy, SessionStreamRetryPolicy), t.task_id
            assert t.retry_exponential_backoff, t.task_id
            if t.task_id == "finish":
                assert t.retries == 0  # a retried finish would alert twice
            else:
                assert t.retries > 0, t.task_id


def test_every_task_has_a_time_limit(dagbag):
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            assert t.execution_timeout is not None, (dag.dag_id, t.task_id)
            assert timedelta(0) < t.execution_timeout <= timedelta(hours=3), t.task_id
    # A load waits for the MySQL lock at most LOAD_LOCK_WAIT per file, which the time limit
    # cannot cut short: the wait must be well inside it.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "session_stream_dag", DAGS_FOLDER / "session_stream.py"
    )
    dag_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_file)
    load = dagbag.dags["session_stream"].get_task("load")
    assert load.execution_timeout > dag_file.LOAD_LOCK_WAIT


def test_finish_runs_last_whatever_failed_and_reports_every_task(dagbag):
    for dag in dagbag.dags.values():
        finish = dag.get_task("finish")
        assert finish.trigger_rule == "all_done"
        assert finish.downstream_task_ids == set()
        # Every other task is a direct upstream: all_done then waits for all of them.
        assert finish.upstream_task_ids == set(dag.task_ids) - {"finish"}


def test_a_run_that_stalls_alerts_through_a_deadline(dagbag):
    from airflow.sdk import AsyncCallback

    for dag_id in ("session_stream", "session_stream_daily", "monetate_metadata_refresh"):
        deadline = dagbag.dags[dag_id].deadline
        alerts = deadline if isinstance(deadline, list) else [deadline]
        assert len(alerts) == 1, dag_id
        assert alerts[0].interval == timedelta(minutes=60)
        # The triggerer runs it: it can read the alert connections (apache/airflow 3.3.2's
        # executor callbacks cannot).
        assert isinstance(alerts[0].callback, AsyncCallback)
        assert alerts[0].callback.path == "session_stream_alerts.SessionStreamNotifier"
    stream = dagbag.dags["session_stream"].deadline
    stream = stream[0] if isinstance(stream, list) else stream
    assert stream.callback.kwargs == {
        "stall_minutes": 60,
        "pool": "session_stream_load",
        "pool_tasks": {"session_stream": ["load"], "session_stream_daily": ["load"]},
    }


def test_session_stream_schedule_is_hourly_with_an_hour_long_interval_in_utc(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.dags["session_stream"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 * * * *"
    assert str(dag.timetable.timezone) == "UTC"
    assert dag.max_active_runs == 2
    assert dag.catchup is False
    assert dag.doc_md and dag.tags


@pytest.mark.parametrize("dag_id", ["session_stream", "session_stream_daily"])
def test_loads_use_the_pool_finish_emits_the_asset_and_check_runs_when_nothing_was_new(
    dagbag, dag_id
):
    dag = dagbag.dags[dag_id]
    load = dag.get_task("load")
    assert load.pool == "session_stream_load"
    # One Asset event per run, from the last task, not one per mapped load.
    assert {t.task_id: [a.name for a in t.outlets] for t in dag.tasks if t.outlets} == {
        "finish": ["session_stream_tables"]
    }
    # all_done: a run whose load failed still gets its report and its staging folder removed.
    assert dag.get_task("check").trigger_rule == "all_done"
    assert dag.get_task("check").upstream_task_ids == {"fetch", "load"}
    assert dag.get_task("load").upstream_task_ids == {"fetch"}
    assert "session_stream_load" in dag.doc_md and "2 slots" in dag.doc_md


def test_params_have_working_defaults(dagbag):
    params = dagbag.dags["session_stream"].params.dump()
    assert params["lookback_hours"] == 3
    assert params["batch_size"] == 16
    assert params["start"] is None and params["end"] is None
    assert params["force"] is False
    assert params["sweep_days"] == 30 and params["sweep_max_files"] == 16
    assert set(params) >= {"drop_url", "settle_seconds", "max_rejects", "staging_url"}


def test_retry_delay_is_bounded(dagbag):
    for t in dagbag.dags["session_stream"].tasks:
        assert t.retry_delay <= timedelta(minutes=5)
        assert t.max_retry_delay is not None


def test_schedule_comes_from_the_environment_at_parse_time(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_SCHEDULE", "30 */2 * * *")
    bag = DagBag(dag_folder=str(DAGS_FOLDER / "session_stream.py"))
    assert bag.import_errors == {}
    assert bag.dags["session_stream"].timetable.expression == "30 */2 * * *"


def test_the_daily_dag_has_the_same_tasks_on_a_daily_utc_interval_for_backfills(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    daily, hourly = dagbag.dags["session_stream_daily"], dagbag.dags["session_stream"]
    assert isinstance(daily.timetable, CronDataIntervalTimetable)
    assert daily.timetable.expression == "0 0 * * *" and str(daily.timetable.timezone) == "UTC"
    assert daily.catchup is False
    for task_id in hourly.task_ids:
        a, b = hourly.get_task(task_id), daily.get_task(task_id)
        assert (a.trigger_rule, a.pool, a.upstream_task_ids) == (
            b.trigger_rule,
            b.pool,
            b.upstream_task_ids,
        )
    params = daily.params.dump()
    # A day of 96 files in one load task; no look-back into the day before (a backfill's
    # neighbouring run loads it).
    assert params["batch_size"] >= 96 and params["lookback_hours"] == 0


@pytest.mark.parametrize("dag_id", ["session_stream", "session_stream_daily"])
def test_the_ui_shows_a_description_titled_described_params_and_task_docs(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.description and len(dag.description) < 120
    for name, param in dag.params.items():
        schema = param.schema
        assert schema.get("title") and param.description, name
    for name in ("start", "end"):
        assert dag.params.get_param(name).schema["format"] == "date-time"
    for t in dag.tasks:
        assert t.doc_md and len(t.doc_md) > 100, t.task_id


def test_start_and_end_are_validated_when_the_run_is_triggered(dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.dags["session_stream"].params
    start = params.get_param("start")
    assert start.resolve("2026-11-01T00:00:00+00:00") == "2026-11-01T00:00:00+00:00"
    assert start.resolve(None) is None
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-11-01 00:00"):
        with pytest.raises(ParamValidationError):
            start.resolve(bad)
