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

How each value is checked and written is convert.py's; what the staged files hold is layout.py's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from operator import attrgetter, call, mul
from pathlib import Path

import msgspec

from session_stream import tables
from session_stream.errors import BadInputError
from session_stream.split import fastsplit
from session_stream.split.convert import JsonNumber, Reject, converter, shown
from session_stream.split.keycounts import KEY_PATHS_PER_FILE, OTHER_PATHS
from session_stream.split.layout import NULL, SplitResult, SplitWriter, escape, row_lead

_ROWS_MAX = tables.ROW_NO_MAX + 1  # rows of one table per session (row_no is SMALLINT UNSIGNED)
# Bounds on what one line may make the split hold (README, "Operating it"). A line is parsed
# whole, which takes up to ~40 times its size in memory for a line of tiny values ([0.1,0.1,...]:
# 318 MB of peak for 8 MiB): LINE_BYTES_MAX keeps the split under ~200 MB whatever a line holds.
# A longer line is rejected unread and streamed to the rejects _READ_ON bytes at a time. Real
# sessions are a few kB; 4 MiB holds some 50,000 view lines.
LINE_BYTES_MAX = 4 << 20
_READ_ON = 1 << 20
KEYS_PER_LINE = (
    300_000  # every object's keys, at every depth (a session of 65,536 cart lines has 262,144)
)
UNKNOWN_KEYS_PER_LINE = 1000  # distinct keys the spec does not know, in one line
KEY_NAME_CHARS = 100  # of an unknown key, in the path it is counted under
# Numbers stay exact: a fraction or an exponent arrives as its text (the float_hook), an integer as
# an int of any size, for convert.py to judge; a binary float would have rounded them already.
_decode = msgspec.json.Decoder(float_hook=JsonNumber).decode


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


# --- per-table row builders, all driven by the spec ------------------------------------------
# A builder turns one session into the staged rows of one table. The session's own row starts
# with the session's lead (index in the file, session_id); a child row starts with the index
# and its row_no, the row's number among the session's rows of that table (layout.py).


_ABSENT = ()  # what a builder returns for a collection the session does not carry


class _Tally:
    """What the struct builders of a split pass saw that _KeyCheck needs, in one number (so a
    line is marked and rolled back with one read and one write): collections a session did not
    carry (1 each) and purchase lines that carried an "items" key (ITEM each)."""

    __slots__ = ("n",)
    ITEM = 1 << 40

    def __init__(self):
        self.n = 0

    @property
    def absent(self) -> int:
        return self.n % self.ITEM

    @property
    def items(self) -> int:
        return self.n // self.ITEM


def _container(session, key: str, kind: type, where: str, fast: bool = False):
    value = getattr(session, key) if fast else session.get(key)  # _member, without a call
    if value is None:
        return _ABSENT  # absent means empty
    if type(value) is not kind:
        raise Reject(f"{where}{key}: expected a JSON {'object' if kind is dict else 'list'}")
    return value.items() if kind is dict else value


def _too_many(top: str) -> Reject:
    return Reject(f"{top}: more than {_ROWS_MAX} rows for one session")


def _item_columns(table: tables.Table, clean: bool) -> list[tuple[str, Callable]]:
    """(json key, converter) for the columns fed by the item's own fields (not a map key)."""
    columns = table.columns if table.shape == "list" else table.columns[1:]
    return [(c.json_key, converter(c, clean=clean)) for c in columns]


def _values(keys: list[str], fast: bool) -> Callable[[object], Iterable]:
    """A decoded object's values of `keys`, in order: a struct's attributes (`fast`) or a dict's
    values (None where absent; AttributeError when the object is not a dict)."""
    if not fast:
        return lambda obj: map(obj.get, keys)
    get = attrgetter(*keys)
    return get if len(keys) > 1 else lambda obj: (get(obj),)


def _member(obj, key: str, fast: bool):
    """A member of a decoded object: a struct's attribute, or a dict's value (None if absent)."""
    return getattr(obj, key) if fast else obj.get(key)


