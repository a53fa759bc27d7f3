"""Load split files into MySQL: LOAD DATA LOCAL INFILE, newest-wins merge, ledger, rejects.

One source file is one transaction: its rows, its rejects and its ledger row commit together
or not at all, so a crash at any point leaves the database as it was before that file.

Newest wins (CONTRACT): a session already in the warehouse is replaced, children and all,
only by a version with a greater end_time (a tie goes to the later file). Most sessions of a
file are new, so the file's staged rows are loaded straight into the final tables; only the
session_ids that already exist are looked at: the ones the file beats are deleted first, the
ones that beat the file are filtered out of its staged rows.

Loads of one database are serialised by a named lock (GET_LOCK), so concurrent DAG runs,
backfills and CLI loads each load a file once and end as if run one after another. Every wait is
bounded and logged every minute with what it waits for (waits.py); deadlocks, lock waits and a
lost connection are retried, reconnecting included, within one policy (`_with_retries`).

A file is known by its content (ledger.py): loaded again under the same name and size, it is
skipped only when its SHA-256 is the one the ledger has; otherwise it loads, and its ledger row
says which copy it replaced.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import MySQLdb
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from session_stream import tables
from session_stream.drop.names import file_rank
from session_stream.errors import ConfigError, LoadError, UnreachableError
from session_stream.split.layout import (
    INDEX_FIELD,
    KEYS_FIELDS,
    LOAD_FORMAT,
    SplitResult,
    load_columns,
    sessions_starting_by,
    without_sessions,
)
from session_stream.sql import quote
from session_stream.utc import to_utc
from session_stream.warehouse import db as dbmod
from session_stream.warehouse import ledger, migrations, rejects, schema
from session_stream.warehouse.waits import Watch, minutes, named_lock

log = logging.getLogger(__name__)

INCOMING = "_ss_incoming"  # temporary tables: private to the connection
REPLACED = "_ss_replaced"
# Server gone, lost connection, and MySQL 8's "disconnected because of inactivity" (wait_timeout).
LOST_CONNECTION = {2006, 2013, 4031}
ER_LOCK_WAIT_TIMEOUT = 1205
RETRYABLE = {ER_LOCK_WAIT_TIMEOUT, 1213} | LOST_CONNECTION  # + deadlock
ER_LOCAL_INFILE = {1148, 2068, 3948}  # LOAD DATA LOCAL refused by client or server
# A MEMORY table stores VARCHAR at full width: a row of _ss_incoming takes about this many bytes.
MEMORY_ROW_BYTES = 4 * tables.SESSION_ID.length + 64
ER_DUP_ENTRY = 1062
# How long a load waits for the load lock (another load of the database holds it for seconds;
# half an hour means that load is stuck), and how long one file's retries may go on.
LOCK_TIMEOUT = 30 * 60
RETRY_SECONDS = 5 * 60


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


def is_loaded(entry: dict | None, size: int, identity: str | None = None) -> bool:
    """Whether a ledger row says the file is loaded as it is now (same size, and same content
    as far as `identity` tells: see ledger.same_content): then it is skipped."""
    return ledger.same_content(entry, size, identity)


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
    LOAD DATA LOCAL (`db.connect(url)`, or the DAG's `mysql_connect`)."""

    def __init__(
        self,
        connect: Callable[[], object],
        *,
        lock_timeout: int = LOCK_TIMEOUT,
        attempts: int = 5,
        retry_seconds: float = RETRY_SECONDS,
        token_prefix: str = "",
    ):
        self._connect = connect
        # The load_token of each file this loader loads starts with it (a DAG run's run key:
        # dag_tasks.run_key), so a run's report counts the rows its own loads wrote.
        self.token_prefix = token_prefix[:16]
        self._conn = None
        self.lock_timeout = lock_timeout
        self.attempts = attempts
        self.retry_seconds = retry_seconds

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
            pending = migrations.pending_migrations(conn)
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
        self._with_retries(lambda conn: None, "connecting")

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

    def _reset(self) -> None:
        """Drop a connection that failed mid-transaction; the server rolls it back."""
        if self._conn is not None:
            try:
                self._conn.rollback()
            except MySQLdb.Error:
                self.close()

    def _with_retries(self, work: Callable, what: str, *, watched: bool = True):
        """`work(conn)` under the retry policy: a lost connection, a deadlock or a lock wait
        timeout is retried (`attempts` times, for `retry_seconds` at most, with back-off), each
        attempt on a live connection, reconnecting included, so that a connection the server
        kills right after it was reopened is one more retry, not a failed file. While an
        attempt runs, a Watch logs every minute what it waits for."""
        for attempt in Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.retry_seconds),
            wait=wait_exponential(multiplier=0.5, max=30),
            before_sleep=lambda rs: (
                log.warning("%s: %s, retrying", what, _describe(rs.outcome.exception())),
                self._reset(),
            ),
            reraise=True,
        ):
            with attempt:
                conn = self._live_conn()
                self.watch = Watch(self._connect, conn.thread_id(), what)
                if not watched:  # the work starts the watch itself (see _load_locked)
                    return work(conn)
                with self.watch:
                    return work(conn)
        raise AssertionError("unreachable: Retrying reraises")  # pragma: no cover

    def _outside_load(self, work: Callable, what: str):
        """A short statement outside any load (ledger reads, marking a file failed or ignored)
        under the retry policy. A server that stays away after the retries is an
        UnreachableError (one line from the CLI; Airflow retries the task); any other MySQL
        error goes up as it is (Airflow's retry rule reads its code)."""
        try:
            return self._with_retries(work, what)
        except MySQLdb.OperationalError as exc:
            if exc.args and exc.args[0] in LOST_CONNECTION:
                raise UnreachableError(f"{what}: lost the MySQL server ({_describe(exc)})") from exc
            raise

    # --- ledger ---------------------------------------------------------------------------
    def ledger(self, names: Iterable[str]) -> dict[str, dict]:
        """The ledger rows of `names` (absent names have none), by file name."""
        names = list(names)
        return self._outside_load(lambda conn: ledger.read(conn, names), "reading the ledger")

    def record_failure(
        self, name: str, size: int, window_start: datetime | None, error: str
    ) -> None:
        """Mark a file failed, so the next run tries it again. Nothing of this attempt was
        loaded; rows from an earlier, successful load of the file stay until one succeeds."""
        values = {
            "file_name": ledger.file_name(name),
            "size": size,
            "window_start": _naive_utc(window_start) if window_start else None,
            "failed_since": _naive_utc(datetime.now(UTC)),
            "status": "failed",
            "error": ledger.error_text(error),
            "attempts": 1,
        }

        def write(conn):
            cur = conn.cursor()
            ledger.write(cur, ledger.FAILED, values)
            cur.close()

        self._outside_load(write, f"{name}: marking it failed")

    def record_ignored(self, name: str, size: int, why: str) -> None:
        """Say in the ledger that a listed entry is not read, and why (a row of the same name
        that is loaded stays)."""
        values = {
            "file_name": ledger.file_name(name),
            "size": size,
            "error": ledger.error_text(f"ignored: {why}"),
            "status": "ignored",
        }

        def write(conn):
            cur = conn.cursor()
            ledger.write(cur, ledger.IGNORED, values)
            cur.close()

        self._outside_load(write, f"{name}: recording it as ignored")

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

        return self._outside_load(read, "reading the failing files")

    def count_sessions(self) -> int:
        """The distinct sessions the warehouse holds ("sessions now stored")."""

        def count(conn):
            cur = conn.cursor()
            cur.execute(f"SELECT COUNT(*) FROM {quote(tables.SESSIONS.name)}")
            (n,) = cur.fetchone()
            cur.close()
            return int(n)

        return self._outside_load(count, "counting the stored sessions")

    def pending(self, files: Iterable[tuple], force: bool = False) -> list[str]:
        """Names of the files that still need loading: not loaded, or loaded with another size
        or other content. Each file is (name, size) or (name, size, identity): its SHA-256 as
        "sha256:<hex>", or the drop's version of it (see ledger.same_content)."""
        files = [(f[0], f[1], f[2] if len(f) > 2 else None) for f in files]
        if force:
            return [name for name, _, _ in files]
        done = self.ledger(name for name, _, _ in files)
        return [
            name
            for name, size, identity in files
            if not is_loaded(done.get(ledger.file_name(name)), size, identity)
        ]

    # --- loading --------------------------------------------------------------------------
    def load(
        self,
        split: SplitResult,
        *,
        size: int,
        window_start: datetime | None = None,
        force: bool = False,
        version: str | None = None,
    ) -> FileOutcome:
        """Load one split file; never raises for a problem with the file itself (see
        FileOutcome). `version`: the drop's version of the file (an S3 ETag, an mtime), kept in
        the ledger so that the next listing knows it without reading the file."""
        started = time.perf_counter()
        name = split.source_name
        # One token per load of a file, written with its ledger row: an attempt that finds it
        # there knows that an earlier attempt of this very load committed (its answer lost).
        token = (self.token_prefix + uuid.uuid4().hex)[:32]
        done: dict = {}
        try:
            outcome = self._with_retries(
                lambda conn: self._load_locked(
                    conn, split, size, window_start, force, version, token, done
                ),
                name,
                watched=False,
            )
        except ConfigError:
            raise
        except (LoadError, MySQLdb.Error, OSError) as exc:
            self._reset()
            message = _describe(exc)
            if isinstance(exc, MySQLdb.Error) and exc.args and exc.args[0] in ER_LOCAL_INFILE:
                raise ConfigError(
                    f"LOAD DATA LOCAL INFILE was refused ({message}): enable local_infile"
                ) from None
            waited = getattr(self, "watch", None)
            if (
                isinstance(exc, MySQLdb.OperationalError)
                and exc.args
                and exc.args[0] == ER_LOCK_WAIT_TIMEOUT
                and waited is not None
                and waited.last
            ):
                message = (
                    f"{message}: waited {minutes(time.monotonic() - waited.started)} for"
                    f" {waited.last}; nothing was loaded, the next run retries it"
                )
            log.error("%s: load failed: %s", name, message)
            self.record_failure(name, size, window_start, message)
            outcome = FileOutcome(name, "failed", error=message)
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome

    def _load_locked(
        self, conn, split, size, window_start, force, version, token, done: dict
    ) -> FileOutcome:
        name = split.source_name
        # named_lock logs its own wait each minute; the watch covers the rest, under the lock.
        with named_lock(conn, self.lock_name, self.lock_timeout, name), self.watch:
            cur = conn.cursor()
            try:
                previous = ledger.read(conn, [name]).get(name)
                if previous and previous.get("load_token") == token:
                    # This load committed in an earlier attempt whose answer was lost.
                    return done["outcome"]
                identity = f"sha256:{split.sha256}" if split.sha256 else None
                if not force and is_loaded(previous, size, identity):
                    if version and previous.get("source_version") != version:
                        cur.execute(
                            f"UPDATE {ledger.TABLE} SET source_version = %s WHERE file_name = %s",
                            (version, name),
                        )
                    return FileOutcome(
                        name,
                        "skipped",
                        rejects=previous["rejects"] or 0,
                        error="already loaded, with the same content",
                    )
                started = time.perf_counter()
                for look_up_all in (False, True):
                    self._prepare_temp_tables(cur, split.sessions)
                    conn.begin()
                    try:
                        outcome = self._merge(cur, split, size, window_start, started, look_up_all)
                        outcome.replaced_copy = self._write_ledger(
                            cur, split, outcome, size, window_start, version, token, previous
                        )
                        done["outcome"] = outcome
                        conn.commit()
                        return outcome
                    except DuplicateSessions:
                        # A session thought new was stored already (it starts later than the
                        # version stored, or was stored outside the ledger): look all up.
                        conn.rollback()
                        if look_up_all:
                            raise
                        log.info("%s: a session thought new was stored; looking all up", name)
                    except BaseException:
                        conn.rollback()
                        raise
            finally:
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
        # load of it); the ledger row follows (_write_ledger).
        rejects.replace(cur, name, split, self.reject_part_bytes)
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome

    @staticmethod
    def _stored_reach(cur) -> int | None:
        """The latest time any stored session reaches, by the ledger (None: nothing loaded)."""
        cur.execute(f"SELECT MAX(horizon) FROM {quote(tables.LEDGER_TABLE)}")
        (reach,) = cur.fetchone()
        return None if reach is None else int(reach)

    def _write_ledger(
        self, cur, split, outcome, size, window_start, version, token, previous
    ) -> str | None:
        """The file's ledger row (ledger.LOADED), in the file's transaction. Returns what it says
        about an earlier copy of the file this load replaced, if any."""
        replaced_sha256 = replaced_at = replaced = None
        if previous and previous["status"] == "loaded":
            old = previous.get("sha256")
            if old != split.sha256 or old is None:
                replaced_sha256, replaced_at = old, previous.get("loaded_at")
                replaced = (
                    f"replaced the copy loaded {replaced_at:%Y-%m-%d %H:%M} UTC"
                    f" ({previous['size']:,} bytes"
                    + (f", SHA-256 {old[:12]}…" if old else "")
                    + f"; this one: {size:,} bytes, SHA-256 {(split.sha256 or '?')[:12]}…)"
                )
        values = {
            "file_name": split.source_name,
            "size": size,
            "window_start": _naive_utc(window_start) if window_start else None,
            "status": "loaded",
            "sessions": split.sessions,
            **{tables.rows_column(t): outcome.rows[t.name] for t in tables.TABLES},
            "rejects": split.rejects,
            "lines_read": split.lines,
            "blank_lines": split.blank_lines,
            "repeats": split.repeats,
            "horizon": split.horizon,
            "split_seconds": split.seconds,
            "load_seconds": outcome.seconds,
            "error": None,
            "failed_since": None,
            tables.UNKNOWN_KEYS_COLUMN: ledger.counts_json(split.unknown_keys),
            tables.MISSING_KEYS_COLUMN: ledger.counts_json(split.missing_keys),
            "sha256": split.sha256,
            "source_version": version,
            "replaced_sha256": replaced_sha256,
            "replaced_at": replaced_at,
            "load_token": token,
            "attempts": 1,
        }
        ledger.write(cur, ledger.LOADED, values)
        return replaced

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


def _naive_utc(moment: datetime) -> datetime:
    """A DATETIME parameter: UTC, without tzinfo (the session's time zone is UTC)."""
    return to_utc(moment).replace(tzinfo=None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MySQLdb.Error) and len(exc.args) >= 2:
        return f"MySQL error {exc.args[0]}: {exc.args[1]}"
    return str(exc) or exc.__class__.__name__
