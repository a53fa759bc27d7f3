"""Keys written twice: found with one count of '":' a line, and named by a second parse of the
rare line whose count is off (splitter.py runs the check)."""

from __future__ import annotations

import json
from operator import attrgetter, mul

from session_stream import tables
from session_stream.split.convert import shown
from session_stream.split.key_audit import _ITEM_KEYS, _ITEMS, _LINES, _PATHS, _keys_in
from session_stream.split.rows import _Tally

KEYS_PER_LINE = (
    300_000  # every object's keys, at every depth (a session of 65,536 cart lines has 262,144)
)


# --- keys written twice ------------------------------------------------------------------------
# JSON allows an object to repeat a key and every parser keeps one of the values (msgspec and
# orjson the last): the other is lost without a word. A line that repeats a key is rejected,
# naming it.
#
# The check counts a line's keys with `colon_keys`: in C where the package was built with a
# compiler (session_stream_keycount, include/keycount/: exact, ~0.3 us a line, 1.5% of the
# split), else in Python (_colon_keys, below: ~9% of the split, and one too many for a string
# that opens with ':' or whitespace, which then costs the file a careful pass). Either count is
# at least the number of keys the line holds; when it equals the number of keys the parse kept,
# no key was written twice. The keys the parse kept are added up for the whole file from what
# the split counts anyway (_KeyCheck), so a line costs its count and little else; only when the
# file's two totals differ is the file split again with each line checked on its own
# (`careful`), where a line whose two counts differ (a repeated key; in Python, also whitespace
# after a string, which Monetate does not write) is parsed once more, by _duplicate, to find
# the key.
#
# The Python count counts '":' in a line, with whitespace read as ':'. Every key of a line ends
# with a '"' followed by ':' or whitespace, and a string can hold '":' only as an escaped quote
# before a colon ('\":', as in an id 'a":b'), which is not counted.

_KEYS_COUNTED_FROM = 4 * KEYS_PER_LINE  # a key takes 4 bytes at least ("":0,)
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
    """The '":' in `data` with every space, tab and carriage return read as ':', less those
    whose quote a backslash escapes: at least the number of keys its JSON holds (see above).
    Each replace finds its byte with memchr, and copies nothing when it is not there.

    A quote ends a string when an even run of backslashes (none included) stands before it, and
    is escaped, inside a string, when an odd run does. So '\\":' is taken away, and '\\\\":'
    given back: exact for a string's end (no backslash, or two or more), and for an escaped
    quote after no other backslash (a value like 'a":b', or an id, which Monetate may send);
    one too many, never one too few, for an escaped quote after an escaped backslash."""
    colons = data.replace(b" ", b":").replace(b"\t", b":").replace(b"\r", b":")
    count = colons.count(b'":')
    if b"\\" in data:
        count -= colons.count(b'\\":') - colons.count(b'\\\\":')
    return count


try:  # the same count in C, built with the package where a compiler was at hand (pyproject.toml)
    from session_stream_keycount import colon_keys as compiled_colon_keys
except ImportError:  # pragma: no cover - an install without a compiler
    compiled_colon_keys = None
colon_keys = compiled_colon_keys or _colon_keys  # the one to call


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
    count = colon_keys(raw)
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