def _session_builder(table: tables.Table, clean: bool, fast: bool, tally: _Tally) -> Callable:
    """The session's own row: every column after session_id (which is in `lead`)."""
    columns = table.columns[1:]
    keys, convs = [c.json_key for c in columns], [converter(c, clean=clean) for c in columns]
    where = ["session"] * len(columns)
    values = _values(keys, fast)

    # map() runs the loop over the 34 columns in C: measurably faster than a comprehension here.
    def build(s, lead):
        return ["\t".join([lead, *map(call, convs, values(s), where)])]

    return build


def _map_builder(table: tables.Table, clean: bool, fast: bool, tally: _Tally) -> Callable:
    """One row per entry of a map: its key, then its value."""
    top = table.path[0]
    key_conv = converter(table.columns[0], clean=clean)
    value_conv = converter(table.columns[1], clean=clean)

    def build(s, lead):
        entries = _container(s, top, dict, "", fast)
        if entries is _ABSENT:
            tally.n += 1
            return _ABSENT
        if len(entries) > _ROWS_MAX:
            raise _too_many(top)
        try:
            return [
                f"{lead}\t{n}\t{key_conv(k, top)}\t{value_conv(v, top)}"
                for n, (k, v) in enumerate(entries)
            ]
        except Reject:
            # Name the entry that failed: rare, so the loop above does not format names.
            for k, v in entries:
                key_conv(k, top)
                value_conv(v, f"{top}[{shown(k)}]")
            raise

    return build


def _list_builder(table: tables.Table, clean: bool, fast: bool, tally: _Tally) -> Callable:
    """One row per item of a list of objects."""
    top = table.path[0]
    columns = _item_columns(table, clean)
    keys, convs = [k for k, _ in columns], [c for _, c in columns]
    wheres = [top] * len(columns)
    values = _values(keys, fast)

    def named_rows(items, lead):
        # Again, naming the item in the reason (rare): raises the Reject.
        for i, item in enumerate(items):
            if not fast and type(item) is not dict:
                raise Reject(f"{top}[{i}]: expected a JSON object")
            for k, c in columns:
                c(_member(item, k, fast), f"{top}[{i}]")
        raise AssertionError("named_rows found nothing to reject")

    def build(s, lead):
        items = _container(s, top, list, "", fast)
        if items is _ABSENT:
            tally.n += 1
            return _ABSENT
        if len(items) > _ROWS_MAX:
            raise _too_many(top)
        try:
            # A dict item's values come from item.get, which only an object has; map() runs
            # each row's converters in C.
            return [
                "\t".join([lead, str(i), *map(call, convs, values(item), wheres)])
                for i, item in enumerate(items)
            ]
        except (Reject, AttributeError):
            named_rows(items, lead)

    return build


def _map_of_objects_builder(
    table: tables.Table, clean: bool, fast: bool, tally: _Tally
) -> Callable:
    """One row per entry of a map whose values are objects: the key, then the object's fields."""
    top = table.path[0]
    key_conv = converter(table.columns[0], clean=clean)
    columns = _item_columns(table, clean)

    def build(s, lead):
        entries = _container(s, top, dict, "", fast)
        if entries is _ABSENT:
            tally.n += 1
            return _ABSENT
        lines = []
        for n, (k, obj) in enumerate(entries):
            where = f"{top}[{shown(k)}]"
            if not fast and type(obj) is not dict:
                raise Reject(f"{where}: expected a JSON object")
            fields = [conv(_member(obj, key, fast), where) for key, conv in columns]
            lines.append("\t".join([lead, str(n), key_conv(k, top), *fields]))
        if len(lines) > _ROWS_MAX:
            raise _too_many(top)
        return lines

    return build


