"""What each task of the session_stream DAG does, as plain functions (no Airflow import).

    fetch        list the run's window plus a look-back, keep the files the ledger has not loaded
                 (or that changed), add (scheduled runs) the files the ledger marks failed in
                 earlier windows (the sweep), leave files still being written for the next run,
                 download the rest into the staging area and cut them into batches
    split_and_load  split each staged file of a batch in worker processes while MySQL loads the
                 one before (a file that cannot be read fails alone), record failures in the
                 ledger, remove what was staged, and raise FilesFailedError at the end naming
                 the files that failed
    check        compare the ledger with what was fetched: fail naming files that are not loaded
                 or have more rejects than allowed, or, on a scheduled run, when the drop has
                 delivered nothing for `silence_hours`; list the files still failing

Return values are small dicts of names and counts (they travel as XCom). Files move between
tasks through the staging area under `<prefix>/raw/<name>`, so tasks may run on different
workers when the staging area is an s3:// prefix.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from session_stream import tables
from session_stream.runs.load_task import split_and_load
from session_stream.runs.policy import DEFAULT_SWEEP_DAYS
from session_stream.runs.run_files import (
    DropSilentError,
    FilesFailedError,
    checked_prefix,
    local_path,
    raw_key,
    run_key,
    staging_prefix,
    without_name,
)
from session_stream.runs.window import Window, drop_silence, resolve_window, sweep_failed, sweeps
from session_stream.split.keycounts import KeyCounts
from session_stream.utc import to_utc
from session_stream.warehouse import ledger

log = logging.getLogger(__name__)

# The DAG files and plugins read every task's names here: the tasks' own, and those of the modules
# they are built from (window.py, run_files.py, load_task.py).
__all__ = [
    "DEFAULT_SWEEP_DAYS",
    "DropSilentError",
    "FetchSettings",
    "FilesFailedError",
    "Window",
    "check",
    "checked_prefix",
    "fetch",
    "plan_batches",
    "resolve_window",
    "run_key",
    "split_and_load",
    "staging_prefix",
    "sweep_failed",
    "sweeps",
]

MAX_MAP_ITEMS = 1024  # Airflow's cap on the items of one mapped task

DEFAULT_LOOKBACK_HOURS = 3
DEFAULT_SETTLE_SECONDS = 120
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_REJECTS = 100
DEFAULT_SWEEP_MAX_FILES = 16  # one batch: a run stays short however many files keep failing


def plan_batches(
    files: list[dict], batch_size: int, max_items: int = MAX_MAP_ITEMS
) -> list[list[dict]]:
    """Cut files into batches of `batch_size`, growing the batches when there would be too many."""
    if not files:
        return []
    size = max(1, int(batch_size), math.ceil(len(files) / max_items))
    return [files[i : i + size] for i in range(0, len(files), size)]


# ---------------------------------------------------------------- the tasks


@dataclass(frozen=True)
class FetchSettings:
    """What a run's `fetch` does, built once per run (the DAG: from its params and run type).

    prefix             the run's staging prefix (staging_prefix(run_id))
    lookback_hours     also list this many hours before the window, for late files
    settle_seconds     a file modified more recently may still be being written
    recheck_after      seconds between two looks at sizes (None: 5 s for stores without mtime)
    batch_size         files per batch (one load task each)
    force              reload files the ledger has loaded with the same content
    sweep              retry the ledger's failed files of earlier windows (scheduled runs)
    sweep_days         ... whose window started within this many days
    sweep_max_files    ... at most this many a run, newest first
    silence_hours      tell when the drop's silence begins / goes on / ends (None: do not)
    leave_for_next_run a young file the next run's look-back lists may wait for it
    run_key            the head of the load_token of this run's loads (run_key(run_id))
    """

    prefix: str
    lookback_hours: float = DEFAULT_LOOKBACK_HOURS
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    recheck_after: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False
    sweep: bool = False
    sweep_days: float = DEFAULT_SWEEP_DAYS
    sweep_max_files: int = DEFAULT_SWEEP_MAX_FILES
    silence_hours: float | None = None
    leave_for_next_run: bool = False
    run_key: str | None = None

    @classmethod
    def for_run(
        cls, params: dict, run_type, run_id: str, silence_hours: float | None
    ) -> FetchSettings:
        """A DAG run's settings: its params, and what its type allows (only scheduled runs
        sweep, and may leave a young file to the next run)."""
        scheduled = sweeps(run_type)
        return cls(
            prefix=staging_prefix(run_id),
            lookback_hours=params["lookback_hours"],
            settle_seconds=params["settle_seconds"],
            batch_size=params["batch_size"],
            force=params["force"],
            sweep=scheduled,
            sweep_days=params["sweep_days"],
            sweep_max_files=params["sweep_max_files"],
            silence_hours=silence_hours,
            leave_for_next_run=scheduled,
            run_key=run_key(run_id),
        )


def fetch(
    drop, loader, staging, window: Window, run: FetchSettings, *, now: datetime | None = None
) -> dict:
    """List, keep what is pending and settled, stage it, and plan the batches.

    Settling (a file younger than `settle_seconds`, or whose size changed under a second look,
    may still be being written): with `leave_for_next_run` (the DAG passes it for scheduled
    runs), such a file is left for the next run when the next run's look-back still lists it
    (its window starts at or after the window's end minus `lookback_hours`). Every other young
    file (any file of a backfill or a manual run, or one the next run would not list) is waited
    for until it holds still (settle.wait_until_settled, at most `settle_seconds`); one still
    changing then is `left_behind`, and `check` fails the run naming it: no later run would
    load it. `run_key` (run_key(run_id)) marks the ledger rows this run's loads write, so
    the run's report counts only what it loaded.

    With `sweep`, files the ledger marks failed whose window started within `sweep_days`
    before the window's end (and before the look-back) join the work list: at most
    `sweep_max_files`, newest first, each once its retry is due (see retry_due).
    With `silence_hours`, also tell whether the drop's silence began in this window
    (`result["silent"]`, a message, or None: `check` then fails the run), goes on
    (`silence_ongoing`, logged only) or ended (`silence_ended`): see drop_silence.
    """
    from session_stream.drop.base import RefusedFile
    from session_stream.drop.names import order_key
    from session_stream.drop.settle import QUIET_SECONDS, settled, wait_until_settled

    prefix, force, recheck_after = run.prefix, run.force, run.recheck_after
    lookback_hours, settle_seconds, silence_hours = (
        run.lookback_hours,
        run.settle_seconds,
        run.silence_hours,
    )

    scope = window.widened(lookback_hours)
    sweep_since = window.end - timedelta(days=run.sweep_days)
    listed = drop.list_files(scope.start, scope.end)
    listed_ignored = list(drop.ignored)  # before any other listing replaces them
    silence = (
        drop_silence(drop, listed, scope, silence_hours, window)
        if silence_hours
        else {"began": None, "ongoing": None, "ended": None}
    )
    silent = silence["began"]
    if silence["ongoing"]:
        log.warning("%s (alerted when the silence began; not again)", silence["ongoing"])
    # Entries the drop will not read (a symlink out of a local drop, a FIFO): failed in the
    # ledger with the reason, reported by the run, never silently skipped.
    refused = {f.name: (f, f.refused) for f in listed if f.refused}
    readable = [f for f in listed if not f.refused]
    # Entries of the day folders that are not Monetate files: in the ledger as ignored, and in
    # the report the first time (issue 20: nothing listed goes unseen).
    known = loader.ledger(f.name for f, _ in listed_ignored) if listed_ignored else {}
    ignored = {}
    for f, why in listed_ignored:
        # By the name the ledger keeps: a name of bytes that are not UTF-8 is kept, and reported,
        # with them as \\xNN escapes (text, for the ledger and the report alike).
        kept = ledger.file_name(f.name)
        entry = known.get(kept)
        if not (entry and entry["status"] in ("ignored", "loaded") and entry["size"] == f.size):
            loader.record_ignored(f.name, f.size, why)
            ignored[kept] = why
    # A file is known by its content: the store's version of it (ETag, mtime) decides here,
    # its SHA-256 at the load (ledger.same_content).
    pending_names = set(
        loader.pending([(f.name, f.size, f.version) for f in readable], force=force)
    )
    pending = [f for f in readable if f.name in pending_names]
    retried = []
    if run.sweep:
        retried = sweep_failed(
            drop,
            loader,
            Window(sweep_since, scope.start),
            skip={f.name for f in listed},
            max_files=run.sweep_max_files,
            now=to_utc(now or datetime.now(UTC)),
        )
        pending += retried
    retried_names = {f.name for f in retried}
    if recheck_after is None:
        # A store that gives no mtime cannot show a file's age: look at its size twice instead.
        recheck_after = 5.0 if any(f.mtime is None for f in pending) else 0.0
    # settled() returns the ready files oldest first, and nothing to wait for when nothing is pending.
    ready, young = settled(
        drop, pending, settle_seconds=settle_seconds, recheck_after=recheck_after
    )
    next_scope_start = window.end - timedelta(hours=lookback_hours)
    waiting = [
        f
        for f in young
        if run.leave_for_next_run
        and f.window_start is not None
        and f.window_start >= next_scope_start
    ]
    left_behind = []
    if len(waiting) < len(young):
        left = {id(f) for f in waiting}
        more, left_behind = wait_until_settled(
            drop,
            [f for f in young if id(f) not in left],
            timeout=max(float(settle_seconds), QUIET_SECONDS),
        )
        ready = sorted(ready + more, key=lambda f: order_key(f.name))

    staged = []
    with tempfile.TemporaryDirectory(prefix="session_stream_fetch_") as tmp:
        for f in ready:
            key = raw_key(prefix, f.name)
            in_place = local_path(staging, key)  # a local area: download straight into it
            try:
                local = drop.download(f, in_place or Path(tmp) / f.name)
            except RefusedFile as exc:  # swapped for something else since it was listed
                refused[f.name] = (f, str(exc))
                continue
            if in_place is None:
                staging.put_file(local, key)
                local.unlink()  # a long backfill must not hold every file on local disk
            item = {
                "name": f.name,
                "size": f.size,
                "window_start": f.window_start.isoformat() if f.window_start else None,
                "version": f.version,
            }
            if f.name in retried_names:
                item["retry"] = True  # failed before; failing again does not fail this run
            staged.append(item)

    for name, (f, why) in refused.items():
        log.error("%s refused: %s", name, why)
        loader.record_failure(name, f.size, f.window_start, f"refused: {why}")

    batches = [{"prefix": prefix, "files": b} for b in plan_batches(staged, run.batch_size)]
    result = {
        "window": [window.start.isoformat(), window.end.isoformat()],
        "scope": [scope.start.isoformat(), scope.end.isoformat()],
        "prefix": prefix,
        "listed": len(listed),
        "already_loaded": len(readable) - len(pending_names),
        "waiting": [f.name for f in waiting],
        "left_behind": [f.name for f in left_behind],
        "run_key": run.run_key,
        "refused": {name: why for name, (_, why) in refused.items()},
        "ignored": ignored,
        "fetched": [f["name"] for f in staged],
        "retried": [f["name"] for f in staged if f.get("retry")],
        "sweep_since": sweep_since.isoformat(),
        "silent": silent,
        "silence_ongoing": silence["ongoing"],
        "silence_ended": silence["ended"],
        "batches": batches,
    }
    log.info(
        "window %s (with look-back %s): %d listed, %d already loaded, %d still being written"
        " (%d left for the next run), %d fetched in %d batch(es)",
        window,
        scope,
        len(listed),
        result["already_loaded"],
        len(waiting) + len(left_behind),
        len(waiting),
        len(staged),
        len(batches),
    )
    return result


def check(
    fetched: dict,
    loader,
    *,
    max_rejects: int = DEFAULT_MAX_REJECTS,
    staging=None,
    prefix: str | None = None,
) -> dict:
    """Every fetched file must be in the ledger as loaded, with at most `max_rejects` rejects;
    files the sweep retried may fail again (they are listed with every file still failing).
    Refused drop entries fail the check too.

    Returns the run's quality report (report.run_report), whose table ends the log, pass or
    fail. With `staging`, the run's staging prefix (by now only empty folders) is removed too:
    `prefix` (the DAG derives it from the run id) or the one fetch reported.
    """
    from session_stream.runs.report import format_report, run_report

    prefix = prefix or fetched.get("prefix")
    if staging is not None and prefix:
        staging.delete(checked_prefix(prefix))
    names = list(fetched.get("fetched") or [])
    retried = set(fetched.get("retried") or [])
    refused = dict(fetched.get("refused") or {})
    ledger = loader.ledger(names) if names else {}
    not_loaded = {
        n: (ledger.get(n) or {}).get("error") or "not in the ledger"
        for n in names
        if (ledger.get(n) or {}).get("status") != "loaded" and n not in retried
    }
    too_many = {
        n: ledger[n].get("rejects") or 0
        for n in names
        if (ledger.get(n) or {}).get("status") == "loaded"
        and (ledger[n].get("rejects") or 0) > max_rejects
    }
    report = run_report(fetched, loader)
    report["refused"] = sorted(refused)
    # Keys the files carried that the spec does not know, and expected keys their lines lacked
    # (CONTRACT: never dropped silently): the run's log says so the hour they appear.
    for column, label in (
        (tables.UNKNOWN_KEYS_COLUMN, "keys the spec does not know (not stored)"),
        (tables.MISSING_KEYS_COLUMN, "expected keys missing (stored as NULL)"),
    ):
        counts = KeyCounts()
        for n in names:
            if (ledger.get(n) or {}).get("status") == "loaded":
                counts.add(ledger[n].get(column))
        if counts:
            log.warning("%s: %s", label, "; ".join(counts.describe()))
    if report["waiting"]:
        log.info(
            "%d file(s) still being written wait for the next run: %s",
            len(report["waiting"]),
            ", ".join(report["waiting"]),
        )
    if report["still_failing_total"]:
        log.warning(
            "%d file(s) still failing, newest first: %s",
            report["still_failing_total"],
            "; ".join(
                f"{f['file']} failing since {f['failing_since'] or '?'}"
                f" ({f['attempts']} attempt(s)): {f['error']}"
                for f in report["still_failing"]
            ),
        )
    problems = {n: f"refused ({why})" for n, why in refused.items()}
    # A young file no later run lists, still changing after the wait: left behind, said loudly.
    problems |= {
        n: "still being written when this run gave up waiting for it, and no later run lists its"
        " window: run this window again once the file is complete"
        for n in fetched.get("left_behind") or []
    }
    problems |= {n: f"not loaded ({without_name(n, e)})" for n, e in not_loaded.items()}
    # Loaded files with too many rejects stay loaded: nothing retries them, a person looks.
    problems |= {
        n: f"loaded, but with {r} rejects, more than max_rejects={max_rejects} "
        "(the lines are in session_stream_rejects)"
        for n, r in too_many.items()
    }
    log.info("run report\n%s", format_report(report))
    if problems:
        window = fetched.get("window") or ["?", "?"]
        error = FilesFailedError(
            f"{len(problems)} file(s) of window [{window[0]}, {window[1]}) need a look", problems
        )
        error.report = report  # the run's alert lists the files still failing from it
        raise error
    if fetched.get("silent"):
        error = DropSilentError(fetched["silent"])
        error.report = report
        raise error
    return report
