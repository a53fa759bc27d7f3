"""`make demo` end to end: a small sample day through the real DAG into a throwaway database,
run twice; plus the parts of database selection a shared test server cannot reach that way
(the private mariadbd, the install hint)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import warehouse

from session_stream import tables
from session_stream.warehouse import db

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SESSIONS, FILES = 2000, 4


def load_demo_module():
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


demo = load_demo_module()


@pytest.fixture
def db_with_password(fresh_db_url):
    """The throwaway database reached through its own user with a password, so the test can
    look for that password in everything the demo prints."""
    parts = urlsplit(fresh_db_url)
    database = parts.path.lstrip("/")
    user, password = f"ss_demo_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    admin = db.connect(fresh_db_url, database=False)
    cur = admin.cursor()
    cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
    cur.execute(f"GRANT ALL ON `{database}`.* TO %s@'127.0.0.1'", (user,))
    try:
        yield (
            f"mysql://{user}:{password}@{parts.hostname}:{parts.port or 3306}/{database}",
            password,
        )
    finally:
        cur.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))
        admin.close()


def make_demo(demo_dir: Path, db_url: str) -> subprocess.CompletedProcess:
    # Only what a user's shell would have: the suite's own Airflow settings are left out, and
    # `-o .venv/.installed` keeps make from reinstalling the shared venv.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env |= {
        "DEMO_DIR": str(demo_dir),
        "DEMO_SESSIONS": str(SESSIONS),
        "DEMO_FILES": str(FILES),
        "SESSION_STREAM_DB": db_url,
    }
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )


def ledger(url: str) -> dict[str, tuple]:
    rows = warehouse.query(url, f"SELECT file_name, status, loaded_at FROM `{tables.LEDGER_TABLE}`")
    return {name: (status, loaded_at) for name, status, loaded_at in rows}


def test_make_demo_loads_the_day_through_the_dag_and_a_second_run_loads_nothing(
    db_with_password, tmp_path
):
    url, password = db_with_password
    first = make_demo(tmp_path / "demo", url)
    assert first.returncode == 0, first.stdout[-6000:]

    files = sorted((tmp_path / "demo" / "drop" / "2026" / "11" / "01").glob("*.json.gz"))
    assert len(files) == FILES
    assert ledger(url).keys() == {p.name for p in files}
    assert {status for status, _ in ledger(url).values()} == {"loaded"}
    (sessions,) = warehouse.query(url, f"SELECT COUNT(*) FROM `{tables.SESSIONS.name}`")[0]
    assert sessions == SESSIONS
    assert f"{FILES} of {FILES} loaded ({FILES} by this run, 0 skipped" in first.stdout
    # the CLI's three session counts (README, "The three session counts")
    assert "session versions read: " in first.stdout
    assert f"sessions now stored: {SESSIONS:,} |" in first.stdout
    assert "DAG run succeeded" in first.stdout
    for title, _ in demo.QUERIES:
        assert title in first.stdout
    assert "mysql -h 127.0.0.1" in first.stdout
    assert password not in first.stdout
    assert password not in (tmp_path / "demo" / "airflow" / "last_run.log").read_text()

    loaded = ledger(url)
    contents = warehouse.dump(url)
    second = make_demo(tmp_path / "demo", url)
    assert second.returncode == 0, second.stdout[-6000:]
    # The ledger's word (the demo no longer reads the DAG's log): every file of the drop was
    # already loaded when the run began, none was loaded again, none failed.
    assert (
        f"{FILES} of {FILES} loaded (0 by this run, {FILES} skipped as already loaded, 0 failed)"
        in second.stdout
    )
    assert "sample drop already there" in second.stdout
    assert ledger(url) == loaded  # same loaded_at: no file was loaded again
    assert warehouse.dump(url) == contents
    assert password not in second.stdout


def test_example_queries_run_on_an_empty_warehouse(fresh_db_url):
    from session_stream.warehouse import migrations

    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    conn.close()
    demo.print_queries(db.DbUrl.parse(fresh_db_url))  # raises on a renamed column or view


def test_without_any_mysql_the_demo_says_how_to_install_one(monkeypatch, tmp_path, capsys):
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.delenv(db.DB_ENV, raising=False)
    monkeypatch.setenv("DEMO_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mariadbd, no mariadb-install-db
    monkeypatch.setattr(demo, "SERVER_DIRS", ())
    monkeypatch.setattr(demo, "LOCAL_SERVER", ("127.0.0.1", closed_port))

    assert demo.main() == 2
    errors = [line for line in capsys.readouterr().out.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "apt-get install mariadb-server" in errors[0] and db.DB_ENV in errors[0]
    assert not (tmp_path / "drop").exists()  # it stopped before writing the sample


@pytest.mark.skipif(
    not (demo.find_binary("mariadbd") and demo.find_binary("mariadb-install-db")),
    reason="needs mariadbd and mariadb-install-db",
)
def test_private_mariadb_starts_in_its_folder_and_is_reused(tmp_path):
    folder = tmp_path / "mariadb"
    server, install_db = demo.find_binary("mariadbd"), demo.find_binary("mariadb-install-db")
    database = demo.start_private_server(folder, server, install_db)
    pid = int((folder / "mariadbd.pid").read_text())
    try:
        demo.create_database(database.url)
        conn = db.connect(database.url)
        db.check_local_infile(conn)  # started with --local-infile=1, as the DAG needs
        conn.close()
        again = demo.start_private_server(folder, server, install_db)
        assert again.url == database.url
        assert int((folder / "mariadbd.pid").read_text()) == pid  # the same server, reused
        assert re.fullmatch(r"kill \$\(cat .*mariadbd\.pid\)", database.stop_hint)
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while demo.pid_alive(folder / "mariadbd.pid") and time.monotonic() < deadline:
            time.sleep(0.2)
