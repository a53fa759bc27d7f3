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
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from session_stream import tables
from session_stream.errors import BadInputError, ConfigError, LoadError, SessionStreamError
from session_stream.runs.policy import DEFAULT_SWEEP_DAYS
from session_stream.split.keycounts import KeyCounts
from session_stream.utc import parse_utc, to_utc

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
MAX_MAP_ITEMS = 1024  # Airflow's cap on the items of one mapped task

DEFAULT_LOOKBACK_HOURS = 3
DEFAULT_SETTLE_SECONDS = 120
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_REJECTS = 100
DEFAULT_SWEEP_MAX_FILES = 16  # one batch: a run stays short however many files keep failing
RUN_KEY_CHARS = 12  # of the 32 of a load_token; the other 20 stay random per load
MAX_RETRY_WAIT = timedelta(hours=24)
RETRY_SLACK = timedelta(minutes=15)  # a run reaches its load some minutes after it starts


class FilesFailedError(LoadError):
    """Some files of a batch or run did not load, or loaded with too many rejects.

    `problems` maps each file name to what is wrong with it (without the name), `files` lists the
    names, `summary` says what happened to them as a whole: alerts show each file once.
    """

    def __init__(self, summary: str, problems: dict[str, str]):
        self.summary = summary
        self.problems = dict(problems)
        self.files = list(self.problems)
        super().__init__(f"{summary}: " + "; ".join(f"{n}: {p}" for n, p in self.problems.items()))


class DropSilentError(SessionStreamError):
    """A scheduled run found no file newer than the silence limit: is Monetate still delivering?"""


def without_name(name: str, error: str) -> str:
    """An error about a file usually starts with its name; drop it where the name is said anyway."""
    return error[len(name) + 2 :] if error.startswith(f"{name}: ") else error


# ---------------------------------------------------------------- the run's window


@dataclass(frozen=True)
class Window:
    """Half-open interval [start, end) of file window starts, in UTC."""

    start: datetime
    end: datetime

    def widened(self, lookback_hours: float) -> Window:
        return Window(self.start - timedelta(hours=lookback_hours), self.end)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def resolve_window(
    params: dict | None,
    data_interval_start: Any = None,
    data_interval_end: Any = None,
    logical_date: Any = None,
    *,
    now: datetime | None = None,
) -> Window:
    """The window a run loads.

    The params `start` and `end` (both, ISO-8601) override everything: that is how a user reloads
    a range by hand. Otherwise the run's data interval. A run with an empty interval (a trigger
    timetable) takes the complete hour before its logical date, and a manual run with neither
    interval nor logical date takes the last complete hour before now.
    """
    params = params or {}
    start = parse_utc(params.get("start"), "param 'start'")
    end = parse_utc(params.get("end"), "param 'end'")
    if start or end:
        if not (start and end):
            raise ConfigError("give both params 'start' and 'end' (ISO-8601, UTC), or neither")
        if end <= start:
            raise ConfigError(
                f"param 'end' ({end.isoformat()}) must be after 'start' ({start.isoformat()})"
            )
        return Window(start, end)

    di_start = parse_utc(data_interval_start, "data interval start")
    di_end = parse_utc(data_interval_end, "data interval end")
    if di_start and di_end and di_end > di_start:
        return Window(di_start, di_end)

    anchor = (
        di_end
        or parse_utc(logical_date, "logical date")
        or (now or datetime.now(UTC)).astimezone(UTC)
    )
    end = _floor_hour(anchor)
    return Window(end - HOUR, end)


# ---------------------------------------------------------------- the sweep of failed files


def sweeps(run_type) -> bool:
    """Whether a run retries the ledger's failed files of earlier windows (the sweep).

    Scheduled runs do: they keep coming, so a file that failed in a backfill or a manual run,
    out of every later look-back, is still retried. A backfill or a reload keeps to its range.
    """
    return str(getattr(run_type, "value", run_type) or "") == "scheduled"


def retry_due(entry: dict, now: datetime) -> bool:
    """A failing file waits longer after each attempt (1 h, 2 h, 4 h ... at most a day), so
    files that keep failing do not take the sweep's places from the others on every run."""
    last = entry.get("last_attempt")
    if last is None:
        return True
    attempts = max(int(entry.get("attempts") or 1), 1)
    wait = min(timedelta(hours=2 ** min(attempts - 1, 5)), MAX_RETRY_WAIT)
    return to_utc(last) + wait - RETRY_SLACK <= now


