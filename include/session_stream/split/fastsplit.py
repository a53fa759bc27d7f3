"""The split's fast path: a line of the common shape, checked in C, written without a call per value.

Most lines of a drop hold the spec's keys, with values of the usual types: strings that fit
their column, integers in range (or integer strings), 't'/'f' flags, UTC ISO times. `decode`
parses a line into structs whose field types say exactly that (msgspec checks types, lengths and
ranges in C while it parses), and `stage` writes each table's staged lines with one generated
function per table, whose fields are inline expressions instead of a converter call each. Money,
times and integer strings, which msgspec cannot judge exactly, still go through convert.py when
they are not in their plainest form.

Two variants keep the common quirks of a whole drop on this path, so that a drop whose every
line has them costs about what a plain one does: `stage_escaped` for a line with a backslash
(JSON escapes such as \\/ or \\u00e9: each string is escaped for the staged format, as
convert.py does), and `decode_lenient` for a line carrying keys the spec does not know (a new
field Monetate adds): they are skipped here, and splitter.py audits the line's keys apart.

Anything else (a flag sent as true, a value too long, a missing key, a number in a text column)
fails `decode`, and splitter.py takes the general path, which gives the same rows or the reject
reason. The paths must stage the same bytes: tests/unit/test_fastsplit.py compares them line by
line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec

from session_stream import tables
from session_stream.split.convert import (
    JsonNumber,
    Reject,
    converter,
    is_iso_utc_ms,
    is_plain_money,
    known_real_days,
    utc_datetime,
)
from session_stream.split.layout import NULL, escape

_ROWS_MAX = tables.ROW_NO_MAX + 1


def _field_type(column: tables.Column):
    """The type msgspec accepts for a column on the fast path: only values whose staged form is
    the value itself (or str() of it), or that convert.py judges (Any: money and times; a
    string for an integer column)."""
    optional = None if column.not_null else type(None)
    if column.kind == tables.STR:
        t = Annotated[str, msgspec.Meta(max_length=column.length)]
    elif column.kind in (tables.INT, tables.BIGINT):
        lo, hi = tables.INT_RANGE if column.kind == tables.INT else tables.BIGINT_RANGE
        t = Union[Annotated[int, msgspec.Meta(ge=lo, le=hi)], str]  # noqa: UP007
    elif column.kind == tables.FLAG:
        t = Literal["t", "f"]
    else:  # MONEY, DATETIME: JsonNumber texts and strings, judged by convert.py
        return Any
    return t if optional is None else t | None


def _structs(lenient: bool = False) -> type:
    """The session as typed structs: the spec's keys, every scalar key required, the
    collections optional, no other key (`lenient`: other keys skipped, at every level)."""
    prefix = "Lenient_" if lenient else "Fast_"

    def struct(name: str, columns, extra=()):
        fields = [(c.json_key, _field_type(c)) for c in columns]
        fields += [(key, t, None) for key, t in extra]
        return msgspec.defstruct(prefix + name, fields, forbid_unknown_fields=not lenient)

    def key_type(table: tables.Table):
        return Annotated[str, msgspec.Meta(max_length=table.columns[0].length)]

    lines, items = tables.PURCHASE_LINE_ITEMS.path
    item = struct("item", tables.PURCHASE_LINE_ITEMS.columns[1:])
    line = struct("line", tables.PURCHASE_LINES.columns[1:], [(items, list[item] | None)])
    collections = []
    for table in tables.CHILD_TABLES:
        top = table.path[0]
        if table.shape == "map":
            value = _field_type(table.columns[1])
            collections.append((top, dict[key_type(table), value] | None))
        elif table.shape == "list":
            collections.append((top, list[struct(top, table.columns)] | None))
        elif table.shape == "map_of_objects":
            collections.append((top, dict[key_type(table), line] | None))
    return struct("session", tables.SESSIONS.columns, collections)


_decoder = msgspec.json.Decoder(_structs(), float_hook=JsonNumber)
_lenient_decoder = msgspec.json.Decoder(_structs(lenient=True), float_hook=JsonNumber)


def decode(raw: bytes):
    """The line as fast-path structs, or None when it is not of the common shape (or not JSON:
    the general path says which)."""
    try:
        return _decoder.decode(raw)
    except (ValueError, RecursionError):  # msgspec.DecodeError, ValidationError; bad UTF-8
        return None


def decode_lenient(raw: bytes):
    """As `decode`, skipping the keys the spec does not know, at every level: for a line that
    `decode` refused. Structs mean the line has such keys (and is otherwise of the common
    shape): the caller audits its keys (splitter.py, KeyAudit)."""
    try:
        return _lenient_decoder.decode(raw)
    except (ValueError, RecursionError):
        return None


# --- the generated row writers --------------------------------------------------------------


def _expr(column: tables.Column, value: str, where: str, escaping: bool) -> str:
    """A Python expression giving the staged field of `column` from the expression `value`
    (a local name), for a value the fast structs accepted. `escaping`: for a line with a
    backslash, whose strings may hold what the staged format escapes."""
    name = column.name
    if column.kind == tables.STR:
        text = f"escape({value})" if escaping else value
        return text if column.not_null else f"({text} if {value} is not None else NULL)"
    if column.kind in (tables.INT, tables.BIGINT):
        return (
            f"(str({value}) if type({value}) is int else NULL if {value} is None"
            f" else conv_{name}({value}, {where}))"
        )
    if column.kind == tables.FLAG:
        return f"(NULL if {value} is None else '1' if {value} == 't' else '0')"
    if column.kind == tables.MONEY:
        return (
            f"({value} if type({value}) is JsonNumber and money_plain({value})"
            f" else conv_{name}({value}, {where}))"
        )
    if column.kind == tables.DATETIME:
        return (
            f"(f'{{{value}[:10]}} {{{value}[11:23]}}' if type({value}) is str"
            f" and iso_utc_ms({value}) and {value}[:10] in real_days"
            f" else utc_datetime({value}, {where}, {name!r}) if {value} is not None else NULL)"
        )
    raise ValueError(f"no fast expression for {column.kind}")


def _namespace() -> dict:
    ns = {
        "NULL": NULL,
        "JsonNumber": JsonNumber,
        "money_plain": is_plain_money,
        "iso_utc_ms": is_iso_utc_ms,
        "real_days": known_real_days,
        "utc_datetime": utc_datetime,
        "ROWS_MAX": _ROWS_MAX,
        "escape": escape,
    }
    kinds: dict[str, str] = {}
    for table in tables.TABLES:
        for c in table.columns:
            if c.kind in (tables.MONEY, tables.INT, tables.BIGINT):
                # One converter a name: a name has one kind in every table.
                assert kinds.setdefault(c.name, c.kind) == c.kind, c.name
                ns[f"conv_{c.name}"] = converter(c)
    return ns


def _fields(
    columns, obj: str, where: str, indent: str, escaping: bool
) -> tuple[list[str], list[str]]:
    """(statements binding each column's value from `obj`, the field expressions)."""
    binds = [f"{indent}v{i} = {obj}.{c.json_key}" for i, c in enumerate(columns)]
    return binds, [_expr(c, f"v{i}", where, escaping) for i, c in enumerate(columns)]


def _join(parts: list[str]) -> str:
    return "'\\t'.join((" + ", ".join(parts) + ",))"


def _source(table: tables.Table, escaping: bool) -> str:
    """The source of `rows_<table>(s, lead)` (`escaped_rows_<table>`: `escaping`, see _expr):
    the table's staged lines for session `s`, or None when a session holds more rows than
    row_no numbers (the general path rejects it)."""
    fn = f"def {'escaped_' if escaping else ''}rows_{table.storage}(s, lead):"
    key = "escape(k)" if escaping else "k"
    if table.shape == "session":
        binds, fields = _fields(table.columns[1:], "s", "'session'", "    ", escaping)
        return "\n".join([fn, *binds, f"    return [{_join(['lead', *fields])}]"])
    top = table.path[0]
    code = [fn, f"    found = s.{top}", "    if not found:", "        return ()"]
    if table.shape != "map_of_lists":
        code += ["    if len(found) > ROWS_MAX:", "        return None"]
    if table.shape == "map":
        value = _expr(table.columns[1], "v", repr(top), escaping)
        row = _join(["lead", "str(n)", key, value])
        code.append(f"    return [{row} for n, (k, v) in enumerate(found.items())]")
    elif table.shape == "list":
        binds, fields = _fields(table.columns, "item", repr(top), "        ", escaping)
        code += ["    out = []", "    for n, item in enumerate(found):", *binds]
        code += [f"        out.append({_join(['lead', 'str(n)', *fields])})", "    return out"]
    elif table.shape == "map_of_objects":
        binds, fields = _fields(table.columns[1:], "obj", repr(top), "        ", escaping)
        code += ["    out = []", "    for n, (k, obj) in enumerate(found.items()):", *binds]
        code += [f"        out.append({_join(['lead', 'str(n)', key, *fields])})", "    return out"]
    elif table.shape == "map_of_lists":
        inner = table.path[1]
        binds, fields = _fields(table.columns[1:], "item", repr(top), "            ", escaping)
        code += ["    out = []", "    for k, obj in found.items():"]
        code += [f"        for item in obj.{inner} or ():", *binds]
        code += [f"            out.append({_join(['lead', 'str(len(out))', key, *fields])})"]
        code.append("    return out if len(out) <= ROWS_MAX else None")
    else:
        raise ValueError(f"unknown table shape {table.shape}")
    return "\n".join(code)


def _stage_source(escaping: bool) -> str:
    """The source of `stage(s, index, source)` (`stage_escaped`: `escaping`): every table's
    writer in turn, then what the repeated-key check counts besides the rows."""
    lines, items = tables.PURCHASE_LINE_ITEMS.path
    absent = " + ".join(f"(s.{key} is None)" for key in tables.COLLECTION_KEYS)
    rows = "escaped_rows_" if escaping else "rows_"
    code = [
        f"def stage{'_escaped' if escaping else ''}(s, index, source):",
        "    sid = s.session_id",
        "    if not sid:",
        "        return None",
        *(["    sid = escape(sid)"] if escaping else []),
        "    try:",
        f"        out = [[{rows}{tables.SESSIONS.storage}(s, f'{{index}}\\t{{sid}}')[0] + '\\t' + source]]",
        "        lead = str(index)",
    ]
    for table in tables.CHILD_TABLES:
        code += [
            f"        found = {rows}{table.storage}(s, lead)",
            "        if found is None:",
            "            return None",
            "        out.append(found)",
        ]
    code += [
        "    except Reject:",
        "        return None",
        f"    found = s.{lines}",
        f"    items = sum([line.{items} is not None for line in found.values()]) if found else 0",
        f"    return out, {absent}, items",
    ]
    return "\n".join(code)


def _compile() -> dict:
    ns = _namespace()
    ns["Reject"] = Reject
    for escaping in (False, True):
        for table in tables.TABLES:
            source = _source(table, escaping)
            exec(compile(source, f"<fastsplit {table.name}>", "exec"), ns)  # noqa: S102
        exec(compile(_stage_source(escaping), "<fastsplit stage>", "exec"), ns)  # noqa: S102
    return ns


_GENERATED = _compile()
stage = _GENERATED["stage"]
stage.__doc__ = """(every table's staged lines for session `s`, decoded by `decode`, in tables.TABLES order
as splitter.py's general path writes them; the collections it lacks or holds as null; its purchase
lines that carry "items"), or None when the general path must judge the session (no
session_id, too many rows, a money, time or integer value to reject: that path names the
field). For a line without a backslash: its strings are staged as they are."""
stage_escaped = _GENERATED["stage_escaped"]
stage_escaped.__doc__ = """As `stage`, for a line with a backslash: every string (session_id and map keys
included) escaped for the staged format (layout.escape), as the general path does."""


# --- the same in C ----------------------------------------------------------------------------

_C_KINDS = {
    tables.STR: 0,
    tables.INT: 1,
    tables.BIGINT: 2,
    tables.MONEY: 3,
    tables.FLAG: 4,
    tables.DATETIME: 5,
}
_C_SHAPES = {"map": 0, "list": 1, "map_of_objects": 2}


def _c_spec() -> tuple:
    """configure()'s arguments for session_stream_fastrows: tables.py, as the structs above read
    it (the session's columns; each collection's shape, table, key length and object)."""

    def fields(columns):
        return [(c.json_key.encode(), _C_KINDS[c.kind], c.length, c.not_null) for c in columns]

    order = {table.name: n for n, table in enumerate(tables.TABLES)}
    lines, items = tables.PURCHASE_LINE_ITEMS.path
    collections = []
    for table in tables.CHILD_TABLES:
        if table.shape == "map_of_lists":
            continue  # read inside the purchase lines' objects, below
        key_length = table.columns[0].length if table.shape != "list" else 0
        own = table.columns[1:] if table.shape != "list" else table.columns
        nested = (b"", 0, [])
        if table.shape == "map_of_objects":
            nested_table = tables.PURCHASE_LINE_ITEMS
            assert table.path[0] == lines
            nested = (items.encode(), order[nested_table.name], fields(nested_table.columns[1:]))
        collections.append(
            (
                table.path[0].encode(),
                _C_SHAPES[table.shape],
                order[table.name],
                key_length,
                fields(own),
                *nested,
            )
        )
    names = [c.name for c in tables.SESSIONS.columns]
    return (
        fields(tables.SESSIONS.columns),
        collections,
        names.index("end_time"),
        names.index("start_time"),
        _ROWS_MAX,
    )


try:
    import session_stream_fastrows as _fastrows
except ImportError:  # not built (no compiler where it was installed): Python stages every line
    stage_line = None
else:
    _fastrows.configure(*_c_spec())
    stage_line = _fastrows.stage
    """stage_line(raw, index, source): (the rows, absent collections and purchase lines with
    items that `stage` or `stage_escaped` gives for the line, its staged session_id, end_time and
    start_time, whether it skipped keys the spec does not know), or None: a line the Python paths
    must judge (session_stream_fastrows.c says which it takes). With skipped keys, the caller
    audits them on a parse into dicts, as for a line `decode_lenient` took."""
