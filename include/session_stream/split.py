"""Split one Session Stream file into one staged TSV per table, ready for LOAD DATA.

The file is streamed (never held in memory whole) and each line is parsed with msgspec (into
structs of the spec's shape, or into dicts when its keys differ, which KeyAudit then counts: see
_spec_structs), validated against tables.py and written out. A line that is not JSON, has no session_id, or
carries a value that would not fit its column becomes a reject and the rest of the file goes on.
A file that cannot be read to its end, or holds no gzip member at all (0 bytes), leaves nothing
behind and raises BadInputError.

How each value is checked and written is convert.py's; what the staged files hold is layout.py's.
"""

from __future__ import annotations

import gzip
import shutil
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from operator import attrgetter, call
from pathlib import Path

import msgspec

from . import tables
from .convert import JsonNumber, Reject, converter, shown
from .errors import BadInputError
from .layout import NULL, SplitResult, SplitWriter, escape, row_lead

_ROWS_MAX = tables.ROW_NO_MAX + 1  # rows of one table per session (row_no is SMALLINT UNSIGNED)
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


def _container(session, key: str, kind: type, where: str, fast: bool = False):
    value = getattr(session, key) if fast else session.get(key)  # _member, without a call
    if value is None:
        return ()  # absent means empty
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


def _session_builder(table: tables.Table, clean: bool, fast: bool) -> Callable:
    """The session's own row: every column after session_id (which is in `lead`)."""
    columns = table.columns[1:]
    keys, convs = [c.json_key for c in columns], [converter(c, clean=clean) for c in columns]
    where = ["session"] * len(columns)
    values = _values(keys, fast)

    # map() runs the loop over the 34 columns in C: measurably faster than a comprehension here.
    def build(s, lead):
        return ["\t".join([lead, *map(call, convs, values(s), where)])]

    return build


def _map_builder(table: tables.Table, clean: bool, fast: bool) -> Callable:
    """One row per entry of a map: its key, then its value."""
    top = table.path[0]
    key_conv = converter(table.columns[0], clean=clean)
    value_conv = converter(table.columns[1], clean=clean)

    def build(s, lead):
        entries = _container(s, top, dict, "", fast)
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


def _list_builder(table: tables.Table, clean: bool, fast: bool) -> Callable:
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


def _map_of_objects_builder(table: tables.Table, clean: bool, fast: bool) -> Callable:
    """One row per entry of a map whose values are objects: the key, then the object's fields."""
    top = table.path[0]
    key_conv = converter(table.columns[0], clean=clean)
    columns = _item_columns(table, clean)

    def build(s, lead):
        lines = []
        for n, (k, obj) in enumerate(_container(s, top, dict, "", fast)):
            where = f"{top}[{shown(k)}]"
            if not fast and type(obj) is not dict:
                raise Reject(f"{where}: expected a JSON object")
            fields = [conv(_member(obj, key, fast), where) for key, conv in columns]
            lines.append("\t".join([lead, str(n), key_conv(k, top), *fields]))
        if len(lines) > _ROWS_MAX:
            raise _too_many(top)
        return lines

    return build


def _map_of_lists_builder(table: tables.Table, clean: bool, fast: bool) -> Callable:
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
            for i, item in enumerate(_container(obj, inner, list, f"{entry}.", fast)):
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
    table: tables.Table, *, clean: bool = False, fast: bool = False
) -> Callable[[object, str], list[str]]:
    """A function (session, lead) -> the table's TSV lines for that session; `lead` is the
    text of the leading fields: the session's index in the file and its escaped session_id for
    session_sessions, the index alone for a child table. clean=True: for a session whose line
    holds no backslash, so no string in it needs escaping (convert.converter). fast=True: for a
    session parsed into the spec's structs (`parse`), whose objects and lists are
    known to have the spec's shape, and whose members are attributes."""
    try:
        make = _BUILDERS_BY_SHAPE[table.shape]
    except KeyError:
        raise ValueError(f"unknown table shape {table.shape}") from None
    return make(table, clean, fast)


