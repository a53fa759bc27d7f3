"""The key audit: keys a file's objects carry that the spec does not know, and the spec's keys
they lack, counted by path (KeyAudit; splitter.py runs it on lines not of the spec's shape)."""

from __future__ import annotations

from collections import Counter

from session_stream import tables
from session_stream.split.convert import Reject
from session_stream.split.keycounts import KEY_PATHS_PER_FILE, OTHER_PATHS

UNKNOWN_KEYS_PER_LINE = 1000  # distinct keys the spec does not know, in one line
KEY_NAME_CHARS = 100  # of an unknown key, in the path it is counted under


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
    their key sets, which is all the work when they have the keys the spec knows; one that has
    other keys is judged once per distinct list of keys too (a cart line of a drop that adds a
    field to every cart line costs a lookup).

    What one file can make it hold is bounded: a line carrying more than UNKNOWN_KEYS_PER_LINE
    distinct unknown keys is rejected (`check` raises Reject and counts nothing of it), and a
    file's counts keep KEY_PATHS_PER_FILE paths at most, the rest counted under OTHER_PATHS, so
    a file's ledger row stays far below the server's max_allowed_packet."""

    SHAPES_MAX = 4096  # distinct session key lists remembered; beyond that, each is judged anew
    SHAPE_KEYS_MAX = 256  # a session with more keys than this is judged anew, not remembered

    def __init__(self):
        self.unknown: Counter[str] = Counter()
        self.missing: Counter[str] = Counter()
        self._verdicts: dict[tuple, tuple[tuple[str, str, str], ...]] = {}  # sessions'
        self._object_verdicts: dict[tuple, tuple[tuple[str, str, str], ...]] = {}  # (path, *keys)
        # Keys inside the objects and lists that the last session's unknown keys held, at any
        # depth (_KeyCheck counts every key of a line).
        self.nested = 0

    def _count(self, line: tuple[dict, dict], path: str, obj: dict, expected, known) -> None:
        unknown, missing = line
        shape = (path, *obj)
        verdict = self._object_verdicts.get(shape)
        if verdict is None:
            keys = obj.keys()
            extra = sorted(keys - known)
            if len(extra) + len(unknown) > UNKNOWN_KEYS_PER_LINE:
                found = {key_path(path, k) for k in extra} | set(unknown)
                if len(found) > UNKNOWN_KEYS_PER_LINE:
                    raise _too_many_unknown(len(found))
            verdict = tuple(
                [("unknown", key_path(path, k), k) for k in extra]
                + [("missing", f"{path}.{k}", k) for k in sorted(expected - keys)]
            )
            self._remember(self._object_verdicts, shape, verdict)
        elif len(verdict) + len(unknown) > UNKNOWN_KEYS_PER_LINE:
            found = {name for which, name, _ in verdict if which == "unknown"} | set(unknown)
            if len(found) > UNKNOWN_KEYS_PER_LINE:
                raise _too_many_unknown(len(found))
        for which, name, key in verdict:
            if which == "unknown":
                unknown[name] = unknown.get(name, 0) + 1
                value = obj[key]
                if type(value) is dict or type(value) is list:
                    self.nested += _keys_in(value)
            else:
                missing[name] = missing.get(name, 0) + 1

    def _remember(self, verdicts: dict, shape: tuple, verdict: tuple) -> None:
        if len(verdicts) < self.SHAPES_MAX and len(shape) <= self.SHAPE_KEYS_MAX:
            verdicts[shape] = verdict

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
        self._remember(self._verdicts, shape, verdict)
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