def _map_of_lists_builder(table: tables.Table, clean: bool, fast: bool, tally: _Tally) -> Callable:
    """One row per item of the lists inside a map's values: the map key, then the item's fields.
    Rows are numbered across all the session's lists, in order."""
    top, inner = table.path
    key_conv = converter(table.columns[0], clean=clean)
    columns = _item_columns(table, clean)

    def build(s, lead):
        lines = []
        for k, obj in _container(s, top, dict, "", fast):
            entry = f"{top}[{shown(k)}]"  # once per key, not once per item
            if not fast and type(obj) is not dict:
                raise Reject(f"{entry}: expected a JSON object")
            pid = key_conv(k, top)
            items = _container(obj, inner, list, f"{entry}.", fast)
            if items is not _ABSENT:
                tally.n += _Tally.ITEM
            for i, item in enumerate(items):
                where = f"{entry}.{inner}[{i}]"
                if not fast and type(item) is not dict:
                    raise Reject(f"{where}: expected a JSON object")
                fields = [conv(_member(item, key, fast), where) for key, conv in columns]
                lines.append("\t".join([lead, str(len(lines)), pid, *fields]))
        if len(lines) > _ROWS_MAX:
            raise _too_many(f"{top}[].{inner}")
        return lines

    return build


_BUILDERS_BY_SHAPE = {
    "session": _session_builder,
    "map": _map_builder,
    "list": _list_builder,
    "map_of_objects": _map_of_objects_builder,
    "map_of_lists": _map_of_lists_builder,
}


def row_builder(
    table: tables.Table, *, clean: bool = False, fast: bool = False, tally: _Tally | None = None
) -> Callable[[object, str], list[str]]:
    """A function (session, lead) -> the table's TSV lines for that session; `lead` is the
    text of the leading fields: the session's index in the file and its escaped session_id for
    session_sessions, the index alone for a child table. clean=True: for a session whose line
    holds no backslash, so no string in it needs escaping (convert.converter). fast=True: for a
    session parsed into the spec's structs (`parse`), whose objects and lists are
    known to have the spec's shape, and whose members are attributes. `tally` counts the
    collections a session lacks and the "items" keys it has (_KeyCheck); for a collection the
    session lacks, the builder returns _ABSENT."""
    try:
        make = _BUILDERS_BY_SHAPE[table.shape]
    except KeyError:
        raise ValueError(f"unknown table shape {table.shape}") from None
    return make(table, clean, fast, tally or _Tally())


# JSON escapes every character the staged format escapes (backslash, and control characters as
# \t, \n, \r, \u0000), so a line without a backslash holds none of them: its strings are
# written as they are, without looking at each (about 30 strings a session).
_BUILDERS = [row_builder(t) for t in tables.TABLES]
_CLEAN_BUILDERS = [row_builder(t, clean=True) for t in tables.TABLES]


def _struct_builders(tally: _Tally) -> tuple[list, list]:
    """The builders of a split pass for sessions parsed into structs (with a backslash in their
    line, without one), counting into `tally`."""
    return tuple(
        [row_builder(t, clean=clean, fast=True, tally=tally) for t in tables.TABLES]
        for clean in (False, True)
    )


_TABLE_NAMES = [t.name for t in tables.TABLES]
assert tables.TABLES[0] is tables.SESSIONS  # _session_rows puts the source after its first row
_SESSION_ID = converter(tables.SESSION_ID)
_END_TIME = converter(next(c for c in tables.SESSIONS.columns if c.name == "end_time"))
_START_TIME = converter(next(c for c in tables.SESSIONS.columns if c.name == "start_time"))


# --- keys the spec does not know, and expected keys a line lacks ------------------------------


_PATHS = tables.object_paths()
_LINES, _ITEMS = tables.PURCHASE_LINE_ITEMS.path
# (path, expected scalar keys, known keys): known adds the collections an object may hold,
# which may be absent (absent means empty) and so are never "missing".
_SESSION_AUDIT = (
    tables.SESSION_PATH,
    frozenset(_PATHS[tables.SESSION_PATH]),
    frozenset(_PATHS[tables.SESSION_PATH]) | frozenset(tables.COLLECTION_KEYS),
)
_LIST_AUDITS = tuple(
    (t.path[0], f"{t.path[0]}[]", frozenset(_PATHS[f"{t.path[0]}[]"]))
    for t in (tables.CART_LINES, tables.VIEW_LINES)
)
_LINE_AUDIT = (
    f"{_LINES}{{}}",
    frozenset(_PATHS[f"{_LINES}{{}}"]),
    frozenset(_PATHS[f"{_LINES}{{}}"]) | {_ITEMS},
)
_ITEM_PATH = f"{_LINES}{{}}.{_ITEMS}[]"
_ITEM_KEYS = frozenset(_PATHS[_ITEM_PATH])


