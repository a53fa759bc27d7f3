"""Failure alerts for the session_stream DAG: e-mail and/or Slack, whichever is configured.

`notify_failure` goes in `default_args["on_failure_callback"]`, so it runs for every task (the
DAG-level failure callback is not reliable in Airflow 3.3). It sends

- an e-mail through the SMTP connection `smtp_default` to the addresses in the Variable
  `session_stream_alert_to` (comma-separated; the connection extra `to` also works), and
- a Slack message through the incoming-webhook connection `session_stream_slack`,

each only when its connection exists, and logs a warning when neither is configured. Sending
never raises: an alert that cannot be delivered must not hide the failure it reports.

`build_report` and `format_text` / `format_html` need only a plain dict, so they are tested alone.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field

from session_stream.redact import mask_url

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "session_stream_slack"
RECIPIENTS_VARIABLE = "session_stream_alert_to"

# Monetate file names (YYYYMMDDTHHMMSS.sssZ_PT15M-<n>.json.gz) or any other *.json[.gz] name
# quoted in an error message.
FILE_NAME = re.compile(r"[\w.:+-]+\.json(?:\.gz)?")
MAX_ERROR_CHARS = 2000


@dataclass
class FailureReport:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int | None
    try_number: int | None
    logical_date: str | None
    error: str
    files: list[str] = field(default_factory=list)
    log_url: str | None = None

    @property
    def task_label(self) -> str:
        if self.map_index is not None and self.map_index >= 0:
            return f"{self.task_id}[{self.map_index}]"
        return self.task_id

    @property
    def subject(self) -> str:
        what = f"{len(self.files)} file(s) failed" if self.files else "task failed"
        return f"[Airflow] {self.dag_id} {self.task_label} failed ({what}) in run {self.run_id}"


def failed_files(exception: BaseException | str | None) -> list[str]:
    """File names the failure is about: the exception's `files` attribute, else names in its text."""
    if exception is None:
        return []
    # The DAG re-raises file failures as AirflowFailException (no retry) from the engine's error.
    for exc in (exception, getattr(exception, "__cause__", None)):
        files = getattr(exc, "files", None)
        if files:
            return [str(f) for f in files]
    seen: dict[str, None] = {}
    for name in FILE_NAME.findall(str(exception)):
        seen.setdefault(name, None)
    return list(seen)


def build_report(context: dict) -> FailureReport:
    """Everything an alert says, from the task context Airflow passes to a callback."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exception = context.get("exception")
    task = context.get("task")

    def attr(obj, name, default=None):
        try:
            return getattr(obj, name, default) if obj is not None else default
        except Exception:  # e.g. a property that needs a live API server
            return default

    dag_id = attr(ti, "dag_id") or attr(context.get("dag"), "dag_id") or "?"
    run_id = context.get("run_id") or attr(ti, "run_id") or attr(dag_run, "run_id") or "?"
    task_id = attr(ti, "task_id") or attr(task, "task_id") or "?"
    logical_date = context.get("logical_date") or attr(dag_run, "logical_date")
    error = (
        f"{type(exception).__name__}: {exception}"
        if isinstance(exception, BaseException)
        else str(exception or "unknown error")
    )
    error = mask_url(error)  # a URL quoted in an error never shows its password in an alert
    if len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + " …"
    return FailureReport(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=attr(ti, "map_index"),
        try_number=attr(ti, "try_number"),
        logical_date=logical_date.isoformat()
        if hasattr(logical_date, "isoformat")
        else logical_date,
        error=error,
        files=failed_files(exception),
        log_url=attr(ti, "log_url"),
    )


def format_text(report: FailureReport) -> str:
    lines = [
        f"DAG:   {report.dag_id}",
        f"Run:   {report.run_id}",
        f"Task:  {report.task_label}"
        + (f" (try {report.try_number})" if report.try_number else ""),
    ]
    if report.logical_date:
        lines.append(f"Date:  {report.logical_date}")
    if report.files:
        lines.append(f"Failed files ({len(report.files)}):")
        lines += [f"  - {name}" for name in report.files]
    lines.append(f"Error: {report.error}")
    if report.log_url:
        lines.append(f"Log:   {report.log_url}")
    if report.files:
        lines.append(
            "Failed files are marked failed in session_stream_files; the next run retries them."
        )
    return "\n".join(lines)


def format_html(report: FailureReport) -> str:
    return f"<pre>{html.escape(format_text(report))}</pre>"


def _connection(conn_id: str):
    """The connection, or None when it is not configured."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _recipients(conn) -> list[str]:
    from airflow.sdk import Variable

    value = Variable.get(RECIPIENTS_VARIABLE, default=None) or conn.extra_dejson.get("to") or ""
    return [a.strip() for a in re.split(r"[,;]", value) if a.strip()]


def send_email(report: FailureReport, conn) -> bool:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    to = _recipients(conn)
    if not to:
        log.warning(
            "connection %s exists but nobody to e-mail: set the Variable %s to a comma-separated address list",
            SMTP_CONN_ID,
            RECIPIENTS_VARIABLE,
        )
        return False
    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(
            to=to,
            subject=report.subject,
            html_content=format_html(report),
            from_email=hook.from_email or f"airflow@{conn.host or 'localhost'}",
        )
    return True


def send_slack(report: FailureReport) -> bool:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    SlackWebhookHook(slack_webhook_conn_id=SLACK_CONN_ID).send(
        text=f"*{report.subject}*\n```{format_text(report)}```"
    )
    return True


def notify_failure(context) -> None:
    """on_failure_callback: alert on every configured channel; warn when there is none."""
    report = build_report(dict(context))
    sent = []
    channels = {SMTP_CONN_ID: send_email, SLACK_CONN_ID: lambda r, _conn: send_slack(r)}
    for conn_id, send in channels.items():
        conn = _connection(conn_id)
        if conn is None:
            continue
        try:
            if send(report, conn):
                sent.append(conn_id)
        except Exception:
            log.exception("could not send the failure alert through connection %s", conn_id)
    if sent:
        log.info("failure alert sent via %s: %s", ", ".join(sent), report.subject)
    else:
        log.warning(
            "no failure alert was sent for %s: create the connection %s (plus the Variable %s) "
            "or %s (Slack incoming webhook) to get alerts.\n%s",
            report.task_label,
            SMTP_CONN_ID,
            RECIPIENTS_VARIABLE,
            SLACK_CONN_ID,
            format_text(report),
        )
