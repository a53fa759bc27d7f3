"""Rejected lines in the warehouse: stored whole, whatever their size, and read back whole.

A line is stored in parts: part 0 is `raw_line` in session_stream_rejects (so a line of up to
one part, nearly every reject, reads as before), parts 1, 2, ... of a longer line are rows of
session_stream_reject_parts. Each part travels in a statement of its own, well under the server's
max_allowed_packet: one INSERT of a whole line larger than that failed its file on every run,
good lines included. The row in session_stream_rejects also keeps the line's length and SHA-256,
which the reader checks.

Parts are stored as they are, not compressed: rejects are rare, and plain bytes keep the line
readable with plain SQL (README, "Reading a rejected line"); the figures are in the README.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

import MySQLdb
import MySQLdb.cursors

from session_stream import tables
from session_stream.errors import ConfigError, StoredRejectError
from session_stream.split.layout import SplitResult
from session_stream.sql import quote

PART_BYTES = 1 << 20  # 1 MiB: a statement of ~2 MiB, well under any usual max_allowed_packet
BATCH_ROWS = 500  # rejects inserted by one executemany (MySQLdb cuts its statements at 64 KB)
ER_BAD_FIELD, ER_NO_SUCH_TABLE, ER_TABLEACCESS_DENIED = 1054, 1146, 1142

REJECTS, PARTS = quote(tables.REJECTS_TABLE), quote(tables.REJECT_PARTS_TABLE)


def part_bytes(max_allowed_packet: int) -> int:
    """The size of one part on a server: PART_BYTES, or less where a statement must be smaller
    (a part doubles when sent, in hex or escaped, and the statement has its text around it)."""
    return max(256, min(PART_BYTES, int(max_allowed_packet) // 4))


def replace(cur, file_name: str, split: SplitResult, part_size: int) -> None:
    """Store the rejected lines of `split` as those of `file_name`, in place of any from an
    earlier load of the file. Runs inside the loader's transaction for the file."""
    cur.execute(f"DELETE FROM {PARTS} WHERE file_name = %s", (file_name,))
    cur.execute(f"DELETE FROM {REJECTS} WHERE file_name = %s", (file_name,))
    rows = []
    for reject in split.staged_rejects():
        parts = split.reject_parts(reject, part_size)
        first = next(parts)
        # raw_length and raw_sha256 are the whole line's; raw_kept the bytes kept of a line too
        # long to keep whole (NULL: kept whole).
        rows.append(
            (
                file_name,
                reject.line_no,
                reject.reason,
                first,
                reject.length if reject.whole else reject.line_length,
                reject.sha256 if reject.whole else reject.line_sha256,
                None if reject.whole else reject.length,
            )
        )
        # The rest, one statement each: only a long line has any (reading to the end checks
        # the staged bytes against their hash). Sent in hex, which the server reads faster
        # than an escaped string whatever the bytes (the figures are in the README).
        for part_no, part in enumerate(parts, start=1):
            cur.execute(
                f"INSERT INTO {PARTS} (file_name, line_no, part_no, chunk)"
                f" VALUES (%s, %s, %s, X'{part.hex()}')",
                (file_name, reject.line_no, part_no),
            )
        if len(rows) >= BATCH_ROWS:
            _insert_rejects(cur, rows)
            rows = []
    if rows:
        _insert_rejects(cur, rows)


def _insert_rejects(cur, rows: list[tuple]) -> None:
    cur.executemany(
        f"INSERT INTO {REJECTS}"
        " (file_name, line_no, reason, raw_line, raw_length, raw_sha256, raw_kept)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        rows,
    )


