"""Monetate Session Stream → MySQL, every hour. The work is in include/session_stream/dag_tasks.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from session_stream_airflow import (
    check_locations,
    open_drop_location,
    open_loader,
    open_staging_area,
)
from session_stream_alerts import notify_failure

from session_stream import dag_tasks

# Read from the environment at parse time (no metadata-database call per parse); the
# AIRFLOW_VAR_ prefix makes the same setting visible as an Airflow Variable.
SCHEDULE = os.environ.get("AIRFLOW_VAR_SESSION_STREAM_SCHEDULE") or "0 * * * *"
RETRIES = int(os.environ.get("AIRFLOW_VAR_SESSION_STREAM_RETRIES") or 3)

# The MySQL provider wants mysql://host/database/table; "session_stream" stands for the warehouse,
# whatever server the connection points at. Downstream DAGs: schedule=[Asset.ref(name=...)].
SESSION_TABLES = Asset(
    name="session_stream_tables", uri="mysql://session_stream/session_stream/session_tables"
)
LOAD_POOL = "session_stream_load"

DOC = """
### Monetate Session Stream → MySQL

Each run loads the files whose 15-minute window starts in its data interval (one hour, UTC),
plus `lookback_hours` before it for files that arrived late. The ledger table
`session_stream_files` makes runs idempotent: a file already loaded with the same size is
skipped, so overlapping runs and backfills never load a file twice.

**Tasks**: `fetch` lists the drop location and stages the new files → `split` (mapped over
batches) → `load` (mapped, pool `session_stream_load`, emits the Asset
`session_stream_tables`, URI `mysql://session_stream:3306/session_stream/session_tables`) → `check` (fails, naming the files, if a file did
not load or has more than `max_rejects` rejects; its log ends with the run's report: files,
sessions, rows, rejects, unknown keys, late files, files still failing, which it returns). A file still being written waits for the
next run; a file that fails is marked failed and retried by the next run. Scheduled runs also
retry files marked failed in earlier windows (`sweep_days`, newest first, at most
`sweep_max_files` per run); one that fails again is listed by `check`, not alerted again.

**Configuration**: Variable `session_stream_drop_url` (`sftp://user@host/path`,
`s3://bucket/prefix`, a local folder); connections `session_stream_mysql`,
`session_stream_sftp` (SFTP login and host key), `aws_default` (S3, `endpoint_url` extra
honoured); optional Variable `session_stream_staging_url` (the staging root; an `s3://` prefix
when tasks run on different workers). The params `drop_url` and `staging_url` may only narrow
to a folder inside these (or inside a root listed in Variable `session_stream_drop_roots`). Alerts: connection `smtp_default` + Variable `session_stream_alert_to`,
and/or `session_stream_slack` (incoming webhook).

