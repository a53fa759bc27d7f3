"""Load many local files: split the next files in worker processes while the current one loads.

Splitting is Python CPU work and LOAD DATA is server work, so on a 2-core machine the two
overlap: while MySQL ingests file N, a worker process splits file N+1. Used by the CLI and the
benchmark; the DAG does the same per batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from session_stream import tables
from session_stream.drop.names import window_start
from session_stream.errors import BadInputError, LoadError, SessionStreamError
from session_stream.runs.workers import (
    DEFAULT_WORKERS,
    can_start_workers,
    scratch_folder,
    split_turns,
    taking_turns,
    worker_pool,
)
from session_stream.split.keycounts import KeyCounts
from session_stream.split.layout import SplitResult
from session_stream.split.splitter import split_file
from session_stream.warehouse.load import FileOutcome, Loader

log = logging.getLogger(__name__)

STARTED = ".started"  # <split folder>.started: a worker began splitting that file; holds its pid
FIRST_AT_ONCE = 1  # files split at the same time until a load waits for its split (_split_groups)
WAIT_GRACE = 0.05  # seconds a load may wait for its split before a second one starts
# Files split ahead of the loads, at most (their splits wait on disk), and files loaded in one
# transaction, at most (Loader.load_many): a session a window sends open is sent again, closed, in
# the next files, and in one transaction with them it is written once.
SPLIT_AHEAD = 6
GROUP_FILES = 8


@dataclass
class Summary:
    """What one load did, file by file: every entry it was given ends in exactly one of loaded,
    skipped, failed (refused included) and ignored, so they add up to `listed`; and a loaded
    file's lines add up too (lines = sessions + repeats + rejects + blank_lines)."""

    loaded: int = 0
    skipped: int = 0
    failed: int = 0
    ignored: int = 0
    lines: int = 0
    blank_lines: int = 0
    repeats: int = 0
    sessions: int = 0
    replaced: int = 0  # session versions that replaced an older one already stored
    superseded: int = 0  # session versions older than the one already stored: not loaded
    rows: dict[str, int] = field(default_factory=lambda: {t.name: 0 for t in tables.TABLES})
    rejects: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, error)
    ignored_files: list[tuple[str, str]] = field(default_factory=list)  # (entry, why)
    replaced_copies: list[tuple[str, str]] = field(default_factory=list)  # (file, what)
    unknown_keys: KeyCounts = field(default_factory=KeyCounts)  # keys the spec does not know
    missing_keys: KeyCounts = field(default_factory=KeyCounts)  # expected keys lines lacked

    @property
    def listed(self) -> int:
        return self.loaded + self.skipped + self.failed + self.ignored

    def add(self, outcome: FileOutcome) -> None:
        if outcome.status == "loaded":
            self.loaded += 1
            self.lines += outcome.lines
            self.blank_lines += outcome.blank_lines
            self.repeats += outcome.repeats
            if outcome.replaced_copy:
                self.replaced_copies.append((outcome.name, outcome.replaced_copy))
            self.sessions += outcome.sessions
            self.replaced += outcome.replaced
            self.superseded += outcome.superseded
            self.rejects += outcome.rejects
            for table, n in outcome.rows.items():
                self.rows[table] += n
            self.unknown_keys.add(outcome.unknown_keys)
            self.missing_keys.add(outcome.missing_keys)
        elif outcome.status == "skipped":
            self.skipped += 1
        elif outcome.status == "ignored":
            self.ignored += 1
            self.ignored_files.append((outcome.name, outcome.error or "ignored"))
        else:
            self.failed += 1
            self.failures.append((outcome.name, outcome.error or "failed"))

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def sessions_per_second(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0


class SplitWorkerDied(LoadError):
    """The worker process splitting a file died (killed, out of memory, crashed)."""


def _split_job(src: str, out_dir: str) -> str:
    with taking_turns():
        # The marker says which files a worker held when the pool broke (see _split_groups):
        # removed when the split ends, unless the worker died in it.
        marker = _marker(Path(out_dir))
        marker.write_text(str(os.getpid()))
        try:
            split_file(Path(src), Path(out_dir))
        finally:
            marker.unlink(missing_ok=True)
    return out_dir


def load_files(
    paths: list[Path],
    loader: Loader,
    *,
    force: bool = False,
    workers: int = DEFAULT_WORKERS,
    work_dir: Path | None = None,
    on_file: Callable[[Path, FileOutcome], None] | None = None,
) -> Summary:
    """Load `paths` in the given order; a failed file is recorded and the others go on. A file
    the ledger has loaded with the same size and SHA-256 is skipped; one delivered again with
    other content loads (the ledger says what it replaced)."""
    started = time.perf_counter()
    summary = Summary()
    sizes = {p: p.stat().st_size for p in paths}
    # A file the ledger has loaded with the same name and size is read once more for its SHA-256,
    # so that a corrected file of that size is not skipped; any other file loads without it (the
    # split hashes what it reads): a day of new files starts loading ~25 ms sooner.
    todo_names = set(loader.pending([(p.name, sizes[p]) for p in paths], force=force))
    same_size = [p for p in paths if p.name not in todo_names]
    if same_size:
        todo_names.update(
            loader.pending(
                [(p.name, sizes[p], f"sha256:{file_sha256(p)}") for p in same_size], force=force
            )
        )
    todo = []
    for p in paths:
        if p.name in todo_names:
            todo.append(p)
        else:
            outcome = FileOutcome(p.name, "skipped", error="already loaded, with the same content")
            summary.add(outcome)
            if on_file:
                on_file(p, outcome)
    with contextlib.ExitStack() as stack:
        work = Path(work_dir) if work_dir else stack.enter_context(scratch_folder())
        info = lambda p: (sizes[p], window_start(p.name), None)  # noqa: E731
        for path, outcome in split_and_load_each(todo, work, workers, loader, info, force=force):
            summary.add(outcome)
            if on_file:
                on_file(path, outcome)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def split_and_load_each(
    paths: list[Path],
    work: Path,
    workers: int,
    loader: Loader,
    info: Callable[[Path], tuple[int, datetime | None, str | None]],
    *,
    force: bool = False,
) -> Iterator[tuple[Path, FileOutcome]]:
    """Split `paths` in worker processes (_split_groups) while the files split before load
    (load_group): (path, its outcome) for each, in order. `info`: see load_group."""
    for group in _split_groups(paths, work, workers, GROUP_FILES):
        yield from load_group(loader, group, info, force=force)


def load_group(
    loader: Loader,
    group: list[tuple[Path, Split]],
    info: Callable[[Path], tuple[int, datetime | None, str | None]],
    *,
    force: bool = False,
) -> list[tuple[Path, FileOutcome]]:
    """Load a group of _split_groups, in order: a file whose split failed, or cannot be read
    back, fails alone (recorded in the ledger); the others load together (Loader.load_many).
    `info(path)`: the file's size, window start and drop version. Removes the splits. Returns
    each file's outcome, in the group's order."""
    outcomes: dict[int, FileOutcome] = {}
    ready = []  # (position in the group, a file of load_many)
    try:
        for n, (path, split) in enumerate(group):
            size, start, version = info(path)
            if isinstance(split, SessionStreamError):
                error = str(split)
            else:
                try:
                    ready.append((n, (SplitResult.read(split), size, start, version)))
                    continue
                except (BadInputError, LoadError) as exc:
                    error = str(exc)
            log.error("%s cannot be loaded: %s", path.name, error)
            loader.record_failure(path.name, size, start, error)
            outcomes[n] = FileOutcome(path.name, "failed", error=error)
        if ready:
            loaded = loader.load_many([item for _, item in ready], force=force)
            outcomes.update(zip((n for n, _ in ready), loaded, strict=True))
    finally:
        for _, split in group:
            if isinstance(split, Path):
                shutil.rmtree(split, ignore_errors=True)
    return [(path, outcomes[n]) for n, (path, _) in enumerate(group)]


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


Split = Path | SessionStreamError  # the split's folder, or why the file has none


def _split_here(i: int, path: Path, work: Path) -> Split:
    try:
        return Path(_split_job(str(path), str(_out_dir(work, i))))
    except BadInputError as exc:
        return exc
    finally:
        _marker(_out_dir(work, i)).unlink(missing_ok=True)


def _out_dir(work: Path, i: int) -> Path:
    return work / f"{i:06d}"


def _marker(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + STARTED)


def _split_groups(
    paths: list[Path], work: Path, workers: int, most: int
) -> Iterator[list[tuple[Path, Split]]]:
    """Yield [(path, split folder or the error)] in order, splitting up to SPLIT_AHEAD files
    ahead: the next file, waited for, with the files after it whose splits are done already (up
    to `most` in all; a failed split is never one of those), so that a slow load is followed by
    one load of the files split meanwhile (Loader.load_many).

    One file is split at a time while that keeps ahead of the loads: on a machine that also runs
    MySQL (two cores, the bench's), a second split worker only takes CPU from the server, and
    the day took 6% longer with it. The files ahead are queued to the pool all the same, and its
    workers take turns (workers.split_turns), so that the next file's split starts as soon as
    the last one ends, not when a load ends. The first time the loads wait for a split, the
    split is the slower half, and up to `workers` files are split at once from then on.

    A worker that dies breaks the whole pool: the executor fails every call not yet done and
    terminates the other workers (SIGTERM). The file whose worker died on its own (its exit
    code is not the executor's SIGTERM) fails with SplitWorkerDied saying how it died (the file
    may be what killed it: never retried within the run); every other file, those the executor
    stopped included, goes to a new pool, at most twice. A pool that breaks before any split
    started (workers that cannot start) is given up: the rest is split here.
    """
    if workers > 0 and len(paths) >= 2 and not can_start_workers():
        log.info(
            "splitting in this process, without worker processes: it is daemonic (a Celery"
            " worker's pool process, say), and a daemonic process may not start any"
        )
        workers = 0
    if workers <= 0 or len(paths) < 2:
        for i, p in enumerate(paths):
            yield [(p, _split_here(i, p, work))]
        return
    todo = deque(enumerate(paths[1:], start=1))
    ahead: deque[list] = deque()  # [i, path, Future or Split], in order
    resubmitted: dict[int, int] = {}  # file index -> times sent to a new pool
    pool = None
    at_once = min(FIRST_AT_ONCE, workers)  # splits running at the same time (see above)

    def submit(i: int, p: Path) -> Future | Split | None:
        if pool is None:
            return _split_here(i, p, work)
        try:
            return pool.submit(_split_job, str(p), str(_out_dir(work, i)))
        except BrokenProcessPool:
            return None  # a worker died meanwhile: submitted again to the next pool

    def fill() -> None:
        while todo and len(ahead) < max(workers + 1, SPLIT_AHEAD):
            i, p = todo.popleft()
            ahead.append([i, p, submit(i, p)])

    try:
        turns = split_turns(at_once)
        pool = worker_pool(workers, turns)
        fill()
        # The first file is split here while the workers start up, so MySQL starts sooner.
        yield [(paths[0], _split_here(0, paths[0], work))]
        while ahead:
            i, p, job = ahead[0]
            try:
                if job is None:
                    raise BrokenProcessPool("the pool broke before this file was submitted")
                if isinstance(job, Future):
                    if at_once < workers and i > 1 and not wait([job], WAIT_GRACE).done:
                        # The load waits (for a file after the first the pool split, which
                        # waited for the worker to start): the split is the slower half.
                        for _ in range(workers - at_once):
                            turns.release()
                        at_once = workers
                        log.debug("the load waits for its split: %d files split at once", workers)
                    job = Path(job.result())
            except BadInputError as exc:
                job = exc
            except BrokenProcessPool:
                turns = split_turns(at_once)
                pool = _replace_broken_pool(pool, ahead, work, workers, resubmitted, turns)
                for entry in ahead:
                    if entry[2] is None:
                        entry[2] = submit(entry[0], entry[1])
                continue
            ahead.popleft()
            _marker(_out_dir(work, i)).unlink(missing_ok=True)
            group = [(p, job)]
            while len(group) < most and ahead and _split_done(ahead[0][2]):
                i, p, job = ahead.popleft()
                _marker(_out_dir(work, i)).unlink(missing_ok=True)
                group.append((p, Path(job.result()) if isinstance(job, Future) else job))
            fill()
            yield group
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _split_done(job: Future | Split | None) -> bool:
    """Whether a file's split is done and succeeded (a failure goes on its own)."""
    if isinstance(job, Future):
        return job.done() and not job.cancelled() and job.exception() is None
    return isinstance(job, Path)


def _replace_broken_pool(
    pool, ahead: deque[list], work: Path, workers: int, resubmitted: dict[int, int], turns
):
    """After a worker died: fail the file whose worker died on its own, mark the others for
    resubmission (None), and return a new pool, or None to split the rest in this process."""
    # The executor's own record of its workers, read before shutdown forgets them: after it,
    # each one's exit code says whether it died or was terminated by the executor.
    processes = dict(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=True, cancel_futures=True)
    held = 0
    for entry in ahead:
        i, p, job = entry
        if not isinstance(job, Future):
            continue
        if (
            job.done()
            and not job.cancelled()
            and not isinstance(job.exception(), BrokenProcessPool)
        ):
            continue  # split, or failed on its own, before the pool broke
        marker = _marker(_out_dir(work, i))
        if not marker.exists():
            entry[2] = None  # not started: submitted again
            continue
        held += 1
        pid_text = marker.read_text().strip()
        process = processes.get(int(pid_text)) if pid_text.isdigit() else None
        code = process.exitcode if process is not None else None
        shutil.rmtree(_out_dir(work, i), ignore_errors=True)
        marker.unlink(missing_ok=True)
        stopped = code == -signal.SIGTERM  # the executor's terminate(), after another died
        if stopped and resubmitted.get(i, 0) < 2:
            resubmitted[i] = resubmitted.get(i, 0) + 1
            log.info(
                "%s: its split worker was stopped when another died; splitting it again", p.name
            )
            entry[2] = None
            continue
        entry[2] = SplitWorkerDied(
            f"{p.name}: the split worker process (pid {pid_text or '?'}) {_death(code)} while"
            " splitting it; nothing of it was loaded, a later run retries it"
        )
    if not held:
        log.warning("split workers could not start; splitting in this process instead")
        return None
    return worker_pool(workers, turns)


def _death(exitcode: int | None) -> str:
    """How a worker process ended, from its exit code."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (out of memory, or killed by hand?)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name}{why}"
    return f"exited with status {exitcode}"