def save_line(conn, file_name: str, line_no: int, target: Path | None) -> tuple[int, int]:
    """Write the stored raw line `line_no` of `file_name` to the file `target`, or to stdout;
    returns (bytes written, the line's length): less than the length for a line too long to
    keep whole, of which the head is kept. It goes to a temporary file first, checked, so a
    line that fails the check (StoredRejectError) is never passed on."""
    try:
        fd, name = tempfile.mkstemp(dir=Path(target).parent if target else None, prefix=".reject-")
    except OSError as exc:
        raise ConfigError(f"cannot write {target or 'a temporary file'}: {exc.strerror}") from None
    tmp = Path(name)
    try:
        with open(fd, "wb") as out:
            written, length = write_line(conn, file_name, line_no, out)
        if target:
            tmp.replace(target)
        else:
            with tmp.open("rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, PART_BYTES)
            sys.stdout.buffer.flush()
    finally:
        tmp.unlink(missing_ok=True)
    return written, length


def write_line(conn, file_name: str, line_no: int, out: BinaryIO) -> tuple[int, int]:
    """Write the stored raw line `line_no` of `file_name` to `out`, part by part; returns
    (bytes written, the line's length). Raises StoredRejectError when there is no such reject,
    or when the bytes read back differ from the length and SHA-256 stored with it (for a line
    kept in part: from the length kept) (`out` then holds them all the same)."""
    where = (file_name, line_no)
    cur = conn.cursor()
    try:
        cur.execute(
            f"SELECT raw_line, raw_length, raw_sha256, raw_kept FROM {REJECTS}"
            " WHERE file_name = %s AND line_no = %s",
            where,
        )
        row = cur.fetchone()
    except MySQLdb.Error as exc:
        raise _unreadable(conn, exc) from None
    finally:
        cur.close()
    if row is None:
        raise StoredRejectError(
            f"{file_name} has no rejected line {line_no} in {tables.REJECTS_TABLE}"
            f" (SELECT line_no, reason FROM {tables.REJECTS_TABLE} WHERE file_name = ... lists them)"
        )
    first, length, sha256, kept = bytes(row[0]), row[1], row[2], row[3]
    digest, written, gap = hashlib.sha256(first), len(first), False
    out.write(first)
    # Streamed (the server sends a row as it is read), so a long line is never held whole.
    parts = conn.cursor(MySQLdb.cursors.SSCursor)
    try:
        parts.execute(
            f"SELECT part_no, chunk FROM {PARTS} WHERE file_name = %s AND line_no = %s"
            " ORDER BY part_no",
            where,
        )
        for expected, (part_no, chunk) in enumerate(parts, start=1):
            if part_no != expected:
                gap = True
                break
            digest.update(chunk)
            written += len(chunk)
            out.write(chunk)
    finally:
        parts.close()
    if length is None:  # written by a loader from before migration 6: raw_line is the line
        return written, written
    if kept is not None:  # the head of a line too long to keep whole: its length is checked
        if gap or written != kept:
            raise StoredRejectError(
                f"rejected line {line_no} of {file_name} is not stored as kept: {written} bytes"
                f" read back{' (a part is missing)' if gap else ''}, {kept} kept"
            )
        return written, length
    if gap or written != length or digest.hexdigest() != sha256:
        raise StoredRejectError(
            f"rejected line {line_no} of {file_name} is not stored whole: {written} bytes read"
            f" back{' (a part is missing)' if gap else ''}, SHA-256 {digest.hexdigest()};"
            f" stored: {length} bytes, SHA-256 {sha256}"
        )
    return written, length


def _unreadable(conn, exc: MySQLdb.Error) -> Exception:
    """The one-line error for a rejects table this user may not read, or that is too old."""
    code = exc.args[0] if exc.args else None
    if code == ER_TABLEACCESS_DENIED:
        from session_stream.warehouse.privileges import current_user

        return ConfigError(
            f"MySQL user {current_user(conn)} may not read {tables.REJECTS_TABLE} (analysts never"
            " may: a raw line can hold anything a file held): run this as the loader or the"
            " schema owner"
        )
    if code in (ER_BAD_FIELD, ER_NO_SUCH_TABLE):  # raw_kept: migration 8
        return ConfigError(
            f"the database has no {tables.REJECTS_TABLE} of this version: run `session-stream init-db`"
        )
    return exc
