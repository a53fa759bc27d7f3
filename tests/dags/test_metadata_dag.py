"""`airflow dags test monetate_metadata_refresh` against the loopback fake of the Metadata API."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow_harness import conn_env, mysql_conn_env
from warehouse import query

from session_stream.metadata import lookups

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"

OBJECTS = {
    "customtarget": [{"id": 11, "title": "Loyalty tier"}],
    "pageevent": [{"id": 21, "title": "Add to cart"}, {"id": 22, "title": "Checkout"}],
    "variant": [
        {"id": 501, "experience_id": 900, "experience_name": "Hero banner", "split_name": "A"}
    ],
    "experience-summary": [{"id": 900, "experience_name": "Hero banner", "status": "active"}],
    "account": [{"id": 1, "name": "acme.com"}],
}


def api_env(metadata_server, monetate_key_pair, db_url) -> dict[str, str]:
    private_pem, _ = monetate_key_pair
    return {
        **mysql_conn_env(db_url),
        **conn_env(
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
        ),
    }


def test_dag_fills_the_lookup_tables(
    airflow_home, metadata_server, monetate_key_pair, fresh_db_url
):
    metadata_server.objects.update(OBJECTS)
    env = api_env(metadata_server, monetate_key_pair, fresh_db_url)
    result = airflow_home.run("dags", "test", "monetate_metadata_refresh", "2026-11-20", env=env)
    assert result.returncode == 0, result.explain()
    counts = {
        lk.kind: query(fresh_db_url, f"SELECT COUNT(*) FROM `{lk.table}`")[0][0]
        for lk in lookups.LOOKUPS
    }
    assert counts == {kind: len(objects) for kind, objects in OBJECTS.items()}
    assert query(fresh_db_url, "SELECT title FROM monetate_page_events ORDER BY id") == [
        ("Add to cart",),
        ("Checkout",),
    ]


@pytest.fixture(scope="module")
def metadata_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER / "monetate_metadata_refresh.py"))
    assert bag.import_errors == {}
    return bag.dags["monetate_metadata_refresh"]


def test_every_refresh_waits_for_the_due_check(metadata_dag):
    due = metadata_dag.get_task("due")
    assert "ShortCircuit" in type(due).__name__
    refreshes = {t.task_id for t in metadata_dag.tasks if t.task_id.startswith("refresh_")}
    assert len(refreshes) == len(lookups.LOOKUPS)
    # finish waits for the due check too, so a failed check is in the run's one alert.
    assert due.downstream_task_ids == refreshes | {"finish"}


def test_new_data_refreshes_at_most_once_per_interval_daily_and_manual_runs_always(
    airflow_home, metadata_server, monetate_key_pair, fresh_db_url, metadata_dag, monkeypatch
):
    metadata_server.objects.update(OBJECTS)
    env = api_env(metadata_server, monetate_key_pair, fresh_db_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    due = metadata_dag.get_task("due").python_callable

    def run(run_type: str) -> bool:
        return due(dag_run=SimpleNamespace(run_type=run_type))

    assert run("asset_triggered") is True  # never refreshed
    result = airflow_home.run("dags", "test", "monetate_metadata_refresh", "2026-11-21", env=env)
    assert result.returncode == 0, result.explain()
    assert "refreshing: a manual run always refreshes" in result.output
    assert run("asset_triggered") is False  # refreshed a moment ago: the API is spared
    assert run("scheduled") is True and run("manual") is True
    monkeypatch.setenv("AIRFLOW_VAR_MONETATE_METADATA_MIN_INTERVAL_HOURS", "0")
    assert run("asset_triggered") is True
    from session_stream.errors import ConfigError  # permanent: the retry rule fails it at once

    monkeypatch.setenv("AIRFLOW_VAR_MONETATE_METADATA_MIN_INTERVAL_HOURS", "six")
    with pytest.raises(ConfigError, match="must be a number of hours"):
        run("asset_triggered")
