"""Load many local files: split the next files in worker processes while the current one loads.

Splitting is Python CPU work and LOAD DATA is server work, so on a 2-core machine the two
overlap: while MySQL ingests file N, a worker process splits file N+1. Used by the CLI and the
benchmark; the DAG does the same per batch.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import tables
from .errors import BadInputError
from .keycounts import KeyCounts
from .layout import SplitResult
from .load import FileOutcome, Loader
from .names import window_start
from .split import split_file

log = logging.getLogger(__name__)


@dataclass
class Summary:
    loaded: int = 0
    skipped: int = 0
    failed: int = 0
    sessions: int = 0
    replaced: int = 0  # session versions that replaced an older one already stored
    superseded: int = 0  # session versions older than the one already stored: not loaded
    rows: dict[str, int] = field(default_factory=lambda: {t.name: 0 for t in tables.TABLES})
    rejects: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, error)
    unknown_keys: KeyCounts = field(default_factory=KeyCounts)  # keys the spec does not know
    missing_keys: KeyCounts = field(default_factory=KeyCounts)  # expected keys lines lacked

    def add(self, outcome: FileOutcome) -> None:
        if outcome.status == "loaded":
            self.loaded += 1
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
        else:
            self.failed += 1
            self.failures.append((outcome.name, outcome.error or "failed"))

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def sessions_per_second(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0


def _split_job(src: str, out_dir: str) -> str:
    split_file(Path(src), Path(out_dir))
    return out_dir


def load_files(
    paths: list[Path],
    loader: Loader,
    *,
    force: bool = False,
    workers: int = 1,
    work_dir: Path | None = None,
    on_file: Callable[[Path, FileOutcome], None] | None = None,
) -> Summary:
    """Load `paths` in the given order; a failed file is recorded and the others go on."""
    started = time.perf_counter()
    summary = Summary()
    sizes = {p: p.stat().st_size for p in paths}
    todo_names = set(loader.pending([(p.name, sizes[p]) for p in paths], force=force))
    todo = []
    for p in paths:
        if p.name in todo_names:
            todo.append(p)
        else:
            outcome = FileOutcome(p.name, "skipped")
            summary.add(outcome)
            if on_file:
                on_file(p, outcome)
    own_dir = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="session-stream-")) if own_dir else Path(work_dir)
    try:
        for path, split_or_error in _split_ahead(todo, work, workers):
            if isinstance(split_or_error, BadInputError):
                message = str(split_or_error)
                log.error("%s", message)
                loader.record_failure(path.name, sizes[path], window_start(path.name), message)
                outcome = FileOutcome(path.name, "failed", error=message)
            else:
                split = SplitResult.read(split_or_error)
                outcome = loader.load(
                    split, size=sizes[path], window_start=window_start(path.name), force=force
                )
                shutil.rmtree(split_or_error, ignore_errors=True)
            summary.add(outcome)
            if on_file:
                on_file(path, outcome)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _split_here(i: int, path: Path, work: Path) -> Path | BadInputError:
    try:
        return Path(_split_job(str(path), str(work / f"{i:06d}")))
    except BadInputError as exc:
        return exc


def _split_ahead(
    paths: list[Path], work: Path, workers: int
) -> Iterator[tuple[Path, Path | BadInputError]]:
    """Yield (path, split dir or the error) in order, splitting up to `workers + 1` files ahead."""
    if workers <= 0 or len(paths) < 2:
        for i, p in enumerate(paths):
            yield p, _split_here(i, p, work)
        return
    # spawn, not fork: the parent holds a MySQL connection a forked child must not share.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: list[tuple[Path, Future]] = []
        it = iter(enumerate(paths[1:], start=1))

        def submit_next():
            try:
                i, p = next(it)
            except StopIteration:
                return
            pending.append((p, pool.submit(_split_job, str(p), str(work / f"{i:06d}"))))

        for _ in range(workers + 1):
            submit_next()
        # The first file is split here while the workers start up, so MySQL starts sooner.
        yield paths[0], _split_here(0, paths[0], work)
        while pending:
            p, fut = pending.pop(0)
            try:
                result: Path | BadInputError = Path(fut.result())
            except BadInputError as exc:
                result = exc
            submit_next()
            yield p, result
