"""Monetate Metadata API → lookup tables, daily and after each session load.

The work is in include/session_stream/: metadata/refresh.py (the refresh), metadata/lookups.py (the
tables), warehouse/views.py (the BI views) and metadata/client.py (the API client).
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task
from session_stream_alerts import SessionStreamNotifier, raise_for_failed_tasks, stall_deadline
from session_stream_config import mysql_connect
from session_stream_retry import SessionStreamRetryPolicy

from session_stream.errors import ConfigError
from session_stream.metadata import lookups
from session_stream.metadata import refresh as lookup_refresh
from session_stream.metadata.client import KINDS
from session_stream.warehouse.privileges import migrate_if_pending

log = logging.getLogger(__name__)

API_CONN_ID = "monetate_api"
MYSQL_CONN_ID = "session_stream_mysql"
# The Asset dags/session_stream.py emits after each load, referenced by name so the two DAG
# files do not have to agree on its URI.
SESSION_TABLES = Asset.ref(name="session_stream_tables")
# A refresh pages through at most a few thousand objects per kind, each request bounded by the
# client's max_wait_seconds (300 s by default): an hour means the API is not answering.
REFRESH_TIMEOUT = timedelta(hours=1)
FINISH_TIMEOUT = timedelta(minutes=10)
# The refresh normally takes a minute; the same setting as session_stream's stall alert.
STALL_MINUTES = float(os.environ.get("AIRFLOW_VAR_SESSION_STREAM_STALL_MINUTES") or 60)

DOC = f"""
### Monetate Metadata API → lookup tables

Replaces each lookup table (`{"`, `".join(lk.table for lk in lookups.LOOKUPS)}`) with what the
Monetate Metadata API holds now, one task per kind. A refresh fills `<table>__new` and swaps it
in with one `RENAME TABLE`: BI readers never see an empty table, and a failed refresh keeps the
previous contents. The views `v_session_offers`, `v_session_page_events`,
`v_session_custom_targets` and `v_daily_sessions` join them to the session tables.

**Schedule**: daily at 05:00 UTC, and after each `session_stream` load (Asset
`session_stream_tables`), so new offer ids get names soon. To spare the API quota, a run
triggered by new data refreshes at most once per Variable
`{lookup_refresh.MIN_INTERVAL_VARIABLE}` hours (default
{lookup_refresh.DEFAULT_MIN_INTERVAL_HOURS:g}): its first task, `due`, skips the rest when the
lookups are fresher than that. Daily and manual runs always refresh.

**Configuration**: connection `{API_CONN_ID}`: login = API user, password (or extra
`private_key`) = the PEM private key whose public half is uploaded under Settings > Sites >
API Keys, extra `retailer_shortname`; optional extras `api_base`, `auth_base`, `timeout`,
`max_wait_seconds`. MySQL: connection `{MYSQL_CONN_ID}`.

**Failures**: 5xx and timeouts are retried inside the task, then by Airflow with back-off; a
revoked or refused API key (403), a missing connection or a refused MySQL login fail at once
without retries. `finish` runs last and fails naming every failed kind: one alert per run.
"""


def _refresh(kind: str) -> int:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        api = BaseHook.get_connection(API_CONN_ID)
    except AirflowNotFoundException:
        raise ConfigError(
            f"no Airflow connection {API_CONN_ID}: create it (login = API user, password = the "
            "private key PEM, extra retailer_shortname); see the DAG's documentation"
        ) from None
    conn = mysql_connect(local_infile=False)  # TLS extras honoured; no LOAD DATA LOCAL here
    try:
        migrate_if_pending(conn)  # the views come with the schema; no DDL when up to date
        with lookup_refresh.client_from_connection(
            api.login, api.password, api.extra_dejson
        ) as client:
            return lookup_refresh.refresh_lookup(conn, client, kind)
    finally:
        conn.close()


def _due(run_type) -> bool:
    from airflow.sdk import Variable

    text = Variable.get(lookup_refresh.MIN_INTERVAL_VARIABLE, default=None)
    try:
        hours = float(text) if text not in (None, "") else lookup_refresh.DEFAULT_MIN_INTERVAL_HOURS
    except ValueError:
        raise ConfigError(
            f"Variable {lookup_refresh.MIN_INTERVAL_VARIABLE} must be a number of hours, got {text!r}"
        ) from None
    conn = mysql_connect(local_infile=False)
    try:
        due, why = lookup_refresh.refresh_due(conn, run_type, min_interval_hours=hours)
    finally:
        conn.close()
    log.info("%s: %s", "refreshing" if due else "skipping the refresh", why)
    return due


@dag(
    dag_id="monetate_metadata_refresh",
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable("0 5 * * *", timezone="UTC"),
        assets=[SESSION_TABLES],
    ),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["session_stream", "monetate", "metadata", "mysql"],
    doc_md=DOC,
    default_args={
        "owner": "data",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        # The same rule and alert as session_stream: permanent errors fail at once, and the
        # notifier sends one alert per run, from `finish`.
        "retry_policy": SessionStreamRetryPolicy(),
        "on_failure_callback": [SessionStreamNotifier()],
    },
    deadline=stall_deadline(STALL_MINUTES),
)
def monetate_metadata_refresh():
    @task.short_circuit(execution_timeout=FINISH_TIMEOUT)
    def due(dag_run=None) -> bool:
        """False skips the refresh: new data refreshes the lookups at most once per interval."""
        return _due(dag_run.run_type)

    @task(execution_timeout=REFRESH_TIMEOUT)
    def refresh(kind: str) -> int:
        """Returns the rows now in the kind's lookup table."""
        return _refresh(kind)

    # all_done, downstream of every refresh: one report of every kind that failed.
    @task(trigger_rule="all_done", retries=0, execution_timeout=FINISH_TIMEOUT)
    def finish(ti=None, dag=None, logical_date=None) -> None:
        raise_for_failed_tasks(ti, dag, logical_date)

    gate = due()
    refreshes = [
        refresh.override(task_id=f"refresh_{kind.replace('-', '_')}")(kind) for kind in KINDS
    ]
    gate >> refreshes
    [gate, *refreshes] >> finish()


monetate_metadata_refresh()
