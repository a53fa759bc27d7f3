"""Airflow in the test suite: an isolated AIRFLOW_HOME, `airflow dags test` as a subprocess, and
a local SMTP sink for the failure alerts.

The environment is set in `pytest_configure`, before any test imports Airflow (its settings are
read once, at import), so no test ever touches a real ~/airflow. Connections and Variables are
passed to the subprocess as AIRFLOW_CONN_<ID> (JSON) and AIRFLOW_VAR_<NAME> environment variables.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from session_stream.runs.policy import LOAD_POOL

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).with_name("airflow")
DAG_ID = "session_stream"


# `airflow ...` with the next run's id taken from argv[1] (see AirflowHome.dags_test).
RUN_ID_WRAPPER = """
import sys
from airflow.models.dagrun import DagRun
run_id = sys.argv.pop(1)
DagRun.generate_run_id = staticmethod(lambda **kwargs: run_id)
sys.argv[0] = "airflow"
from airflow.__main__ import main
main()
"""


def airflow_env(home: Path) -> dict[str, str]:
    """What every Airflow process of the tests needs: its home, our folders, no examples."""
    pythonpath = [str(REPO / "include"), str(REPO / "plugins")]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": os.pathsep.join(pythonpath),
    }


def pytest_configure(config):
    home = Path(tempfile.mkdtemp(prefix="ss_airflow_home_"))
    config._session_stream_airflow_home = home
    os.environ.update(airflow_env(home))
    for folder in (REPO / "include", REPO / "plugins"):
        if str(folder) not in sys.path:
            sys.path.append(str(folder))


def pytest_unconfigure(config):
    home = getattr(config, "_session_stream_airflow_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------- connections as env vars


def conn_env(conn_id: str, **fields) -> dict[str, str]:
    """AIRFLOW_CONN_<ID> in Airflow's JSON form, e.g. conn_env('x', conn_type='mysql', host=...)."""
    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(
            {k: v for k, v in fields.items() if v is not None}
        )
    }


def var_env(**variables) -> dict[str, str]:
    return {f"AIRFLOW_VAR_{name.upper()}": str(value) for name, value in variables.items()}


def mysql_conn_env(db_url: str, conn_id: str = "session_stream_mysql") -> dict[str, str]:
    """The MySQL connection for a test database URL (mysql://root:@127.0.0.1:3306/<db>)."""
    parts = urlsplit(db_url)
    return conn_env(
        conn_id,
        conn_type="mysql",
        host=parts.hostname,
        port=parts.port or 3306,
        login=parts.username or "root",
        password=parts.password or "",
        schema=parts.path.lstrip("/"),
    )


# ---------------------------------------------------------------- dags test


@dataclass
class DagTestResult:
    returncode: int
    output: str
    command: list[str] = field(default_factory=list)

    @property
    def run_state(self) -> str | None:
        found = re.findall(r"DagRun Finished: .*?state=(\w+)", self.output)
        return found[-1] if found else None

    @property
    def run_id(self) -> str | None:
        found = re.findall(r"DagRun Finished: .*?run_id=([^,\s]+)", self.output)
        return found[-1] if found else None

    def explain(self) -> str:
        """The tail of the output, for assertion messages."""
        return f"$ {' '.join(self.command)}\n(exit {self.returncode})\n" + self.output[-6000:]


