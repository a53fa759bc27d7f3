"""Worker processes and scratch folders that do not outlive the process that made them.

A `kill -9` of a CLI load gives it no chance to stop its split workers or remove its temp
folder. So each worker asks the kernel to kill it when its parent dies (Linux's
PR_SET_PDEATHSIG), or, where there is no such call, watches its parent's pid; and each scratch
folder holds an flock on a file inside it for as long as its owner lives, so the next run can
tell an abandoned folder (lock free) from a live one (lock held) and remove it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Split worker processes a load may use by default: two, or one on a one-core machine. Splitting
# is Python CPU and MySQL's LOAD DATA the other half of a load; the pipeline splits one file at a
# time until a load waits for its split, then this many (pipeline._split_groups).
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)

try:
    import fcntl
except ImportError:  # Windows: no flock, no reclaiming
    fcntl = None

log = logging.getLogger(__name__)

WORK_PREFIX = "session-stream-"
OWNER_FILE = ".owner"  # flock'ed by the folder's owner while it lives; holds its pid
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 1.0


def can_start_workers() -> bool:
    """Whether this process may start worker processes. A daemonic one may not (multiprocessing
    refuses with an AssertionError): Airflow's CeleryExecutor runs a task in a Celery prefork
    pool's process, which is daemonic, and so does anything started with daemon=True."""
    return not multiprocessing.current_process().daemon


# spawn, not fork: the parent holds a MySQL connection a forked child must not share.
_CONTEXT = multiprocessing.get_context("spawn")
_turns = None  # in a worker: the turns its pool's workers take (worker_pool), if any


def worker_pool(workers: int, turns=None) -> ProcessPoolExecutor:
    """A process pool whose workers end when this process ends, however it ends. `turns`
    (split_turns): how many of them may work at the same time (see taking_turns)."""
    return ProcessPoolExecutor(
        workers,
        mp_context=_CONTEXT,
        initializer=_start_worker,
        initargs=(os.getpid(), turns),
    )


def split_turns(at_once: int):
    """A semaphore for worker_pool: `at_once` workers hold a turn at the same time; release()
    lets one more. Jobs may then be queued ahead of the workers without all of them running."""
    return _CONTEXT.Semaphore(at_once)


@contextlib.contextmanager
def taking_turns() -> Iterator[None]:
    """In a pool's worker: wait for a turn and hold it for the block (nothing elsewhere)."""
    if _turns is None:
        yield
        return
    with _turns:
        yield


def _start_worker(parent_pid: int, turns) -> None:
    global _turns
    _turns = turns
    end_with_parent(parent_pid)


def end_with_parent(parent_pid: int) -> None:
    """Worker initializer: die when `parent_pid` dies.

    PR_SET_PDEATHSIG fires when the thread that started the worker ends; ProcessPoolExecutor
    starts spawn workers from the thread that submits, which is the loading thread.
    """
    if not _set_parent_death_signal():
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
        ).start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCH_SECONDS)
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os._exit(1)


@contextlib.contextmanager
def scratch_folder(root: Path | None = None) -> Iterator[Path]:
    """A new temp folder under `root` (default: the system's), removed on exit; folders that
    earlier runs abandoned (killed) are removed first."""
    root = Path(root or tempfile.gettempdir())
    reclaim_abandoned(root)
    # Made under a hidden name and renamed once its lock is held, so no other run ever sees it
    # unlocked and takes it for abandoned.
    making = Path(tempfile.mkdtemp(prefix="." + WORK_PREFIX, dir=root))
    owner = open(making / OWNER_FILE, "w")  # noqa: SIM115 - held open for the folder's life
    work = making.with_name(making.name[1:])
    try:
        if fcntl is not None:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner.write(str(os.getpid()))
        owner.flush()
        os.rename(making, work)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(making, ignore_errors=True)
        owner.close()


def reclaim_abandoned(root: Path) -> list[Path]:
    """Remove the scratch folders under `root` whose owner is gone (its lock is free); returns them."""
    if fcntl is None:
        return []
    removed = []
    for folder in Path(root).glob(WORK_PREFIX + "*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            fd = os.open(folder / OWNER_FILE, os.O_RDONLY)
        except OSError:
            continue  # not one of ours (no owner file), or gone meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its owner is alive
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed %s, left behind by a load that was killed", folder)
        finally:
            os.close(fd)
    return removed
