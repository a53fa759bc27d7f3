"""Shared fixtures. Integration tests use a throwaway database per test module on a real server.

The server comes from SESSION_STREAM_TEST_SERVER (default mysql://root@127.0.0.1:3306/test);
each module gets its own database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

# Fixture modules of their own (servers for SFTP and S3, Airflow harness): append, don't reorder.
pytest_plugins: list[str] = [
    "metadata_server",
    "servers",
    "airflow_harness",
    "fake_mysql",
    "accounts",
]

TEST_SERVER = os.environ.get("SESSION_STREAM_TEST_SERVER", "mysql://root@127.0.0.1:3306/test")


def _server_url(database: str) -> str:
    base = TEST_SERVER.rsplit("/", 1)[0]
    return f"{base}/{database}"


@contextlib.contextmanager
def _throwaway_database():
    from session_stream.warehouse import db

    name = f"ss_test_{uuid.uuid4().hex[:10]}"
    conn = db.connect(TEST_SERVER, database=False)
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield _server_url(name)
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(scope="module")
def db_url():
    """URL of a fresh, empty database on the test server; dropped after the module."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture(scope="module")
def url(db_url):
    """db_url with the warehouse's tables (`init-db`); a module may define its own `url`."""
    from session_stream.warehouse import db, migrations

    conn = db.connect(db_url)
    migrations.init_db(conn)
    conn.close()
    return db_url


@pytest.fixture
def fresh_db_url():
    """Like db_url, but one database per test."""
    with _throwaway_database() as url:
        yield url
