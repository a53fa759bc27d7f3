"""Load split files into MySQL: LOAD DATA LOCAL INFILE, newest-wins merge, ledger, rejects.

A source file's rows, its rejects and its ledger row commit together or not at all, so a crash
at any point leaves the database as it was before that file. New files that were split while the
last load ran commit together, in one transaction (load_many): a session the next files send
again is then written once, not written and replaced; if that transaction fails, each file loads
on its own.

Newest wins (CONTRACT): merge.py merges the file's rows into the final tables, under the lock
and in the transaction this module holds.

Loads of one database are serialised by a named lock (GET_LOCK), so concurrent DAG runs,
backfills and CLI loads each load a file once and end as if run one after another. Every wait is
bounded and logged every minute with what it waits for (waits.py); deadlocks, lock waits and a
lost connection are retried, reconnecting included, within one policy (load_connection.py).

A file is known by its content (ledger.py): loaded again under the same name and size, it is
skipped only when its SHA-256 is the one the ledger has; otherwise it loads, and its ledger row
says which copy it replaced.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import MySQLdb

from session_stream import tables
from session_stream.errors import ConfigError, LoadError
from session_stream.split.layout import SplitResult
from session_stream.sql import quote
from session_stream.utc import to_utc
from session_stream.warehouse import ledger
from session_stream.warehouse.load_connection import (
    ER_LOCK_WAIT_TIMEOUT,
    RETRY_SECONDS,
    LoadConnection,
    describe,
    retryable,
)
from session_stream.warehouse.merge import (
    DuplicateSessions,
    FileOutcome,
    beaten_within,
    clear_temp_tables,
    merge,
    prepare_temp_tables,
)
from session_stream.warehouse.waits import LockWaitError, minutes, named_lock

log = logging.getLogger(__name__)

ER_LOCAL_INFILE = {1148, 2068, 3948}  # LOAD DATA LOCAL refused by client or server
# How long a load waits for the load lock (another load of the database holds it for seconds;
# half an hour means that load is stuck); how long one file's retries may go on: RETRY_SECONDS.
LOCK_TIMEOUT = 30 * 60
# Files loaded in one transaction (Loader.load_many) hold this many sessions at most together:
# beaten_within keeps a hash of each of their session_ids (~100 bytes a session).
GROUP_SESSIONS = 200_000


@dataclass(frozen=True)
class _FileLoad:
    """One load of one file, as Loader.load was asked for it: what its attempts share."""

    split: SplitResult
    size: int
    window_start: datetime | None
    force: bool
    version: str | None  # the drop's version of the file (an S3 ETag, an mtime)
    token: str  # the load_token its ledger row gets (see Loader.load)


def is_loaded(entry: dict | None, size: int, identity: str | None = None) -> bool:
    """Whether a ledger row says the file is loaded as it is now (same size, and same content
    as far as `identity` tells: see ledger.same_content): then it is skipped."""
    return ledger.same_content(entry, size, identity)


class Loader(LoadConnection):
    """Loads split files into one database, over a LoadConnection (load_connection.py)."""

    def __init__(
        self,
        connect: Callable[[], object],
        *,
        lock_timeout: int = LOCK_TIMEOUT,
        attempts: int = 5,
        retry_seconds: float = RETRY_SECONDS,
        token_prefix: str = "",
    ):
        super().__init__(connect, attempts=attempts, retry_seconds=retry_seconds)
        # The load_token of each file this loader loads starts with it (a DAG run's run key:
        # dag_tasks.run_key), so a run's report counts the rows its own loads wrote.
        self.token_prefix = token_prefix[:16]
        self.lock_timeout = lock_timeout

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
        job = _FileLoad(split, size, window_start, force, version, self._token())
        done: dict = {}
        try:
            outcome = self._with_retries(
                lambda conn: self._load_locked(conn, job, done),
                name,
                watched=False,
            )
        except ConfigError:
            raise
        except (LoadError, MySQLdb.Error, OSError) as exc:
            self._reset()
            outcome = self._failed(job, exc)
        outcome.seconds = round(time.perf_counter() - started, 3)
        return outcome

    def _failed(self, job: _FileLoad, exc: BaseException) -> FileOutcome:
        """A file that did not load: logged and recorded failed (the next run retries it). A
        server that refuses LOAD DATA LOCAL is a ConfigError: no file can load."""
        name = job.split.source_name
        message = describe(exc)
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
        self.record_failure(name, job.size, job.window_start, message)
        return FileOutcome(name, "failed", error=message)

    def load_many(self, files: list[tuple], *, force: bool = False) -> list[FileOutcome]:
        """Load consecutive files of a drop in order, as load() would one by one: each file is
        (split, size, window_start, version). Files new to the ledger load in one transaction,
        so that a session sent again by a later file of them (a window's open sessions are sent
        again, closed, in the next files) is written once, in its newest version, instead of
        written and then deleted; each file keeps its own ledger row, counts and rejects. When
        that transaction fails for any reason, or a file is in the ledger already (loaded,
        failed or ignored before), each file loads on its own, so a bad file fails alone."""
        if (
            len(files) > 1
            and not force
            and len({f[0].source_name for f in files}) == len(files)
            and sum(f[0].sessions for f in files) <= GROUP_SESSIONS
        ):
            jobs = [
                _FileLoad(split, size, window_start, False, version, self._token())
                for split, size, window_start, version in files
            ]
            what = f"{jobs[0].split.source_name} and {len(jobs) - 1} more file(s)"
            done: dict = {}
            try:
                outcomes = self._with_retries(
                    lambda conn: self._load_group_locked(conn, jobs, done), what, watched=False
                )
            except ConfigError:
                raise
            except (LoadError, MySQLdb.Error, OSError) as exc:
                self._reset()
                if isinstance(exc, LockWaitError) or retryable(exc):
                    # Not the files' doing (the lock or the server stayed away past every
                    # retry): each would wait as long again on its own.
                    return [self._failed(job, exc) for job in jobs]
                log.info(
                    "%s: not loaded together (%s); loading each on its own", what, describe(exc)
                )
                outcomes = None
            if outcomes is not None:
                return outcomes
        return [
            self.load(split, size=size, window_start=window_start, force=force, version=version)
            for split, size, window_start, version in files
        ]

    def _token(self) -> str:
        # One token per load of a file, written with its ledger row: an attempt that finds it
        # there knows that an earlier attempt of this very load committed (its answer lost).
        return (self.token_prefix + uuid.uuid4().hex)[:32]

    def _load_group_locked(
        self, conn, jobs: list[_FileLoad], done: dict
    ) -> list[FileOutcome] | None:
        """Load_many's transaction: None when a file of the group is in the ledger already."""
        names = [job.split.source_name for job in jobs]
        with named_lock(conn, self.lock_name, self.lock_timeout, names[0]), self.watch:
            cur = conn.cursor()
            try:
                previous = ledger.read(conn, names)
                if any(row.get("load_token") == jobs[0].token for row in previous.values()):
                    return done["outcomes"]  # committed in an earlier attempt (answer lost)
                if previous:
                    return None  # a reload, a retry, a skip: load() judges each on its own
                beaten = beaten_within([job.split for job in jobs])
                # Made before the transaction, as for one file (MySQL with GTIDs refuses CREATE
                # TEMPORARY TABLE inside one under statement logging), and emptied per file.
                prepare_temp_tables(cur, max(job.split.sessions for job in jobs), self.limits)
                conn.begin()
                try:
                    outcomes = []
                    for job, lost in zip(jobs, beaten, strict=True):
                        started = time.perf_counter()
                        if outcomes:
                            clear_temp_tables(cur)
                        outcome = merge(cur, job.split, self.limits, started, beaten=lost)
                        self._write_ledger(cur, job, outcome, None)
                        outcomes.append(outcome)
                    done["outcomes"] = outcomes
                    conn.commit()
                    return outcomes
                except BaseException:
                    conn.rollback()
                    raise
            finally:
                cur.close()

    def _load_locked(self, conn, job: _FileLoad, done: dict) -> FileOutcome:
        split, size, force, version = job.split, job.size, job.force, job.version
        name = split.source_name
        # named_lock logs its own wait each minute; the watch covers the rest, under the lock.
        with named_lock(conn, self.lock_name, self.lock_timeout, name), self.watch:
            cur = conn.cursor()
            try:
                previous = ledger.read(conn, [name]).get(name)
                if previous and previous.get("load_token") == job.token:
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
                    prepare_temp_tables(cur, split.sessions, self.limits)
                    conn.begin()
                    try:
                        outcome = merge(cur, split, self.limits, started, look_up_all)
                        outcome.replaced_copy = self._write_ledger(cur, job, outcome, previous)
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

    def _write_ledger(self, cur, job: _FileLoad, outcome, previous) -> str | None:
        """The file's ledger row (ledger.LOADED), in the file's transaction. Returns what it says
        about an earlier copy of the file this load replaced, if any."""
        split, size, window_start = job.split, job.size, job.window_start
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
            "source_version": job.version,
            "replaced_sha256": replaced_sha256,
            "replaced_at": replaced_at,
            "load_token": job.token,
            "attempts": 1,
        }
        ledger.write(cur, ledger.LOADED, values)
        return replaced


def _naive_utc(moment: datetime) -> datetime:
    """A DATETIME parameter: UTC, without tzinfo (the session's time zone is UTC)."""
    return to_utc(moment).replace(tzinfo=None)