# JSON escapes every character the staged format escapes (backslash, and control characters as
# \t, \n, \r, \u0000), so a line without a backslash holds none of them: its strings are
# written as they are, without looking at each (about 30 strings a session).
_BUILDERS = [row_builder(t) for t in tables.TABLES]
_CLEAN_BUILDERS = [row_builder(t, clean=True) for t in tables.TABLES]
_KNOWN_BUILDERS = [row_builder(t, fast=True) for t in tables.TABLES]
_KNOWN_CLEAN_BUILDERS = [row_builder(t, clean=True, fast=True) for t in tables.TABLES]
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


class KeyAudit:
    """Counts, by path, the keys of a file's objects that the spec does not know
    (`session.new_field`, `cart_lines[].discount`) and the spec's scalar keys they lack
    (CONTRACT: never dropped silently).

    A session object's keys are judged once per distinct list of keys (a file holds a handful):
    each session costs a tuple of its keys and one lookup. The smaller objects are compared with
    their key sets, which is all the work when they have the keys the spec knows."""

    SHAPES_MAX = 4096  # distinct session key lists remembered; beyond that, each is judged anew

    def __init__(self):
        self.unknown: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        self._verdicts: dict[tuple, tuple[tuple[str, str], ...]] = {}

    def _count(self, path: str, keys, expected: frozenset, known: frozenset) -> None:
        for key in keys - known:
            self.unknown[f"{path}.{key}"] += 1
        for key in expected - keys:
            self.missing[f"{path}.{key}"] += 1

    def _object(self, obj: dict, audit: tuple) -> None:
        path, expected, known = audit
        keys = obj.keys()
        if not (keys >= expected and keys <= known):
            self._count(path, keys, expected, known)

    def _judge(self, shape: tuple) -> tuple[tuple[str, str], ...]:
        """The unknown and missing keys of a session with these keys, as a tuple of
        ("unknown" or "missing", path) pairs; () when there are none."""
        path, expected, known = _SESSION_AUDIT
        keys = set(shape)
        verdict = tuple(
            [("unknown", f"{path}.{k}") for k in sorted(keys - known)]
            + [("missing", f"{path}.{k}") for k in sorted(expected - keys)]
        )
        if len(self._verdicts) < self.SHAPES_MAX:
            self._verdicts[shape] = verdict
        return verdict

    def _items(self, items: list, path: str, expected: frozenset) -> None:
        size = len(expected)
        for item in items:
            # Same size and no key outside `expected`: the same keys, without a keys view.
            if type(item) is dict and (len(item) != size or not expected.issuperset(item)):
                self._count(path, item.keys(), expected, expected)

    def check(self, session: dict) -> None:
        shape = tuple(session)
        verdict = self._verdicts.get(shape)
        if verdict is None:
            verdict = self._judge(shape)
        for which, key in verdict:
            (self.unknown if which == "unknown" else self.missing)[key] += 1
        for key, path, expected in _LIST_AUDITS:
            items = session.get(key)
            if items and type(items) is list:
                self._items(items, path, expected)
        lines = session.get(_LINES)
        if not lines or type(lines) is not dict:
            return
        for line in lines.values():
            if type(line) is not dict:
                continue
            self._object(line, _LINE_AUDIT)
            items = line.get(_ITEMS)
            if items and type(items) is list:
                self._items(items, _ITEM_PATH, _ITEM_KEYS)


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
    """The rows of each table for the last sessions, written out a thousand sessions at a time
    (one write per table, not one per session and table)."""

    FLUSH_EVERY = 1000

    def __init__(self, writers: SplitWriter, rows: dict[str, int]):
        self.handles = [writers.handles[name] for name in _TABLE_NAMES]
        self.rows = rows
        self.buffers: list[list[str]] = [[] for _ in _TABLE_NAMES]
        self.sessions = 0

    def add(self, per_table: list[list[str]]) -> None:
        for buffer, lines in zip(self.buffers, per_table, strict=True):
            buffer += lines
        self.sessions += 1
        if self.sessions >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        for name, handle, buffer in zip(_TABLE_NAMES, self.handles, self.buffers, strict=True):
            if buffer:
                self.rows[name] += len(buffer)
                buffer.append("")  # the last row's line end
                handle.write("\n".join(buffer))
                buffer.clear()
        self.sessions = 0


