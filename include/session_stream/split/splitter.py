"""Split one Session Stream file into one staged TSV per table, ready for LOAD DATA.

The file is streamed (never held in memory whole) and each line is parsed with msgspec (into
structs of the spec's shape, or into dicts when its keys differ, which KeyAudit then counts: see
_spec_structs), validated against tables.py and written out. A line that is not JSON, has no
session_id, carries a value that would not fit its column, or writes a key twice (_KeyCheck)
becomes a reject and the rest of the file goes on. Every line is counted: lines = sessions +
repeats + rejects + blank lines. What a file can make the split hold is bounded whatever it holds
(LINE_BYTES_MAX, KEYS_PER_LINE, UNKNOWN_KEYS_PER_LINE, keycounts.KEY_PATHS_PER_FILE, the rejects'
budget in layout.py, _Newest's spill to disk). A file that cannot be read to its end, or holds no
gzip member at all (0 bytes), leaves nothing behind and raises BadInputError.

How each value is checked and written is convert.py's; what the staged files hold is layout.py's;
the rows of each table are rows.py's builders; the keys a line carries are counted by key_audit.py
and checked for repeats by repeated_keys.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import sqlite3
import time
import zlib
from functools import partial
from pathlib import Path

import msgspec

from session_stream import tables
from session_stream.errors import BadInputError
from session_stream.split import fastsplit
from session_stream.split.convert import JsonNumber, Reject, converter
from session_stream.split.key_audit import KeyAudit
from session_stream.split.layout import NULL, SplitResult, SplitWriter, escape, row_lead
from session_stream.split.repeated_keys import (
    _KEYS_COUNTED_FROM,
    KEYS_PER_LINE,
    _dict_keys,
    _duplicate,
    _KeyCheck,
    _keys_distinct,
    _row_keys,
    _too_many_keys,
    colon_keys,
)
from session_stream.split.rows import (
    _BUILDERS,
    _CLEAN_BUILDERS,
    _struct_builders,
    _Tally,
)

# Bounds on what one line may make the split hold (README, "Operating it"). A line is parsed
# whole, which takes up to ~40 times its size in memory for a line of tiny values ([0.1,0.1,...]:
# 318 MB of peak for 8 MiB): LINE_BYTES_MAX keeps the split under ~200 MB whatever a line holds.
# A longer line is rejected unread and streamed to the rejects _READ_ON bytes at a time. Real
# sessions are a few kB; 4 MiB holds some 50,000 view lines.
LINE_BYTES_MAX = 4 << 20
_READ_ON = 1 << 20
_LONG_LINE = min(LINE_BYTES_MAX, _KEYS_COUNTED_FROM)  # a line checked for the bounds
# Lines are read from a buffer of this size over the gzip reader: its own buffer of 8 KiB is
# refilled through Python every ~6 lines, ~15% of the split's CPU once the rows were built in C.
READ_BUFFER = 1 << 20
# Numbers stay exact: a fraction or an exponent arrives as its text (the float_hook), an integer as
# an int of any size, for convert.py to judge; a binary float would have rounded them already.
_decode = msgspec.json.Decoder(float_hook=JsonNumber).decode
# A JSON escape that decodes to what the staged format escapes (layout.escape: backslash, tab,
# LF, CR, NUL): a line without one stages its strings as they are. A raw control character in
# a string is not JSON (the parser refuses it), so these escapes are the only way in.
_ESCAPES_SPECIAL = re.compile(rb"\\(?:[\\tnr]|u00(?:0[09aAdD]|5[cC]))").search


def _spec_structs() -> type:
    """The spec's session as msgspec structs: every scalar key of each object required, the
    collections optional, no other key allowed, values of any type (the converters judge them).
    A line that decodes into it has exactly the keys the spec knows, at every level: msgspec
    checks that in C while it parses, which is most of the unknown-key audit's work, and parsing
    into structs is faster than into dicts. Any other line is parsed again into dicts, audited
    key by key (KeyAudit) and split the same way."""
    paths = tables.object_paths()
    lines, items = tables.PURCHASE_LINE_ITEMS.path

    def struct(path: str, optional=()):
        fields = [(key, object) for key in paths[path]] + [(k, t, None) for k, t in optional]
        return msgspec.defstruct(
            "Spec_" + "".join(c if c.isalnum() else "_" for c in path),
            fields,
            forbid_unknown_fields=True,
        )

    item = struct(f"{lines}{{}}.{items}[]")
    line = struct(f"{lines}{{}}", [(items, list[item] | None)])
    collections = []
    for table in tables.CHILD_TABLES:
        top = table.path[0]
        if table.shape == "map":
            collections.append((top, dict[str, object] | None))
        elif table.shape == "list":
            collections.append((top, list[struct(f"{top}[]")] | None))
        elif table.shape == "map_of_objects":
            collections.append((top, dict[str, line] | None))
    assert [k for k, _ in collections] == list(tables.COLLECTION_KEYS)
    return struct(tables.SESSION_PATH, collections)


_decode_known = msgspec.json.Decoder(_spec_structs(), float_hook=JsonNumber).decode


def parse(raw: bytes) -> tuple[object, bool]:
    """A line as the split parses it: (its structs, True) when its keys are exactly the spec's;
    else (its value parsed into dicts, False), whose keys KeyAudit counts. Raises ValueError
    (msgspec's DecodeError) or RecursionError for a line that is not JSON."""
    try:
        return _decode_known(raw), True
    except (ValueError, RecursionError):  # msgspec's DecodeError and ValidationError
        return _decode(raw), False


_TABLE_NAMES = [t.name for t in tables.TABLES]
assert tables.TABLES[0] is tables.SESSIONS  # _session_rows puts the source after its first row
_SESSION_ID = converter(tables.SESSION_ID)
_END_TIME = converter(next(c for c in tables.SESSIONS.columns if c.name == "end_time"))
_START_TIME = converter(next(c for c in tables.SESSIONS.columns if c.name == "start_time"))


# --- the file-level split ---------------------------------------------------------------------


def _session_rows(
    session: dict, index: int, session_id: str, source: str, builders: list
) -> list[list[str]]:
    """Every table's rows for one session, in tables.TABLES order (see row_builder); raises
    Reject."""
    first = builders[0](session, row_lead(index, session_id))[0] + "\t" + source
    lead = str(index)
    return [[first], *[build(session, lead) for build in builders[1:]]]


class _TableBuffers:
    """The rows of each table for the last sessions, written out a thousand sessions (or
    FLUSH_BYTES of lines) at a time: one write per table, not one per session and table, and
    never more than a few lines' worth of rows held, however long the lines."""

    FLUSH_EVERY = 1000
    FLUSH_BYTES = 16 << 20

    def __init__(self, writers: SplitWriter, rows: dict[str, int]):
        self.handles = [writers.handles[name] for name in _TABLE_NAMES]
        self.rows = rows
        self.buffers: list[list[str]] = [[] for _ in _TABLE_NAMES]
        self.sessions = 0
        self.bytes = 0

    def add(self, per_table: list[list[str]], line_bytes: int) -> None:
        for buffer, lines in zip(self.buffers, per_table, strict=True):
            buffer += lines
        self.sessions += 1
        self.bytes += line_bytes
        if self.sessions >= self.FLUSH_EVERY or self.bytes >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        for name, handle, buffer in zip(_TABLE_NAMES, self.handles, self.buffers, strict=True):
            if buffer:
                self.rows[name] += len(buffer)
                buffer.append("")  # the last row's line end
                handle.write("\n".join(buffer))
                buffer.clear()
        self.sessions = self.bytes = 0


class _Hashing:
    """A binary file read through SHA-256: the source file's content identity, computed as the
    split reads it (no second read)."""

    def __init__(self, raw):
        self.raw, self.digest = raw, hashlib.sha256()
        self.name, self.mode = raw.name, "rb"

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data

    def close(self) -> None:
        self.raw.close()


def split_file(src: Path, out_dir: Path, *, source_name: str | None = None) -> SplitResult:
    """Split `src` (.json.gz) into `out_dir`; see the module doc. Returns the counts."""
    src, out_dir = Path(src), Path(out_dir)
    name = source_name or src.name
    started = time.perf_counter()
    newest = _Newest()
    try:
        if src.stat().st_size == 0:
            # gzip reads 0 bytes as a stream of no members, without an error; any other file
            # holding no whole member (the magic or a header alone, cut short) raises EOFError.
            raise BadInputError(
                f"{name}: is empty (0 bytes), not a gzip file: an upload cut at its start?"
                " Nothing was staged from it"
            )
        careful = False
        result, repeated_keys = _split_pass(src, out_dir, name, newest, first=True, careful=False)
        if repeated_keys:
            # A line may write a key twice (_KeyCheck): split again, checking each line.
            careful = True
            newest.close()
            newest = _Newest()
            result, _ = _split_pass(src, out_dir, name, newest, first=True, careful=True)
        if newest.repeated:
            # A session written twice in one file: only its newest version may be staged.
            # Rare, so a second pass is cheaper than buffering every row of every file.
            result, _ = _split_pass(src, out_dir, name, newest, first=False, careful=careful)
    except (EOFError, OSError, zlib.error) as exc:
        newest.close()
        shutil.rmtree(out_dir, ignore_errors=True)
        raise BadInputError(
            f"{name}: cannot be read to its end ({exc.__class__.__name__}: {exc}); nothing was staged from it"
        ) from None
    newest.close()
    result.seconds = round(time.perf_counter() - started, 3)
    result.write_manifest()
    return result


class _Newest:
    """The newest version of each session of a file: (end_time, line number) by session_id, the
    later line winning a tie. Held in a dict up to SPILL sessions, then in a temporary SQLite
    table on disk, so a file of millions of tiny sessions does not take memory by the gigabyte
    (a normal file holds a few thousand)."""

    SPILL = 200_000

    def __init__(self):
        self.best: dict[str, tuple[int, int]] = {}
        self.db: sqlite3.Connection | None = None
        self.repeated = False  # a session_id seen twice: the second pass keeps the newest

    def offer(self, sid: str, end_ms: int, line_no: int) -> bool:
        """First pass: record a version; False when a newer one of the session came before."""
        if self.db is None:
            previous = self.best.get(sid)
            if previous is None and len(self.best) >= self.SPILL:
                self._spill()
                return self.offer(sid, end_ms, line_no)
        else:
            row = self.db.execute("SELECT end_ms FROM best WHERE sid = ?", (sid,)).fetchone()
            previous = row and (row[0], 0)
        if previous is not None:
            self.repeated = True
            if end_ms < previous[0]:  # a tie goes to the later line
                return False
        if self.db is None:
            self.best[sid] = (end_ms, line_no)
        else:
            self.db.execute("REPLACE INTO best VALUES (?, ?, ?)", (sid, end_ms, line_no))
        return True

    def keeps(self, sid: str, line_no: int) -> bool:
        """Second pass: whether this line holds the version of the session to stage."""
        if self.db is None:
            return self.best[sid][1] == line_no
        row = self.db.execute("SELECT line_no FROM best WHERE sid = ?", (sid,)).fetchone()
        return row[0] == line_no

    def _spill(self) -> None:
        # "": a private temporary database on disk, removed when closed; a 2 MB page cache.
        self.db = sqlite3.connect("")
        self.db.execute(
            "CREATE TABLE best (sid TEXT PRIMARY KEY, end_ms INTEGER, line_no INTEGER)"
            " WITHOUT ROWID"
        )
        self.db.executemany(
            "INSERT INTO best VALUES (?, ?, ?)", ((k, e, n) for k, (e, n) in self.best.items())
        )
        self.best.clear()  # in place: split's loop holds it

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _split_pass(
    src: Path, out_dir: Path, name: str, newest: _Newest, *, first: bool, careful: bool
) -> tuple[SplitResult, bool]:
    """One pass over the file: (its split, whether a line may have written a key twice). The
    first pass offers each version of a session to `newest`; a second one stages the newest.
    `careful`: check every line for a repeated key on its own (see _KeyCheck)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    source = escape(name)
    result = SplitResult(source_name=name, out_dir=out_dir, rows={t.name: 0 for t in tables.TABLES})
    rows = result.rows
    writers = SplitWriter(out_dir)
    buffers = _TableBuffers(writers, rows)
    audit = KeyAudit()
    check = _KeyCheck()
    tally, counted, counted_lines = check.tally, 0, 0
    best = newest.best
    count_keys = colon_keys  # a local: read once a line
    stage_line = fastsplit.stage_line
    struct_builders, struct_clean_builders = _struct_builders(check.tally)

    def general(session, known: bool, clean: bool, index: int):
        """A line the fast path does not take: (its rows, staged session_id, staged end_time,
        start_time as sent, None), or (None, None, None, None, the reject reason)."""
        mark = tally.n
        try:
            if known:  # exactly the spec's keys, nothing to audit
                sid_value, end_value = session.session_id, session.end_time
                start_value = session.start_time
                builders = struct_clean_builders if clean else struct_builders
            else:
                if type(session) is not dict:
                    raise Reject("not a JSON object")
                sid_value, end_value = session.get("session_id"), session.get("end_time")
                start_value = session.get("start_time")
                if sid_value not in (None, ""):
                    audit.check(session)
                builders = _CLEAN_BUILDERS if clean else _BUILDERS
            if sid_value in (None, ""):
                raise Reject("no session_id")
            sid = _SESSION_ID(sid_value, "session")
            end = _END_TIME(end_value, "session")
            # Each staged row starts with the session's index in this file: the loader turns it
            # into session_key (see tables.SESSION_KEY_COLUMN).
            per_table = _session_rows(session, index, sid, source, builders)
        except Reject as exc:
            tally.n = mark  # a rejected line is not counted
            return None, None, None, None, str(exc)
        return per_table, sid, end, start_value, None

    source_file = _Hashing(open(src, "rb"))  # noqa: SIM115 - closed with the gzip reader
    try:
        with (
            gzip.GzipFile(fileobj=source_file, mode="rb") as gz,
            io.BufferedReader(gz, READ_BUFFER) as f,
        ):
            # A line is read LINE_BYTES_MAX + 1 bytes at most: a longer one is streamed on to
            # the rejects in pieces (_reject_long), never held whole.
            readline = partial(f.readline, LINE_BYTES_MAX + 1)
            line_no = 0
            for line_no, raw in enumerate(iter(readline, b""), start=1):  # noqa: B007
                if len(raw) > _LONG_LINE:  # the bounds (the other lines cannot reach them)
                    if raw[-1:] != b"\n" and len(raw) > LINE_BYTES_MAX:
                        _reject_long(writers, result, line_no, raw, f)
                        continue
                    if (keys := colon_keys(raw)) > KEYS_PER_LINE:
                        _reject(writers, result, line_no, _too_many_keys(keys), raw)
                        continue
                if not raw or raw.isspace():  # blank (strip() would copy every line)
                    result.blank_lines += 1
                    continue
                # Most lines, staged in C where it was built (fastsplit.stage_line): the rows
                # the paths below would stage, or None for a line they must judge. A careful
                # pass checks each line's keys on its parse, so it takes the paths below.
                c_rows = (
                    stage_line(raw, result.sessions, source) if stage_line and not careful else None
                )
                if c_rows is not None and c_rows[6]:
                    # Keys the spec does not know, skipped: counted on a parse into dicts.
                    audited = _audited(audit, raw)
                    if audited is None:
                        c_rows = None  # too many of them: the general path rejects the line
                if c_rows is not None:
                    per_table, absent, items, sid, end, start, lenient = c_rows
                    reason = None
                    if lenient:
                        session, known = audited, False  # counted as a line parsed into dicts
                    else:
                        session, known = None, True  # (its keys are checked with the file's)
                        tally.n += absent + items * _Tally.ITEM  # as the struct builders count
                else:
                    # find, not `in`: bytes.__contains__ tries its argument as an int first, and
                    # builds and drops a TypeError on every call.
                    clean = raw.find(b"\\") < 0
                    # Its strings hold nothing the staged format escapes: no backslash, or only
                    # escapes of other characters (\/, \u00e9, \"), as a drop may write every line.
                    plain = clean or _ESCAPES_SPECIAL(raw) is None
                    # Most lines: of the common shape, which the fast path stages (fastsplit.py).
                    fast, lenient = fastsplit.decode(raw), False
                    if fast is None:
                        fast = fastsplit.decode_lenient(raw)  # keys the spec does not know?
                        lenient = fast is not None
                    fast_rows = audited = None
                    if fast is not None:
                        stage = fastsplit.stage if plain else fastsplit.stage_escaped
                        fast_rows = stage(fast, result.sessions, source)
                        if fast_rows is not None and lenient:
                            audited = _audited(audit, raw)
                            if audited is None:
                                fast_rows = None
                    if fast_rows is not None:
                        per_table, absent, items = fast_rows
                        sid = fast.session_id if plain else escape(fast.session_id)
                        end = fast.end_time  # an integer string was judged by the stage already
                        end = (
                            NULL
                            if end is None
                            else str(end)
                            if type(end) is int
                            else _END_TIME(end, "session")
                        )
                        reason = None
                        start_value = fast.start_time
                        if audited is None:
                            session, known = fast, True
                            tally.n += absent + items * _Tally.ITEM  # as the struct builders count
                        else:
                            session, known = audited, False  # counted as a line parsed into dicts
                    else:
                        if lenient:
                            fast = None  # its structs lack its unknown keys: parsed again below
                        if fast is not None:
                            session, known = fast, True
                        else:
                            try:  # bad JSON, bad UTF-8, too deep: a reject
                                session, known = parse(raw)
                            except (ValueError, RecursionError) as exc:
                                _reject(writers, result, line_no, f"not JSON: {exc}", raw)
                                continue
                        per_table, sid, end, start_value, reason = general(
                            session, known, plain, result.sessions
                        )
                if reason is not None or careful:
                    # Checked on its own: a rejected line (a repeated key may be what made a
                    # value wrong: it is named first), every line of a careful pass.
                    if not _keys_distinct(raw, session, known):
                        session = None  # _duplicate parses the line again
                        if reason is not None:
                            per_table = None
                        reason = _duplicate(raw) or reason
                    if reason is not None:
                        _reject(writers, result, line_no, reason, raw)
                        continue
                    check.extra -= _row_keys(per_table)  # staged below, checked already
                else:
                    # Checked with the file's others: see _KeyCheck (colon_keys: in C where it
                    # was built, ~0.3 us a line; in Python ~9% of the split).
                    counted += count_keys(raw)
                    counted_lines += 1
                    # its keys, less those its rows stand for (counted from the rows)
                    if not known:
                        check.dict_lines += 1
                        check.extra += _dict_keys(session, audit.nested) - _row_keys(per_table)
                if c_rows is None:
                    start = _START_TIME(start_value, "session")  # validated above
                end_ms = -1 if end == NULL else int(end)
                if end != NULL:
                    reach = end_ms if start == NULL else max(end_ms, int(start))
                elif start != NULL:
                    reach = int(start)
                else:
                    reach = tables.BIGINT_RANGE[1]  # unknown: no later file may skip the check
                if result.horizon is None or reach > result.horizon:
                    result.horizon = reach
                if first:
                    # _Newest.offer, inline for a session not seen before (nearly every one)
                    if newest.db is None and sid not in best and len(best) < _Newest.SPILL:
                        best[sid] = (end_ms, line_no)
                        staged = True
                    else:
                        staged = newest.offer(sid, end_ms, line_no)
                else:
                    staged = newest.keeps(sid, line_no)
                    result.repeats += not staged
                if not staged:
                    # Not staged: its rows are not in `rows`; its keys are counted all the same.
                    check.extra += _row_keys(per_table)
                    continue
                writers.write_key(result.sessions, sid, end, start)
                result.sessions += 1
                buffers.add(per_table, len(raw))
        buffers.flush()
        result.lines = line_no
    finally:
        source_file.close()
        writers.close()
    result.sha256 = source_file.digest.hexdigest()
    result.unknown_keys = dict(sorted(audit.unknown.items()))
    result.missing_keys = dict(sorted(audit.missing.items()))
    return result, not check.distinct(rows, counted, counted_lines)


def _audited(audit: KeyAudit, raw: bytes) -> dict | None:
    """A line `decode_lenient` took (keys the spec does not know), parsed into dicts, once its
    keys are counted (KeyAudit.check); None when the general path must judge it (the audit
    rejects it: too many unknown keys)."""
    session = _decode(raw)
    try:
        audit.check(session)
    except Reject:
        return None
    return session


def _reject(
    writers: SplitWriter, result: SplitResult, line_no: int, reason: str, raw: bytes
) -> None:
    writers.write_reject(line_no, reason, raw)
    result.rejects += 1


def _reject_long(writers: SplitWriter, result: SplitResult, line_no: int, head: bytes, f) -> None:
    """A line longer than LINE_BYTES_MAX: rejected unread, its bytes streamed from `f` to the
    rejects a piece at a time (kept whole while the file's rejects have room, see layout)."""
    sink = writers.reject(line_no)
    sink.add(head)
    while True:
        piece = f.readline(_READ_ON)
        if piece.endswith(b"\n"):
            sink.add(memoryview(piece)[:-1])
            break
        if not piece:
            break
        sink.add(piece)
    sink.end(
        f"a line of {sink.length:,} bytes, longer than the {LINE_BYTES_MAX >> 20} MiB a line"
        " may have: not read"
    )
    result.rejects += 1
