"""Airflow glue for the session_stream DAG: turn Variables, params and connections into the
engine's objects (drop location, staging area, loader). Called inside tasks, never at parse time.

| what            | where it comes from                                                       |
|-----------------|---------------------------------------------------------------------------|
| drop location   | param `drop_url`, else Variable `session_stream_drop_url`                 |
| SFTP login      | connection `session_stream_sftp` (login, password, extras below)          |
| S3 credentials  | connection `aws_default` (extra `endpoint_url`, `region_name`), else boto3 |
| staging area    | param `staging_url`, else Variable `session_stream_staging_url`, else a    |
|                 | folder under $AIRFLOW_HOME (fine while every task runs on one machine)    |
| MySQL           | connection `session_stream_mysql`                                         |
| drop silence    | Variable `session_stream_silence_hours` (default 6; 0 turns it off)       |

SFTP connection extras (names as in the SSH provider): `private_key` (key text), `key_file`
(path), `private_key_passphrase`, `host_key` (the server's public key, "ssh-ed25519 AAAA..."),
`known_hosts` (path), `no_host_key_check` (trust any host key: tests only).
"""

from __future__ import annotations

import os
from pathlib import Path

from session_stream import schema
from session_stream.db import DbUrl, connect_error
from session_stream.drop import DropLocation, DropUrl, open_drop
from session_stream.drop_sftp import SftpCredentials
from session_stream.errors import ConfigError
from session_stream.load import Loader
from session_stream.s3 import S3Options
from session_stream.staging import StagingArea, open_staging

DROP_URL_VARIABLE = "session_stream_drop_url"
STAGING_URL_VARIABLE = "session_stream_staging_url"
SILENCE_HOURS_VARIABLE = "session_stream_silence_hours"
DEFAULT_SILENCE_HOURS = 6.0
SFTP_CONN_ID = "session_stream_sftp"
AWS_CONN_ID = "aws_default"
MYSQL_CONN_ID = "session_stream_mysql"


def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _variable(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def drop_url(params: dict) -> str:
    url = (params.get("drop_url") or "").strip() or (_variable(DROP_URL_VARIABLE) or "").strip()
    if not url:
        raise ConfigError(
            f"no drop location: set the Airflow Variable {DROP_URL_VARIABLE} (or the run's param drop_url) "
            "to sftp://user@host/path, s3://bucket/prefix or a local folder"
        )
    return url


def staging_url(params: dict) -> str:
    url = (params.get("staging_url") or "").strip() or (
        _variable(STAGING_URL_VARIABLE) or ""
    ).strip()
    if url:
        return url
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return str(Path(home) / "session_stream" / "staging")


def silence_hours() -> float:
    """Hours without a new file in the drop after which a scheduled run fails (0: never)."""
    value = (_variable(SILENCE_HOURS_VARIABLE) or "").strip()
    if not value:
        return DEFAULT_SILENCE_HOURS
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if hours < 0:
        raise ConfigError(
            f"the Variable {SILENCE_HOURS_VARIABLE} must be a number of hours (0 turns the check "
            f"off), not {value!r}"
        )
    return hours


def sftp_credentials() -> SftpCredentials | None:
    conn = _connection(SFTP_CONN_ID)
    if conn is None:
        return None
    extra = conn.extra_dejson
    return SftpCredentials(
        host=conn.host or None,
        port=int(conn.port or 22),
        username=conn.login or None,
        password=conn.password or None,
        private_key=extra.get("private_key") or None,
        private_key_path=extra.get("key_file") or None,
        passphrase=extra.get("private_key_passphrase") or None,
        host_key=extra.get("host_key") or None,
        known_hosts=extra.get("known_hosts") or None,
        allow_unknown_host=_truthy(extra.get("no_host_key_check", False)),
    )


def s3_options() -> S3Options:
    """Credentials and endpoint of `aws_default`; without it, boto3's own chain (env, profile, role)."""
    conn = _connection(AWS_CONN_ID)
    if conn is None:
        return S3Options()
    extra = conn.extra_dejson
    s3_config = (extra.get("service_config") or {}).get("s3") or {}
    return S3Options(
        endpoint_url=s3_config.get("endpoint_url") or extra.get("endpoint_url") or None,
        region_name=extra.get("region_name") or None,
        aws_access_key_id=conn.login or extra.get("aws_access_key_id") or None,
        aws_secret_access_key=conn.password or extra.get("aws_secret_access_key") or None,
        aws_session_token=extra.get("aws_session_token") or None,
    )


def open_drop_location(params: dict) -> DropLocation:
    url = DropUrl.parse(drop_url(params))
    return open_drop(
        url,
        sftp=sftp_credentials() if url.scheme == "sftp" else None,
        s3=s3_options() if url.scheme == "s3" else None,
    )


def open_staging_area(params: dict) -> StagingArea:
    url = staging_url(params)
    return open_staging(url, s3=s3_options() if url.lower().startswith("s3://") else None)


def mysql_connect():
    """A MySQLdb connection with LOAD DATA LOCAL allowed.

    The constructor kwarg is what works: provider 6.7 ignores the connection extra `local_infile`.
    """
    import MySQLdb
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    conn = _connection(MYSQL_CONN_ID)
    if conn is None:
        raise ConfigError(
            f"no Airflow connection {MYSQL_CONN_ID}: create it (type MySQL), "
            "e.g. AIRFLOW_CONN_SESSION_STREAM_MYSQL='mysql://user:password@host:3306/database'"
        )
    try:
        return MySqlHook(mysql_conn_id=MYSQL_CONN_ID, local_infile=True).get_conn()
    except MySQLdb.OperationalError as exc:
        # The engine's one-line errors: a refused login is permanent, a server that does not
        # answer is an UnreachableError (retried).
        where = DbUrl(
            conn.host or "localhost",
            int(conn.port or 3306),
            conn.login or "",
            "",
            conn.schema or "",
        )
        raise connect_error(exc, where) from exc


def open_loader(*, init: bool = False, lock_timeout: int | None = None) -> Loader:
    """The engine's loader on `session_stream_mysql`; `init` first creates or migrates the tables.

    `lock_timeout`: seconds a file's load waits for the load lock (another load of the database).
    """
    if init:
        conn = mysql_connect()
        try:
            schema.init_db(conn)
        finally:
            conn.close()
    if lock_timeout is None:
        return Loader(mysql_connect)
    return Loader(mysql_connect, lock_timeout=lock_timeout)
