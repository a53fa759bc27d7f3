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
