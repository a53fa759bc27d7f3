"""Monetate Session Stream → MySQL, every hour. The work is in include/session_stream/dag_tasks.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from session_stream_airflow import (
    check_locations,
    open_drop_location,
    open_loader,
    open_staging_area,
    silence_hours,
)
from session_stream_alerts import SessionStreamNotifier, raise_for_failed_tasks, stall_deadline
from session_stream_retry import SessionStreamRetryPolicy, failed_tasks, final_try_when

from session_stream.runs import dag_tasks
from session_stream.runs.policy import LOAD_POOL  # two slots: policy.py says why

# Read from the environment at parse time (no metadata-database call per parse); the
# AIRFLOW_VAR_ prefix makes the same setting visible as an Airflow Variable.
SCHEDULE = os.environ.get("AIRFLOW_VAR_SESSION_STREAM_SCHEDULE") or "0 * * * *"
RETRIES = int(os.environ.get("AIRFLOW_VAR_SESSION_STREAM_RETRIES") or 3)
RETRY_DELAY = timedelta(
    seconds=float(os.environ.get("AIRFLOW_VAR_SESSION_STREAM_RETRY_DELAY_SECONDS") or 60)
)
# A run still going this long after it was queued alerts (0: no stall alert).
STALL_MINUTES = float(os.environ.get("AIRFLOW_VAR_SESSION_STREAM_STALL_MINUTES") or 60)

# The MySQL provider wants mysql://host/database/table; "session_stream" stands for the warehouse,
# whatever server the connection points at. Downstream DAGs: schedule=[Asset.ref(name=...)].
SESSION_TABLES = Asset(
    name="session_stream_tables", uri="mysql://session_stream/session_stream/session_tables"
)

# Time limits. A load cannot be interrupted while MySQL makes it wait for the load lock (the
# alarm that enforces execution_timeout waits for the server's answer), so a file waits for the
# lock at most LOAD_LOCK_WAIT: a load holds the lock for seconds, and half an hour of waiting means
# another load is stuck. A batch (16 files, ~1 s each) then ends within LOAD_TIMEOUT + one wait.
FETCH_TIMEOUT = timedelta(hours=3)  # an hour is ~30 MB to download; a manual reload of weeks more
SPLIT_TIMEOUT = timedelta(hours=1)  # ~1 s of CPU per file; batches grow only past 1024 batches
LOAD_TIMEOUT = timedelta(hours=2)
LOAD_LOCK_WAIT = timedelta(minutes=30)
CHECK_TIMEOUT = timedelta(minutes=15)  # one ledger query
FINISH_TIMEOUT = timedelta(minutes=10)  # task states and XCom; the alert is sent after it

DOC = f"""
### Monetate Session Stream → MySQL

Each run loads the files whose 15-minute window starts in its data interval (one hour, UTC),
plus `lookback_hours` before it for files that arrived late. The ledger table
`session_stream_files` makes runs idempotent: a file already loaded with the same size is
skipped, so overlapping runs and backfills never load a file twice.

**Tasks**: `fetch` lists the drop location and stages the new files → `split` (mapped over
batches) → `load` (mapped, pool `{LOAD_POOL}`) → `check` (runs once the loads are done, failed
ones too; removes the run's staging folder when no task failed; fails, naming the files, if a
file did not load or has more than `max_rejects` rejects, or if a scheduled run finds no new
file for `session_stream_silence_hours`; its log ends with the run's report: files, sessions, rows,
rejects, unknown keys, late files, files still failing, which it returns) → `finish` (runs last,
whatever failed: fails naming every failed task and file, which sends the run's one alert; else
emits the Asset `session_stream_tables`, with the run's report as its extra, when something new
was loaded). A file still being written waits for the next run; a file that fails is marked
failed and retried by the next run. Scheduled runs also retry files marked failed in earlier
windows (`sweep_days`, newest first, at most `sweep_max_files` per run); one that fails again is
listed by `check`, not alerted again.

**Pool** `{LOAD_POOL}`, 2 slots: loads of one database take turns on a MySQL lock, file by file;
a second slot keeps MySQL busy between two batches, a third would only wait.

**Failures**: configuration and permission errors (bad params, a refused MySQL login, a missing
connection or Variable, `local_infile` off, an unknown host key) fail at once without retries;
unreachable servers, lock waits and timeouts retry with back-off. A run still going
{STALL_MINUTES:g} minutes after it was queued alerts too (`AIRFLOW_VAR_SESSION_STREAM_STALL_MINUTES`).

