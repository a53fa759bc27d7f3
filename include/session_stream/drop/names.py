"""Monetate Session Stream file names, their order, and the day folders a time range touches.

A file is `<root>/YYYY/MM/DD/YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz`: the window start in
UTC, the window length, and an opaque number that makes the name unique
(Monetate's "Session Stream Data" page).
"""

from __future__ import annotations

import posixpath
import re
from datetime import UTC, date, datetime, timedelta

from session_stream.utc import to_utc

_NAME_RE = re.compile(
    r"^(?P<ts>\d{8}T\d{6})(?:\.(?P<frac>\d{1,6}))?Z_(?P<dur>P[0-9A-Z.]+)-(?P<num>\d+)\.json\.gz$",
    re.ASCII,
)
_DURATION_RE = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.ASCII,
)


def parse_name(name: str) -> tuple[datetime, timedelta, int]:
    """(window start UTC, window length, number) of a Monetate file name; ValueError otherwise."""
    m = _NAME_RE.match(name)
    if not m:
        raise ValueError(
            f"{name!r} is not a Monetate Session Stream file name "
            "(expected YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz)"
        )
    try:
        start = datetime.strptime(m["ts"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{name!r} has an impossible window start {m['ts']!r}") from None
    if m["frac"]:
        start += timedelta(microseconds=int(m["frac"].ljust(6, "0")))
    d = _DURATION_RE.match(m["dur"])
    if not d or m["dur"] in ("P", "PT") or m["dur"].endswith("T"):
        raise ValueError(
            f"{name!r} has a window length {m['dur']!r} that is not an ISO-8601 duration"
        )
    length = timedelta(
        weeks=int(d["w"] or 0),
        days=int(d["d"] or 0),
        hours=int(d["h"] or 0),
        minutes=int(d["m"] or 0),
        seconds=float(d["s"] or 0),
    )
    return start, length, int(m["num"])


def file_name(window_start: datetime, number: int) -> str:
    """Monetate's name for a file of the 15-minute window starting at `window_start` (UTC)."""
    ms = window_start.microsecond // 1000
    return f"{window_start:%Y%m%dT%H%M%S}.{ms:03d}Z_PT15M-{number}.json.gz"


def is_drop_name(name: str) -> bool:
    try:
        parse_name(name)
    except ValueError:
        return False
    return True


def window_start(name: str) -> datetime | None:
    """The window start of a Monetate file name; None for any other name."""
    try:
        return parse_name(posixpath.basename(name))[0]
    except ValueError:
        return None


def order_key(name: str) -> tuple:
    """Sort key for the "later file" order: window start, then the number (numerically)."""
    start, _, number = parse_name(posixpath.basename(name))
    return (start, number)


def file_rank(name: str) -> tuple:
    """`order_key` for any name: Monetate names in their order, then other names (a file given
    to the CLI by hand) by name. Newest-wins ties go to the higher rank."""
    try:
        return (0, order_key(name))
    except ValueError:
        return (1, name)


def day_folders(start: datetime, end: datetime) -> list[str]:
    """The 'YYYY/MM/DD' folders holding windows that start in [start, end)."""
    start, end = to_utc(start), to_utc(end)
    if end <= start:
        return []
    last: date = (end - timedelta(microseconds=1)).date()
    day, out = start.date(), []
    while day <= last:
        out.append(day.strftime("%Y/%m/%d"))
        day += timedelta(days=1)
    return out


def is_text(name: str) -> bool:
    """Whether a name listed from a file system is text: a name of other bytes holds surrogate
    escapes (os.fsdecode), which neither the ledger nor the staged files can keep."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_name(name: str) -> str:
    """A name as text: itself, or for a name of other bytes those bytes as \\xNN escapes."""
    if is_text(name):
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
