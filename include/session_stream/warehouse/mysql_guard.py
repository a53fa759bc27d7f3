"""What our MySQL connections refuse: sending a file they did not ask to load, and going on
without the TLS they were told to require.

LOAD DATA LOCAL sends the server only the file its own statement names.

In the MySQL protocol the SERVER names the file a client sends for LOAD DATA LOCAL: any server
the loader connects to (a hostile one, a compromised one, or anyone in the middle of a connection
without verified TLS) can answer any query with "send me /home/airflow/.ssh/id_rsa", and a client
with local-infile on sends it. What the client libraries offer against that:

- MySQL's libmysqlclient >= 8.0.21: MYSQL_OPT_LOAD_DATA_LOCAL_DIR (mysqlclient's
  `local_infile_dir`), which restricts the files sent to one folder. MariaDB Connector/C, which
  Debian's and this project's mysqlclient link, has no such option: mysqlclient then raises
  NotSupportedError for `local_infile_dir`.
- MariaDB Connector/C >= 3.1.10: local_infile=2 ("auto"), which accepts a file request only in
  answer to a statement that starts with LOAD. It does not check which file is asked for.
- Both libraries: mysql_set_local_infile_handler(), callbacks that open, read and close the file
  the server asked for. mysqlclient does not expose it, so `GuardedConnection` installs it through
  ctypes on the connection's MYSQL handle (found at a fixed offset in the connection object and
  verified by asking the library for the handle's thread id before anything is installed).

`GuardedConnection` uses the last two. When a LOAD DATA LOCAL statement is sent, the file it names
is opened there and then, once, without following a symbolic link, and checked to be a regular
file; the callbacks hand the server that open file only when the server asks for exactly the name
the statement gave, and at most once. A request for any other name (a link's target included), a
second request, or a request during any other statement is refused before a byte is read, and a
file swapped after it was opened is never read: what is sent is what was checked. The guard is
installed before the connection's first query (mysqlclient sends SET NAMES while connecting).
Where it cannot be installed (another client library or Python), the connection logs a warning
and relies on what the library alone offers (see the README, "Security").

TLS: MariaDB Connector/C 3.3 goes on in plain text when ssl-mode=REQUIRED (it enforces TLS only
together with certificate verification), so a connection told to require TLS checks that it got
it (mysql_get_ssl_cipher) before its first query and fails otherwise.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import stat
import threading
import weakref
from dataclasses import dataclass, field

import MySQLdb.connections
from MySQLdb import _mysql

log = logging.getLogger(__name__)

# local_infile=2: MariaDB Connector/C's "auto" mode (a file request is honoured only for a
# statement starting with LOAD); libmysqlclient reads any non-zero value as "on".
LOCAL_INFILE_AUTO = 2
CR_UNKNOWN_ERROR = 2000  # the error number our callbacks report for a refused request
_PREFIX = b"LOAD DATA LOCAL INFILE '"

_INIT = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_void_p
)
_READ = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint)
_END = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_ERROR = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint)


@dataclass
class _Open:
    """One file request being answered: the open file, or why it was refused."""

    file: object | None = None
    error: str | None = None


@dataclass
class _Guard:
    """What one connection may send now: the file the running LOAD DATA statement names (its
    name as the statement gives it), opened when the statement was sent."""

    allowed: str | None = None
    opened: _Open | None = None
    refused: list[str] = field(default_factory=list)

    def arm(self, path: str | None) -> None:
        self.disarm()
        if path is not None:
            self.allowed, self.opened = path, _open_named(path)

    def disarm(self) -> None:
        opened, self.allowed, self.opened = self.opened, None, None
        if opened is not None and opened.file is not None:
            opened.file.close()

    def hand_over(self, requested: str) -> _Open:
        """The open file for a request of `requested`, once; a refusal otherwise."""
        if self.allowed is None:
            return _refuse(requested, "no LOAD DATA LOCAL statement of ours is running")
        if requested != self.allowed:
            return _refuse(requested, "not the file the running statement names")
        opened, self.opened = self.opened, None
        if opened is None:
            return _refuse(requested, "it was sent once already for this statement")
        if opened.file is None:
            return _refuse(requested, opened.error or "it could not be opened")
        return opened


_guards: dict[int, _Guard] = {}
_requests: dict[int, _Open] = {}
_ids = itertools.count(1)
_lock = threading.Lock()


def statement_file(query: bytes) -> str | None:
    """The file a `LOAD DATA LOCAL INFILE '<path>' ...` statement names, or None for any other.

    The path is a string literal as MySQLdb writes it: backslash escapes, or a doubled quote when
    the server runs with NO_BACKSLASH_ESCAPES.
    """
    if not query.startswith(_PREFIX):
        return None
    rest, out, i = query[len(_PREFIX) :], bytearray(), 0
    escapes = {ord("0"): 0, ord("n"): 10, ord("r"): 13, ord("Z"): 26}
    while i < len(rest):
        c = rest[i]
        if c == 0x5C and i + 1 < len(rest):  # a backslash escape
            out.append(escapes.get(rest[i + 1], rest[i + 1]))
            i += 2
        elif c == 0x27 and rest[i + 1 : i + 2] == b"'":  # a doubled quote
            out.append(c)
            i += 2
        elif c == 0x27:  # the closing quote
            return os.fsdecode(bytes(out))
        else:
            out.append(c)
            i += 1
    return None


def _refuse(requested: str, why: str) -> _Open:
    message = (
        f"refused the MySQL server's request for local file {requested!r} ({why}): "
        "session-stream sends only the staged file its LOAD DATA statement names"
    )
    log.error("%s", message)
    return _Open(error=message)


def _open_named(path: str) -> _Open:
    """The file a statement names, opened without following a symbolic link (O_NOFOLLOW) and
    without blocking on a FIFO, and kept only if what was opened is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            return _Open(error="a symbolic link, never followed")
        return _Open(error=f"cannot open it: {exc.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return _Open(error="not a regular file")
        os.set_blocking(fd, True)
        file, fd = os.fdopen(fd, "rb"), None
        return _Open(file=file)
    finally:
        if fd is not None:
            os.close(fd)


@_INIT
def _init(handle_out, filename, userdata):
    try:
        requested = os.fsdecode(filename or b"")
        with _lock:
            guard = _guards.get(userdata or 0)
        if guard is None:
            state = _refuse(requested, "the connection has no guard")
        else:
            state = guard.hand_over(requested)
            if state.file is None:
                guard.refused.append(requested)
        key = next(_ids)
        with _lock:
            _requests[key] = state
        handle_out[0] = key
        return 0 if state.file is not None else 1
    except BaseException:  # an exception must never read as "go ahead": refuse
        log.exception("LOAD DATA LOCAL guard failed; the request is refused")
        handle_out[0] = None
        return 1


def _request(handle) -> _Open | None:
    with _lock:
        return _requests.get(handle or 0)


@_READ
def _read(handle, buf, size):
    try:
        state = _request(handle)
        if state is None or state.file is None:
            return -1
        data = state.file.read(size)
        ctypes.memmove(buf, data, len(data))
        return len(data)
    except BaseException as exc:
        if state is not None:
            state.error = f"reading the staged file failed: {exc}"
        return -1


@_END
def _end(handle):
    try:
        with _lock:
            state = _requests.pop(handle or 0, None)
        if state is not None and state.file is not None:
            state.file.close()
    except BaseException:
        log.exception("closing a LOAD DATA LOCAL file failed")


@_ERROR
def _error(handle, buf, size):
    try:
        state = _request(handle)
        message = (state.error if state else None) or "LOAD DATA LOCAL request refused"
        data = message.encode("utf-8", "replace")[: max(0, size - 1)] + b"\0"
        ctypes.memmove(buf, data, len(data))
    except BaseException:
        pass
    return CR_UNKNOWN_ERROR


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_CAPSULE_NAME = b"_mysql.connection.native_connection"
TLS_MODES = ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
CR_SSL_CONNECTION_ERROR = 2026


def _client_library():
    """The C client library mysqlclient is linked with (its symbols resolve through _mysql)."""
    lib = ctypes.CDLL(_mysql.__file__)
    lib.mysql_thread_id.restype = ctypes.c_ulong
    lib.mysql_thread_id.argtypes = [ctypes.c_void_p]
    lib.mysql_get_ssl_cipher.restype = ctypes.c_char_p
    lib.mysql_get_ssl_cipher.argtypes = [ctypes.c_void_p]
    lib.mysql_set_local_infile_handler.restype = None
    lib.mysql_set_local_infile_handler.argtypes = [
        ctypes.c_void_p,
        _INIT,
        _READ,
        _END,
        _ERROR,
        ctypes.c_void_p,
    ]
    return lib


_warned = False


def _warn_unguarded(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "cannot restrict LOAD DATA LOCAL to the staged files with this MySQL client library "
            "(%s): a hostile MySQL server could ask for other files; use verified TLS "
            "(ssl-mode=VERIFY_IDENTITY) to a server you trust",
            reason,
        )


def _requires_tls(kwargs: dict) -> bool:
    mode = str(kwargs.get("ssl_mode") or "").upper()
    return mode in TLS_MODES or kwargs.get("ssl") is True


class GuardedConnection(MySQLdb.connections.Connection):
    """A MySQLdb connection whose LOAD DATA LOCAL sends only the file the running statement
    names, and which fails when it was told to require TLS and did not get it."""

    _guard_key: int | None = None
    _handle: int | None = None

    def __init__(self, *args, **kwargs):
        self._tls_required = _requires_tls(kwargs)
        super().__init__(*args, **kwargs)

    def set_character_set(self, charset, collation=None):
        # Connection.__init__ calls this right after connecting: the first query it sends.
        self._install_guard()
        if self._tls_required and not self.tls_cipher():
            raise MySQLdb.OperationalError(
                CR_SSL_CONNECTION_ERROR,
                "TLS/SSL error: the server did not start TLS, which the connection's ssl-mode requires",
            )
        super().set_character_set(charset, collation)

    def _native(self):
        """(the client library, this connection's MYSQL*), or (None, None) when unavailable."""
        if self._handle is None:
            try:
                lib = _client_library()
                handle = _capsule_pointer(self._get_native_connection(), _CAPSULE_NAME)
                if not handle or lib.mysql_thread_id(handle) != self.thread_id():
                    raise RuntimeError("the connection's MYSQL handle does not answer as expected")
            except (OSError, AttributeError, ValueError, RuntimeError) as exc:
                self._handle = 0
                _warn_unguarded(str(exc))
                return None, None
            self._lib, self._handle = lib, handle
        return (self._lib, self._handle) if self._handle else (None, None)

    def tls_cipher(self) -> str | None:
        """The TLS cipher in use, or None for a connection in plain text."""
        lib, handle = self._native()
        if lib is None:
            return None
        cipher = lib.mysql_get_ssl_cipher(handle)
        return cipher.decode() if cipher else None

    def _install_guard(self) -> None:
        if self._guard_key is not None:
            return
        lib, handle = self._native()
        if lib is None:
            self._guard_key = 0
            return
        key = next(_ids)
        with _lock:
            _guards[key] = _Guard()
        weakref.finalize(self, _forget_guard, key)
        lib.mysql_set_local_infile_handler(handle, _init, _read, _end, _error, key)
        self._guard_key = key

    @property
    def guarded(self) -> bool:
        return bool(self._guard_key)

    @property
    def refused_files(self) -> list[str]:
        """Files the server asked for and this connection refused to send."""
        guard = _guards.get(self._guard_key or 0)
        return list(guard.refused) if guard else []

    def query(self, query):
        if isinstance(query, bytearray):
            query = bytes(query)
        self._install_guard()
        guard = _guards.get(self._guard_key or 0)
        if guard is None:
            return super().query(query)
        guard.arm(statement_file(query) if isinstance(query, bytes) else None)
        try:
            return super().query(query)
        finally:
            guard.disarm()


def _forget_guard(key: int) -> None:
    with _lock:
        guard = _guards.pop(key, None)
    if guard is not None:
        guard.disarm()