def key_path(path: str, key: str) -> str:
    """The path a key is counted under: `session.new_field`. A key of any length or content
    gives a path short enough for the ledger and one line of a report."""
    if len(key) > KEY_NAME_CHARS:
        key = f"{key[:KEY_NAME_CHARS]}..."
    if not key.isprintable():
        key = repr(key)[1:-1]
    return f"{path}.{key}"


def _too_many_unknown(found: int) -> Reject:
    return Reject(
        f"carries {found:,} keys the spec does not know, more than the"
        f" {UNKNOWN_KEYS_PER_LINE:,} a line may carry"
    )


class KeyAudit:
    """Counts, by path, the keys of a file's objects that the spec does not know
    (`session.new_field`, `cart_lines[].discount`) and the spec's scalar keys they lack
    (CONTRACT: never dropped silently).

    A session object's keys are judged once per distinct list of keys (a file holds a handful):
    each session costs a tuple of its keys and one lookup. The smaller objects are compared with
    their key sets, which is all the work when they have the keys the spec knows.

    What one file can make it hold is bounded: a line carrying more than UNKNOWN_KEYS_PER_LINE
    distinct unknown keys is rejected (`check` raises Reject and counts nothing of it), and a
    file's counts keep KEY_PATHS_PER_FILE paths at most, the rest counted under OTHER_PATHS, so
    a file's ledger row stays far below the server's max_allowed_packet."""

    SHAPES_MAX = 4096  # distinct session key lists remembered; beyond that, each is judged anew
    SHAPE_KEYS_MAX = 256  # a session with more keys than this is judged anew, not remembered

    def __init__(self):
        self.unknown: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        self._verdicts: dict[tuple, tuple[tuple[str, str, str], ...]] = {}
        # Keys inside the objects and lists that the last session's unknown keys held, at any
        # depth (_KeyCheck counts every key of a line).
        self.nested = 0

    def _count(self, line: tuple[dict, dict], path: str, obj: dict, expected, known) -> None:
        unknown, missing = line
        keys = obj.keys()
        extra = keys - known
        if len(extra) + len(unknown) > UNKNOWN_KEYS_PER_LINE:
            found = {key_path(path, k) for k in extra} | set(unknown)
            if len(found) > UNKNOWN_KEYS_PER_LINE:
                raise _too_many_unknown(len(found))
        for key in extra:
            name = key_path(path, key)
            unknown[name] = unknown.get(name, 0) + 1
            value = obj[key]
            if type(value) is dict or type(value) is list:
                self.nested += _keys_in(value)
        for key in expected - keys:
            name = f"{path}.{key}"
            missing[name] = missing.get(name, 0) + 1

    def _object(self, line, obj: dict, audit: tuple) -> None:
        path, expected, known = audit
        keys = obj.keys()
        if not (keys >= expected and keys <= known):
            self._count(line, path, obj, expected, known)

    def _judge(self, shape: tuple) -> tuple[tuple[str, str, str], ...]:
        """The unknown and missing keys of a session with these keys, as a tuple of
        ("unknown" or "missing", path, key) triples; () when there are none. Raises Reject for
        a session with more unknown keys than a line may carry."""
        path, expected, known = _SESSION_AUDIT
        if len(shape) > UNKNOWN_KEYS_PER_LINE + len(known):  # count before making sets of them
            extra_count = len(shape) - len(known.intersection(shape))
            if extra_count > UNKNOWN_KEYS_PER_LINE:
                raise _too_many_unknown(extra_count)
        keys = set(shape)
        extra = keys - known
        verdict = tuple(
            [("unknown", key_path(path, k), k) for k in sorted(extra)]
            + [("missing", f"{path}.{k}", k) for k in sorted(expected - keys)]
        )
        if len(self._verdicts) < self.SHAPES_MAX and len(shape) <= self.SHAPE_KEYS_MAX:
            self._verdicts[shape] = verdict
        return verdict

    def _items(self, line, items: list, path: str, expected: frozenset) -> None:
        size = len(expected)
        for item in items:
            # Same size and no key outside `expected`: the same keys, without a keys view.
            if type(item) is dict and (len(item) != size or not expected.issuperset(item)):
                self._count(line, path, item, expected, expected)

    def check(self, session: dict) -> None:
        """Count the keys of one session (a line parsed into dicts). Raises Reject, counting
        nothing, when the line carries more unknown keys than a line may."""
        shape = tuple(session)
        verdict = self._verdicts.get(shape)
        if verdict is None:
            verdict = self._judge(shape)
        line: tuple[dict, dict] = ({}, {})  # this line's unknown and missing counts
        self.nested = 0
        for which, path, key in verdict:
            if which == "unknown":
                line[0][path] = line[0].get(path, 0) + 1
                value = session[key]
                if type(value) is dict or type(value) is list:
                    self.nested += _keys_in(value)
            else:
                line[1][path] = line[1].get(path, 0) + 1
        for key, path, expected in _LIST_AUDITS:
            items = session.get(key)
            if items and type(items) is list:
                self._items(line, items, path, expected)
        lines = session.get(_LINES)
        if lines and type(lines) is dict:
            for entry in lines.values():
                if type(entry) is not dict:
                    continue
                self._object(line, entry, _LINE_AUDIT)
                items = entry.get(_ITEMS)
                if items and type(items) is list:
                    self._items(line, items, _ITEM_PATH, _ITEM_KEYS)
        _add_counts(self.unknown, line[0])
        _add_counts(self.missing, line[1])


