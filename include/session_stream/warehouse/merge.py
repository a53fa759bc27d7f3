"""The newest-wins merge of one split file into the final tables, inside the file's transaction.

Newest wins (CONTRACT): a session already in the warehouse is replaced, children and all,
only by a version with a greater end_time (a tie goes to the later file). Most sessions of a
file are new, so the file's staged rows are loaded straight into the final tables; only the
session_ids that already exist are looked at: the ones the file beats are deleted first, the
ones that beat the file are filtered out of its staged rows.

The caller (load.py) holds the load lock and owns the transaction, the retries and the ledger row.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from session_stream import tables
from session_stream.drop.names import file_rank
from session_stream.errors import LoadError
from session_stream.split.layout import (
    INDEX_FIELD,
    KEYS_FIELDS,
    LOAD_FORMAT,
    NULL,
    SplitResult,
    load_columns,
    sessions_starting_by,
    without_sessions,
)
from session_stream.sql import quote
from session_stream.warehouse import rejects

INCOMING = "_ss_incoming"  # a temporary table: private to the connection
# A MEMORY table stores VARCHAR at full width: a row of _ss_incoming takes about this many bytes.
MEMORY_ROW_BYTES = 4 * tables.SESSION_ID.length + 64
ER_DUP_ENTRY = 1062
# session_keys listed in one DELETE of replaced sessions: a single-table DELETE by primary key
# ranges took 25-30% less than a DELETE joined to a temporary table of the keys (0.27 against
# 0.34-0.41 s for a day's 8,000 replaced sessions), and needs no table filled first.
DELETE_KEYS = 1000
NULL_BYTES = NULL.encode()


class DuplicateSessions(LoadError):
    """LOAD DATA met session_ids session_sessions holds already (its unique index refused them)."""


@dataclass
class FileOutcome:
    name: str
    status: str  # 'loaded' | 'skipped' | 'failed' | 'ignored'
    sessions: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    rejects: int = 0
    seconds: float = 0.0
    error: str | None = None  # why it failed, or was skipped or ignored
    replaced: int = 0  # sessions of the file that replaced an older version
    superseded: int = 0  # sessions of the file that a newer version already in MySQL beat
    unknown_keys: dict[str, int] = field(default_factory=dict)  # see split.KeyAudit
    missing_keys: dict[str, int] = field(default_factory=dict)
    lines: int = 0  # = sessions + repeats + rejects + blank_lines
    blank_lines: int = 0
    repeats: int = 0  # sessions written again later in the same file (the newest was loaded)
    replaced_copy: str | None = None  # the earlier copy of the file this load replaced


@dataclass(frozen=True)
class ServerLimits:
    """What the merge needs to know of the server, read once per connection (Loader.conn)."""

    key_collation: str  # session_id's collation in the warehouse (schema.key_collation)
    memory_temp_rows: int  # the most rows a MEMORY temporary table holds (max_heap_table_size)
    reject_part_bytes: int  # one stored part of a rejected line (max_allowed_packet)

    @classmethod
    def of(cls, key_collation: str, max_heap: int, max_packet: int) -> ServerLimits:
        return cls(
            key_collation=key_collation,
            memory_temp_rows=int(max_heap) * 3 // 4 // MEMORY_ROW_BYTES,
            reject_part_bytes=rejects.part_bytes(max_packet),
        )


def incoming_wins(
    incoming_end: int | None, incoming_file: str, existing_end: int | None, existing_file: str
) -> bool:
    """The newest-wins rule: greater end_time wins, a tie goes to the later file."""
    if incoming_file == existing_file:
        return True  # the same file loaded again (forced or changed) replaces its own rows
    a = -1 if incoming_end is None else incoming_end
    b = -1 if existing_end is None else existing_end
    if a != b:
        return a > b
    return file_rank(incoming_file) > file_rank(existing_file)


def prepare_temp_tables(cur, sessions: int, limits: ServerLimits) -> None:
    # MEMORY makes the key lookup about twice as cheap as InnoDB, within the server's
    # max_heap_table_size (16 MB by default: ~11,000 rows of these); big files use InnoDB.
    engine = "MEMORY" if sessions <= limits.memory_temp_rows else "InnoDB"
    session_id = tables.SESSION_ID
    columns = (
        f"`idx` INT UNSIGNED NOT NULL PRIMARY KEY,"
        f" {quote(session_id.name)} {session_id.sql_type(limits.key_collation)} NOT NULL,"
        " `end_time` BIGINT NULL"
    )
    cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {quote(INCOMING)}")
    cur.execute(
        f"CREATE TEMPORARY TABLE {quote(INCOMING)} ({columns}) ENGINE={engine} DEFAULT CHARSET=utf8mb4"
    )


def clear_temp_tables(cur) -> None:
    """Empty the tables prepare_temp_tables made, for the next file of the same transaction."""
    cur.execute(f"DELETE FROM {quote(INCOMING)}")


def merge(
    cur,
    split: SplitResult,
    limits: ServerLimits,
    started: float,
    look_up_all: bool = False,
    beaten: frozenset[str] = frozenset(),
) -> FileOutcome:
    """Merge one split file into the final tables with `cur`, in the caller's transaction, after
    prepare_temp_tables. Raises DuplicateSessions when a session not looked up was stored: the
    caller rolls back and merges again with `look_up_all`. `beaten`: the sessions of the file (their
    index, as text) that a later file of the same transaction holds a newer version of
    (beaten_within): not loaded, counted as superseded, and a stored version of them is left to
    that later file."""
    name = split.source_name
    files = split.files()
    outcome = FileOutcome(
        name,
        "loaded",
        sessions=split.sessions,
        rejects=split.rejects,
        unknown_keys=split.unknown_keys,
        missing_keys=split.missing_keys,
        lines=split.lines,
        blank_lines=split.blank_lines,
        repeats=split.repeats,
    )
    key = quote(tables.SESSION_KEY_COLUMN)

    # 1. Which of the file's sessions exist already, and who wins. Only a session that
    # starts no later than every file loaded so far reaches (the ledger's horizon) can be
    # stored: in a drop loaded in order, that is the sessions re-emitted from earlier windows,
    # not the new ones, so most are not looked up. One that is stored all the same (its start
    # moved, or it was stored outside the ledger) meets session_sessions' unique index in
    # step 3, and the file is merged again with every session looked up.
    existing = ()
    keys, candidates = split.keys_path, split.sessions
    if not look_up_all and candidates:
        keys, candidates = sessions_starting_by(keys, stored_reach(cur))
    if candidates:
        load_data(cur, keys, INCOMING, list(KEYS_FIELDS), candidates)
        cur.execute(
            f"SELECT i.idx, i.end_time, s.{key}, s.end_time, s.{quote(tables.SOURCE_FILE_COLUMN)}"
            f" FROM {quote(INCOMING)} i JOIN {quote(tables.SESSIONS.name)} s ON s.session_id = i.session_id"
        )
        existing = cur.fetchall()
    replaced, superseded = [], set(beaten)
    for idx, new_end, old_key, old_end, old_file in existing:
        if str(idx) in beaten:
            continue
        if incoming_wins(new_end, name, old_end, old_file):
            replaced.append(int(old_key))
        else:
            superseded.add(str(idx))
    outcome.replaced, outcome.superseded = len(replaced), len(superseded)

    # 2. Sessions this file replaces lose their old rows in every table, children included
    # (session_key leads every table's primary key; the keys are integers MySQL gave us).
    replaced.sort()
    for table in reversed(tables.TABLES):
        for at in range(0, len(replaced), DELETE_KEYS):
            listed = ",".join(map(str, replaced[at : at + DELETE_KEYS]))
            cur.execute(f"DELETE FROM {quote(table.storage)} WHERE {key} IN ({listed})")

    # 3. Rows straight into the final tables, minus sessions a newer version already beat.
    # session_key = the session's index in the file + a base above every key in use
    # (loads are serialised by the named lock, so no other load takes the same keys).
    cur.execute(f"SELECT COALESCE(MAX({key}), 0) + 1 FROM {quote(tables.SESSIONS.name)}")
    base = int(cur.fetchone()[0])
    for table in tables.TABLES:
        path, expected = files[table.name], split.rows.get(table.name, 0)
        if superseded and expected:
            path, expected = without_sessions(path, superseded)
        set_clause = f"SET {key} = {INDEX_FIELD} + {base:d}"
        loaded = (
            load_data(cur, path, table.storage, load_columns(table), expected, set_clause)
            if expected
            else 0
        )
        outcome.rows[table.name] = loaded

    # 4. Rejects of this file, whole whatever their size (replacing any from an earlier
    # load of it); the ledger row follows (load.py).
    rejects.replace(cur, name, split, limits.reject_part_bytes)
    outcome.seconds = round(time.perf_counter() - started, 3)
    return outcome


def beaten_within(splits: list[SplitResult]) -> list[frozenset[str]]:
    """For files merged in this order in one transaction: the sessions of each (their index in
    the file, as text) that a later file of them holds a newer version of, by the newest-wins
    rule. Merging the files without those ends as merging all of them one by one would, without
    writing a version that the next file replaces. The files' names must differ.

    Memory does not grow with the ids' length: a first pass keeps a hash of each session_id
    (which file had it first), and only the sessions whose hash two files share are held whole
    and judged in a second pass, by their whole id (equal hashes of other ids only cost a look).
    Held whole in one pass, 100,000 ids of 36 characters took 44 MB, of 255 characters 69 MB."""
    first_file: dict[int, int] = {}  # hash of a session_id -> the first file that has it
    shared: set[int] = set()  # hashes two files of them have
    for pos, split in enumerate(splits):
        for _, sid, _ in _staged_keys(split):
            if first_file.setdefault(hash(sid), pos) != pos:
                shared.add(hash(sid))
    del first_file
    beaten: list[set[str]] = [set() for _ in splits]
    best: dict[bytes, tuple[int, bytes, bytes]] = {}  # session_id -> (file, index, end_time)
    for pos, split in enumerate(splits):
        name = split.source_name
        for idx, sid, end in _staged_keys(split):
            if hash(sid) not in shared:
                continue
            held = best.get(sid)
            if held is not None:
                held_pos, held_idx, held_end = held
                if not incoming_wins(_ms(end), name, _ms(held_end), splits[held_pos].source_name):
                    beaten[pos].add(idx.decode())
                    continue
                beaten[held_pos].add(held_idx.decode())
            best[sid] = (pos, idx, end)
    return [frozenset(b) for b in beaten]


def _staged_keys(split: SplitResult) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(index, session_id, end_time) of each row of a split's keys file, as staged: bytes
    compare as the ids do."""
    with split.keys_path.open("rb") as rows:
        for row in rows:
            idx, sid, end, _ = row.split(b"\t", 3)
            yield idx, sid, end


