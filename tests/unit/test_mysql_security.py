"""What our MySQL connections refuse, shown against a hostile fake server (tests/fake_mysql.py):
a file the loader did not ask to load, and going on without the TLS they were told to require.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import MySQLdb
import pytest
from fake_mysql import make_tls_files

from session_stream.errors import ConfigError
from session_stream.warehouse import db
from session_stream.warehouse.mysql_guard import GuardedConnection, statement_file

SECRET = b"ssh-private-key: do not send\n"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "id_rsa"
    path.write_bytes(SECRET)
    return path


def test_a_stock_client_sends_the_server_any_file_it_asks_for(fake_mysql, secret_file):
    """The finding itself: mysqlclient with local_infile on, as MySqlHook(local_infile=True)
    opens it, answers the first query's file request with the file."""
    server = fake_mysql(wants_file=lambda query: str(secret_file))
    conn = MySQLdb.connect(
        host=server.host, port=server.port, user="loader", password="pw", local_infile=1
    )
    conn.close()
    assert SECRET in server.received_bytes()


def test_the_loader_sends_no_file_when_the_server_asks_for_one_while_connecting(
    fake_mysql, secret_file
):
    server = fake_mysql(wants_file=lambda query: str(secret_file))
    with pytest.raises(ConfigError) as refused:
        db.connect(server.url())
    assert server.requests, "the fake server did not get to ask"
    assert server.received_bytes() == b""
    assert "\n" not in str(refused.value)


