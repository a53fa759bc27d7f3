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

import html
import logging
import re
import smtplib
import ssl
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

from session_stream.redact import mask_url

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "session_stream_slack"
RECIPIENTS_VARIABLE = "session_stream_alert_to"
FINISH_TASK_ID = "finish"
FAILURE_KEY = "failure"  # the XCom key note_failure writes
CHECK_TASK_ID = "check"
CHECK_REPORT_KEY = "report"  # check's report, when check itself failed
# Manual runs (and `airflow dags test`) alert only when this Variable is true or the run's
# param `alert` is: a person trying the DAG out should not page the whole list.
MANUAL_ALERTS_VARIABLE = "session_stream_alert_manual_runs"
DEFAULT_BASE_URL = "http://localhost:8080"
MAX_ERROR_CHARS = 1500


# ---------------------------------------------------------------- what failed


@dataclass
class TaskFailure:
    task_id: str
    map_index: int = -1
    try_number: int | None = None
    error: str = ""
    kind: str | None = None  # "permanent" or "transient" (session_stream_retry)
    problems: dict[str, str] = field(default_factory=dict)  # file name -> what is wrong with it

    @property
    def label(self) -> str:
        return f"{self.task_id}[{self.map_index}]" if self.map_index >= 0 else self.task_id


@dataclass
class RunReport:
    dag_id: str
    run_id: str
    logical_date: str | None = None
    failed: list[TaskFailure] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # upstream_failed: never started
    # Files of earlier windows that still fail (check's report): {file, failing_since, attempts,
    # error}, newest first, and how many there are in all.
    still_failing: list[dict] = field(default_factory=list)
    still_failing_total: int = 0

    @property
    def files(self) -> dict[str, str]:
        """Every failed file once, with the first problem reported for it."""
        files: dict[str, str] = {}
        for failure in self.failed:
            for name, problem in failure.problems.items():
                files.setdefault(name, problem)
        return files


class RunFailed(AirflowFailException):
    """Raised by `finish` when a task of its run failed; carries the run's report.

    An AirflowFailException: `finish` is not retried (a retry would alert a second time).
    """

    def __init__(self, report: RunReport):
        self.report = report
        labels = ", ".join(f.label for f in report.failed)
        super().__init__(
            f"{len(report.failed)} task(s) of run {report.run_id} failed: {labels}"
            + (f"; {len(report.files)} file(s) failed" if report.files else "")
        )


def describe(exc: BaseException) -> str:
    """One line for an alert. A FilesFailedError gives its summary: the files are listed apart.
    A URL quoted in an error never shows its password."""
    text = getattr(exc, "summary", None) or f"{type(exc).__name__}: {exc}"
    text = mask_url(" ".join(str(text).split()))
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " …"


def problems_of(exc: BaseException | None) -> dict[str, str]:
    """{file: problem} of the engine's FilesFailedError, also when Airflow wrapped it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        problems = getattr(exc, "problems", None)
        if isinstance(problems, dict):
            return {str(k): mask_url(str(v)) for k, v in problems.items()}
        exc = exc.__cause__ or exc.__context__
    return {}


def note_failure(context, exception: BaseException, kind: str | None) -> None:
    """Leave this try's failure in XCom for the run's `finish` (called by the retry rule)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:
        return
    try:
        ti.xcom_push(
            key=FAILURE_KEY,
            value={
                "error": describe(exception),
                "kind": kind,
                "try_number": getattr(ti, "try_number", None),
                "problems": problems_of(exception),
            },
        )
    except Exception:  # the alert must still go out: finish then says "see the log"
        log.exception("could not note the failure of %s for the run's alert", ti.task_id)


def _task_and_map_index(key: str, task_ids: set[str]) -> tuple[str, int]:
    """The Task SDK names a mapped task instance '<task_id>_<map_index>'."""
    if key in task_ids:
        return key, -1
    task_id, _, index = key.rpartition("_")
    if task_id in task_ids and index.isdigit():
        return task_id, int(index)
    return key, -1


