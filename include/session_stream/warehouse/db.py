"""MySQL connections: URL parsing, connecting with LOAD DATA LOCAL enabled, and clear errors.

The URL may ask for TLS with MySQL's own option names as query parameters:
`mysql://user@host:3306/warehouse?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ssl/mysql-ca.pem`.
Connections are `mysql_guard.GuardedConnection`s: LOAD DATA LOCAL sends only the file the running
statement names, and a connection told to require TLS fails without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import MySQLdb
import MySQLdb.converters
from MySQLdb.constants import FIELD_TYPE

from session_stream.errors import ConfigError, UnreachableError
from session_stream.warehouse.mysql_guard import LOCAL_INFILE_AUTO, GuardedConnection

DB_ENV = "SESSION_STREAM_DB"
DB_PASSWORD_ENV = "SESSION_STREAM_DB_PASSWORD"
URL_FORM = "mysql://user:password@host:port/database"
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
# URL query parameter -> key of mysqlclient's `ssl` dict (mysql_ssl_set)
SSL_FILES = {
    "ssl-ca": "ca",
    "ssl-capath": "capath",
    "ssl-cert": "cert",
    "ssl-key": "key",
    "ssl-cipher": "cipher",
}
ENCODE_HINT = (
    "percent-encode '/', '?', '#', '@' and ':' in the user name and password (p@ss/w -> p%40ss%2Fw), "
    f"or leave the password out of the URL and set {DB_PASSWORD_ENV}"
)

# Bounds on every wait for the server (README, "Operating it"). A connection that cannot be made
# in CONNECT_TIMEOUT fails; a statement whose answer does not come in READ_TIMEOUT (a hung server,
# a network that dropped the connection without a word) fails as a lost connection; a statement
# waits at most LOCK_WAIT_TIMEOUT for a table lock another client holds (the server's default is a
# day on MariaDB, a year on MySQL) and then fails with error 1205, naming the wait.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 3600
WRITE_TIMEOUT = 600
LOCK_WAIT_TIMEOUT = 600

# Server error codes a user can act on.
ER_ACCESS_DENIED = (1045, 1698)
ER_BAD_DB = 1049
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_CONNECTION_ERROR = 2002
CR_SSL_CONNECTION_ERROR = 2026


def check_ssl_mode(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    mode = str(value).strip().upper().replace("-", "_")
    if mode not in SSL_MODES:
        raise ConfigError(f"ssl-mode must be one of {', '.join(SSL_MODES)}, got {value!r}")
    return mode


def tls_settings(ssl_mode: str | None, ssl: dict | None) -> tuple[str | None, tuple]:
    """(ssl-mode, ssl files) as the driver gets them. As with MySQL's own clients, a CA without
    an ssl-mode means VERIFY_CA: a CA is given to verify the server, not to be ignored."""
    files = {k: str(v) for k, v in (ssl or {}).items() if v not in (None, "")}
    unknown = sorted(set(files) - set(SSL_FILES.values()))
    if unknown:
        raise ConfigError(
            f"unknown TLS setting {unknown[0]!r}: use {', '.join(SSL_FILES.values())} (ssl-ca, ... in a URL)"
        )
    mode = check_ssl_mode(ssl_mode)
    if mode is None and ("ca" in files or "capath" in files):
        mode = "VERIFY_CA"
    return mode, tuple(sorted(files.items()))


@dataclass(frozen=True)
class DbUrl:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    ssl_mode: str | None = None  # one of SSL_MODES
    ssl: tuple[tuple[str, str], ...] = ()  # (key, value) of mysqlclient's ssl dict: ca, cert, ...

    @classmethod
    def parse(cls, url: str | None, *, password: str | None = None) -> DbUrl:
        """A URL like URL_FORM. The password: `password` when given, else the URL's, else
        $SESSION_STREAM_DB_PASSWORD. Error messages never quote the URL: it may hold a password."""
        url = url or os.environ.get(DB_ENV)
        if not url:
            raise ConfigError(f"no database given: pass --db {URL_FORM} or set {DB_ENV}")
        try:
            parts = urlsplit(url.strip())
            hostname, username, url_password = parts.hostname, parts.username, parts.password
        except ValueError as exc:  # "Invalid IPv6 URL": an unclosed '[' in the host
            raise ConfigError(
                f"the database URL cannot be read ({exc}): it must look like {URL_FORM}; "
                f"{ENCODE_HINT}"
            ) from None
        if parts.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
            raise ConfigError(
                f"database URL must look like {URL_FORM}, got scheme {parts.scheme!r}"
            )
        if "@" not in parts.netloc and "@" in (
            parts.path + parts.fragment + parts.query.split("=", 1)[0]
        ):
            # The userinfo ended early at a '/', '?' or '#' that is part of the password.
            raise ConfigError(f"the database URL cannot be read: {ENCODE_HINT}")
        database = parts.path.lstrip("/")
        if not hostname or not database or "/" in database:
            raise ConfigError(
                f"database URL must look like {URL_FORM} (host and database name are required)"
            )
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError(
                f"the database URL's port is not a number from 1 to 65535 ({ENCODE_HINT})"
            ) from None
        ssl_mode, ssl = None, {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            key = name.lower().replace("_", "-")
            if key == "ssl-mode":
                ssl_mode = value
            elif key in SSL_FILES:
                ssl[SSL_FILES[key]] = value
            else:
                raise ConfigError(
                    f"unknown database URL option {name!r}: use ssl-mode, {', '.join(SSL_FILES)}"
                )
        ssl_mode, ssl_files = tls_settings(ssl_mode, ssl)
        if password is None:
            password = unquote(url_password) if url_password is not None else None
        if password is None:
            password = os.environ.get(DB_PASSWORD_ENV, "")
        return cls(
            host=hostname,
            port=port,
            user=unquote(username or "root"),
            password=password,
            database=unquote(database),
            ssl_mode=ssl_mode,
            ssl=ssl_files,
        )

    def __str__(self) -> str:  # never shows the password
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def connect(
    url: DbUrl | str | None, *, database: bool = True, local_infile: bool = True
) -> MySQLdb.connections.Connection:
    """Open a connection in UTC with utf8mb4 and, unless told otherwise, LOAD DATA LOCAL allowed
    on the client side for the files our own LOAD DATA statements name (see mysql_guard)."""
    if not isinstance(url, DbUrl):
        url = DbUrl.parse(url)
    kwargs = dict(
        host=url.host,
        port=url.port,
        user=url.user,
        password=url.password,
        charset="utf8mb4",
        local_infile=LOCAL_INFILE_AUTO if local_infile else 0,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        write_timeout=WRITE_TIMEOUT,
        conv=CONVERSIONS,
    )
    if url.ssl_mode:
        kwargs["ssl_mode"] = url.ssl_mode
    if url.ssl:
        kwargs["ssl"] = dict(url.ssl)
    if database:
        kwargs["database"] = url.database
    try:
        conn = GuardedConnection(**kwargs)
    except MySQLdb.OperationalError as exc:
        raise connect_error(exc, url) from None
    prepare_session(conn)
    return conn


def connect_error(exc: MySQLdb.OperationalError, url: DbUrl) -> ConfigError:
    code = exc.args[0] if exc.args else None
    if code == ER_BAD_DB:
        return ConfigError(
            f"database {url.database!r} does not exist on {url.host}:{url.port}: "
            f"create it with CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4, then run init-db"
        )
    if code in ER_ACCESS_DENIED:
        return ConfigError(
            f"MySQL refused user {url.user!r} at {url.host}:{url.port}: check the user and password"
        )
    if code in (CR_CONN_HOST_ERROR, CR_UNKNOWN_HOST, CR_CONNECTION_ERROR):
        return UnreachableError(
            f"cannot reach MySQL at {url.host}:{url.port}: is the server running and the address right?"
        )
    if code == CR_SSL_CONNECTION_ERROR:
        return ConfigError(
            f"TLS to MySQL at {url.host}:{url.port} failed ({exc.args[-1]}): check ssl-mode and "
            "ssl-ca (the CA that signed the server's certificate) in the database URL or the "
            "connection's extras"
        )
    return ConfigError(f"cannot connect to {url}: {exc.args[-1] if exc.args else exc}")


# Strict mode makes a value that does not fit an error, never a silent truncation. MySQL 8.4
# warns (3135) when strict mode comes without NO_ZERO_DATE, NO_ZERO_IN_DATE and
# ERROR_FOR_DIVISION_BY_ZERO, which its own default sql_mode has: so do we.
SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
# The test mode that makes MariaDB act as MySQL 8.4 where it can (`make test-mysql84`): every
# session of ours gets MySQL 8.4's default sql_mode in full (ONLY_FULL_GROUP_BY too), and on
# MariaDB no table elimination, which MySQL's planner lacks. Per session: never SET GLOBAL.
AS_MYSQL84_ENV = "SESSION_STREAM_AS_MYSQL84"
MYSQL84_SQL_MODE = "ONLY_FULL_GROUP_BY," + SQL_MODE


def as_mysql84() -> bool:
    return os.environ.get(AS_MYSQL84_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _json_text(value: bytes) -> str:
    return value.decode("utf-8")


# MySQL sends JSON columns with the binary character set, so MySQLdb would return them as bytes
# (MariaDB's JSON is LONGTEXT, returned as str): decode them, so both servers give str.
CONVERSIONS = {**MySQLdb.converters.conversions, FIELD_TYPE.JSON: _json_text}


def prepare_session(conn) -> None:
    """Session settings every connection of ours needs, whoever opened it (CLI or Airflow hook)."""
    cur = conn.cursor()
    cur.execute("SET NAMES utf8mb4")
    cur.execute("SET time_zone = '+00:00'")
    if as_mysql84():
        cur.execute(f"SET SESSION sql_mode = '{MYSQL84_SQL_MODE}'")
        if "mariadb" in conn.get_server_info().lower():
            cur.execute("SET SESSION optimizer_switch = 'table_elimination=off'")
    else:
        cur.execute(f"SET SESSION sql_mode = '{SQL_MODE}'")
    # Lock waits end: metadata locks (LOCK TABLES, ALTER) after LOCK_WAIT_TIMEOUT, row locks after
    # the server's innodb_lock_wait_timeout (50 s by default) if that is shorter.
    cur.execute(
        "SET SESSION lock_wait_timeout = %s,"
        " innodb_lock_wait_timeout = LEAST(@@SESSION.innodb_lock_wait_timeout, %s)",
        (LOCK_WAIT_TIMEOUT, LOCK_WAIT_TIMEOUT),
    )
    cur.close()


def check_local_infile(conn) -> None:
    """LOAD DATA LOCAL needs the server's local_infile=ON (MySQL 8 defaults to OFF)."""
    cur = conn.cursor()
    cur.execute("SELECT @@GLOBAL.local_infile")
    (value,) = cur.fetchone()
    cur.close()
    if not int(value):
        raise ConfigError(
            "the MySQL server has local_infile=OFF, which LOAD DATA LOCAL INFILE needs: "
            "run SET GLOBAL local_infile=1 as an admin (or start mysqld with --local-infile=1)"
        )
