"""Every DAG file parses, is known, and every task alerts on failure and retries with back-off."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

# Every file in dags/ and the dag_ids it must yield: a new DAG file is added here on purpose.
EXPECTED = {
    "session_stream.py": ["session_stream"],
    "monetate_metadata_refresh.py": ["monetate_metadata_refresh"],
}
TASKS = {"session_stream": {"fetch", "split", "load", "check"}}


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
    from session_stream_alerts import notify_failure

    for dag in dagbag.dags.values():
        for t in dag.tasks:
            callbacks = t.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert notify_failure in callbacks, t.task_id
            assert t.retries > 0, t.task_id
            assert t.retry_exponential_backoff, t.task_id


def test_session_stream_schedule_is_hourly_with_an_hour_long_interval_in_utc(dagbag):
    from airflow.sdk import CronDataIntervalTimetable

    dag = dagbag.dags["session_stream"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 * * * *"
    assert str(dag.timetable.timezone) == "UTC"
    assert dag.max_active_runs == 2
    assert dag.catchup is False
    assert dag.doc_md and dag.tags


def test_loads_use_the_pool_emit_the_asset_and_check_runs_when_nothing_was_new(dagbag):
    dag = dagbag.dags["session_stream"]
    load = dag.get_task("load")
    assert load.pool == "session_stream_load"
    assert [a.name for a in load.outlets] == ["session_stream_tables"]
    assert dag.get_task("check").trigger_rule == "none_failed"
    assert dag.get_task("split").upstream_task_ids == {"fetch"}
    assert dag.get_task("load").upstream_task_ids == {"split"}


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
