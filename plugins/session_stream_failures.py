"""What failed in a run, for its one alert: each failed try's note in XCom (`note_failure`), the
run's task states, and `raise_for_failed_tasks`, which the `finish` task calls to fail the run
with every failed task and file named once (see session_stream_alerts for the whole path)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from airflow.sdk.exceptions import AirflowFailException

from session_stream.redact import mask_url

log = logging.getLogger(__name__)

FAILURE_KEY = "failure"  # the XCom key note_failure writes
CHECK_TASK_ID = "check"
CHECK_REPORT_KEY = "report"  # check's report, when check itself failed
MAX_ERROR_CHARS = 1500


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