def sweep_failed(
    drop, loader, span: Window, *, skip: set[str], max_files: int, now: datetime
) -> list:
    """The drop's files the ledger marks failed, window start in `span`, due for a retry,
    newest first, at most `max_files`; names in `skip` (listed already) left out."""
    since, until = span.start, span.end
    if max_files <= 0 or since >= until:
        return []
    failing = [e for e in loader.failing(since, until) if e["file_name"] not in skip]
    due = [e for e in failing if retry_due(e, now)]
    by_day: dict[datetime, list[str]] = {}
    for e in due:  # newest first, so the days and the names within each day are too
        w = to_utc(e["window_start"])
        by_day.setdefault(datetime(w.year, w.month, w.day, tzinfo=UTC), []).append(e["file_name"])
    found = []
    for day, names in by_day.items():
        here = {f.name: f for f in drop.list_files(day, day + timedelta(days=1))}
        for name in names:
            if name not in here:
                log.info("%s is marked failed but is no longer in the drop location", name)
            elif len(found) < max_files:
                found.append(here[name])
        if len(found) >= max_files:
            break
    if failing:
        log.info(
            "sweep: %d file(s) of [%s, %s) marked failed, %d due for a retry, retrying %d: %s",
            len(failing),
            since.isoformat(),
            until.isoformat(),
            len(due),
            len(found),
            ", ".join(f.name for f in found) or "none",
        )
    return found


# ---------------------------------------------------------------- staging layout


def staging_prefix(run_id: str) -> str:
    """The key prefix of one run's staged files: one safe segment under `runs/` whatever the run
    id holds (see roots.run_prefix), so cleaning up a run removes only what it staged."""
    from session_stream.drop.roots import run_prefix

    return run_prefix(run_id)


def run_key(run_id: str) -> str:
    """The first characters of the ledger's load_token for the files a run loads (Loader's
    `token_prefix`): the run's report counts the rows that carry it, so runs that overlap (a
    backfill's look-backs) never count one file twice."""
    import hashlib

    return hashlib.sha256(str(run_id).encode()).hexdigest()[:RUN_KEY_CHARS]


def checked_prefix(prefix: str) -> str:
    """A run prefix read back from XCom, refused unless it has the form staging_prefix makes:
    tasks write and delete under it."""
    from session_stream.drop.roots import is_run_prefix

    if not is_run_prefix(prefix):
        raise ConfigError(f"refusing staging prefix {prefix!r}: not one this DAG made")
    return prefix


def raw_key(prefix: str, name: str) -> str:
    return f"{prefix}/raw/{name}"


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
        entry = known.get(f.name)
        if not (entry and entry["status"] in ("ignored", "loaded") and entry["size"] == f.size):
            loader.record_ignored(f.name, f.size, why)
            ignored[f.name] = why
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
            in_place = _local_path(staging, key)  # a local area: download straight into it
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


