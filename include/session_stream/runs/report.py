"""A run's quality report: what one session_stream run did, read back from the ledger.

`run_report` returns a plain dict (JSON-safe: it travels as XCom and as the extra of the Asset
event the run emits); `format_report` renders it as the table `check`'s log ends with.

Figures are for what the run itself did: a file counts as loaded by the run when its ledger
row carries the run's key (fetched["run_key"], the head of the load_token its load wrote), so a
file that an overlapping run (a backfill's look-backs) loaded while this one waited is counted
once, by that run, and here as "loaded by another run". Unknown and missing keys are summed from the ledger's `unknown_keys` and
`missing_keys` JSON columns when the warehouse has them (CONTRACT: each file's ledger row counts
unknown keys by path), and are empty otherwise.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table

from session_stream import tables
from session_stream.runs.policy import DEFAULT_SWEEP_DAYS
from session_stream.split.keycounts import KeyCounts
from session_stream.utc import to_utc

MAX_LISTED = 20  # files named per list; the totals count them all
MAX_ERROR_CHARS = 300


def run_report(fetched: dict, loader, *, still_failing_days: float = DEFAULT_SWEEP_DAYS) -> dict:
    """The figures of the run that fetched `fetched` (dag_tasks.fetch's summary), from the ledger.

    `still_failing` lists the files the ledger marks failed whose window starts within
    `still_failing_days` before the run's window end (or since fetched["sweep_since"]).
    """
    start, end = (_moment(t) for t in (fetched.get("window") or [None, None]))
    names = list(fetched.get("fetched") or [])
    ledger = loader.ledger(names) if names else {}
    in_ledger = [n for n in names if (ledger.get(n) or {}).get("status") == "loaded"]
    key = fetched.get("run_key")
    loaded = [
        n for n in in_ledger if not key or str(ledger[n].get("load_token") or "").startswith(key)
    ]
    elsewhere = [n for n in in_ledger if n not in set(loaded)]
    failed = [n for n in names if n not in set(in_ledger)]
    rows = {t.name: 0 for t in tables.TABLES}
    for n in loaded:
        for t in tables.TABLES:
            rows[t.name] += int(ledger[n].get(tables.rows_column(t)) or 0)
    late = [
        n
        for n in loaded
        if start and end and not _inside(ledger[n].get("window_start"), start, end)
    ]

    failing: list[dict] = []
    if end is not None:
        since = _moment(fetched.get("sweep_since")) or end - timedelta(days=still_failing_days)
        failing = loader.failing(since, end)
    return {
        "window": [start.isoformat() if start else None, end.isoformat() if end else None],
        "listed": int(fetched.get("listed") or 0),
        "skipped": int(fetched.get("already_loaded") or 0),
        "fetched": len(names),
        "loaded": len(loaded),
        "loaded_elsewhere": len(elsewhere),
        "left_behind": list(fetched.get("left_behind") or []),
        "failed": len(failed),
        "waiting": list(fetched.get("waiting") or []),
        "ignored": dict(fetched.get("ignored") or {}),
        "retried": list(fetched.get("retried") or []),
        # The three session counts, the same words as the CLI's summary (README, "The three
        # session counts"): every session line of the run's files (a session re-emitted in
        # several files is a version in each), the rows this run wrote to session_sessions (the
        # newest version of each session a file holds, less those a newer stored one beat), and
        # the distinct sessions the warehouse holds now, whoever loaded them.
        "session_versions_read": sum(
            int(ledger[n].get("sessions") or 0) + int(ledger[n].get("repeats") or 0) for n in loaded
        ),
        "sessions_written": rows[tables.SESSIONS.name],
        "sessions_stored": loader.count_sessions() if hasattr(loader, "count_sessions") else None,
        "rows": rows,
        "rejects": sum(int(ledger[n].get("rejects") or 0) for n in loaded),
        "unknown_keys": _sum_keys(ledger[n].get("unknown_keys") for n in loaded),
        "missing_keys": _sum_keys(ledger[n].get("missing_keys") for n in loaded),
        "late_files": late,
        "failed_files": failed,
        "still_failing": [_failing_entry(r) for r in failing[:MAX_LISTED]],
        "still_failing_total": len(failing),
        "silence_ongoing": fetched.get("silence_ongoing"),
        "silence_ended": fetched.get("silence_ended"),
    }


def format_report(report: dict) -> str:
    """The report as text tables, for a log."""
    console = Console(
        file=io.StringIO(), width=140, color_system=None, highlight=False, emoji=False
    )
    start, end = report.get("window") or [None, None]
    figures = Table(
        title=f"session_stream run report: window {start} to {end}", title_justify="left"
    )
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    figures.add_column("files", overflow="fold", max_width=70)
    late, retried = report.get("late_files") or [], report.get("retried") or []
    waiting, failed = report.get("waiting") or [], report.get("failed_files") or []
    figures.add_row("files listed (window + look-back)", _n(report.get("listed")), "")
    figures.add_row("  skipped, loaded before", _n(report.get("skipped")), "")
    figures.add_row("  loaded by this run", _n(report.get("loaded")), "")
    figures.add_row("  loaded meanwhile by another run", _n(report.get("loaded_elsewhere")), "")
    figures.add_row("  failed", _n(report.get("failed")), _names(failed))
    figures.add_row("  still being written (next run)", _n(len(waiting)), _names(waiting))
    left = report.get("left_behind") or []
    figures.add_row("  LEFT BEHIND (no later run lists them)", _n(len(left)), _names(left))
    ignored = list(report.get("ignored") or {})
    figures.add_row("  ignored, not Monetate files (new)", _n(len(ignored)), _names(ignored))
    figures.add_row("  late (window before the run's)", _n(len(late)), _names(late))
    figures.add_row("  retried failures of earlier windows", _n(len(retried)), _names(retried))
    figures.add_row("session versions read (lines)", _n(report.get("session_versions_read")), "")
    figures.add_row("sessions written (this run)", _n(report.get("sessions_written")), "")
    stored = report.get("sessions_stored")
    figures.add_row("sessions now stored (warehouse)", "?" if stored is None else _n(stored), "")
    for table, n in (report.get("rows") or {}).items():
        figures.add_row(f"rows {table}", _n(n), "")
    figures.add_row("rejects (session_stream_rejects)", _n(report.get("rejects")), "")
    for what in ("unknown_keys", "missing_keys"):
        keys = report.get(what) or {}
        figures.add_row(what.replace("_", " "), _n(sum(keys.values())), _keys(keys))
    figures.add_row("files still failing", _n(report.get("still_failing_total")), "")
    console.print(figures)

    failing = report.get("still_failing") or []
    if failing:
        listed = Table(
            title=f"files still failing ({report.get('still_failing_total')}, newest first;"
            " full errors in the log above)",
            title_justify="left",
        )
        listed.add_column("file", no_wrap=True, min_width=50)
        listed.add_column("failing since", no_wrap=True, min_width=16)
        listed.add_column("attempts", justify="right", min_width=8)
        listed.add_column("last error", no_wrap=True, overflow="ellipsis", max_width=50)
        for f in failing:
            since = (f.get("failing_since") or "?")[:16].replace("T", " ")
            listed.add_row(f["file"], since, _n(f["attempts"]), f["error"])
        console.print(listed)
    text = console.file.getvalue()
    return "\n".join(line.rstrip() for line in text.splitlines())


# ---------------------------------------------------------------- helpers


def _moment(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return to_utc(value)


def _inside(window_start, start: datetime, end: datetime) -> bool:
    return window_start is not None and start <= to_utc(window_start) < end


def _sum_keys(values) -> dict[str, int]:
    """Add up the ledger's per-file key counts ({path: count}), most frequent first."""
    total = KeyCounts()
    for value in values:
        total.add(value)
    return dict(total.lines.most_common())


def _failing_entry(row: dict) -> dict:
    def iso(t):
        return to_utc(t).isoformat() if t else None

    return {
        "file": row["file_name"],
        "window_start": iso(row.get("window_start")),
        "failing_since": iso(row.get("failed_since")),
        "last_attempt": iso(row.get("last_attempt")),
        "attempts": int(row.get("attempts") or 0),
        "error": (row.get("error") or "")[:MAX_ERROR_CHARS],
    }


def _n(value) -> str:
    return f"{int(value or 0):,}"


def _names(names: list[str]) -> str:
    more = len(names) - MAX_LISTED
    return ", ".join(names[:MAX_LISTED]) + (f" (+{more} more)" if more > 0 else "")


def _keys(keys: dict[str, int]) -> str:
    items = list(keys.items())
    shown = ", ".join(f"{path} {n:,}" for path, n in items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")