@dataclass
class AirflowHome:
    path: Path
    env: dict[str, str]

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        python: list[str] | None = None,
    ) -> DagTestResult:
        """`airflow <args>`; with `python`, `python -c <python[0]> <python[1:]> <args>` instead."""
        command = [str(AIRFLOW), *args]
        if python:
            command = [sys.executable, "-c", python[0], *python[1:], *args]
        proc = subprocess.run(
            command,
            env={**os.environ, **self.env, **(env or {})},
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        return DagTestResult(proc.returncode, proc.stdout, command)

    def dags_test(
        self,
        logical_date: str,
        *,
        env: dict[str, str] | None = None,
        conf: dict | None = None,
        run_id: str | None = None,
        timeout: float = 300,
    ) -> DagTestResult:
        """`airflow dags test session_stream <date>`; exit code 1 when a task failed.

        Retries are switched off (AIRFLOW_VAR_SESSION_STREAM_RETRIES=0) unless `env` says otherwise:
        `dags test` would otherwise sit out the retry delays of a task meant to fail.

        `run_id` gives the run the id a REST API caller could choose (`dags test` makes its own):
        the same command, with DagRun.generate_run_id returning it, and Airflow's own run-id
        checks loosened as an admin could loosen them.
        """
        args = ["dags", "test", DAG_ID, logical_date]
        if conf:
            args += ["-c", json.dumps(conf)]
        env = {**var_env(session_stream_retries=0), **(env or {})}
        if run_id is None:
            return self.run(*args, env=env, timeout=timeout)
        env = {
            **env,
            "AIRFLOW__CORE__ALLOW_DOUBLE_DOT_IN_IDS": "True",
            "AIRFLOW__SCHEDULER__ALLOWED_RUN_ID_PATTERN": "^.+$",
        }
        return self.run(*args, env=env, timeout=timeout, python=[RUN_ID_WRAPPER, run_id])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
        """{'task' or 'task[i]': (state, try_number)} of a run, from the metadata database."""
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.path / "airflow.db")) as db:
            rows = db.execute(
                "SELECT task_id, map_index, state, try_number FROM task_instance"
                " WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            ).fetchall()
        return {
            (f"{task}[{index}]" if index >= 0 else task): (state, tries)
            for task, index, state, tries in rows
        }


@pytest.fixture(scope="session")
def airflow_home(pytestconfig) -> AirflowHome:
    """The session's AIRFLOW_HOME with its metadata database migrated (once) and the load pool."""
    home = AirflowHome(
        pytestconfig._session_stream_airflow_home,
        airflow_env(pytestconfig._session_stream_airflow_home),
    )
    for args in (("db", "migrate"), ("pools", "set", LOAD_POOL, "2", "session_stream loads")):
        result = home.run(*args, timeout=300)
        assert result.returncode == 0, result.explain()
    return home


# ---------------------------------------------------------------- SMTP sink


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list = field(default_factory=list)  # email.message.EmailMessage, in arrival order
    logins: list = field(default_factory=list)  # the AUTH login of each message (None: none)
    received_at: list = field(default_factory=list)  # UTC datetime of each message's arrival
    ca_file: Path | None = None  # with STARTTLS: the certificate a client must trust
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def conn_env(self, conn_id: str = "smtp_default") -> dict[str, str]:
        # Plain SMTP on loopback: the provider defaults to SSL and STARTTLS, so both are turned off.
        return conn_env(
            conn_id,
            conn_type="smtp",
            host=self.host,
            port=self.port,
            extra={
                "disable_ssl": True,
                "disable_tls": True,
                "from_email": "airflow@example.test",
                "timeout": 10,
            },
        )

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.logins.clear()
            self.received_at.clear()


@contextlib.contextmanager
def running_smtp_sink(tls: Path | None = None):
    """An aiosmtpd server on loopback that keeps every message it receives.

    With `tls` (a folder), it offers and requires STARTTLS with a certificate for localhost,
    accepts any login, and writes `tls/ca.pem`: the SSL_CERT_FILE a client trusts it with.
    """
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
    from servers import free_port

    sink = SmtpSink("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            with sink._lock:
                sink.messages.append(
                    message_from_bytes(envelope.original_content, policy=policy.default)
                )
                sink.logins.append(session.login_data)
                sink.received_at.append(datetime.now(UTC))
            return "250 OK"

    kwargs: dict = {}
    if tls is not None:
        import ssl

        tls.mkdir(parents=True, exist_ok=True)
        cert, key = _localhost_certificate(tls)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        sink.ca_file = cert
        kwargs = dict(
            tls_context=context,
            require_starttls=True,
            # Any login is accepted, and kept: the test checks one was given.
            authenticator=lambda server, session, envelope, mechanism, auth_data: AuthResult(
                success=True, auth_data=auth_data
            ),
            auth_require_tls=True,
        )
    # aiosmtpd logs from its own thread, possibly after pytest closed the captured stream.
    mail_log = logging.getLogger("mail.log")
    was_disabled, mail_log.disabled = mail_log.disabled, True
    controller = Controller(Handler(), hostname=sink.host, port=sink.port, **kwargs)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
        mail_log.disabled = was_disabled


def _localhost_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (it is its own CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "ca.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_sink():
    """A plain-SMTP sink on loopback (see running_smtp_sink)."""
    with running_smtp_sink() as sink:
        yield sink
