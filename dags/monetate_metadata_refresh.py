"""Monetate Metadata API → lookup tables, daily and after each session load.

The work is in include/session_stream/: lookup_refresh.py (the refresh), lookups.py (the tables),
views.py (the BI views) and metadata.py (the API client).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, dag, task
from session_stream_airflow import mysql_connect
from session_stream_alerts import SessionStreamNotifier, raise_for_failed_tasks, stall_deadline
from session_stream_retry import SessionStreamRetryPolicy

from session_stream import db, lookup_refresh, lookups, schema
from session_stream.errors import ConfigError
from session_stream.metadata import KINDS

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
`session_stream_tables`), so new offer ids get names soon.

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
    conn = mysql_connect()
    try:
        db.prepare_session(conn)
        schema.init_db(conn)  # the views come with the schema; no-op when up to date
        with lookup_refresh.client_from_connection(
            api.login, api.password, api.extra_dejson
        ) as client:
            return lookup_refresh.refresh_lookup(conn, client, kind)
    finally:
        conn.close()


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
    @task(execution_timeout=REFRESH_TIMEOUT)
    def refresh(kind: str) -> int:
        """Returns the rows now in the kind's lookup table."""
        return _refresh(kind)

    # all_done, downstream of every refresh: one report of every kind that failed.
    @task(trigger_rule="all_done", retries=0, execution_timeout=FINISH_TIMEOUT)
    def finish(ti=None, dag=None, logical_date=None) -> None:
        raise_for_failed_tasks(ti, dag, logical_date)

    refreshes = [
        refresh.override(task_id=f"refresh_{kind.replace('-', '_')}")(kind) for kind in KINDS
    ]
    refreshes >> finish()


monetate_metadata_refresh()