def _add_counts(total: Counter[str], line: dict[str, int]) -> None:
    """Add a line's counts to the file's, keeping KEY_PATHS_PER_FILE paths at most."""
    for path, n in line.items():
        if path not in total and len(total) >= KEY_PATHS_PER_FILE:
            path = OTHER_PATHS
        total[path] += n


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
        with gzip.GzipFile(fileobj=source_file, mode="rb") as f:
            # A line is read LINE_BYTES_MAX + 1 bytes at most: a longer one is streamed on to
            # the rejects in pieces (_reject_long), never held whole.
            readline = partial(f.readline, LINE_BYTES_MAX + 1)
            line_no = 0
            for line_no, raw in enumerate(iter(readline, b""), start=1):  # noqa: B007
                if len(raw) > _LONG_LINE:  # the bounds (the other lines cannot reach them)
                    if raw[-1:] != b"\n" and len(raw) > LINE_BYTES_MAX:
                        _reject_long(writers, result, line_no, raw, f)
                        continue
                    if (keys := _colon_keys(raw)) > KEYS_PER_LINE:
                        _reject(writers, result, line_no, _too_many_keys(keys), raw)
                        continue
                if not raw or raw.isspace():  # blank (strip() would copy every line)
                    result.blank_lines += 1
                    continue
                # find, not `in`: bytes.__contains__ tries its argument as an int first, and
                # builds and drops a TypeError on every call.
                clean = raw.find(b"\\") < 0
                # Most lines: of the common shape, which the fast path stages (fastsplit.py).
                fast = fastsplit.decode(raw) if clean else None
                fast_rows = fastsplit.stage(fast, result.sessions, source) if fast else None
                if fast_rows is not None:
                    per_table, absent, items = fast_rows
                    session, known, reason, sid = fast, True, None, fast.session_id
                    tally.n += absent + items * _Tally.ITEM  # as the struct builders count
                    end = NULL if fast.end_time is None else str(fast.end_time)
                    start_value = fast.start_time
                else:
                    if fast is not None:
                        session, known = fast, True
                    else:
                        try:
                            session, known = parse(raw)
                        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, depth
                            _reject(writers, result, line_no, f"not JSON: {exc}", raw)
                            continue
                    per_table, sid, end, start_value, reason = general(
                        session, known, clean, result.sessions
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
                    # Checked with the file's others: see _KeyCheck. (_colon_keys, inline: this
                    # one pass over the line's bytes costs ~3% of the split; the rest is rare.)
                    counted += (
                        raw.replace(b" ", b":").replace(b"\t", b":").replace(b"\r", b":")
                    ).count(b'":')
                    counted_lines += 1
                    if not known:  # its keys, less those its rows stand for (counted from the rows)
                        check.dict_lines += 1
                        check.extra += _dict_keys(session, audit.nested) - _row_keys(per_table)
                end_ms = -1 if end == NULL else int(end)
                start = _START_TIME(start_value, "session")  # validated above
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


# --- keys written twice ------------------------------------------------------------------------
# JSON allows an object to repeat a key and every parser keeps one of the values (msgspec and
# orjson the last): the other is lost without a word. A line that repeats a key is rejected,
# naming it.
#
# The check counts '":' in a line, with whitespace read as ':' (_colon_keys). Every key of a line
# ends with a '"' followed by ':' or whitespace, and a string can hold '":' only as an escaped
# quote before a colon, so the count is at least the number of keys the line holds; when it
# equals the number of keys the parse kept, no key was written twice. The keys the parse kept
# are added up for the whole file from what the split counts anyway (_KeyCheck), so a line
# costs its count and little else; only when the file's two totals differ is the file split
# again with each line checked on its own (`careful`), where a line whose two counts differ (a
# repeated key, or '\":' inside a string, or whitespace after a string: none of which Monetate
# writes) is parsed once more, by _duplicate, to find the key.

_KEYS_COUNTED_FROM = 4 * KEYS_PER_LINE  # a key takes 4 bytes at least ("":0,)
_LONG_LINE = min(LINE_BYTES_MAX, _KEYS_COUNTED_FROM)
_SESSION_KEYS = len(_PATHS[tables.SESSION_PATH])
_SPEC_KEYS = _SESSION_KEYS + len(tables.COLLECTION_KEYS)
# Keys per staged row of each table (tables.TABLES order), for a line parsed into the spec's
# structs: a map entry is one key; a cart line 4, a view line 2; a purchase line its map key and
# its 2 scalar keys (its "items" key is counted apart, _Tally.items); a line item 4.
_KEYS_PER_ROW = [
    0,
    *(1 for t in tables.TABLES[1:] if t.shape == "map"),
    len(_PATHS[f"{tables.CART_LINES.path[0]}[]"]),
    len(_PATHS[f"{tables.VIEW_LINES.path[0]}[]"]),
    1 + len(_PATHS[f"{_LINES}{{}}"]),
    len(_ITEM_KEYS),
]
_MAP_KEYS = tuple(t.path[0] for t in tables.CHILD_TABLES if t.shape == "map")
_LIST_KEYS = tuple(t.path[0] for t in tables.CHILD_TABLES if t.shape == "list")
assert [t.shape for t in tables.TABLES] == [
    "session",
    "map",
    "map",
    "map",
    "map",
    "list",
    "list",
    "map_of_objects",
    "map_of_lists",
] and tables.TABLES[5] is tables.CART_LINES  # the order _KEYS_PER_ROW is written in


def _colon_keys(data: bytes) -> int:
    """The '":' in `data` with every space, tab and carriage return read as ':': at least the
    number of keys its JSON holds (see above). Each replace finds its byte with memchr, and
    copies nothing when it is not there."""
    return data.replace(b" ", b":").replace(b"\t", b":").replace(b"\r", b":").count(b'":')


def _row_keys(per_table: list) -> int:
    """The keys behind a struct session's child rows (_KEYS_PER_ROW)."""
    return sum(map(mul, map(len, per_table), _KEYS_PER_ROW))


class _KeyCheck:
    """Whether the lines of a split pass repeat no key, a file at a time.

    Each line split without a reject counts its '":' (`_colon_keys`, in the split's loop). The
    keys the parse kept add up, for a line parsed into structs, to the spec's _SPEC_KEYS less
    the collections it lacked, plus the keys behind its staged rows and the "items" keys of its
    purchase lines: `distinct` sums them from the pass's row counts and the builders' _Tally.
    `extra` corrects for the rows of lines that were not staged (their keys are counted) and for
    lines parsed into dicts (their keys are counted as they are, _dict_keys). As each line's
    count is at least its kept keys, the totals are equal only if every line's are."""

    def __init__(self):
        self.tally = _Tally()
        self.dict_lines = 0
        self.extra = 0

    def distinct(self, rows: dict[str, int], counted: int, counted_lines: int) -> bool:
        kept = (
            _SPEC_KEYS * (counted_lines - self.dict_lines)
            - self.tally.absent
            + self.tally.items
            + sum(n * rows[t.name] for n, t in zip(_KEYS_PER_ROW, tables.TABLES, strict=True))
            + self.extra
        )
        return counted == kept


def _too_many_keys(count: int) -> str:
    return f"has {count:,} keys, more than the {KEYS_PER_LINE:,} a line may have: not read"


def _keys_distinct(raw: bytes, session, known: bool) -> bool:
    """Whether the line `raw`, parsed into `session`, certainly repeats no key (False: it may;
    _duplicate tells). For a line checked on its own."""
    count = _colon_keys(raw)
    if not known:
        return count == _keys_in(session)
    present = attrgetter(*tables.COLLECTION_KEYS)(session)
    kept = _SPEC_KEYS - present.count(None)
    for value, per_row in zip(present, _KEYS_PER_ROW[1:8], strict=True):
        if value:
            kept += per_row * len(value)
    for line in (session.purchase_lines or {}).values():
        if line.items is not None:
            kept += 1 + _KEYS_PER_ROW[-1] * len(line.items)
    return count == kept


def _keys_in(value) -> int:
    """The keys of every object in a value parsed into dicts and lists, at every depth."""
    count, stack = 0, [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            count += len(v)
            v = v.values()
        elif type(v) is not list:
            continue
        stack += [x for x in v if type(x) is dict or type(x) is list]
    return count


def _dict_keys(session: dict, nested: int) -> int:
    """The keys of a session parsed into dicts that was split without a reject: those of its
    own object, of each map, list item, purchase line and line item, and `nested`, those inside
    what its unknown keys hold (KeyAudit.nested). Its other values are scalars: an object or a
    list anywhere else would have been a reject."""
    count = len(session) + nested
    for key in _MAP_KEYS:
        value = session.get(key)
        if value:
            count += len(value)
    for key in _LIST_KEYS:
        value = session.get(key)
        if value:
            count += sum(map(len, value))
    lines = session.get(_LINES)
    if lines:
        count += len(lines) + sum(map(len, lines.values()))
        for line in lines.values():
            items = line.get(_ITEMS)
            if items:
                count += sum(map(len, items))
    return count


class _Node:
    """A JSON object as _duplicate parses it: the first key it repeats, if any, and only its
    members that are objects or lists (all it needs to say where a repeat is)."""

    __slots__ = ("repeated", "children")

    def __init__(self, pairs: list):
        obj = dict(pairs)
        self.repeated = None
        if len(obj) != len(pairs):
            seen: set = set()
            self.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        self.children = [(k, v) for k, v in obj.items() if type(v) is _Node or type(v) is list]


def _duplicate(raw: bytes) -> str | None:
    """The reject reason for a line that repeats a key, naming the key and where; None when no
    key is repeated (or the line is not JSON). Slow: only for lines _keys_distinct doubts."""
    try:
        value = json.loads(
            raw,
            object_pairs_hook=_Node,
            parse_int=lambda _: 0,
            parse_float=lambda _: 0,
            parse_constant=lambda _: 0,
        )
    except (ValueError, RecursionError):
        return None
    stack = [(value, tables.SESSION_PATH)]
    while stack:
        v, where = stack.pop()
        if type(v) is _Node:
            if v.repeated is not None:
                return (
                    f"{where}: the key {shown(v.repeated)} appears more than once in one"
                    " object (JSON parsers keep only one of its values)"
                )
            top = where == tables.SESSION_PATH
            stack += [
                (x, k if top else f"{where}.{k}" if where[-1] == "]" else f"{where}[{shown(k)}]")
                for k, x in v.children
            ]
        elif type(v) is list:
            stack += [(x, f"{where}[{i}]") for i, x in enumerate(v) if type(x) in (_Node, list)]
    return None