def run_states(ti) -> dict[str, str]:
    """The state of each task instance of `ti`'s run (a mapped one as '<task_id>_<map_index>')."""
    return ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})


def run_report(ti, dag, logical_date=None) -> RunReport:
    """What failed in `ti`'s run, from the task states and the XCom notes (see the module doc)."""
    states = run_states(ti)
    order = {task_id: i for i, task_id in enumerate(dag.task_ids)}
    found = []
    for key, state in states.items():
        task_id, map_index = _task_and_map_index(key, set(order))
        if task_id != ti.task_id and state in ("failed", "upstream_failed"):
            found.append((order.get(task_id, len(order)), map_index, task_id, state))
    report = RunReport(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        logical_date=logical_date.isoformat() if hasattr(logical_date, "isoformat") else None,
    )
    checked = _check_report(ti, order)
    report.still_failing = list(checked.get("still_failing") or [])
    report.still_failing_total = int(checked.get("still_failing_total") or 0)
    for _, map_index, task_id, state in sorted(found):
        if state == "upstream_failed":
            label = f"{task_id}[{map_index}]" if map_index >= 0 else task_id
            if label not in report.not_run:
                report.not_run.append(label)
            continue
        note = ti.xcom_pull(task_ids=task_id, key=FAILURE_KEY, map_indexes=map_index) or {}
        report.failed.append(
            TaskFailure(
                task_id=task_id,
                map_index=map_index,
                try_number=note.get("try_number"),
                error=note.get("error")
                or "no error was noted (killed, timed out by the scheduler, or failed before it "
                "started): see its log",
                kind=note.get("kind"),
                problems=dict(note.get("problems") or {}),
            )
        )
    return report


def _check_report(ti, task_ids) -> dict:
    """The run's report from its `check` task: its return value, or, when it failed, what it
    left under XCom `report` (CHECK_REPORT_KEY)."""
    if CHECK_TASK_ID not in task_ids:
        return {}
    try:
        return (
            ti.xcom_pull(task_ids=CHECK_TASK_ID)
            or ti.xcom_pull(task_ids=CHECK_TASK_ID, key=CHECK_REPORT_KEY)
            or {}
        )
    except Exception:  # the alert must still go out without it
        log.exception("could not read the run's report for the alert")
        return {}


def raise_for_failed_tasks(ti, dag, logical_date=None) -> RunReport:
    """The body of `finish`: raise RunFailed when a task of the run failed, else return the report."""
    report = run_report(ti, dag, logical_date)
    if report.failed:
        raise RunFailed(report)
    return report


# ---------------------------------------------------------------- what an alert says


def base_url() -> tuple[str, bool]:
    """`[api] base_url` without its trailing slash, and whether it is set at all."""
    from airflow.sdk.configuration import conf

    value = (conf.get("api", "base_url", fallback="") or "").strip()
    return (value or DEFAULT_BASE_URL).rstrip("/"), bool(value)


def run_url(dag_id: str, run_id: str) -> str:
    return f"{base_url()[0]}/dags/{dag_id}/runs/{quote(run_id)}"


def task_url(dag_id: str, run_id: str, failure: TaskFailure) -> str:
    """The task instance's page, log included; the same form as Airflow's own `ti.log_url`."""
    url = f"{run_url(dag_id, run_id)}/tasks/{failure.task_id}"
    if failure.map_index >= 0:
        url += f"/mapped/{failure.map_index}"
    return url + (f"?try_number={failure.try_number}" if failure.try_number else "")


