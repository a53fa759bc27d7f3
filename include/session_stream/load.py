"""Load split files into MySQL: LOAD DATA LOCAL INFILE, newest-wins merge, ledger, rejects.

One source file is one transaction: its rows, its rejects and its ledger row commit together
or not at all, so a crash at any point leaves the database as it was before that file.

Newest wins (CONTRACT): a session already in the warehouse is replaced, children and all,
only by a version with a greater end_time (a tie goes to the later file). Most sessions of a
file are new, so the file's staged rows are loaded straight into the final tables; only the
session_ids that already exist are looked at: the ones the file beats are deleted first, the
ones that beat the file are filtered out of its staged rows.

Loads of one database are serialised by a named lock (GET_LOCK), so concurrent DAG runs,
backfills and CLI loads each load a file once and end as if run one after another. Deadlocks,
lock waits and a lost connection are retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import MySQLdb
import orjson
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from . import db as dbmod
from . import rejects, schema, tables
from .errors import ConfigError, LoadError
from .layout import (
    INDEX_FIELD,
    KEYS_FIELDS,
    LOAD_FORMAT,
    SplitResult,
    load_columns,
    sessions_starting_by,
    without_sessions,
)
from .names import file_rank
from .sql import quote
from .utc import to_utc

log = logging.getLogger(__name__)

INCOMING = "_ss_incoming"  # temporary tables: private to the connection
REPLACED = "_ss_replaced"
# Server gone, lost connection, and MySQL 8's "disconnected because of inactivity" (wait_timeout).
LOST_CONNECTION = {2006, 2013, 4031}
RETRYABLE = {1205, 1213} | LOST_CONNECTION  # + lock wait timeout, deadlock
ER_LOCAL_INFILE = {1148, 2068, 3948}  # LOAD DATA LOCAL refused by client or server
# A MEMORY table stores VARCHAR at full width: a row of _ss_incoming takes about this many bytes.
MEMORY_ROW_BYTES = 4 * tables.SESSION_ID.length + 64
ER_DUP_ENTRY = 1062


class DuplicateSessions(LoadError):
    """LOAD DATA met session_ids session_sessions holds already (its unique index refused them)."""


@dataclass
class FileOutcome:
    name: str
    status: str  # 'loaded' | 'skipped' | 'failed'
    sessions: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    rejects: int = 0
    seconds: float = 0.0
    error: str | None = None
    replaced: int = 0  # sessions of the file that replaced an older version
    superseded: int = 0  # sessions of the file that a newer version already in MySQL beat
    unknown_keys: dict[str, int] = field(default_factory=dict)  # see split.KeyAudit
    missing_keys: dict[str, int] = field(default_factory=dict)


def is_loaded(entry: dict | None, size: int) -> bool:
    """Whether a ledger row says the file is loaded as it is now (same size): then it is skipped."""
    return bool(entry) and entry["status"] == "loaded" and entry["size"] == size


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, MySQLdb.OperationalError) and exc.args and exc.args[0] in RETRYABLE


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


class Loader:
    """Loads split files into one database. `connect()` returns a MySQLdb connection that allows
    LOAD DATA LOCAL (`db.connect(url)`, or an Airflow `MySqlHook(local_infile=True).get_conn()`)."""

    def __init__(
        self, connect: Callable[[], object], *, lock_timeout: int = 6 * 3600, attempts: int = 5
    ):
        self._connect = connect
        self._conn = None
        self.lock_timeout = lock_timeout
        self.attempts = attempts

    # --- connection ---------------------------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            conn = self._connect()
            conn.autocommit(True)
            dbmod.prepare_session(conn)
            dbmod.check_local_infile(conn)
            missing = schema.missing_tables(conn)
            if missing:
                raise ConfigError(
                    f"the database has no {missing[0]} table: run `session-stream init-db`"
                    " (it creates the tables, or brings an older warehouse up to date)"
                )
            pending = schema.pending_migrations(conn)
            if pending:
                raise ConfigError(
                    f"the database schema is older than this version (migration {pending[0].version},"
                    f" {pending[0].name!r}, is not applied): run `session-stream init-db`"
                )
            cur = conn.cursor()
            cur.execute(
                "SELECT DATABASE(), @@log_bin, @@binlog_format, @@max_heap_table_size,"
                " @@max_allowed_packet"
            )
            database, log_bin, binlog_format, max_heap, max_packet = cur.fetchone()
            self.lock_name = schema.load_lock_name(database)
            self.reject_part_bytes = rejects.part_bytes(max_packet)
            self.memory_temp_rows = int(max_heap) * 3 // 4 // MEMORY_ROW_BYTES
            # Loads are serialised by the named lock, so READ COMMITTED loses nothing and spares
            # InnoDB gap locks (a few percent of LOAD DATA's cost). Statement-based binary logging
            # cannot log InnoDB writes under it: keep the default there.
            if not (int(log_bin or 0) and str(binlog_format).upper() == "STATEMENT"):
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.close()
            self.key_collation = schema.key_collation(conn)
            self._conn = conn
        return self._conn

    def connect_now(self) -> None:
        """Connect now, so a configuration problem surfaces before any work starts."""
        _ = self.conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except MySQLdb.Error:
                pass
            self._conn = None

    def _live_conn(self):
        """The connection, reopened first if the server dropped it while it sat idle between
        files (wait_timeout, KILL): a dropped connection is noticed here, not mid-load."""
        if self._conn is not None:
            try:
                self._conn.ping()
            except MySQLdb.Error as exc:
                log.info("the MySQL connection was dropped (%s); reconnecting", _describe(exc))
                self.close()
        return self.conn

    def _outside_load(self, work: Callable):
        """Run `work(conn)`, a short statement outside any load (ledger reads, marking a file
        failed), reconnecting once if the connection is lost on the way. Never called while the
        load lock is held: a new connection would not hold the lock."""
        conn = self._live_conn()
        try:
            return work(conn)
        except MySQLdb.OperationalError as exc:
            if not (exc.args and exc.args[0] in LOST_CONNECTION):
                raise
            log.info("the MySQL connection was lost (%s); reconnecting", _describe(exc))
            self.close()
            return work(self.conn)

    def _reset(self) -> None:
        """Drop a connection that failed mid-transaction; the server rolls it back."""
        if self._conn is not None:
            try:
                self._conn.rollback()
            except MySQLdb.Error:
                self.close()

    # --- ledger ---------------------------------------------------------------------------
    def ledger(self, names: Iterable[str]) -> dict[str, dict]:
        """The ledger rows of `names` (absent names have none), by file name."""
        names = list(names)
        return self._outside_load(lambda conn: _read_ledger(conn, names))

    def record_failure(
        self, name: str, size: int, window_start: datetime | None, error: str
    ) -> None:
        """Mark a file failed, so the next run tries it again. Nothing of this attempt was
        loaded; rows from an earlier, successful load of the file stay until one succeeds."""

        def write(conn):
            cur = conn.cursor()
            # failed_since is set before status: MySQL assigns left to right, so it still sees
            # whether the file was failing already.
            cur.execute(
                f"INSERT INTO {quote(tables.LEDGER_TABLE)}"
                " (file_name, size, window_start, status, error, failed_since)"
                " VALUES (%s, %s, %s, 'failed', %s, UTC_TIMESTAMP(3))"
                " ON DUPLICATE KEY UPDATE failed_since = IF(status = 'failed',"
                " COALESCE(failed_since, UTC_TIMESTAMP(3)), UTC_TIMESTAMP(3)),"
                " attempts = attempts + 1, error = VALUES(error),"
                " size = VALUES(size), status = 'failed'",
                (name, size, window_start, error[:60000]),
            )
            cur.close()

        self._outside_load(write)

    def failing(self, since: datetime, until: datetime) -> list[dict]:
        """The files the ledger marks failed whose window starts in [since, until), newest
        first: file_name, size, window_start, attempts, failed_since, last_attempt, error."""

        def read(conn):
            cur = conn.cursor(MySQLdb.cursors.DictCursor)
            cur.execute(
                "SELECT file_name, size, window_start, attempts, failed_since,"
                f" loaded_at AS last_attempt, error FROM {quote(tables.LEDGER_TABLE)}"
                " WHERE status = 'failed' AND window_start >= %s AND window_start < %s"
                " ORDER BY window_start DESC, file_name DESC",
                (_naive_utc(since), _naive_utc(until)),
            )
            rows = list(cur.fetchall())
            cur.close()
            return rows

        return self._outside_load(read)

    def pending(self, files: Iterable[tuple[str, int]], force: bool = False) -> list[str]:
        """Names of the files that still need loading: not loaded, or loaded with another size."""
        files = list(files)
        if force:
            return [name for name, _ in files]
        done = self.ledger(name for name, _ in files)
        return [name for name, size in files if not is_loaded(done.get(name), size)]

    # --- loading --------------------------------------------------------------------------
    def load(
        self,
        split: SplitResult,
        *,
        size: int,
        window_start: datetime | None = None,
        force: bool = False,
    ) -> FileOutcome:
        """Load one split file; never raises for a problem with the file itself (see FileOutcome)."""
        started = time.perf_counter()
        try:
            self._live_conn()
            outcome = self._load_with_retries(split, size, window_start, force)
        except ConfigError:
            raise
        except (LoadError, MySQLdb.Error, OSError) as exc:
            self._reset()
            message = _describe(exc)
            if isinstance(exc, MySQLdb.Error) and exc.args and exc.args[0] in ER_LOCAL_INFILE:
                raise ConfigError(
                    f"LOAD DATA LOCAL INFILE was refused ({message}): enable local_infile"
                ) from None
            log.error("%s: load failed: %s", split.source_name, message)
            self.record_failure(split.source_name, size, window_start, message)
            outcome = FileOutcome(split.source_name, "failed", error=message)
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome

    def _load_with_retries(self, split, size, window_start, force) -> FileOutcome:
        @retry(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=30),
            before_sleep=lambda rs: (
                log.warning(
                    "%s: %s, retrying", split.source_name, _describe(rs.outcome.exception())
                ),
                self._reset(),
            ),
            reraise=True,
        )
        def attempt():
            return self._load_locked(split, size, window_start, force)

        return attempt()

    def _load_locked(self, split: SplitResult, size: int, window_start, force: bool) -> FileOutcome:
        conn = self.conn
        cur = conn.cursor()
        cur.execute("SELECT GET_LOCK(%s, %s)", (self.lock_name, self.lock_timeout))
        if cur.fetchone()[0] != 1:
            raise LoadError(
                f"waited {self.lock_timeout}s for another load of this database to finish"
            )
        try:
            if not force:
                done = _read_ledger(conn, [split.source_name]).get(split.source_name)
                if is_loaded(done, size):
                    return FileOutcome(split.source_name, "skipped", rejects=done["rejects"] or 0)
            started = time.perf_counter()
            for look_up_all in (False, True):
                self._prepare_temp_tables(cur, split.sessions)
                conn.begin()
                try:
                    outcome = self._merge(cur, split, size, window_start, started, look_up_all)
                    conn.commit()
                    return outcome
                except DuplicateSessions:
                    # A session assumed new was stored already (it starts later than the version
                    # stored, or was stored outside the ledger): look every session up.
                    conn.rollback()
                    if look_up_all:
                        raise
                    log.info(
                        "%s: a session thought new was stored; looking all up", split.source_name
                    )
                except BaseException:
                    conn.rollback()
                    raise
        finally:
            try:
                cur.execute("SELECT RELEASE_LOCK(%s)", (self.lock_name,))
            except MySQLdb.Error:
                pass  # the connection is gone; the server has released the lock with it
            cur.close()

    def _prepare_temp_tables(self, cur, sessions: int) -> None:
        # MEMORY makes the key lookup about twice as cheap as InnoDB, within the server's
        # max_heap_table_size (16 MB by default: ~11,000 rows of these); big files use InnoDB.
        engine = "MEMORY" if sessions <= self.memory_temp_rows else "InnoDB"
        session_id = tables.SESSION_ID
        temp_tables = {
            INCOMING: f"`idx` INT UNSIGNED NOT NULL PRIMARY KEY,"
            f" {quote(session_id.name)} {session_id.sql_type(self.key_collation)} NOT NULL,"
            " `end_time` BIGINT NULL",
            REPLACED: "`session_key` BIGINT UNSIGNED NOT NULL PRIMARY KEY",
        }
        for name, columns in temp_tables.items():
            cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {quote(name)}")
            cur.execute(
                f"CREATE TEMPORARY TABLE {quote(name)} ({columns}) ENGINE={engine} DEFAULT CHARSET=utf8mb4"
            )

    def _merge(
        self,
        cur,
        split: SplitResult,
        size: int,
        window_start,
        started: float,
        look_up_all: bool = False,
    ) -> FileOutcome:
        name = split.source_name
        files = split.files()
        outcome = FileOutcome(
            name,
            "loaded",
            sessions=split.sessions,
            rejects=split.rejects,
            unknown_keys=split.unknown_keys,
            missing_keys=split.missing_keys,
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
            keys, candidates = sessions_starting_by(keys, self._stored_reach(cur))
        if candidates:
            self._load_data(cur, keys, INCOMING, list(KEYS_FIELDS), candidates)
            cur.execute(
                f"SELECT i.idx, i.end_time, s.{key}, s.end_time, s.{quote(tables.SOURCE_FILE_COLUMN)}"
                f" FROM {quote(INCOMING)} i JOIN {quote(tables.SESSIONS.name)} s ON s.session_id = i.session_id"
            )
            existing = cur.fetchall()
        replaced, superseded = [], set()
        for idx, new_end, old_key, old_end, old_file in existing:
            if incoming_wins(new_end, name, old_end, old_file):
                replaced.append((old_key,))
            else:
                superseded.add(str(idx))
        outcome.replaced, outcome.superseded = len(replaced), len(superseded)

        # 2. Sessions this file replaces lose their old rows in every table, children included.
        if replaced:
            cur.executemany(f"INSERT INTO {quote(REPLACED)} ({key}) VALUES (%s)", replaced)
            for table in reversed(tables.TABLES):
                cur.execute(
                    f"DELETE t FROM {quote(table.storage)} t JOIN {quote(REPLACED)} r ON r.{key} = t.{key}"
                )

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
                self._load_data(cur, path, table.storage, load_columns(table), expected, set_clause)
                if expected
                else 0
            )
            outcome.rows[table.name] = loaded

        # 4. Rejects of this file, whole whatever their size (replacing any from an earlier
        # load of it), then the ledger.
        rejects.replace(cur, name, split, self.reject_part_bytes)
        counts = [tables.rows_column(t) for t in tables.TABLES]
        values = [outcome.rows[t.name] for t in tables.TABLES]
        cur.execute(
            f"INSERT INTO {quote(tables.LEDGER_TABLE)} (file_name, size, window_start, status, sessions,"
            f" {', '.join(quote(c) for c in counts)}, rejects, horizon, split_seconds, load_seconds, error,"
            f" {quote(tables.UNKNOWN_KEYS_COLUMN)}, {quote(tables.MISSING_KEYS_COLUMN)})"
            f" VALUES (%s, %s, %s, 'loaded', %s, {', '.join(['%s'] * len(counts))}, %s, %s, %s, %s, NULL,"
            " %s, %s)"
            " ON DUPLICATE KEY UPDATE size = VALUES(size), window_start = VALUES(window_start),"
            " status = 'loaded', sessions = VALUES(sessions),"
            + "".join(f" {quote(c)} = VALUES({quote(c)})," for c in counts)
            + " rejects = VALUES(rejects), split_seconds = VALUES(split_seconds),"
            # a reload may leave sessions of the earlier version: the horizon only grows
            " horizon = GREATEST(COALESCE(horizon, VALUES(horizon)), COALESCE(VALUES(horizon), horizon)),"
            " load_seconds = VALUES(load_seconds), error = NULL, failed_since = NULL,"
            + "".join(
                f" {quote(c)} = VALUES({quote(c)}),"
                for c in (tables.UNKNOWN_KEYS_COLUMN, tables.MISSING_KEYS_COLUMN)
            )
            + " attempts = attempts + 1",
            (
                name,
                size,
                window_start,
                split.sessions,
                *values,
                split.rejects,
                split.horizon,
                split.seconds,
                round(time.perf_counter() - started, 3),
                _json_counts(split.unknown_keys),
                _json_counts(split.missing_keys),
            ),
        )
        return outcome

    @staticmethod
    def _stored_reach(cur) -> int | None:
        """The latest time any stored session reaches, by the ledger (None: nothing loaded)."""
        cur.execute(f"SELECT MAX(horizon) FROM {quote(tables.LEDGER_TABLE)}")
        (reach,) = cur.fetchone()
        return None if reach is None else int(reach)

    def _load_data(
        self, cur, path: Path, table: str, columns: list[str], expected: int, set_clause: str = ""
    ) -> int:
        cur.execute(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {quote(table)} {LOAD_FORMAT} ({', '.join(columns)}) {set_clause}",
            (str(path),),
        )
        loaded = cur.rowcount
        warnings = self.conn.warning_count()
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


def _json_counts(counts: dict[str, int]) -> str | None:
    """Key counts as the ledger keeps them: a JSON object, or NULL when there are none."""
    return orjson.dumps(counts).decode() if counts else None


def _naive_utc(moment: datetime) -> datetime:
    """A DATETIME parameter: UTC, without tzinfo (the session's time zone is UTC)."""
    return to_utc(moment).replace(tzinfo=None)


def _read_ledger(conn, names: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    cur = conn.cursor(MySQLdb.cursors.DictCursor)
    for i in range(0, len(names), 1000):
        chunk = names[i : i + 1000]
        marks = ", ".join(["%s"] * len(chunk))
        cur.execute(
            f"SELECT * FROM {quote(tables.LEDGER_TABLE)} WHERE file_name IN ({marks})", chunk
        )
        for row in cur.fetchall():
            out[row["file_name"]] = row
    cur.close()
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MySQLdb.Error) and len(exc.args) >= 2:
        return f"MySQL error {exc.args[0]}: {exc.args[1]}"
    return str(exc) or exc.__class__.__name__
