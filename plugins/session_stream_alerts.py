"""Failure alerts for both DAGs: one message per failed run, through Airflow's notifier mechanism.

How a failure becomes one alert:

1. Every failed try passes through the retry rule (session_stream_retry), in the task's own
   process, before Airflow records its state; `note_failure` leaves the error, the files and the
   try number in that task instance's XCom `failure` (a retry clears it, so what stays is the
   last try's).
2. Each DAG ends with a task `finish` (trigger rule `all_done`, downstream of every task). It
   starts once every other task instance of the run is done, reads their states from the Task
   SDK and the notes from XCom, and if any failed raises `RunFailed` naming each failed task
   with its error and log link, and each failed file once (`raise_for_failed_tasks`).
3. `SessionStreamNotifier` sits in `default_args["on_failure_callback"]`. It sends the report of
   `finish`'s `RunFailed`, and stays quiet for the other tasks of a DAG that has a `finish`:
   their failures are in that report. One alert per failed run, however many tasks, map indexes
   and tries failed. Add your own notifiers to the same list (they run for every failed task).

Why a final task rather than a claim row per run: an Airflow 3 task cannot write Airflow's
database, a claim in the warehouse fails exactly when MySQL is what broke, and the failure
callback runs after the state is recorded, when the first failing task cannot know which others
will still fail. `finish` exists once per run and starts only when nothing else can change, so
the dedup holds under the real scheduler, mapped tasks and retries included, and the list is
complete. The price: the alert comes when the run is over, bounded by the tasks'
`execution_timeout`. A run that never gets there (a missing pool, no scheduler slot, a hung
task) is reported by the deadline alert instead (`AsyncCallback(SessionStreamNotifier, ...)`,
run by the triggerer; see `stall_deadline`).

Channels, each used when its connection exists: e-mail through the SMTP connection
`smtp_default` to the Variable `session_stream_alert_to` (comma-separated; or the connection
extra `to`), and Slack through the incoming-webhook connection `session_stream_slack`. Sending
never raises: an alert that cannot be delivered must not hide the failure; a warning says per
channel what is missing or what went wrong. Links are built from `[api] base_url`
(AIRFLOW__API__BASE_URL), the address users open Airflow at.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import sys
from datetime import timedelta

from airflow.sdk import BaseNotifier
from session_stream_alert_messages import (
    MANUAL_ALERTS_VARIABLE,
    Alert,
    alerts_wanted,
    run_alert,
    silence_ended_alert,
    stall_alert,
    stuck_tasks,
    task_alert,
)
from session_stream_failures import (
    CHECK_REPORT_KEY,
    RunFailed,
    RunReport,
    TaskFailure,
    describe,
    note_failure,
    raise_for_failed_tasks,
    run_report,
    run_states,
)

log = logging.getLogger(__name__)

# The DAG files, the retry rule and the tests read the alert path's names here: the notifier's
# own, and those of the modules it is built from (session_stream_failures: what failed;
# session_stream_alert_messages: what an alert says).
__all__ = [
    "CHECK_REPORT_KEY",
    "Alert",
    "RunFailed",
    "RunReport",
    "SessionStreamNotifier",
    "TaskFailure",
    "alerts_wanted",
    "describe",
    "note_failure",
    "raise_for_failed_tasks",
    "run_alert",
    "run_report",
    "run_states",
    "silence_ended_alert",
    "stall_deadline",
]

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "session_stream_slack"
RECIPIENTS_VARIABLE = "session_stream_alert_to"
FINISH_TASK_ID = "finish"


# ---------------------------------------------------------------- stalls


def stall_deadline(minutes: float, pool: str | None = None, pool_tasks: dict | None = None):
    """A DAG's `deadline`: alert when a run is still going `minutes` after it was queued.

    None when `minutes` is 0, and under `airflow dags test`, which runs no scheduler to watch
    deadlines and, in Airflow 3.3.2, exits 1 after a successful run of a DAG that has one
    (apache/airflow#73428: it hands the serialized alerts to a database lookup).
    """
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    if minutes <= 0 or sys.argv[1:3] == ["dags", "test"]:
        return None
    kwargs: dict = {"stall_minutes": minutes}
    if pool:
        kwargs["pool"] = pool
    if pool_tasks:
        kwargs["pool_tasks"] = {d: list(t) for d, t in pool_tasks.items()}
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        # Run by the triggerer (async_notify). Not SyncCallback: in Airflow 3.3.2 the executor runs
        # it with a token the Execution API refuses for connections, so no e-mail could go out.
        callback=AsyncCallback(SessionStreamNotifier, kwargs=kwargs),
    )


# ---------------------------------------------------------------- the notifier


class SessionStreamNotifier(BaseNotifier):
    """Sends the run's alert by e-mail and/or Slack (see the module docstring).

    In `default_args["on_failure_callback"]`: the report of `finish`'s RunFailed, nothing for the
    other tasks of a DAG that has a `finish`, a one-task report otherwise. As a deadline alert's
    `AsyncCallback(SessionStreamNotifier, kwargs={"stall_minutes": N, "pool": ...})`: the run
    is still going N minutes after it was queued (a run that has finished was reported already).
    """

    def __init__(
        self,
        *,
        smtp_conn_id: str = SMTP_CONN_ID,
        slack_conn_id: str = SLACK_CONN_ID,
        recipients_variable: str = RECIPIENTS_VARIABLE,
        stall_minutes: float | None = None,
        pool: str | None = None,
        pool_tasks: dict | None = None,
        context=None,
    ):
        super().__init__(context)
        self.smtp_conn_id = smtp_conn_id
        self.slack_conn_id = slack_conn_id
        self.recipients_variable = recipients_variable
        self.stall_minutes = stall_minutes
        self.pool = pool
        self.pool_tasks = pool_tasks

    def alert_for(self, context) -> Alert | None:
        """What to send for this callback, or None when another callback reports it."""
        if "deadline" in context and "ti" not in context:
            dag_run = dict(context.get("dag_run") or {})
            if dag_run.get("state") != "running":
                # Finished (a failure was reported by finish) or still queued behind others
                # (a backfill waiting for its turn is not stalled).
                log.info(
                    "deadline passed for %s in state %s: no alert",
                    dag_run.get("dag_run_id"),
                    dag_run.get("state"),
                )
                return None
            if not alerts_wanted(dag_run.get("run_type"), dag_run.get("conf")):
                log.info(
                    "manual run %s stalled: no alert (param alert or Variable %s)",
                    dag_run.get("dag_run_id"),
                    MANUAL_ALERTS_VARIABLE,
                )
                return None
            try:
                stuck = stuck_tasks(
                    dag_run.get("dag_id", ""),
                    dag_run.get("dag_run_id", ""),
                    self.pool,
                    self.pool_tasks,
                )
            except Exception:  # the alert goes out without the task list
                log.exception("could not read the stalled run's task states")
                stuck = None
            return stall_alert(dag_run, self.stall_minutes or 0, self.pool, stuck)
        exception = context.get("exception")
        dag_run = context.get("dag_run")
        if not alerts_wanted(getattr(dag_run, "run_type", None), context.get("params")):
            log.warning(
                "%s failed in a manual run: no alert is sent for manual runs and `airflow dags "
                "test` unless the run's param alert or the Variable %s is true",
                getattr(context.get("ti"), "task_id", "a task"),
                MANUAL_ALERTS_VARIABLE,
            )
            return None
        if isinstance(exception, RunFailed):
            return run_alert(exception.report)
        task = context.get("task")
        dag = context.get("dag") or getattr(task, "dag", None)
        task_id = getattr(task, "task_id", None) or getattr(context.get("ti"), "task_id", None)
        if (
            dag is not None
            and FINISH_TASK_ID in getattr(dag, "task_ids", ())
            and task_id != FINISH_TASK_ID
        ):
            log.info("%s failed: the run's alert comes from its task %s", task_id, FINISH_TASK_ID)
            return None
        return task_alert(context)

    def notify(self, context) -> None:
        alert = self.alert_for(context)
        if alert is not None:
            self.send(alert)

    async def async_notify(self, context) -> None:
        """The deadline alert's way in (the triggerer): the hooks are synchronous, so a thread."""
        import asyncio

        await asyncio.to_thread(self.notify, context)

    # -- channels -------------------------------------------------------------------------

    def send(self, alert: Alert) -> list[str]:
        """Send on every configured channel; returns the connection ids that delivered it."""
        sent, problems = [], []
        for conn_id, send in ((self.smtp_conn_id, self._email), (self.slack_conn_id, self._slack)):
            conn = _connection(conn_id)
            if conn is None:
                problems.append(f"no connection {conn_id}")
                continue
            try:
                problem = send(alert, conn)
            except Exception as exc:
                hint = _smtp_hint(conn, exc) if conn_id == self.smtp_conn_id else ""
                problem = f"sending through {conn_id} failed: {describe(exc)}{hint}"
                log.exception("could not send the failure alert through connection %s", conn_id)
            if problem:
                problems.append(problem)
            else:
                sent.append(conn_id)
        if sent:
            log.info("failure alert sent via %s: %s", ", ".join(sent), alert.subject)
        else:
            log.warning(
                "no failure alert was sent (%s). E-mail needs the connection %s and the Variable "
                "%s; Slack needs the connection %s (incoming webhook). The alert:\n%s\n%s",
                "; ".join(problems),
                self.smtp_conn_id,
                self.recipients_variable,
                self.slack_conn_id,
                alert.subject,
                alert.text,
            )
        return sent

    def _recipients(self, conn) -> list[str]:
        from airflow.sdk import Variable

        value = (
            Variable.get(self.recipients_variable, default=None)
            or conn.extra_dejson.get("to")
            or ""
        )
        return [a.strip() for a in re.split(r"[,;]", value) if a.strip()]

    def _email(self, alert: Alert, conn) -> str | None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        to = self._recipients(conn)
        if not to:
            return (
                f"connection {self.smtp_conn_id} exists but names nobody to e-mail: set the "
                f"Variable {self.recipients_variable} to a comma-separated address list"
            )

        class PlainAndHtml(SmtpHook):
            """multipart/alternative: the text part first (mail-to-ticket and pager gateways
            read it), the HTML part last (what mail clients show)."""

            def _build_mime_message(self, *args, **kwargs):
                from email.mime.text import MIMEText

                msg, recipients = super()._build_mime_message(*args, **kwargs)
                msg.set_payload([MIMEText(alert.text, "plain", "utf-8"), *msg.get_payload()])
                return msg, recipients

        with PlainAndHtml(smtp_conn_id=self.smtp_conn_id) as hook:
            hook.send_email_smtp(
                to=to,
                subject=alert.subject,
                html_content=alert.html,
                from_email=hook.from_email or f"airflow@{conn.host or 'localhost'}",
                mime_subtype="alternative",
            )
        return None

    def _slack(self, alert: Alert, conn) -> str | None:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        SlackWebhookHook(slack_webhook_conn_id=self.slack_conn_id).send(
            text=f"*{alert.subject}*\n```{alert.text}```"
        )
        return None


def _connection(conn_id: str):
    """The connection, or None when it is not configured."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _smtp_hint(conn, exc: BaseException) -> str:
    """What to change in the SMTP connection when its TLS setting does not match the server."""
    extra = conn.extra_dejson
    if isinstance(
        exc, (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError)
    ) and not extra.get("disable_ssl"):
        return (
            f" (the SMTP provider opens port {conn.port or 465} with implicit TLS, SMTPS, unless the "
            'connection extra "disable_ssl" is true: for a server on 587 or 25 set '
            '{"disable_ssl": true}, which keeps STARTTLS)'
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError) and not extra.get("disable_tls"):
        return (
            ' (the server offers no STARTTLS: for a relay without TLS also set "disable_tls": true)'
        )
    return ""
