"""Row builders: one session to the staged rows of each table, all driven by tables.py's spec
(split from splitter.py, which runs them over a file)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter, call

from session_stream import tables
from session_stream.split.convert import Reject, converter, shown

_ROWS_MAX = tables.ROW_NO_MAX + 1  # rows of one table per session (row_no is SMALLINT UNSIGNED)


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
