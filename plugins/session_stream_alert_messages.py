"""What an alert says: the run's or task's failure, a stalled run, a drop that delivers again, with
links into the Airflow UI; and whether a run alerts at all (manual runs only when asked)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from urllib.parse import quote

from session_stream_failures import RunReport, TaskFailure, describe, problems_of

log = logging.getLogger(__name__)

# Manual runs (and `airflow dags test`) alert only when this Variable is true or the run's
# param `alert` is: a person trying the DAG out should not page the whole list.
MANUAL_ALERTS_VARIABLE = "session_stream_alert_manual_runs"
DEFAULT_BASE_URL = "http://localhost:8080"


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
