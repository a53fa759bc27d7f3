"""MySQL connections: URL parsing, connecting with LOAD DATA LOCAL enabled, and clear errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import MySQLdb

from .errors import ConfigError, UnreachableError

DB_ENV = "SESSION_STREAM_DB"
URL_FORM = "mysql://user:password@host:port/database"

# Server error codes a user can act on.
ER_ACCESS_DENIED = (1045, 1698)
ER_BAD_DB = 1049
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_CONNECTION_ERROR = 2002


@dataclass(frozen=True)
class DbUrl:
    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str | None) -> DbUrl:
        url = url or os.environ.get(DB_ENV)
        if not url:
            raise ConfigError(f"no database given: pass --db {URL_FORM} or set {DB_ENV}")
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb", "mysql+mysqldb"):
            raise ConfigError(
                f"database URL must look like {URL_FORM}, got scheme {parts.scheme!r}"
            )
        database = parts.path.lstrip("/")
        if not parts.hostname or not database or "/" in database:
            raise ConfigError(
                f"database URL must look like {URL_FORM} (host and database name are required)"
            )
        try:
            port = parts.port or 3306
        except ValueError as exc:
            raise ConfigError(f"database URL has a bad port: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
        )

    def __str__(self) -> str:  # never shows the password
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def connect(url: DbUrl | str | None, *, database: bool = True) -> MySQLdb.connections.Connection:
    """Open a connection in UTC with utf8mb4 and LOAD DATA LOCAL allowed on the client side."""
    if not isinstance(url, DbUrl):
        url = DbUrl.parse(url)
    kwargs = dict(
        host=url.host,
        port=url.port,
        user=url.user,
        password=url.password,
        charset="utf8mb4",
        local_infile=True,
        autocommit=True,
        connect_timeout=10,
    )
    if database:
        kwargs["database"] = url.database
    try:
        conn = MySQLdb.connect(**kwargs)
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
    return ConfigError(f"cannot connect to {url}: {exc.args[-1] if exc.args else exc}")


def prepare_session(conn) -> None:
    """Session settings every connection of ours needs, whoever opened it (CLI or Airflow hook)."""
    cur = conn.cursor()
    cur.execute("SET NAMES utf8mb4")
    cur.execute("SET time_zone = '+00:00'")
    # Strict mode makes a value that does not fit an error, never a silent truncation.
    cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_ZERO_DATE'")
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
