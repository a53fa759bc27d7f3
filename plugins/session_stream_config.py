"""Airflow glue for the session_stream DAG: turn Variables, params and connections into the
engine's objects (drop location, staging area, loader). Called inside tasks, never at parse time.

| what            | where it comes from                                                       |
|-----------------|---------------------------------------------------------------------------|
| drop location   | Variable `session_stream_drop_url`; a run's param `drop_url` may only     |
|                 | narrow it, or a root in Variable `session_stream_drop_roots`, to a folder |
|                 | inside (roots.py)                                                         |
| SFTP login      | connection `session_stream_sftp` (login, password, extras below)          |
| S3 client       | the Amazon provider's S3Hook on connection `aws_default`: keys,           |
|                 | role_arn, profile_name, web identity, region_name, endpoint_url (or       |
|                 | service_config), config_kwargs; without the connection, boto3's chain     |
| staging area    | Variable `session_stream_staging_url` (the staging ROOT), else a folder   |
|                 | under $AIRFLOW_HOME; a run's param `staging_url` may only narrow it       |
| MySQL           | connection `session_stream_mysql`; extras `ssl` (dict: ca, capath, cert,  |
|                 | key, cipher) and `ssl_mode` as in the MySQL provider                      |
| drop silence    | Variable `session_stream_silence_hours` (default 6; 0 turns it off)       |

Params come from whoever triggers a run, so they never widen what these settings allow: see
roots.py. Variables and connections are the admin's.

SFTP connection extras (names as in the SSH provider): `private_key` (key text), `key_file`
(path), `private_key_passphrase`, `host_key` (the server's public key, "ssh-ed25519 AAAA..."),
`known_hosts` (path), `no_host_key_check` (trust any host key: tests only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from session_stream.drop.base import DropLocation, DropUrl
from session_stream.drop.opener import open_drop
from session_stream.drop.roots import as_text, configured_roots, narrow, parse_location
from session_stream.drop.s3_client import S3ClientFactory, client_config
from session_stream.drop.sftp import SftpCredentials
from session_stream.errors import ConfigError
from session_stream.runs.staging import StagingArea, open_staging
from session_stream.warehouse import db
from session_stream.warehouse.load import Loader
from session_stream.warehouse.privileges import migrate_if_pending

DROP_URL_VARIABLE = "session_stream_drop_url"
DROP_ROOTS_VARIABLE = "session_stream_drop_roots"
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


def _mask(secret: str | None) -> None:
    """Have Airflow mask a secret we found ourselves (a password in a URL) in every task log."""
    if secret:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)


def drop_url(params: dict) -> DropUrl:
    """The run's drop location: the Variable's, or the param's when it lies inside a root."""
    configured = (_variable(DROP_URL_VARIABLE) or "").strip()
    roots = ([configured] if configured else []) + configured_roots(_variable(DROP_ROOTS_VARIABLE))
    for root in roots:
        _mask(DropUrl.parse(root).password)
    param = (params.get("drop_url") or "").strip()
    if param:
        try:
            _mask(DropUrl.parse(param).password)  # refused below, but never logged
        except ConfigError:
            pass
        return narrow(param, roots, "drop_url")
    if not configured:
        raise ConfigError(
            f"no drop location: set the Airflow Variable {DROP_URL_VARIABLE} "
            "to sftp://user@host/path, s3://bucket/prefix or a local folder"
        )
    return parse_location(configured, f"Variable {DROP_URL_VARIABLE}")


def staging_root() -> str:
    url = (_variable(STAGING_URL_VARIABLE) or "").strip()
    if url:
        return url
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return str(Path(home) / "session_stream" / "staging")


def staging_url(params: dict) -> str:
    """The staging root, or the param's narrower folder or prefix inside it."""
    root = staging_root()
    param = (params.get("staging_url") or "").strip()
    if not param:
        return root
    return as_text(narrow(param, [root], "staging_url"))


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


