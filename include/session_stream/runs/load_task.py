"""The load task of a run: split a fetched batch in worker processes while MySQL loads the file
before, record each failure in the ledger, and end naming the files that failed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from session_stream.runs.run_files import (
    FilesFailedError,
    checked_prefix,
    local_path,
    raw_key,
    remove_staged,
    without_name,
)

log = logging.getLogger(__name__)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def split_and_load(
    batch: dict, staging, loader, *, force: bool = False, workers: int | None = None
) -> dict:
    """Split and load a fetched batch in one task, as the CLI does (pipeline.split_and_load_each):
    worker processes split the next files while MySQL loads the current one, and nothing but
    the raw files goes through the staging area. Failures are recorded in the ledger, and
    FilesFailedError at the end names them (files the sweep retried are only logged);
    errors that are not about a file propagate, and a retry skips what the ledger shows loaded.
    """
    from session_stream.runs.pipeline import split_and_load_each
    from session_stream.runs.workers import DEFAULT_WORKERS, scratch_folder
    from session_stream.warehouse.load import is_loaded

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
                remove_staged(staging, prefix, name)
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
            local = staging.get_file(key, local_path(staging, key) or work / "raw" / name)
            paths.append(Path(local))
        jobs = DEFAULT_WORKERS if workers is None else workers
        info = lambda p: (  # noqa: E731
            items[p.name]["size"],
            _when(items[p.name].get("window_start")),
            items[p.name].get("version"),
        )
        for path, outcome in split_and_load_each(paths, work, jobs, loader, info, force=force):
            if outcome.status == "failed":
                failures[path.name] = outcome.error or "load failed"
            elif outcome.status == "skipped":
                skipped.append(path.name)
            else:
                loaded.append(path.name)
                rejects += outcome.rejects
                for table, n in (outcome.rows or {}).items():
                    rows[table] = rows.get(table, 0) + n
            remove_staged(staging, prefix, path.name)
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
