"""Waiting on MySQL without silence: every wait bounded, logged every minute with what it waits
for and who holds it, and a failure past the bound that names the blocker.

- `named_lock`: GET_LOCK a minute at a time, naming the lock's holder (IS_USED_LOCK and the
  processlist) in a log line after each minute, and failing with LockWaitError past its bound.
- `Watch`: while a piece of work runs on a connection, a thread asks the server every minute,
  on a connection of its own, what that connection is doing; if it waits for a lock, whose
  (`blocker`), and logs it. `Watch.last` says it for the error when the wait ends in failure.

The engine's Loader uses both; the DAG's tasks get the same log lines through it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import MySQLdb

from session_stream.errors import LoadError

log = logging.getLogger(__name__)

INTERVAL = 60.0  # seconds between two log lines of one wait
INFO_CHARS = 100  # of a statement, in a log line


class LockWaitError(LoadError):
    """A lock was not had within its bound; the message names who held it."""


def minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")


def describe_connection(cur, thread_id) -> str:
    """`connection 12 (loader@10.0.0.5, idle 75 s)` or `(..., running `LOAD DATA ...` for 8 s)`,
    from the processlist; just the id when the server does not show it."""
    if not thread_id:
        return "no connection (the lock is free now)"
    try:
        cur.execute(
            "SELECT USER, HOST, DB, COMMAND, TIME, STATE, LEFT(INFO, %s)"
            " FROM information_schema.PROCESSLIST WHERE ID = %s",
            (INFO_CHARS, int(thread_id)),
        )
        row = cur.fetchone()
    except MySQLdb.Error:
        row = None
    if row is None:
        return f"connection {thread_id}"
    user, host, _db, command, seconds, state, info = row
    if command == "Sleep" or not info:
        doing = f"idle {seconds} s"
    else:
        doing = f"running `{' '.join(str(info).split())}` for {seconds} s"
        if state:
            doing += f" ({state})"
    return f"connection {thread_id} ({user}@{host}, {doing})"


def _first(cur, queries: list[tuple[str, tuple]]) -> list[tuple]:
    """The rows of the first query this server can answer (tables differ between MariaDB and
    MySQL, and some need a plugin or performance_schema)."""
    for sql, args in queries:
        try:
            cur.execute(sql, args)
            return list(cur.fetchall())
        except MySQLdb.Error:
            continue
    return []


def blocker(cur, thread_id: int, lock_name: str | None = None) -> str | None:
    """What the connection `thread_id` is waiting for, and who holds it, as far as the server
    tells; or what it is doing when it is not waiting; None when it runs no statement (the
    client is busy with something else: no wait on MySQL)."""
    cur.execute(
        "SELECT DB, COMMAND, TIME, STATE, LEFT(INFO, %s)"
        " FROM information_schema.PROCESSLIST WHERE ID = %s",
        (2 * INFO_CHARS, int(thread_id)),
    )
    row = cur.fetchone()
    if row is None:
        return "a statement of a connection the server no longer lists"
    database, command, seconds, state, info = row
    if command == "Sleep" or not info:
        return None
    state = state or ""
    statement = f"`{' '.join(str(info).split())}`" if info else "its statement"
    if state == "User lock" and lock_name:
        cur.execute("SELECT IS_USED_LOCK(%s)", (lock_name,))
        holder = cur.fetchone()[0]
        return f"the lock {lock_name!r}, held by {describe_connection(cur, holder)}"
    if "metadata lock" in state or "table level lock" in state:
        holders = _first(
            cur,
            [
                # MariaDB with the metadata_lock_info plugin
                (
                    "SELECT DISTINCT m.THREAD_ID FROM information_schema.METADATA_LOCK_INFO m"
                    " JOIN information_schema.METADATA_LOCK_INFO w"
                    " ON w.TABLE_SCHEMA = m.TABLE_SCHEMA AND w.TABLE_NAME = m.TABLE_NAME"
                    " WHERE w.THREAD_ID = %s AND m.THREAD_ID <> %s",
                    (thread_id, thread_id),
                ),
                # MySQL 8 (performance_schema, on by default)
                (
                    "SELECT DISTINCT t.PROCESSLIST_ID FROM performance_schema.metadata_locks g"
                    " JOIN performance_schema.metadata_locks w ON w.OBJECT_SCHEMA = g.OBJECT_SCHEMA"
                    " AND w.OBJECT_NAME = g.OBJECT_NAME AND w.LOCK_STATUS = 'PENDING'"
                    " JOIN performance_schema.threads t ON t.THREAD_ID = g.OWNER_THREAD_ID"
                    " JOIN performance_schema.threads me ON me.THREAD_ID = w.OWNER_THREAD_ID"
                    " WHERE g.LOCK_STATUS = 'GRANTED' AND me.PROCESSLIST_ID = %s",
                    (thread_id,),
                ),
            ],
        )
        what = f"a table lock (MySQL: {state!r}) for {statement}"
        if holders:
            return f"{what}, held by " + "; ".join(describe_connection(cur, h) for (h,) in holders)
        # The server does not say who holds it: whom to ask are the connections that have not
        # run a statement since before this wait began (a LOCK TABLES holder sits idle), those
        # on this database first, the most recently active first.
        cur.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID NOT IN (%s, CONNECTION_ID())"
            " AND COMMAND NOT IN ('Daemon', 'Binlog Dump') AND TIME >= %s"
            " ORDER BY DB <=> %s DESC, COMMAND = 'Sleep' DESC, TIME LIMIT 3",
            (thread_id, int(seconds), database),
        )
        others = [describe_connection(cur, i) for (i,) in cur.fetchall()]
        return (
            f"{what}; this server does not say who holds it (MariaDB without the"
            " metadata_lock_info plugin): "
            + (
                "; ".join(f"maybe {o}" for o in others)
                if others
                else "no other connection is old enough"
            )
        )
    waits = _first(
        cur,
        [
            # MariaDB and MySQL 5.7: InnoDB's own tables
            (
                "SELECT b.trx_mysql_thread_id FROM information_schema.INNODB_LOCK_WAITS w"
                " JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id"
                " JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id"
                " WHERE r.trx_mysql_thread_id = %s",
                (thread_id,),
            ),
            ("SELECT blocking_pid FROM sys.innodb_lock_waits WHERE waiting_pid = %s", (thread_id,)),
        ],
    )
    if waits:
        return f"row locks for {statement}, held by " + "; ".join(
            describe_connection(cur, h) for (h,) in waits
        )
    return f"MySQL to finish {statement} ({state or 'working'}, {seconds} s so far)"


class Watch:
    """Logs, every `interval` seconds while the block runs, what the connection `thread_id` is
    waiting for (see `blocker`), asking on a connection of its own made by `connect` (opened at
    the first minute only). `last` keeps the latest answer."""

    def __init__(
        self,
        connect: Callable[[], object],
        thread_id: int,
        what: str,
        *,
        lock_name: str | None = None,
        interval: float | None = None,
    ):
        self.connect, self.thread_id, self.what = connect, thread_id, what
        self.lock_name, self.interval = lock_name, interval or INTERVAL
        self.last: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None

    def __enter__(self) -> Watch:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="mysql-wait-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            waited = minutes(time.monotonic() - self.started)
            try:
                if self._conn is None:
                    self._conn = self.connect()
                cur = self._conn.cursor()
                found = blocker(cur, self.thread_id, self.lock_name)
                cur.close()
            except Exception as exc:  # noqa: BLE001 - a watch must never fail the work it watches
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                self._conn = None
                log.warning(
                    "%s: still waiting after %s; cannot ask MySQL what for (%s)",
                    self.what,
                    waited,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                continue
            if self._stop.is_set() or found is None:
                continue
            self.last = found
            log.warning("%s: waiting %s for %s", self.what, waited, found)


@contextlib.contextmanager
def named_lock(
    conn,
    name: str,
    timeout: float,
    what: str,
    *,
    interval: float | None = None,
) -> Iterator[None]:
    """Hold the named lock `name` (GET_LOCK) for the block. Waits at most `timeout` seconds, a
    minute at a time, logging after each minute whose connection holds it; past the bound,
    raises LockWaitError naming the holder."""
    interval = interval or INTERVAL
    cur = conn.cursor()
    waited = 0.0
    started = time.monotonic()
    while True:
        step = max(1, int(min(interval, timeout - waited)))
        cur.execute("SELECT GET_LOCK(%s, %s)", (name, step))
        (got,) = cur.fetchone()
        if got == 1:
            break
        waited = time.monotonic() - started
        cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
        holder = describe_connection(cur, cur.fetchone()[0])
        if got is None:  # an error on the server (killed): not a timeout
            raise LoadError(f"{what}: MySQL could not take the lock {name!r} ({holder})")
        if waited >= timeout:
            raise LockWaitError(
                f"{what}: waited {minutes(waited)} for the lock {name!r} (another load of this"
                f" database), held by {holder}; nothing was loaded, the next run retries it"
            )
        log.warning(
            "%s: waiting %s for the lock %r, held by %s", what, minutes(waited), name, holder
        )
    try:
        yield
    finally:
        try:
            cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
        except MySQLdb.Error:
            pass  # the connection is gone; the server has released the lock with it
        cur.close()
