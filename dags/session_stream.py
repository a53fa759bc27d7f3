"""Monetate Session Stream → MySQL: two DAGs with the same tasks.

- `session_stream`, every hour: the files of the last hour, plus a look-back for late ones.
- `session_stream_daily`, a day per run: what `airflow backfill create` is for (a day costs
  four task instances, as an hour does).

The work is in include/session_stream/runs/dag_tasks.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from session_stream_alerts import (
    CHECK_REPORT_KEY,
    SessionStreamNotifier,
    alerts_wanted,
    raise_for_failed_tasks,
    silence_ended_alert,
    stall_deadline,
)
from session_stream_config import (
    check_locations,
    open_drop_location,
    open_loader,
    open_staging_area,
    silence_hours,
)
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
# another load is stuck. A batch then ends within LOAD_TIMEOUT + one wait.
FETCH_TIMEOUT = timedelta(hours=3)  # an hour is ~30 MB to download; a manual reload of weeks more
LOAD_TIMEOUT = timedelta(hours=3)  # split + load, ~0.1 s a file; a daily batch is 96 files
LOAD_LOCK_WAIT = timedelta(minutes=30)
CHECK_TIMEOUT = timedelta(minutes=15)  # one ledger query
FINISH_TIMEOUT = timedelta(minutes=10)  # task states and XCom; the alert is sent after it

HOURLY_DAG_ID = "session_stream"
DAILY_DAG_ID = "session_stream_daily"
DAILY_SCHEDULE = "0 0 * * *"
HOURLY_BATCH_SIZE = dag_tasks.DEFAULT_BATCH_SIZE
# A day in one load task: its worker processes split ahead while MySQL loads, as the CLI does.
DAILY_BATCH_SIZE = 96

HOURLY_DESCRIPTION = (
    "Monetate Session Stream to MySQL, every hour: the last hour's files plus a look-back"
)
DAILY_DESCRIPTION = (
    "Monetate Session Stream to MySQL, a day per run: backfill history with this DAG"
)

DOC = """
### Monetate Session Stream → MySQL ({what})

{intro}