def s3_client_factory() -> S3ClientFactory:
    """Makes S3 clients through the Amazon provider's S3Hook on `aws_default`, so the connection
    works as it does for the provider's own operators: keys, `role_arn` (assumed, and refreshed
    before it expires), `profile_name`, web identity, `endpoint_url` (or `service_config.s3`),
    `region_name`, `config_kwargs`. Without the connection the hook falls back on boto3's chain.
    The engine's retry and timeout settings apply unless `config_kwargs` sets its own."""

    def make_client():
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=AWS_CONN_ID)
        return hook.get_client_type(
            region_name=hook.region_name, config=client_config().merge(hook.config)
        )

    return make_client


def check_locations(params: dict) -> None:
    """Refuse a run whose drop_url or staging_url param leaves the roots, before anything is
    touched (the warehouse, the drop, the staging area)."""
    drop_url(params)
    staging_url(params)


def open_drop_location(params: dict) -> DropLocation:
    url = drop_url(params)
    return open_drop(
        url,
        sftp=sftp_credentials() if url.scheme == "sftp" else None,
        s3=s3_client_factory() if url.scheme == "s3" else None,
    )


def open_staging_area(params: dict) -> StagingArea:
    url = staging_url(params)
    return open_staging(url, s3=s3_client_factory() if url.lower().startswith("s3://") else None)


def mysql_url(conn) -> db.DbUrl:
    """The engine's DbUrl from an Airflow MySQL connection, with its TLS extras: `ssl` (a dict,
    or its JSON text: ca, capath, cert, key, cipher) and `ssl_mode` (DISABLED ... VERIFY_IDENTITY),
    the names the MySQL provider uses. A CA without an ssl_mode means VERIFY_CA, as in MySQL's
    own clients (the provider would encrypt without checking the server)."""
    extra = conn.extra_dejson
    ssl = extra.get("ssl")
    if isinstance(ssl, str):
        try:
            ssl = json.loads(ssl)
        except ValueError:
            raise ConfigError(
                f"connection {MYSQL_CONN_ID}: extra ssl must be a JSON object like "
                '{"ca": "/path/ca.pem"}'
            ) from None
    ssl_mode = extra.get("ssl_mode")
    if ssl is True and not ssl_mode:
        ssl_mode = "REQUIRED"
    if ssl not in (None, True, False) and not isinstance(ssl, dict):
        raise ConfigError(
            f"connection {MYSQL_CONN_ID}: extra ssl must be an object (ca, cert, key)"
        )
    mode, files = db.tls_settings(ssl_mode, ssl if isinstance(ssl, dict) else None)
    if not conn.schema:
        raise ConfigError(
            f"connection {MYSQL_CONN_ID} names no database: set its schema to the warehouse database"
        )
    return db.DbUrl(
        host=conn.host or "localhost",
        port=int(conn.port or 3306),
        user=conn.login or "",
        password=conn.password or "",
        database=conn.schema,
        ssl_mode=mode,
        ssl=files,
    )


def mysql_connect(*, local_infile: bool = True):
    """A connection to the warehouse through `session_stream_mysql`, made by the engine (so TLS
    is checked and LOAD DATA LOCAL sends only the staged files: see mysql_guard), not by
    MySqlHook.get_conn(), which would enable LOAD DATA LOCAL for any file the server names."""
    conn = _connection(MYSQL_CONN_ID)
    if conn is None:
        raise ConfigError(
            f"no Airflow connection {MYSQL_CONN_ID}: create it (type MySQL), "
            "e.g. AIRFLOW_CONN_SESSION_STREAM_MYSQL='mysql://user:password@host:3306/database'"
        )
    return db.connect(mysql_url(conn), local_infile=local_infile)


def open_loader(
    *, init: bool = False, lock_timeout: int | None = None, token_prefix: str = ""
) -> Loader:
    """The engine's loader on `session_stream_mysql`; `init` first applies pending migrations
    (none pending: no DDL, so a loader with data rights only will do).

    `lock_timeout`: seconds a file's load waits for the load lock (another load of the database).
    `token_prefix`: the run's key (dag_tasks.run_key), so its report counts its own loads.
    """
    if init:
        conn = mysql_connect()
        try:
            migrate_if_pending(conn)
        finally:
            conn.close()
    if lock_timeout is None:
        return Loader(mysql_connect, token_prefix=token_prefix)
    return Loader(mysql_connect, lock_timeout=lock_timeout, token_prefix=token_prefix)
