"""Write a realistic Monetate Session Stream drop tree, deterministic by seed.

Tests, the benchmark and demos use it instead of binary fixtures in git. The tree looks like
the real delivery (Monetate's "Session Stream Data" page; names.py): `<root>/YYYY/MM/DD/` holding gzip JSON-lines
files named `YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz`, one session object per line.

What a drop holds:
- `sessions` distinct sessions spread evenly over `files` files, the files spread evenly over
  the 15-minute windows of `hours` hours. Every line's `end_time` lies in its file's window.
- Every field of Monetate's sample loader, with plausible values: browser and OS with their
  versions, screen sizes that fit the device, a 2-letter country_code, region and city, the
  visitor's guid and session_count, and the `_ss` totals over the visitor's sessions so far.
- About 30% bounces with no child rows; the others average ~12 child rows, so a day of
  80,000 sessions in 16 files is ~860k rows in all tables and ~110 MB of JSON (21 MB gzip).
- Session ids are unique across days, hours and seeds: each drop draws them from a stream of
  its seed and its first window. Their shape is `id_style` (ID_STYLES): random UUIDs by default,
  or one of the shapes the contract allows and an index must not be fooled by (ids that share
  their first characters with every session of their window, 1 character, 255 characters). The
  style changes the ids only: the sessions are the same in every style.
- A share of sessions (`reemit`, 10%) is written twice: open (`is_closed` 'f') in one file,
  then closed in a later file with a greater `end_time` and different children (more cart and
  view lines, a purchase, one custom target dropped), so a loader must replace, not merge.
- With `quirks`, every 20th session (index % 20 == QUIRK_PHASE) carries every input quirk of
  the contract at once (see QUIRKS); all values stay valid for the schema.
- `bad_lines` adds lines a loader must reject (BAD_KINDS), on top of the good ones.

Key names come from tables.py. The same seed gives the same bytes (gzip mtime is 0), and the
sessions themselves do not depend on `quirks` or `bad_lines`: those draw from their own streams.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from session_stream.drop.names import file_name
from session_stream.drop.sample_ids import (
    ACCOUNT_ID,
    DEFAULT_ID_STYLE,
    ID_STYLES,
    SHARED_ID_PREFIX,
    session_id,
)
from session_stream.drop.sample_sessions import (
    BAD_KINDS,
    BAD_SESSION_PREFIX,
    BOUNCE_SHARE,
    GZIP_LEVEL,
    QUIRK_EVERY,
    QUIRK_PHASE,
    REEMIT_SHARE,
    TRICKY_STRINGS,
    WINDOW_MS,
    WINDOWS_PER_HOUR,
    _bad_line,
    _new_session,
    _reemit,
    _render,
)
from session_stream.drop.sample_values import Catalog
from session_stream.errors import ConfigError, SessionStreamError

# Read as sample.<name> by the tests and the benchmark: the session generator's own names.
__all__ = [
    "ACCOUNT_ID",
    "BAD_SESSION_PREFIX",
    "DEFAULT_ID_STYLE",
    "ID_STYLES",
    "SHARED_ID_PREFIX",
    "TRICKY_STRINGS",
    "write_drop",
    "write_hour",
    "truncate_file",
    "main",
    "run",
    "add_arguments",
    "ConfigError",
]


def write_drop(
    root: Path,
    day: date,
    *,
    sessions: int = 80_000,
    files: int = 16,
    start_hour: int = 0,
    hours: int = 24,
    seed: int = 0,
    quirks: bool = True,
    reemit: float = REEMIT_SHARE,
    bad_lines: int = 0,
    compresslevel: int = GZIP_LEVEL,
    id_style: str = DEFAULT_ID_STYLE,
    window_count: int | None = None,
) -> list[Path]:
    """Write a drop under `root/YYYY/MM/DD/` and return the files written, oldest first.

    The files are spread evenly over the windows of hours [start_hour, start_hour + hours) of
    `day`, or over the first `window_count` of them; when `files` exceeds the windows, several files
    share a window.
    """
    if files < 1 or sessions < 0:
        raise ConfigError("a drop needs at least one file and a non-negative number of sessions")
    if not (0 <= start_hour < 24 and 1 <= hours <= 24 - start_hour):
        raise ConfigError(
            "the hours of a drop must lie in one day: 0 <= start_hour < start_hour + hours <= 24"
        )
    if id_style not in ID_STYLES:
        raise ConfigError(f"unknown id style {id_style!r}: use one of {', '.join(ID_STYLES)}")
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    windows = [
        day_start + timedelta(minutes=15 * w)
        for w in range(start_hour * WINDOWS_PER_HOUR, (start_hour + hours) * WINDOWS_PER_HOUR)
    ][:window_count]
    if not windows:
        raise ConfigError("a drop needs at least one window")
    drop = _Drop(seed, quirks, windows[0], id_style)
    per_window: dict[datetime, int] = defaultdict(int)
    for k in range(files):
        ws = windows[k * len(windows) // files]
        # Numbers grow within a window, so name order is write order (ties go to the later file).
        number = ms_of(ws) + WINDOW_MS + 1000 * per_window[ws] + drop.rng.randrange(1000)
        per_window[ws] += 1
        drop.plan.append((ws, number))

    counts = [sessions // files + (k < sessions % files) for k in range(files)]
    eligible = sum(counts[:-1])  # a session in the last file has no later file to reappear in
    n_reemit = min(eligible, round(reemit * sessions)) if reemit > 0 and eligible else 0
    drop.reemitted = set(drop.rng.sample(range(eligible), n_reemit))
    bad_by_file: dict[int, list[str]] = defaultdict(list)
    for b in range(bad_lines):
        bad_by_file[b % files].append(BAD_KINDS[b % len(BAD_KINDS)])

    folder = root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (ws, number) in enumerate(drop.plan):
        path = folder / file_name(ws, number)
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", compresslevel, raw, mtime=0) as gz:
            out = []
            for line in drop.file_lines(k, counts[k], bad_by_file[k]):
                out.append(line)
                if len(out) >= 2000:
                    gz.write(b"\n".join(out) + b"\n")
                    out = []
            if out:
                gz.write(b"\n".join(out) + b"\n")
        paths.append(path)
    return paths


def ms_of(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


class _Drop:
    """The state that runs across files: random streams, the file plan, closed versions due."""

    def __init__(self, seed: int, quirks: bool, first_window: datetime, id_style: str):
        self.seed = seed
        self.id_style = id_style
        # The retailer's catalog is the seed's; the sessions are the seed's and the hours',
        # so drops of other days or hours never send the same session ids again.
        self.cat = Catalog(random.Random(seed))
        self.rng = random.Random(f"{seed}/{first_window.isoformat()}")
        # Own streams: quirks and bad lines leave the sessions and their order alone.
        self.qr = random.Random(f"{seed}/quirks") if quirks else None
        self.br = random.Random(f"{seed}/bad")
        self.plan: list[tuple[datetime, int]] = []  # (window start, number) per file, name order
        self.reemitted: set[int] = set()
        self.pending: dict[int, list[bytes]] = defaultdict(list)  # closed versions due in file k
        self.index = 0  # global session index

    def file_lines(self, k: int, count: int, bad_kinds: list[str]):
        """The lines of file k: `count` new sessions, the closed versions due, the bad lines."""
        due = self.pending.pop(k, [])
        n_good = count + len(due)
        slots = random.Random(f"{self.seed}/slots/{k}")
        due_at = dict(zip(sorted(slots.sample(range(n_good), len(due))), due, strict=True))
        bad_pos = sorted(self.br.sample(range(n_good + len(bad_kinds)), len(bad_kinds)))
        bad_at = dict(zip(bad_pos, bad_kinds, strict=True))
        w0 = ms_of(self.plan[k][0])
        good = 0
        last: dict | None = None
        for pos in range(n_good + len(bad_kinds)):
            if pos in bad_at:
                if last is None:  # a bad line is built from a good one, for realism
                    stub = _new_session(self.br, self.cat, w0, w0 + 1, busy=False, bounce=True)
                    last = _render(stub, w0 + 1, True, None)
                yield _bad_line(bad_at[pos], f"{k}-{pos}", last)
                continue
            if good in due_at:
                yield due_at[good]
            else:
                last = self._session(k, w0)
                yield orjson.dumps(last)
                self.index += 1
            good += 1

    def _make_id(self, bits: int, window_ms: int) -> str:
        return session_id(self.id_style, bits, window_ms, self.index)

    def _session(self, k: int, w0: int) -> dict:
        """The next new session for file k; a re-emitted one also queues its closed version."""
        rng, r, index = self.rng, self.rng.random, self.index
        busy = index % QUIRK_EVERY == QUIRK_PHASE  # rng use must not depend on `quirks`
        qr = self.qr if busy else None
        if index not in self.reemitted:
            bounce = not busy and r() < BOUNCE_SHARE
            start = w0 + int(r() * 0.9 * WINDOW_MS)
            end = start if bounce else start + int(rng.expovariate(1 / 240_000))
            end = min(end, w0 + WINDOW_MS - 1)
            s = _new_session(
                rng, self.cat, start, end, busy=busy, bounce=bounce, make_id=self._make_id
            )
            return _render(s, end, True, qr)
        # Open in file k (ending in the first half of its window), closed in a later file j.
        j = min(len(self.plan) - 1, k + 1 + (r() < 0.3))
        start = w0 + int(r() * 0.4 * WINDOW_MS)
        cut = start + 1 + int(r() * 0.1 * WINDOW_MS)
        wj = ms_of(self.plan[j][0])
        lo = max(cut + 2, wj)
        end = lo + int(r() * (wj + WINDOW_MS - 1 - lo))
        s = _new_session(rng, self.cat, start, cut, busy=busy, bounce=False, make_id=self._make_id)
        _reemit(rng, self.cat, s, cut, end)
        self.pending[j].append(orjson.dumps(_render(s, end, True, qr)))
        return _render(s, cut, False, qr)


def write_hour(root: Path, hour: datetime, **kwargs) -> list[Path]:
    """A drop of one hour (the DAG's interval): write_drop for the hour starting at `hour` (UTC)."""
    kwargs.setdefault("sessions", 200)
    kwargs.setdefault("files", 4)
    return write_drop(root, hour.date(), start_hour=hour.hour, hours=1, **kwargs)


def truncate_file(path: Path, keep_bytes: int | None = None) -> Path:
    """Cut a file short (default: to half its size), like an interrupted transfer."""
    size = path.stat().st_size
    keep = size // 2 if keep_bytes is None else keep_bytes
    if not 0 <= keep < size:
        raise ValueError(f"keep_bytes must be below the file size {size}, got {keep}")
    with open(path, "r+b") as f:
        f.truncate(keep)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="root of the drop tree to write")
    parser.add_argument(
        "--day",
        type=date.fromisoformat,
        default=date(2024, 5, 1),
        help="UTC day of the drop, YYYY-MM-DD (default 2024-05-01)",
    )
    parser.add_argument(
        "--sessions", type=int, default=80_000, help="distinct sessions (default 80000)"
    )
    parser.add_argument(
        "--files", type=int, default=16, help="files, spread over the day's windows (default 16)"
    )
    parser.add_argument(
        "--start-hour", type=int, default=0, help="first UTC hour with files (default 0)"
    )
    parser.add_argument(
        "--hours", type=int, default=None, help="hours with files (default: to the end of the day)"
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--no-quirks", action="store_true", help="plain data only, no input quirks")
    parser.add_argument(
        "--bad-lines", type=int, default=0, help="lines a loader must reject (default 0)"
    )
    parser.add_argument(
        "--truncate", type=int, default=0, help="cut this many of the newest files short"
    )
    parser.add_argument(
        "--id-style",
        choices=tuple(ID_STYLES),
        default=DEFAULT_ID_STYLE,
        help="how session ids look: "
        + "; ".join(f"{k}: {v}" for k, v in ID_STYLES.items())
        + f" (default {DEFAULT_ID_STYLE})",
    )


def run(args: argparse.Namespace) -> int:
    hours = args.hours if args.hours is not None else 24 - args.start_hour
    try:
        paths = write_drop(
            args.out,
            args.day,
            sessions=args.sessions,
            files=args.files,
            start_hour=args.start_hour,
            hours=hours,
            seed=args.seed,
            quirks=not args.no_quirks,
            bad_lines=args.bad_lines,
            id_style=args.id_style,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot write the drop under {args.out}: {exc.strerror or exc}"
        ) from None
    for path in paths[max(0, len(paths) - args.truncate) :] if args.truncate > 0 else ():
        truncate_file(path)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files ({size / 1e6:.1f} MB gzip) under {args.out}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m session_stream.drop.sample") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a realistic, deterministic Monetate Session Stream drop tree (root/YYYY/MM/DD/*.json.gz).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SessionStreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
