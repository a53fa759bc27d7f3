"""Least privilege with real MariaDB users made by the test (issue 9, finding 6): a schema owner
runs init-db; a loader with data rights only (SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY
TABLES, plus the lookup tables' swap) loads, reloads and refreshes lookups; an analyst reads the
session tables, views and lookups but not the rejected raw lines (nor their parts). The grants are the ones
`session-stream grants` prints. The DAG as the loader: tests/dags/test_security_dag.py."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import MySQLdb
import pytest

from session_stream import tables
from session_stream.drop.sample import write_drop
from session_stream.errors import ConfigError
from session_stream.warehouse import db, privileges

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "session_stream.runs.cli"]


def cli(*args, url: str):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_STREAM")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=300, env={**clean, db.DB_ENV: url}
    )


@pytest.fixture(scope="module")
def drop(tmp_path_factory):
    root = tmp_path_factory.mktemp("drop")
    write_drop(root, date(2026, 11, 1), sessions=200, files=4, hours=1, seed=21, bad_lines=2)
    return root


def test_init_db_with_data_rights_only_is_one_clear_line(accounts):
    result = cli("init-db", url=accounts.urls["loader"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    loader = accounts.names["loader"].split("@")[0]
    assert f"'{loader}'@'%'" in line and "lacks the CREATE right" in line
    assert "the schema owner must run `session-stream init-db`" in line


def test_the_loader_loads_and_reloads_once_the_owner_ran_init_db(accounts, drop):
    owner = cli("init-db", url=accounts.urls["owner"])
    assert owner.returncode == 0 and "applied migration 1" in owner.stdout, owner.stderr
    # Nothing pending: init-db as the loader needs no DDL right and says so.
    again = cli("init-db", url=accounts.urls["loader"])
    assert again.returncode == 0 and "schema is up to date" in again.stdout, again.stderr

    first = cli("load", str(drop), url=accounts.urls["loader"])
    assert first.returncode == 0, first.stdout + first.stderr
    assert "4 loaded" in first.stdout and "replaced an older version" in first.stdout
    reload = cli("load", "--force", str(drop), url=accounts.urls["loader"])
    assert reload.returncode == 0 and "4 loaded" in reload.stdout, reload.stdout + reload.stderr

    conn = db.connect(accounts.urls["loader"])
    assert privileges.pending_migrations(conn) == []
    with pytest.raises(MySQLdb.OperationalError, match="denied"):
        conn.cursor().execute(f"DROP TABLE `{tables.SESSIONS.name}`")
    conn.close()


def test_the_loader_refreshes_lookups_with_its_table_level_rights(
    accounts, metadata_server, metadata_client_factory
):
    from session_stream.metadata.refresh import refresh_lookup

    assert cli("init-db", url=accounts.urls["owner"]).returncode == 0
    metadata_server.objects["customtarget"] = [{"id": 7, "title": "VIP"}]
    conn = db.connect(accounts.urls["loader"])
    try:
        with metadata_client_factory() as client:
            assert refresh_lookup(conn, client, "customtarget") == 1
            assert refresh_lookup(conn, client, "customtarget") == 1  # the swap, twice
    finally:
        conn.close()


def test_analysts_read_sessions_views_and_lookups_but_not_the_rejected_lines(accounts, drop):
    assert cli("init-db", url=accounts.urls["owner"]).returncode == 0
    assert cli("load", str(drop), url=accounts.urls["loader"]).returncode == 0
    accounts.grant("analyst")  # after init-db: MySQL grants SELECT only on tables that exist

    conn = db.connect(accounts.urls["analyst"])
    cur = conn.cursor()
    for name in privileges.analyst_objects():
        cur.execute(f"SELECT COUNT(*) FROM `{name}`")
    cur.execute(f"SELECT COUNT(*) FROM `{tables.SESSIONS.name}`")
    assert cur.fetchone()[0] > 0
    # Monetate's join, through the child tables' views (which read their storage tables with
    # the schema owner's rights).
    cur.execute(
        "SELECT COUNT(c.product_id) FROM session_sessions s"
        " LEFT JOIN session_cart_lines c ON c.session_id = s.session_id"
    )
    assert cur.fetchone()[0] > 0
    # A child table's storage, read alone (MySQL's fast path: no join to session_sessions).
    cur.execute(f"SELECT COUNT(*) FROM `{tables.CART_LINES.storage}`")
    assert cur.fetchone()[0] > 0
    secrets = (tables.REJECTS_TABLE, tables.REJECT_PARTS_TABLE, tables.LEDGER_TABLE)
    for secret in secrets:
        with pytest.raises(MySQLdb.OperationalError, match="denied"):
            cur.execute(f"SELECT * FROM `{secret}`")
    with pytest.raises(MySQLdb.OperationalError, match="denied"):
        cur.execute(f"DELETE FROM `{tables.SESSIONS.name}`")
    conn.close()
    assert not set(secrets) & set(privileges.analyst_objects())

    # `session-stream reject` reads a rejected line back for the loader, not for the analyst.
    owner = db.connect(accounts.urls["owner"])
    cur = owner.cursor()
    cur.execute(f"SELECT file_name, line_no, raw_line FROM `{tables.REJECTS_TABLE}` LIMIT 1")
    name, line_no, raw = cur.fetchone()
    owner.close()
    loader = cli("reject", name, str(line_no), url=accounts.urls["loader"])
    assert loader.returncode == 0 and loader.stdout.encode() == bytes(raw), loader.stderr
    analyst = cli("reject", name, str(line_no), url=accounts.urls["analyst"])
    assert analyst.returncode == 2 and analyst.stdout == "" and "Traceback" not in analyst.stderr
    (line,) = analyst.stderr.strip().splitlines()
    assert f"may not read {tables.REJECTS_TABLE}" in line


def test_migrating_as_the_loader_names_the_user_and_the_right(accounts):
    conn = db.connect(accounts.urls["loader"])
    try:
        with pytest.raises(ConfigError) as refused:
            privileges.migrate_if_pending(conn)
    finally:
        conn.close()
    message = str(refused.value)
    assert "needs migration 1" in message and "lacks the CREATE right" in message
    assert accounts.names["loader"].split("@")[0] in message