def _iter_lines(path: Path):
    with gzip.open(path, "rb") as f:
        yield from enumerate(f, start=1)


def split_file(src: Path, out_dir: Path, *, source_name: str | None = None) -> SplitResult:
    """Split `src` (.json.gz) into `out_dir`; see the module doc. Returns the counts."""
    src, out_dir = Path(src), Path(out_dir)
    name = source_name or src.name
    started = time.perf_counter()
    try:
        if src.stat().st_size == 0:
            # gzip reads 0 bytes as a stream of no members, without an error; any other file
            # holding no whole member (the magic or a header alone, cut short) raises EOFError.
            raise BadInputError(
                f"{name}: is empty (0 bytes), not a gzip file: an upload cut at its start?"
                " Nothing was staged from it"
            )
        result, duplicates = _split_pass(src, out_dir, name, keep=None)
        if duplicates:
            # A session written twice in one file: only its newest version may be staged.
            # Rare, so a second pass is cheaper than buffering every row of every file.
            result, _ = _split_pass(src, out_dir, name, keep=duplicates)
    except (EOFError, OSError, zlib.error) as exc:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise BadInputError(
            f"{name}: cannot be read to its end ({exc.__class__.__name__}: {exc}); nothing was staged from it"
        ) from None
    result.seconds = round(time.perf_counter() - started, 3)
    result.write_manifest()
    return result


def _split_pass(src: Path, out_dir: Path, name: str, keep: dict[str, int] | None):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    source = escape(name)
    result = SplitResult(source_name=name, out_dir=out_dir, rows={t.name: 0 for t in tables.TABLES})
    rows = result.rows
    best: dict[str, tuple[int, int]] = {}  # session_id -> (end_time, line_no) of the newest version
    duplicated: set[str] = set()
    writers = SplitWriter(out_dir)
    buffers = _TableBuffers(writers, rows)
    audit = KeyAudit()
    try:
        for line_no, raw in _iter_lines(src):
            result.lines = line_no
            if not raw or raw.isspace():  # blank (strip() would copy every line)
                continue
            try:
                session, known = parse(raw)
            except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, depth
                _reject(writers, result, line_no, f"not JSON: {exc}", raw)
                continue
            clean = b"\\" not in raw
            if known:  # most lines: exactly the spec's keys, nothing to audit
                sid_value, end_value = session.session_id, session.end_time
                start_value = session.start_time
                builders = _KNOWN_CLEAN_BUILDERS if clean else _KNOWN_BUILDERS
            else:
                if type(session) is not dict:
                    _reject(writers, result, line_no, "not a JSON object", raw)
                    continue
                sid_value, end_value = session.get("session_id"), session.get("end_time")
                start_value = session.get("start_time")
                if sid_value not in (None, ""):
                    audit.check(session)
                builders = _CLEAN_BUILDERS if clean else _BUILDERS
            if sid_value in (None, ""):
                _reject(writers, result, line_no, "no session_id", raw)
                continue
            try:
                sid = _SESSION_ID(sid_value, "session")
                end = _END_TIME(end_value, "session")
                # Each staged row starts with the session's index in this file: the loader
                # turns it into session_key (see tables.SESSION_KEY_COLUMN).
                per_table = _session_rows(session, result.sessions, sid, source, builders)
            except Reject as exc:
                _reject(writers, result, line_no, str(exc), raw)
                continue
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
            if keep is not None and sid in keep and keep[sid] != line_no:
                continue
            if keep is None:
                previous = best.get(sid)
                if previous is not None:
                    duplicated.add(sid)
                    if end_ms < previous[0]:  # a tie goes to the later line
                        continue
                best[sid] = (end_ms, line_no)
            writers.write_key(result.sessions, sid, end, start)
            result.sessions += 1
            buffers.add(per_table)
        buffers.flush()
    finally:
        writers.close()
    result.unknown_keys = dict(sorted(audit.unknown.items()))
    result.missing_keys = dict(sorted(audit.missing.items()))
    winners = {sid: best[sid][1] for sid in duplicated}
    return result, winners


def _reject(
    writers: SplitWriter, result: SplitResult, line_no: int, reason: str, raw: bytes
) -> None:
    writers.write_reject(line_no, reason, raw)
    result.rejects += 1