def _ms(staged: bytes) -> int | None:
    return None if staged == NULL_BYTES else int(staged)


def stored_reach(cur) -> int | None:
    """The latest time any stored session reaches, by the ledger (None: nothing loaded)."""
    cur.execute(f"SELECT MAX(horizon) FROM {quote(tables.LEDGER_TABLE)}")
    (reach,) = cur.fetchone()
    return None if reach is None else int(reach)


def load_data(
    cur, path: Path, table: str, columns: list[str], expected: int, set_clause: str = ""
) -> int:
    """LOAD DATA LOCAL one staged file into `table`: exactly `expected` rows, no warning."""
    cur.execute(
        f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote(table)} {LOAD_FORMAT} ({', '.join(columns)}) {set_clause}",
        (str(path),),
    )
    loaded = cur.rowcount
    warnings = cur.connection.warning_count()
    if warnings:
        cur.execute("SHOW WARNINGS LIMIT 3")
        found = cur.fetchall()
        detail = "; ".join(f"{msg} ({code})" for _, code, msg in found)
        if any(code == ER_DUP_ENTRY for _, code, _ in found):
            if table == tables.SESSIONS.storage:
                raise DuplicateSessions(f"{table}: sessions already stored: {detail}")
            raise LoadError(f"{table}: rows already present: {detail}")
        raise LoadError(f"MySQL changed or dropped values loading {table}: {detail}")
    if loaded != expected:
        raise LoadError(f"{table}: loaded {loaded} rows, the staged file holds {expected}")
    return loaded