def drop_silence(
    drop, listed: list, scope: Window, hours: float, window: Window | None = None
) -> dict:
    """Whether the drop has gone quiet, once per silence: {"began", "ongoing", "ended"}, each a
    message or None.

    `began`: no file has a window start in the `hours` before the window's end, and one had at
    the window's start (the silence reached `hours` during this run's interval): `check` fails
    the run, which sends the one alert. `ongoing`: silent, and it was already at the window's
    start (an earlier run alerted): logged, not alerted again. `ended`: files in the window and
    none in the `hours` before it: the run says the drop delivers again (`finish` mails it).
    A scheduled run that never ran (the scheduler was down when the silence began) means no
    alert for that silence: the run after it sees it as ongoing.

    `listed` is what the run listed over `scope`; only the part of [window.start - hours,
    window.end) it does not cover is listed again (one or two day folders).
    """
    window = window or scope
    since = window.start - timedelta(hours=hours)
    seen = [f for f in listed if f.window_start and f.window_start >= since]
    if since < scope.start:
        seen += drop.list_files(since, scope.start)
    starts = [f.window_start for f in seen if f.window_start]
    recent = [t for t in starts if t >= window.end - timedelta(hours=hours)]
    before_window = [t for t in starts if t < window.start]
    in_window = [t for t in starts if window.start <= t < window.end]
    state = {"began": None, "ongoing": None, "ended": None}
    if not recent:
        message = (
            f"no new file in the drop for {hours:g} hours: none has a window starting in "
            f"[{(window.end - timedelta(hours=hours)).isoformat()}, {window.end.isoformat()}); "
            f"check that Monetate still delivers to {drop.url} (silence_hours={hours:g})"
        )
        key = "began" if starts else "ongoing"
        state[key] = message
    elif in_window and not before_window:
        state["ended"] = (
            f"the drop {drop.url} delivers again: files with windows from "
            f"{min(in_window).isoformat()} after none in the {hours:g} hours before"
        )
    return state


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def split_and_load(
    batch: dict, staging, loader, *, force: bool = False, workers: int | None = None
) -> dict:
    """Split and load a fetched batch in one task, as the CLI does (pipeline._split_ahead):
    worker processes split the next files while MySQL loads the current one, and nothing but
    the raw files goes through the staging area. Failures are recorded in the ledger, and
    FilesFailedError at the end names them (files the sweep retried are only logged);
    errors that are not about a file propagate, and a retry skips what the ledger shows loaded.
    """
    from session_stream.runs.pipeline import _split_ahead
    from session_stream.runs.workers import DEFAULT_WORKERS, scratch_folder
    from session_stream.split.layout import SplitResult
    from session_stream.warehouse.load import FileOutcome, is_loaded

    prefix = checked_prefix(batch["prefix"])
    items = {item["name"]: item for item in batch["files"]}
    retried = {n for n, item in items.items() if item.get("retry")}
    failures: dict[str, str] = {}
    loaded, skipped = [], []
    rows: dict[str, int] = {}
    rejects = 0
    started = time.perf_counter()
    # Files an overlapping run loaded since this run's fetch are not split for nothing.
    todo = set(
        loader.pending(
            [(n, item["size"], item.get("version")) for n, item in items.items()], force=force
        )
    )
    with scratch_folder() as work:
        paths = []
        for name, item in items.items():
            key = raw_key(prefix, name)
            if name not in todo:
                log.info("%s: loaded meanwhile by another run; skipped", name)
                skipped.append(name)
                _remove_staged(staging, prefix, name)
                continue
            if not staging.exists(key):
                # A retried task: the first try loaded this file and removed its staged copy.
                if is_loaded(loader.ledger([name]).get(name), item["size"]):
                    skipped.append(name)
                    continue
                error = "its staged copy is missing; the next run fetches the file again"
                loader.record_failure(name, item["size"], _when(item.get("window_start")), error)
                failures[name] = error
                continue
            local = staging.get_file(key, _local_path(staging, key) or work / "raw" / name)
            paths.append(Path(local))
        jobs = DEFAULT_WORKERS if workers is None else workers
        for path, split_or_error in _split_ahead(paths, work, jobs):
            item = items[path.name]
            size, window_start = item["size"], _when(item.get("window_start"))
            if isinstance(split_or_error, SessionStreamError):
                log.error("%s cannot be read: %s", path.name, split_or_error)
                loader.record_failure(path.name, size, window_start, str(split_or_error))
                outcome = FileOutcome(path.name, "failed", error=str(split_or_error))
            else:
                try:
                    outcome = loader.load(
                        SplitResult.read(split_or_error),
                        size=size,
                        window_start=window_start,
                        force=force,
                        version=item.get("version"),
                    )
                except (BadInputError, LoadError) as exc:
                    loader.record_failure(path.name, size, window_start, str(exc))
                    outcome = FileOutcome(path.name, "failed", error=str(exc))
                finally:
                    shutil.rmtree(split_or_error, ignore_errors=True)
            if outcome.status == "failed":
                failures[path.name] = outcome.error or "load failed"
            elif outcome.status == "skipped":
                skipped.append(path.name)
            else:
                loaded.append(path.name)
                rejects += outcome.rejects
                for table, n in (outcome.rows or {}).items():
                    rows[table] = rows.get(table, 0) + n
            _remove_staged(staging, prefix, path.name)
            done = len(loaded) + len(skipped) + len(failures)
            if done % 16 == 0 or done == len(items):
                log.info(
                    "%d of %d file(s) done (%d loaded, %d skipped, %d failed), %.0f s",
                    done,
                    len(items),
                    len(loaded),
                    len(skipped),
                    len(failures),
                    time.perf_counter() - started,
                )
    return _batch_result(_Tally(loaded, skipped, failures, retried, rows, rejects), len(items))


@dataclass
class _Tally:
    """What a load task did to its batch, file by file."""

    loaded: list[str]
    skipped: list[str]
    failures: dict[str, str]  # file -> error
    retried: set[str]  # files the sweep retried: failing again is listed, not alerted
    rows: dict[str, int]
    rejects: int


def _batch_result(tally: _Tally, total: int) -> dict:
    """What a load task returns, or FilesFailedError naming the files that newly failed."""
    loaded, skipped, failures = tally.loaded, tally.skipped, tally.failures
    retried, rows, rejects = tally.retried, tally.rows, tally.rejects
    log.info(
        "loaded %d file(s), skipped %d, failed %d; rows %s",
        len(loaded),
        len(skipped),
        len(failures),
        rows,
    )
    # A file the sweep retried failed before, and that failure alerted: failing again is
    # listed by check, not alerted on every run.
    still_failing = [n for n in failures if n in retried]
    if still_failing:
        log.warning(
            "%d file(s) of earlier windows still fail (check lists them): %s",
            len(still_failing),
            "; ".join(f"{n}: {failures[n]}" for n in still_failing),
        )
    new_failures = {n: e for n, e in failures.items() if n not in retried}
    if new_failures:
        raise FilesFailedError(
            f"{len(new_failures)} of {total} file(s) failed; "
            "they are marked failed in the ledger and the next run retries them",
            {n: without_name(n, e) for n, e in new_failures.items()},
        )
    return {
        "loaded": loaded,
        "skipped": skipped,
        "rows": rows,
        "rejects": rejects,
        "still_failing": still_failing,
    }


def _local_path(staging, key: str) -> Path | None:
    """Where a local staging area keeps `key`, so tasks read and write it in place (no copies)."""
    path_for = getattr(staging, "path_for", None)
    if path_for is None:
        return None
    path = Path(path_for(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _remove_staged(staging, prefix: str, name: str) -> None:
    try:
        staging.delete(raw_key(prefix, name))
    except FileNotFoundError:
        pass


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