**Tasks** (four per run for up to `batch_size` files): `fetch` lists the drop and stages the
new files → `load` (one per batch, pool `{pool}`: splits the files in worker processes while
MySQL loads them) → `check` (the run's report; fails naming any file that did not load) →
`finish` (the run's one alert when anything failed; else the Asset `session_stream_tables`).
Each task's own doc says what to look for in its log.

**Files still being written**: a scheduled hourly run leaves a file younger than
`settle_seconds` for the next run when that run's look-back lists it. Every other run (a
backfill, a manual run, this daily DAG's) waits until such files hold still, logging what it
waits for, and fails naming any file still changing: no later run would load it.

**Failures**: configuration and permission errors fail at once; unreachable servers, lock waits
and timeouts retry with back-off ({retries} retries, {delay:g} s doubling). A file that fails is
marked failed in the ledger; the next scheduled hourly run retries it (the sweep, a wait that
doubles from 1 h to a day after each failure). A run still going {stall:g} minutes after it was
queued alerts, naming the task that holds it up. Manual runs (and `airflow dags test`) alert
only with the param `alert` or the Variable `session_stream_alert_manual_runs` set to true.

**Configuration**: Variables `session_stream_drop_url`, `session_stream_staging_url`,
`session_stream_alert_to`; connections `session_stream_mysql`, `session_stream_sftp`,
`aws_default`, `smtp_default`, `session_stream_slack`; pool `{pool}` (2 slots). The params
`drop_url` and `staging_url` may only narrow to a folder inside the configured roots.

**Reload a range**: trigger with `start` and `end` (UTC) and `force` to reload files already
loaded. **Backfill**: `airflow backfill create --dag-id {daily} --from-date 2026-11-01
--to-date 2026-12-01` (one run a day: see the README's Backfill section).
"""

HOURLY_INTRO = """Each run loads the files whose 15-minute window starts in its hour (UTC), plus
`lookback_hours` before it for files that arrived late. The ledger `session_stream_files` makes
runs idempotent: a file loaded with the same content is skipped, so overlapping runs never load
a file twice. Scheduled runs fail when the drop has been silent for
`session_stream_silence_hours` (one alert when the silence starts, one when it ends)."""

DAILY_INTRO = """Each run loads the files of one UTC day, with the same tasks as `session_stream`,
batched into few task instances: a day of 96 files is one `load`. Use it for backfills
(`airflow backfill create --dag-id session_stream_daily ...`); unpaused, it also runs once a
day over the day before, a safety net that finds nothing new when the hourly DAG kept up."""

FETCH_DOC = """Lists the drop location's day folders for the run's window (plus `lookback_hours`),
keeps the files the ledger has not loaded with the same content, waits for files still being
written (or leaves them to the next scheduled run), and downloads the rest into the staging
area. Its log's last line says how many files were listed, skipped, waiting and fetched.
Fails at once on a bad param or a missing connection or Variable."""

LOAD_DOC = """Loads one batch of fetched files (the map index is labelled with the first file):
worker processes split the next files while MySQL loads the current one, one transaction a
file. Takes a slot of the pool `session_stream_load`: a load that stays *scheduled* means the
pool is missing or full. While it waits for another load's lock, its log says every minute who
holds it. A file that fails is marked failed in the ledger and named in the run's alert."""

CHECK_DOC = """Reads the ledger for the run's files and ends its log with the run's report:
files listed, skipped, loaded by this run, loaded meanwhile by another run, failed, waiting,
left behind; session versions read, sessions written, rows per table, rejects, unknown keys,
files still failing. Fails naming each file that did not load, has more than `max_rejects`
rejects or was left behind, and (scheduled hourly runs) when the drop's silence starts."""

FINISH_DOC = """Runs last, whatever failed. Fails when any task of the run failed, naming each
failed task (error, try, log link) and each failed file once: that failure sends the run's one
alert. Otherwise emits the Asset `session_stream_tables` (the run's report as its extra) when
the run loaded something, which starts `monetate_metadata_refresh`."""


def _params(batch_size: int, lookback_hours: float) -> dict:
    return {
        "start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Start (UTC)",
            description="Load the files whose window starts at or after this moment instead of "
            "the run's interval; needs End. Date and time with zone, e.g. "
            "2026-11-01T00:00:00+00:00",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="End (UTC)",
            description="Up to this moment, exclusive; needs Start",
        ),
        "force": Param(
            False,
            type="boolean",
            title="Reload loaded files",
            description="Load again the files the ledger shows loaded with the same content "
            "(after a schema change, say)",
        ),
        "lookback_hours": Param(
            lookback_hours,
            type="number",
            minimum=0,
            title="Look-back (hours)",
            description="Also list this many hours before the window, for files delivered late",
        ),
        "settle_seconds": Param(
            dag_tasks.DEFAULT_SETTLE_SECONDS,
            type="number",
            minimum=0,
            title="Settle time (seconds)",
            description="A file modified more recently may still be being written: a scheduled "
            "hourly run leaves it for the next run, any other run waits until it holds still "
            "(at most this long)",
        ),
        "batch_size": Param(
            batch_size,
            type="integer",
            minimum=1,
            title="Files per load task",
            description="Files one load task splits and loads; more files per task means fewer "
            "task instances (bigger batches past 1024 tasks)",
        ),
        "max_rejects": Param(
            dag_tasks.DEFAULT_MAX_REJECTS,
            type="integer",
            minimum=0,
            title="Rejects allowed per file",
            description="A file with more rejected lines fails the run's check (the lines are "
            "kept in session_stream_rejects)",
        ),
        "sweep_days": Param(
            dag_tasks.DEFAULT_SWEEP_DAYS,
            type="number",
            minimum=0,
            title="Retry failed files of the last (days)",
            description="Scheduled runs retry files marked failed whose window started within "
            "this many days",
        ),
        "sweep_max_files": Param(
            dag_tasks.DEFAULT_SWEEP_MAX_FILES,
            type="integer",
            minimum=0,
            title="Failed files retried per run",
            description="At most this many such files per run, newest first (0: no retries)",
        ),
        "alert": Param(
            False,
            type="boolean",
            title="Alert for this manual run",
            description="Send the failure and stall alerts for a manual run (scheduled runs and "
            "backfills always alert)",
        ),
        "drop_url": Param(
            "",
            type="string",
            title="Drop folder",
            description="A folder inside the Variable session_stream_drop_url (or a root in "
            "session_stream_drop_roots) to read instead; nothing outside them",
        ),
        "staging_url": Param(
            "",
            type="string",
            title="Staging folder",
            description="A folder inside the staging root (Variable session_stream_staging_url)",
        ),
    }


def _batch_label(files: list[dict]) -> None:
    # map_index_template renders after the task body, from variables the body adds to the context.
    label = f"{files[0]['name']} +{len(files) - 1}" if files else "empty"
    get_current_context()["batch_label"] = label


class Flavour(NamedTuple):
    """What tells the two DAGs apart: timetable, texts and defaults; the tasks are the same."""

    dag_id: str
    schedule: str
    description: str
    intro: str
    what: str
    batch_size: int
    lookback_hours: float
    max_active_runs: int
    silence_check: bool  # scheduled runs tell when the drop goes quiet


def session_stream_dag(flavour: Flavour):
    """One of the two DAGs: the same tasks, another timetable and defaults."""
    dag_id, schedule, batch_size = flavour.dag_id, flavour.schedule, flavour.batch_size
    lookback_hours, silence_check = flavour.lookback_hours, flavour.silence_check
    description, intro, what = flavour.description, flavour.intro, flavour.what
    max_active_runs = flavour.max_active_runs

    @dag(
        dag_id=dag_id,
        description=description,
        schedule=CronDataIntervalTimetable(schedule, timezone="UTC"),
        start_date=datetime(2024, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=max_active_runs,
        tags=["session_stream", "monetate", "mysql"],
        doc_md=DOC.format(
            what=what,
            intro=intro,
            pool=LOAD_POOL,
            retries=RETRIES,
            delay=RETRY_DELAY.total_seconds(),
            stall=STALL_MINUTES,
            daily=DAILY_DAG_ID,
        ),
        default_args={
            "owner": "data",
            "retries": RETRIES,
            "retry_delay": RETRY_DELAY,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=30),
            # Permanent errors fail at once; transient ones retry (session_stream_retry).
            "retry_policy": SessionStreamRetryPolicy(),
            # Task-level: the DAG-level callback is not reliable in Airflow 3.3. The notifier
            # sends the run's one alert when `finish` fails and stays quiet for the other tasks.
            "on_failure_callback": [SessionStreamNotifier()],
        },
        deadline=stall_deadline(
            STALL_MINUTES,
            pool=LOAD_POOL,
            pool_tasks={HOURLY_DAG_ID: ["load"], DAILY_DAG_ID: ["load"]},
        ),
        params=_params(batch_size, lookback_hours),
    )
    def session_stream():
        @task(execution_timeout=FETCH_TIMEOUT, doc_md=FETCH_DOC)
        def fetch(
            params=None,
            ti=None,
            run_id=None,
            dag_run=None,
            data_interval_start=None,
            data_interval_end=None,
            logical_date=None,
        ) -> list[dict]:
            """Returns the batches to map over; the run's summary (for check) goes to XCom
            'summary' (Airflow maps only over a task's return value)."""
            window = dag_tasks.resolve_window(
                params, data_interval_start, data_interval_end, logical_date
            )
            scheduled = dag_run.run_type == "scheduled"
            # Only a scheduled run can tell that the drop went quiet: manual and backfill runs
            # look at whatever window they are given.
            silence = silence_hours() if scheduled and silence_check else None
            check_locations(params)  # a param outside the admin's roots fails before anything
            loader = open_loader(init=True)
            try:
                with open_drop_location(params) as drop, open_staging_area(params) as staging:
                    result = dag_tasks.fetch(
                        drop,
                        loader,
                        staging,
                        window,
                        dag_tasks.FetchSettings.for_run(params, dag_run.run_type, run_id, silence),
                    )
            finally:
                loader.close()
            batches = result.pop("batches")
            ti.xcom_push(key="summary", value=result)
            return batches

        @task(
            pool=LOAD_POOL,
            map_index_template="{{ batch_label }}",
            execution_timeout=LOAD_TIMEOUT,
            doc_md=LOAD_DOC,
        )
        def load(batch: dict, params=None, run_id=None) -> dict:
            _batch_label(batch["files"])
            loader = open_loader(
                lock_timeout=int(LOAD_LOCK_WAIT.total_seconds()),
                token_prefix=dag_tasks.run_key(run_id),
            )
            try:
                with open_staging_area(params) as staging:
                    return dag_tasks.split_and_load(batch, staging, loader, force=params["force"])
            finally:
                loader.close()

        # all_done: once every load has finished, whatever it did. A run with nothing new (load
        # skipped) checks quietly; a run where a load failed still gets its report. Only a run
        # whose fetch did not finish has nothing to check. After a failed task, check is not
        # retried (the run alerts anyway, and retries would hold the alert back), and the run's
        # staging folder stays: a failed task cleared in the UI finds what it staged, and
        # check, cleared with it, removes the folder once all went well.
        @task(trigger_rule="all_done", execution_timeout=CHECK_TIMEOUT, doc_md=CHECK_DOC)
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
                except Exception as exc:
                    # The run's alert lists the files still failing from the report.
                    if getattr(exc, "report", None) is not None:
                        ti.xcom_push(key=CHECK_REPORT_KEY, value=exc.report)
                    raise
                finally:
                    loader.close()

        # all_done, downstream of every task: starts once, when nothing else in the run can
        # change. Not retried: a retry would alert a second time.
        @task(
            trigger_rule="all_done",
            outlets=[SESSION_TABLES],
            retries=0,
            execution_timeout=FINISH_TIMEOUT,
            doc_md=FINISH_DOC,
        )
        def finish(
            ti=None, dag=None, logical_date=None, outlet_events=None, dag_run=None, params=None
        ) -> dict:
            """Fails naming every failed task and file (the run's alert); else emits the Asset,
            with the run's report (check's return value) as its extra."""
            raise_for_failed_tasks(ti, dag, logical_date)
            report = ti.xcom_pull(task_ids="check") or {}
            if report.get("silence_ended") and alerts_wanted(dag_run.run_type, params):
                SessionStreamNotifier().send(
                    silence_ended_alert(ti.dag_id, ti.run_id, report["silence_ended"])
                )
            if not report.get("loaded"):
                # One Asset event per run that loaded something: the metadata refresh follows.
                raise AirflowSkipException("nothing new was loaded: no Asset event")
            outlet_events[SESSION_TABLES].extra = report
            return report

        batches = fetch()
        loads = load.expand(batch=batches)
        checked = check()
        [batches, loads] >> checked
        [batches, loads, checked] >> finish()

    return session_stream()


session_stream_dag(
    Flavour(
        dag_id=HOURLY_DAG_ID,
        schedule=SCHEDULE,
        description=HOURLY_DESCRIPTION,
        intro=HOURLY_INTRO,
        what="hourly",
        batch_size=HOURLY_BATCH_SIZE,
        lookback_hours=dag_tasks.DEFAULT_LOOKBACK_HOURS,
        max_active_runs=2,
        silence_check=True,
    )
)
# Look-back 0: the hourly DAG's look-back catches late files; a day's run listing the evening
# before would fetch (and split) files the previous day's run, running beside it, loads too.
session_stream_dag(
    Flavour(
        dag_id=DAILY_DAG_ID,
        schedule=DAILY_SCHEDULE,
        description=DAILY_DESCRIPTION,
        intro=DAILY_INTRO,
        what="a day per run",
        batch_size=DAILY_BATCH_SIZE,
        lookback_hours=0,
        max_active_runs=3,
        silence_check=False,
    )
)