**Configuration**: Variable `session_stream_drop_url` (`sftp://user@host/path`,
`s3://bucket/prefix`, a local folder); connections `session_stream_mysql`,
`session_stream_sftp` (SFTP login and host key), `aws_default` (S3, through the Amazon
provider's hook: keys, `role_arn`, `profile_name`, `endpoint_url`); optional Variable
`session_stream_staging_url` (the staging root; an `s3://` prefix when tasks run on different
workers). The params `drop_url` and `staging_url` may only narrow
to a folder inside these (or inside a root listed in Variable `session_stream_drop_roots`).
Alerts: connection `smtp_default` + Variable `session_stream_alert_to`,
and/or `session_stream_slack` (incoming webhook); links use `[api] base_url`.

**Reload a range**: trigger with params `start` and `end` (ISO-8601, UTC), and `force` to
reload files already loaded. **Backfill**:
`airflow backfill create --dag-id session_stream --from-date 2026-11-01 --to-date 2026-11-02`.
"""


def _batch_label(files: list[dict]) -> None:
    # map_index_template renders after the task body, from variables the body adds to the context.
    label = f"{files[0]['name']} +{len(files) - 1}" if files else "empty"
    get_current_context()["batch_label"] = label


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
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        # Permanent errors fail at once; transient ones retry (session_stream_retry).
        "retry_policy": SessionStreamRetryPolicy(),
        # Task-level: the DAG-level callback is not reliable in Airflow 3.3. The notifier sends
        # the run's one alert when `finish` fails and stays quiet for the other tasks.
        "on_failure_callback": [SessionStreamNotifier()],
    },
    deadline=stall_deadline(STALL_MINUTES, pool=LOAD_POOL),
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
    @task(execution_timeout=FETCH_TIMEOUT)
    def fetch(
        params=None,
        ti=None,
        run_id=None,
        dag_run=None,
        data_interval_start=None,
        data_interval_end=None,
        logical_date=None,
    ) -> list[dict]:
        """Returns the batches to map over; the run's summary (for check) goes to XCom 'summary'.

        Not multiple_outputs: Airflow refuses to map over any XCom but a task's return value
        ("cannot map over XCom with custom key"), so the batches must be the return value.
        """
        window = dag_tasks.resolve_window(
            params, data_interval_start, data_interval_end, logical_date
        )
        # Only a scheduled run can tell that the drop went quiet: manual and backfill runs
        # look at whatever window they are given.
        silence = silence_hours() if dag_run.run_type == "scheduled" else None
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
                    silence_hours=silence,
                )
        finally:
            loader.close()
        batches = result.pop("batches")
        ti.xcom_push(key="summary", value=result)
        return batches

    @task(map_index_template="{{ batch_label }}", execution_timeout=SPLIT_TIMEOUT)
    def split(batch: dict, params=None) -> dict:
        _batch_label(batch["files"])
        with open_staging_area(params) as staging:
            return dag_tasks.split_batch(batch, staging)

    @task(pool=LOAD_POOL, map_index_template="{{ batch_label }}", execution_timeout=LOAD_TIMEOUT)
    def load(batch: dict, params=None) -> dict:
        _batch_label(batch["files"] + batch["failed"])
        loader = open_loader(lock_timeout=int(LOAD_LOCK_WAIT.total_seconds()))
        try:
            with open_staging_area(params) as staging:
                return dag_tasks.load_batch(batch, staging, loader, force=params["force"])
        finally:
            loader.close()

    # all_done: once every load has finished, whatever it did. A run with nothing new (split and
    # load skipped) checks quietly; a run where a split or a load failed still gets its report
    # (under none_failed, check never ran). Only a run whose fetch did not finish has nothing to
    # check. After a failed task, check is not retried (the run alerts anyway, and retries would
    # hold the alert back), and the run's staging folder stays: a failed task cleared in the UI
    # finds what it staged, and check, cleared with it, removes the folder once all went well.
    @task(trigger_rule="all_done", execution_timeout=CHECK_TIMEOUT)
    def check(params=None, run_id=None, ti=None) -> dict:
        summary = ti.xcom_pull(task_ids="fetch", key="summary")
        if summary is None:
            raise AirflowSkipException("fetch did not finish: nothing to check")
        failed = failed_tasks(ti)
        with final_try_when(failed):
            loader = open_loader()
            try:
                with open_staging_area(params) as staging:
                    return dag_tasks.check(
                        summary,
                        loader,
                        max_rejects=params["max_rejects"],
                        staging=None if failed else staging,
                        prefix=dag_tasks.staging_prefix(run_id),
                    )
            finally:
                loader.close()

    # all_done, downstream of every task: starts once, when nothing else in the run can change.
    # Not retried: a retry would alert a second time.
    @task(
        trigger_rule="all_done",
        outlets=[SESSION_TABLES],
        retries=0,
        execution_timeout=FINISH_TIMEOUT,
    )
    def finish(ti=None, dag=None, logical_date=None, outlet_events=None) -> dict:
        """Fails naming every failed task and file (the run's alert); else emits the Asset, with
        the run's report (check's return value) as its extra."""
        raise_for_failed_tasks(ti, dag, logical_date)
        report = ti.xcom_pull(task_ids="check") or {}
        if not report.get("loaded"):
            # One Asset event per run that loaded something: the metadata refresh follows it.
            raise AirflowSkipException("nothing new was loaded: no Asset event")
        outlet_events[SESSION_TABLES].extra = report
        return report

    batches = fetch()
    splits = split.expand(batch=batches)
    loads = load.expand(batch=splits)
    checked = check()
    [batches, loads] >> checked
    [batches, splits, loads, checked] >> finish()


session_stream()