@dataclass
class Alert:
    subject: str
    text: str

    @property
    def html(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"


def _footer() -> list[str]:
    if base_url()[1]:
        return []
    return [
        "",
        f"(Links use {DEFAULT_BASE_URL}: set [api] base_url, AIRFLOW__API__BASE_URL, to the "
        "address users open Airflow at.)",
    ]


def run_alert(report: RunReport) -> Alert:
    files = report.files
    labels = ", ".join(f.label for f in report.failed)
    subject = f"[Airflow] {report.dag_id} run {report.run_id} failed: {labels}"
    if files:
        subject += f" ({len(files)} file(s))"
    lines = [f"DAG:   {report.dag_id}", f"Run:   {report.run_id}"]
    if report.logical_date:
        lines.append(f"Date:  {report.logical_date}")
    lines.append(f"Link:  {run_url(report.dag_id, report.run_id)}")
    lines += ["", f"Failed tasks ({len(report.failed)}):"]
    for failure in report.failed:
        tries = f", try {failure.try_number}" if failure.try_number else ""
        kind = f", {failure.kind}" if failure.kind else ""
        lines.append(f"  - {failure.label}{tries}{kind}: {failure.error}")
        lines.append(f"    log: {task_url(report.dag_id, report.run_id, failure)}")
    if files:
        lines += ["", f"Failed files ({len(files)}):"]
        lines += [
            f"  - {name}: {problem}" if problem else f"  - {name}"
            for name, problem in files.items()
        ]
    # The ledger's failing files, less this run's own (listed above already).
    earlier = [f for f in report.still_failing if f.get("file") not in files]
    total = report.still_failing_total - (len(report.still_failing) - len(earlier))
    if total > 0:
        lines += ["", f"Files of earlier windows still failing ({total}):"]
        for f in earlier:
            lines.append(
                f"  - {f.get('file')}: failing since {f.get('failing_since') or '?'},"
                f" {f.get('attempts')} attempt(s): {f.get('error')}"
            )
        more = total - len(earlier)
        if more > 0:
            lines.append(f"  ... and {more} more (the check task's log lists them all)")
    if report.not_run:
        lines += ["", "Not run (an upstream task failed): " + ", ".join(report.not_run)]
    return Alert(subject, "\n".join(lines + _footer()))


def task_alert(context) -> Alert:
    """One failed task of a DAG without `finish` (or `finish` itself, failing on its own)."""
    ti = context.get("ti")
    exception = context.get("exception")
    failure = TaskFailure(
        task_id=getattr(ti, "task_id", "?"),
        map_index=getattr(ti, "map_index", -1)
        if getattr(ti, "map_index", None) is not None
        else -1,
        try_number=getattr(ti, "try_number", None),
        error=describe(exception)
        if isinstance(exception, BaseException)
        else str(exception or "?"),
        problems=problems_of(exception if isinstance(exception, BaseException) else None),
    )
    report = RunReport(
        dag_id=getattr(ti, "dag_id", "?"), run_id=getattr(ti, "run_id", "?"), failed=[failure]
    )
    return run_alert(report)


UNFINISHED = {
    None: "not started: its upstream tasks have not finished",
    "none": "not started: its upstream tasks have not finished",
    "queued": "queued, and no worker has picked it up: is the executor (Celery workers, the "
    "scheduler's LocalExecutor) running?",
    "running": "running: its log says what it is doing and, every minute, what it waits for",
    "up_for_retry": "waiting to retry after a transient error (its log says which)",
    "up_for_reschedule": "waiting to be rescheduled",
    "deferred": "deferred to the triggerer: is the triggerer running?",
    "restarting": "restarting",
}


@dataclass
class StuckTask:
    label: str
    state: str | None
    why: str


def _label(key: str) -> str:
    """'load_3' (the Task SDK's name of a mapped task instance) as 'load[3]'."""
    task_id, _, index = key.rpartition("_")
    return f"{task_id}[{index}]" if task_id and index.isdigit() else key


def stuck_tasks(
    dag_id: str, run_id: str, pool: str | None = None, pool_tasks: dict | None = None
) -> list[StuckTask]:
    """The unfinished task instances of a run, each with its state and why it is held up.

    A task 'scheduled' for `pool` waits for a slot: when no task that uses the pool runs
    anywhere (`pool_tasks`: {dag_id: [task ids]}), the pool is missing (or has no slots), else it
    is full. Read through the Task SDK (the triggerer runs the deadline alert and answers it).
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
    in_pool = set((pool_tasks or {}).get(dag_id, []))
    found = []
    for key, state in sorted(states.items()):
        state = str(getattr(state, "value", state)) if state is not None else None
        if state in ("success", "failed", "skipped", "upstream_failed", "removed"):
            continue
        label = _label(key)
        task_id = label.split("[")[0]
        if state == "scheduled" and pool and task_id in in_pool:
            running = sum(
                RuntimeTaskInstance.get_ti_count(dag_id=d, task_ids=list(ids), states=["running"])
                for d, ids in (pool_tasks or {}).items()
            )
            if running:
                why = (
                    f"waiting for a slot of the pool {pool}, which is full: {running} load(s) of "
                    f"{', '.join(pool_tasks)} run now (`airflow pools get {pool}`)"
                )
            else:
                why = (
                    f"waiting for a slot of the pool {pool}, and no load runs anywhere: the pool "
                    f"does not exist or has no slots. Create it: "
                    f'`airflow pools set {pool} 2 "session-stream loads"`'
                )
        elif state == "scheduled":
            why = "scheduled but not queued: the scheduler has no free slot (parallelism, pools)"
        else:
            why = UNFINISHED.get(state, f"in state {state}")
        found.append(StuckTask(label, state, why))
    # What holds the run up first; the tasks merely waiting for it after.
    return sorted(found, key=lambda t: t.state in (None, "none"))


def stall_alert(
    dag_run: dict, minutes: float, pool: str | None = None, stuck: list[StuckTask] | None = None
) -> Alert:
    """A run still going `minutes` after it was queued (the deadline alert's context), naming
    the tasks that hold it up, their state and why."""
    dag_id, run_id = dag_run.get("dag_id", "?"), dag_run.get("dag_run_id", "?")
    lines = [
        f"DAG:   {dag_id}",
        f"Run:   {run_id} ({dag_run.get('run_type', '?')})",
        f"State: {dag_run.get('state')}, queued {dag_run.get('queued_at')}, "
        f"started {dag_run.get('start_date')}",
        f"Link:  {run_url(dag_id, run_id)}",
        "",
        f"The run has not finished {minutes:g} minutes after it was queued. It goes on; if it "
        "fails, that is reported separately.",
    ]
    if stuck:
        lines += ["", f"Unfinished tasks ({len(stuck)}):"]
        lines += [f"  - {t.label} ({t.state or 'no state'}): {t.why}" for t in stuck]
    else:
        lines += [
            "",
            "Its tasks' states could not be read. What usually holds a run up:",
            f"  - tasks 'scheduled' for the pool {pool}, which does not exist or has no free "
            f"slot: `airflow pools get {pool}`; create it with "
            f'`airflow pools set {pool} 2 "session-stream loads"`',
            "  - no scheduler or worker picking tasks up (tasks 'queued' for long)",
            "  - a task waiting on a server: its log says which",
        ]
    subject = f"[Airflow] {dag_id} run {run_id} has not finished after {minutes:g} min"
    if stuck:
        subject += f": {stuck[0].label} {stuck[0].state or 'not started'}"
    return Alert(subject, "\n".join(lines + _footer()))


def silence_ended_alert(dag_id: str, run_id: str, message: str) -> Alert:
    """The drop delivers again after a silence that alerted (sent by `finish`)."""
    subject = f"[Airflow] {dag_id}: the drop delivers again (run {run_id})"
    lines = [
        f"DAG:   {dag_id}",
        f"Run:   {run_id}",
        f"Link:  {run_url(dag_id, run_id)}",
        "",
        message,
    ]
    return Alert(subject, "\n".join(lines + _footer()))


def alerts_wanted(run_type, params: dict | None) -> bool:
    """Scheduled runs, backfills and asset-triggered runs alert; a manual run (and
    `airflow dags test`) only with its param `alert` or the Variable MANUAL_ALERTS_VARIABLE."""
    kind = str(getattr(run_type, "value", run_type) or "")
    if kind != "manual":
        return True
    if _truthy((params or {}).get("alert")):
        return True
    from airflow.sdk import Variable

    try:
        return _truthy(Variable.get(MANUAL_ALERTS_VARIABLE, default=None))
    except Exception:  # noqa: BLE001 - unreadable: alert, rather than hide a failure
        return True


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


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