def test_the_cli_load_sends_the_hostile_server_nothing_and_says_so_in_one_line(
    fake_mysql, secret_file, tmp_path
):
    server = fake_mysql(wants_file=lambda query: str(secret_file))
    result = subprocess.run(
        [sys.executable, "-m", "session_stream.runs.cli", "load", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, db.DB_ENV: server.url()},
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert server.requests and server.received_bytes() == b""


def test_the_guard_refuses_even_where_the_library_would_accept(fake_mysql, secret_file):
    """With local_infile=1 (MariaDB Connector/C's 'auto' mode off) our callbacks alone refuse."""
    server = fake_mysql(wants_file=lambda query: str(secret_file))
    with pytest.raises(MySQLdb.OperationalError, match="refused the MySQL server's request"):
        GuardedConnection(
            host=server.host, port=server.port, user="u", password="p", local_infile=1
        )
    assert server.received_bytes() == b""


def test_a_load_sends_only_the_staged_file_its_statement_names(fake_mysql, secret_file, tmp_path):
    staged = tmp_path / "split" / "session_sessions.tsv"
    staged.parent.mkdir()
    staged.write_bytes(b"0\tsession-1\n")
    # The server asks for the secret in answer to the first LOAD, for the staged file after.
    asks = iter([str(secret_file), str(staged)])
    server = fake_mysql(wants_file=lambda q: next(asks) if q.startswith("LOAD DATA") else None)
    conn = db.connect(server.url())
    assert conn.guarded
    cur = conn.cursor()
    sql = "LOAD DATA LOCAL INFILE %s INTO TABLE session_sessions"
    with pytest.raises(MySQLdb.OperationalError, match="not the file the running statement names"):
        cur.execute(sql, (str(staged),))
    cur.execute(sql, (str(staged),))
    conn.close()
    assert [r.received for r in server.requests] == [b"", b"0\tsession-1\n"]
    assert conn.refused_files == [str(secret_file)]


def test_a_fifo_or_a_link_named_by_the_statement_is_not_sent(fake_mysql, secret_file, tmp_path):
    link = tmp_path / "staged.tsv"
    link.symlink_to(secret_file)
    server = fake_mysql(wants_file=lambda q: str(link) if q.startswith("LOAD") else None)
    conn = db.connect(server.url())
    with pytest.raises(MySQLdb.OperationalError):
        conn.cursor().execute("LOAD DATA LOCAL INFILE %s INTO TABLE t", (str(link),))
    conn.close()
    assert server.received_bytes() == b""


def test_a_link_named_by_the_statement_never_sends_its_target(fake_mysql, secret_file, tmp_path):
    """Issue 20, case 8: the statement names a link, the server asks for the link's target."""
    link = tmp_path / "staged.tsv"
    link.symlink_to(secret_file)
    server = fake_mysql(wants_file=lambda q: str(secret_file) if q.startswith("LOAD") else None)
    conn = db.connect(server.url())
    with pytest.raises(MySQLdb.OperationalError, match="not the file the running statement"):
        conn.cursor().execute("LOAD DATA LOCAL INFILE %s INTO TABLE t", (str(link),))
    conn.close()
    assert server.requests and server.received_bytes() == b""
    assert conn.refused_files == [str(secret_file)]


def test_the_file_sent_is_the_one_opened_when_the_statement_was_sent(
    fake_mysql, secret_file, tmp_path
):
    """A staged file replaced (here by a hard link to a secret) between the statement and the
    server's request: the bytes sent are those of the file checked, never the replacement."""
    staged = tmp_path / "session_sessions.tsv"
    staged.write_bytes(b"0\tsession-1\n")

    def swap_then_ask(query):
        if not query.startswith("LOAD"):
            return None
        swapped = tmp_path / "swap"
        os.link(secret_file, swapped)
        os.replace(swapped, staged)
        return str(staged)

    server = fake_mysql(wants_file=swap_then_ask)
    conn = db.connect(server.url())
    conn.cursor().execute("LOAD DATA LOCAL INFILE %s INTO TABLE t", (str(staged),))
    conn.close()
    assert server.received_bytes() == b"0\tsession-1\n"
    assert SECRET not in server.received_bytes()


@pytest.mark.parametrize(
    ("statement", "path"),
    [
        (b"LOAD DATA LOCAL INFILE '/s/a.tsv' INTO TABLE t", "/s/a.tsv"),
        (b"LOAD DATA LOCAL INFILE '/s/it\\'s\\\\x.tsv' INTO TABLE t", "/s/it's\\x.tsv"),
        (b"LOAD DATA LOCAL INFILE '/s/it''s.tsv' INTO TABLE t", "/s/it's.tsv"),
        (b"SELECT 'LOAD DATA LOCAL INFILE'", None),
        (b"load data local infile '/s/a.tsv' into table t", None),  # not how we write it
    ],
)
def test_the_file_a_statement_names_is_read_as_mysqldb_quoted_it(statement, path):
    assert statement_file(statement) == path


def test_the_guard_is_installed_with_this_machines_client_library(db_url):
    conn = db.connect(db_url, database=False)
    try:
        assert conn.guarded, "mysql_set_local_infile_handler could not be installed"
    finally:
        conn.close()


# ---------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    return make_tls_files(folder, "server"), make_tls_files(folder, "impostor")


def test_tls_with_server_verification_from_the_url(fake_mysql, certs):
    good, _ = certs
    server = fake_mysql(tls=good.server_context())
    conn = db.connect(server.url() + f"?ssl-mode=VERIFY_IDENTITY&ssl-ca={good.ca}")
    assert conn.tls_cipher()
    conn.close()
    assert server.logins[-1]["tls"] is True


@pytest.mark.parametrize(
    "options",
    [
        "ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}",
        "ssl_mode=verify_ca&ssl_ca={ca}",
        "ssl-ca={ca}",  # a CA alone means VERIFY_CA, as in MySQL's own clients
    ],
)
def test_a_server_whose_certificate_the_ca_did_not_sign_is_refused_before_login(
    fake_mysql, certs, options
):
    good, impostor = certs
    server = fake_mysql(tls=impostor.server_context())
    with pytest.raises(ConfigError, match="TLS to MySQL at 127.0.0.1") as refused:
        db.connect(server.url(password="s3cr3t-pw") + "?" + options.format(ca=good.ca))
    assert server.logins == []  # no login was sent to it
    assert "s3cr3t-pw" not in str(refused.value)


def test_ssl_mode_required_fails_when_the_server_offers_no_tls(fake_mysql):
    """MariaDB Connector/C 3.3 would go on in plain text: the connection checks for itself."""
    server = fake_mysql()
    with pytest.raises(ConfigError, match="did not start TLS"):
        db.connect(server.url() + "?ssl-mode=REQUIRED")


def test_unknown_url_options_and_modes_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown database URL option 'sslmode'"):
        db.DbUrl.parse("mysql://u@h/db?sslmode=REQUIRED")
    with pytest.raises(ConfigError, match="ssl-mode must be one of"):
        db.DbUrl.parse("mysql://u@h/db?ssl-mode=ALWAYS")


def connection(**fields):
    extra = fields.pop("extra", {})
    values = dict(host="127.0.0.1", port=3306, login="loader", password="pw", schema="warehouse")
    values.update(fields)
    return SimpleNamespace(extra_dejson=extra, **values)


def test_the_airflow_connection_extras_reach_the_driver(fake_mysql, certs):
    from session_stream_config import mysql_url

    good, impostor = certs
    server = fake_mysql(tls=good.server_context())
    for extra in (
        {"ssl": {"ca": str(good.ca)}, "ssl_mode": "VERIFY_IDENTITY"},
        {"ssl": f'{{"ca": "{good.ca}"}}'},  # the provider's JSON-text form
    ):
        url = mysql_url(connection(port=server.port, extra=extra))
        assert url.ssl_mode in ("VERIFY_IDENTITY", "VERIFY_CA") and url.ssl == (
            ("ca", str(good.ca)),
        )
        db.connect(url).close()
        assert server.logins[-1]["tls"] is True
    wrong = mysql_url(connection(port=server.port, extra={"ssl": {"ca": str(impostor.ca)}}))
    with pytest.raises(ConfigError, match="TLS"):
        db.connect(wrong)
    with pytest.raises(ConfigError, match="names no database"):
        mysql_url(connection(schema=""))
