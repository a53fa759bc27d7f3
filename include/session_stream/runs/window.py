"""The span of the drop a run reads: its window (params, data interval, or the last hour), the
sweep of files that failed in earlier windows, and whether the drop has gone silent."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from session_stream.errors import ConfigError
from session_stream.utc import parse_utc, to_utc

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
MAX_RETRY_WAIT = timedelta(hours=24)
RETRY_SLACK = timedelta(minutes=15)  # a run reaches its load some minutes after it starts


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


# ---------------------------------------------------------------- the drop's silence


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
