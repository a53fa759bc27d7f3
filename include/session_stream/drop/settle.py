"""The "settled" policy: which listed files are whole, and which are still being written."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from session_stream.drop.base import DropFile, DropLocation
from session_stream.drop.names import order_key

log = logging.getLogger(__name__)


def settled(
    drop: DropLocation,
    files: Iterable[DropFile],
    *,
    settle_seconds: float,
    recheck_after: float,
) -> tuple[list[DropFile], list[DropFile]]:
    """Split listed files into (ready, waiting); a file still being written waits.

    A file waits when its mtime is younger than `settle_seconds`, or when its size or mtime
    changed between the listing that produced `files` and a second look `recheck_after`
    seconds later (0 skips the second look). A file that vanished meanwhile also waits.
    """
    files = list(files)
    now = time.time()
    waiting = [f for f in files if f.mtime is not None and now - f.mtime < settle_seconds]
    young = set(waiting)
    candidates = [f for f in files if f not in young]
    ready = candidates
    if recheck_after > 0 and candidates:
        time.sleep(recheck_after)
        current = drop.restat(candidates)
        ready = []
        for f in candidates:
            now_f = current.get(f.path)
            if now_f is not None and (now_f.size, now_f.mtime) == (f.size, f.mtime):
                ready.append(f)
            else:
                waiting.append(f)
    ready.sort(key=lambda f: order_key(f.name))
    waiting.sort(key=lambda f: order_key(f.name))
    if waiting:
        log.info(
            "%d file(s) still being written wait for a later run: %s",
            len(waiting),
            [f.name for f in waiting],
        )
    return ready, waiting


QUIET_SECONDS = 5.0  # a file of a past window is whole once it held still this long
LOG_EVERY = 60.0  # a wait says what it waits for this often


def wait_until_settled(
    drop: DropLocation,
    files: Iterable[DropFile],
    *,
    timeout: float,
    quiet_seconds: float = QUIET_SECONDS,
    log_every: float = LOG_EVERY,
) -> tuple[list[DropFile], list[DropFile]]:
    """Wait for young files that no later run will list (a backfill's, a past window's) until
    each has held still, size and mtime, for `quiet_seconds` (its mtime that old already, or
    unchanged across a look that long); at most `timeout` seconds in all.

    Returns (ready, still_changing), each oldest first; a file that vanished is still changing.
    Logs what it waits for when it starts and every `log_every` seconds.
    """
    pending = {f.path: f for f in files}
    # A file whose mtime is already `quiet_seconds` old has held still that long: a writer
    # moves the mtime with every write (the same clock `settled` trusts for settle_seconds).
    now = time.time()
    ready: list[DropFile] = [
        f for f in pending.values() if f.mtime is not None and now - f.mtime >= quiet_seconds
    ]
    for f in ready:
        del pending[f.path]
    started = time.monotonic()
    logged = None
    while pending:
        waited = time.monotonic() - started
        if logged is None or waited - logged >= log_every:
            logged = waited
            log.info(
                "waiting for %d file(s) of a window no later run lists to hold still for %g s"
                " (%.0f s waited, at most %g s): %s",
                len(pending),
                quiet_seconds,
                waited,
                timeout,
                ", ".join(posix_name(p) for p in sorted(pending)),
            )
        step = min(quiet_seconds, max(timeout - waited, 0.0))
        if step <= 0:
            break
        time.sleep(step)
        current = drop.restat(pending.values())
        for path, before in list(pending.items()):
            now_f = current.get(path)
            if now_f is None:
                continue
            if (now_f.size, now_f.mtime) == (before.size, before.mtime):
                ready.append(now_f)
                del pending[path]
            else:
                pending[path] = now_f  # changed: it must hold still for a whole step from here
    still = sorted(pending.values(), key=lambda f: order_key(f.name))
    if still:
        log.warning(
            "%d file(s) still changing after %.0f s: %s",
            len(still),
            time.monotonic() - started,
            [f.name for f in still],
        )
    ready.sort(key=lambda f: order_key(f.name))
    return ready, still


def posix_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]
