"""The loader's connection to the warehouse: checked when it opens, kept alive, under one retry policy.

A connection opens checked (LOAD DATA LOCAL allowed, tables present, no migration pending) and
reads once what the load needs of the server (the load lock's name, ServerLimits). Deadlocks,
lock waits and a lost connection are retried, reconnecting included, within one policy
(`_with_retries`); every attempt runs under a Watch that logs each minute what it waits for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import MySQLdb
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from session_stream.errors import ConfigError, UnreachableError
from session_stream.warehouse import db as dbmod
from session_stream.warehouse import migrations, schema
from session_stream.warehouse.merge import ServerLimits
from session_stream.warehouse.waits import Watch

log = logging.getLogger(__name__)

# Server gone, lost connection, and MySQL 8's "disconnected because of inactivity" (wait_timeout).
LOST_CONNECTION = {2006, 2013, 4031}
ER_LOCK_WAIT_TIMEOUT = 1205
RETRYABLE = {ER_LOCK_WAIT_TIMEOUT, 1213} | LOST_CONNECTION  # + deadlock
# How long one file's retries may go on.
RETRY_SECONDS = 5 * 60


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, MySQLdb.OperationalError) and exc.args and exc.args[0] in RETRYABLE


def describe(exc: BaseException) -> str:
    """A MySQL error as one line: its code and message."""
    if isinstance(exc, MySQLdb.Error) and len(exc.args) >= 2:
        return f"MySQL error {exc.args[0]}: {exc.args[1]}"
    return str(exc) or exc.__class__.__name__


class LoadConnection:
    """One connection to the warehouse for loading. `connect()` returns a MySQLdb connection
    that allows LOAD DATA LOCAL (`db.connect(url)`, or the DAG's `mysql_connect`)."""

    def __init__(
        self,
        connect: Callable[[], object],
        *,
        attempts: int = 5,
        retry_seconds: float = RETRY_SECONDS,
    ):
        self._connect = connect
        self._conn = None
        self.attempts = attempts
        self.retry_seconds = retry_seconds

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
            # Loads are serialised by the named lock, so READ COMMITTED loses nothing and spares
            # InnoDB gap locks (a few percent of LOAD DATA's cost). Statement-based binary logging
            # cannot log InnoDB writes under it: keep the default there.
            if not (int(log_bin or 0) and str(binlog_format).upper() == "STATEMENT"):
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.close()
            self.limits = ServerLimits.of(schema.key_collation(conn), max_heap, max_packet)
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
                log.info("the MySQL connection was dropped (%s); reconnecting", describe(exc))
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
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.retry_seconds),
            wait=wait_exponential(multiplier=0.5, max=30),
            before_sleep=lambda rs: (
                log.warning("%s: %s, retrying", what, describe(rs.outcome.exception())),
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
                raise UnreachableError(f"{what}: lost the MySQL server ({describe(exc)})") from exc
            raise