**Reload a range**: trigger with params `start` and `end` (ISO-8601, UTC), and `force` to
reload files already loaded. **Backfill**:
`airflow backfill create --dag-id session_stream --from-date 2026-11-01 --to-date 2026-11-02`.
"""


def _params() -> dict:
    return dict(get_current_context()["params"])


def _fail_fast(exc: dag_tasks.FilesFailedError):
    # A bad file fails again on an immediate retry; the next run retries it instead.
    raise AirflowFailException(str(exc)) from exc


@dag(
    dag_id="session_stream",
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    tags=["session_stream", "monetate", "mysql"],
    doc_md=DOC,
    default_args={
        "owner": "data",
        "retries": RETRIES,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": notify_failure,
    },
    params={
        "drop_url": Param(
            "",
            type="string",
            description="A folder inside the Variable session_stream_drop_url (or a root in "
            "session_stream_drop_roots) to read instead; nothing outside them",
        ),
        "start": Param(
            None, type=["null", "string"], description="Reload from (ISO-8601, UTC); needs end"
        ),
        "end": Param(
            None, type=["null", "string"], description="Reload up to, exclusive (ISO-8601, UTC)"
        ),
        "lookback_hours": Param(dag_tasks.DEFAULT_LOOKBACK_HOURS, type="number", minimum=0),
        "settle_seconds": Param(dag_tasks.DEFAULT_SETTLE_SECONDS, type="number", minimum=0),
        "batch_size": Param(dag_tasks.DEFAULT_BATCH_SIZE, type="integer", minimum=1),
        "max_rejects": Param(
            dag_tasks.DEFAULT_MAX_REJECTS, type="integer", minimum=0, description="Per file"
        ),
        "force": Param(False, type="boolean", description="Reload files the ledger shows loaded"),
        "sweep_days": Param(
            dag_tasks.DEFAULT_SWEEP_DAYS,
            type="number",
            minimum=0,
            description="Scheduled runs retry files marked failed whose window started within this many days",
        ),
        "sweep_max_files": Param(
            dag_tasks.DEFAULT_SWEEP_MAX_FILES,
            type="integer",
            minimum=0,
            description="At most this many such files per run, newest first (0: no sweep)",
        ),
        "staging_url": Param(
            "",
            type="string",
            description="A folder inside the staging root (Variable session_stream_staging_url)",
        ),
    },
)
def session_stream():
    @task
    def fetch(
        run_id=None,
        dag_run=None,
        data_interval_start=None,
        data_interval_end=None,
        logical_date=None,
    ):
        """Returns the batches to map over; the run's summary goes to XCom key 'summary'."""
        params = _params()
        window = dag_tasks.resolve_window(
            params, data_interval_start, data_interval_end, logical_date
        )
        check_locations(params)  # a param outside the admin's roots fails before anything runs
        loader = open_loader(init=True)
        try:
            with open_drop_location(params) as drop, open_staging_area(params) as staging:
                result = dag_tasks.fetch(
                    drop,
                    loader,
                    staging,
                    window,
                    prefix=dag_tasks.staging_prefix(run_id),
                    lookback_hours=params["lookback_hours"],
                    settle_seconds=params["settle_seconds"],
                    batch_size=params["batch_size"],
                    force=params["force"],
                    sweep=dag_tasks.sweeps(dag_run.run_type),
                    sweep_days=params["sweep_days"],
                    sweep_max_files=params["sweep_max_files"],
                )
        finally:
            loader.close()
        batches = result.pop("batches")
        get_current_context()["ti"].xcom_push(key="summary", value=result)
        return batches

    @task(map_index_template="{{ batch_label }}")
    def split(batch: dict) -> dict:
        get_current_context()["batch_label"] = (
            f"{batch['files'][0]['name']} +{len(batch['files']) - 1}"
        )
        with open_staging_area(_params()) as staging:
            return dag_tasks.split_batch(batch, staging)

    @task(pool=LOAD_POOL, outlets=[SESSION_TABLES], map_index_template="{{ batch_label }}")
    def load(batch: dict) -> dict:
        files = batch["files"] + batch["failed"]
        get_current_context()["batch_label"] = (
            f"{files[0]['name']} +{len(files) - 1}" if files else "empty"
        )
        params = _params()
        loader = open_loader()
        try:
            with open_staging_area(params) as staging:
                return dag_tasks.load_batch(batch, staging, loader, force=params["force"])
        except dag_tasks.FilesFailedError as exc:
            _fail_fast(exc)
        finally:
            loader.close()

    # none_failed: a run with nothing new (split and load skipped) still checks, quietly.
    @task(trigger_rule="none_failed")
    def check(summary: dict, run_id=None) -> dict:
        params = _params()
        loader = open_loader()
        try:
            with open_staging_area(params) as staging:
                return dag_tasks.check(
                    summary,
                    loader,
                    max_rejects=params["max_rejects"],
                    staging=staging,
                    prefix=dag_tasks.staging_prefix(run_id),
                )
        except dag_tasks.FilesFailedError as exc:
            _fail_fast(exc)
        finally:
            loader.close()

    batches = fetch()
    loaded = load.expand(batch=split.expand(batch=batches))
    loaded >> check(batches["summary"])


session_stream()
