"""What our connections do so that MySQL 8.4 and MariaDB behave alike, and the test mode that
makes MariaDB act as MySQL 8.4 where it can (`make test-mysql84`)."""

from __future__ import annotations

import pytest
from MySQLdb.constants import FIELD_TYPE

from session_stream.warehouse import db


class _Cursor:
    def __init__(self, log):
        self.log = log

    def execute(self, sql, args=None):
        self.log.append(sql)

    def close(self):
        pass


class _Conn:
    def __init__(self, server_info: str):
        self.server_info = server_info
        self.log: list[str] = []

    def cursor(self):
        return _Cursor(self.log)

    def get_server_info(self):
        return self.server_info


def test_json_columns_come_back_as_text_from_either_server():
    """MySQL sends a JSON column with the binary character set, so MySQLdb returned bytes there
    (the ledger's unknown_keys, the lookups' raw) and str on MariaDB, where JSON is LONGTEXT."""
    convert = db.CONVERSIONS[FIELD_TYPE.JSON]
    assert convert('{"k": "é 😀"}'.encode()) == '{"k": "é 😀"}'


def test_sessions_use_strict_mode_with_the_flags_mysql_84_expects_beside_it():
    """Strict mode without NO_ZERO_IN_DATE (or NO_ZERO_DATE, ERROR_FOR_DIVISION_BY_ZERO) makes
    MySQL 8.4 warn on every connection (3135); its own default sql_mode has all three."""
    modes = set(db.SQL_MODE.split(","))
    assert {"STRICT_ALL_TABLES", "NO_ZERO_IN_DATE", "NO_ZERO_DATE"} <= modes
    assert "ERROR_FOR_DIVISION_BY_ZERO" in modes
    mysql84_default = {
        "ONLY_FULL_GROUP_BY",
        "STRICT_TRANS_TABLES",
        "NO_ZERO_IN_DATE",
        "NO_ZERO_DATE",
        "ERROR_FOR_DIVISION_BY_ZERO",
        "NO_ENGINE_SUBSTITUTION",
    }
    # the test mode: MySQL 8.4's default in full (strict for every table, not only transactional)
    assert set(db.MYSQL84_SQL_MODE.split(",")) == mysql84_default - {"STRICT_TRANS_TABLES"} | {
        "STRICT_ALL_TABLES"
    }


@pytest.mark.parametrize(
    ("server", "eliminates"), [("10.11.19-MariaDB-0+deb12u1", True), ("8.4.3", False)]
)
def test_the_mysql84_mode_is_per_session_and_names_only_what_the_server_knows(
    monkeypatch, server, eliminates
):
    monkeypatch.delenv(db.AS_MYSQL84_ENV, raising=False)
    conn = _Conn(server)
    db.prepare_session(conn)
    assert f"SET SESSION sql_mode = '{db.SQL_MODE}'" in conn.log
    assert not any("optimizer_switch" in sql for sql in conn.log)

    monkeypatch.setenv(db.AS_MYSQL84_ENV, "1")
    conn = _Conn(server)
    db.prepare_session(conn)
    assert f"SET SESSION sql_mode = '{db.MYSQL84_SQL_MODE}'" in conn.log
    # MySQL has no table elimination, and no such optimizer_switch flag to turn off
    switched = [sql for sql in conn.log if "optimizer_switch" in sql]
    assert switched == (
        ["SET SESSION optimizer_switch = 'table_elimination=off'"] if eliminates else []
    )
    assert not any("GLOBAL" in sql.upper() for sql in conn.log)


@pytest.mark.integration
def test_the_mysql84_mode_leaves_the_shared_server_as_it_was(monkeypatch):
    from conftest import TEST_SERVER

    monkeypatch.setenv(db.AS_MYSQL84_ENV, "1")
    conn = db.connect(TEST_SERVER, database=False)
    cur = conn.cursor()
    cur.execute("SHOW WARNINGS")
    assert cur.fetchall() == ()
    cur.execute("SELECT @@SESSION.sql_mode, @@SESSION.optimizer_switch, @@GLOBAL.optimizer_switch")
    sql_mode, session_switch, global_switch = cur.fetchone()
    conn.close()
    assert sql_mode == db.MYSQL84_SQL_MODE
    if "table_elimination" in global_switch:  # MariaDB
        assert "table_elimination=off" in session_switch
        assert "table_elimination=on" in global_switch
