"""Alerts under Airflow's real scheduler: `airflow standalone` (scheduler with LocalExecutor, DAG
processor, triggerer, API server) in a private AIRFLOW_HOME, the README's alert set-up run as
written against local mail and Slack servers (the mail server requires STARTTLS and a login).

Three runs at once, one scheduler start:
- a scheduled `monetate_metadata_refresh` run without its `monetate_api` connection: all five
  refreshes fail at their first try, and ONE e-mail names them all within a minute, its log links
  built from the configured base URL and answered by the API server;
- a scheduled `session_stream` run whose interval is where the drop's silence reaches 6 hours:
  one e-mail, the drop went silent;
- a manual `session_stream` run (param `alert`: manual runs alert only when asked) whose loads
  wait for a pool that does not exist: the deadline alert names the stuck task, its state and
  the missing pool; once the pool exists the run loads and succeeds, with no failure e-mail.

Every e-mail is multipart/alternative with a text part.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from airflow_harness import AIRFLOW, REPO, airflow_env, mysql_conn_env, running_smtp_sink, var_env
from servers import free_port
from warehouse import query

from session_stream import tables
from session_stream.drop import sample
from session_stream.warehouse import db, migrations

pytestmark = pytest.mark.integration

STALL_MINUTES = 0.75  # the two failing runs end well before it; the manual one cannot
METADATA_TASKS = [
    "refresh_customtarget",
    "refresh_pageevent",
    "refresh_variant",
    "refresh_experience_summary",
    "refresh_account",
]
HOUR = datetime(2026, 11, 1, 0, tzinfo=UTC)


class Standalone:
    """A running `airflow standalone` and its REST API (all users are admins: no login)."""

    def __init__(self, home: Path, env: dict[str, str], port: int):
        self.home, self.env, self.port = home, env, port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = home / "standalone.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(AIRFLOW), "standalone"],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def request(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
            return json.loads(text) if "json" in resp.headers.get("Content-Type", "") else text

    def api(self, method: str, path: str, body: dict | None = None):
        return self.request(method, "/api/v2" + path, body)

    def wait_until_ready(self, dag_ids: list[str], timeout: float) -> None:
        """The API answers and the DAG processor has parsed `dag_ids`; skip if Airflow died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.skip(f"airflow standalone could not start:\n{self.tail()}")
            try:
                for dag_id in dag_ids:
                    self.api("GET", f"/dags/{dag_id}")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        pytest.skip(f"airflow standalone did not come up in {timeout:.0f}s:\n{self.tail()}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns?limit=20")["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id)}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
        found = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id)}/taskInstances")
        return {
            (f"{t['task_id']}[{t['map_index']}]" if t["map_index"] >= 0 else t["task_id"]): (
                t["state"],
                t["try_number"],
            )
            for t in found["task_instances"]
        }


@pytest.fixture(scope="module")
def slack_sink():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/services/T/B/X", received
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    with running_smtp_sink(tls=tmp_path_factory.mktemp("smtp_tls")) as sink:
        yield sink


def readme_alerting_block() -> str:
    readme = (REPO / "docs" / "operating.md").read_text()  # the README's Alerting section, moved
    start = readme.index("## Alerting")
    return re.compile(r"```bash\n(.*?)```", re.S).search(readme, start).group(1)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, db_url, mail, slack_sink):
    """`airflow standalone` after the README's alert set-up; yields (Standalone, drop folder)."""
    began = time.monotonic()
    home = tmp_path_factory.mktemp("standalone")
    drop = home / "drop"
    files = sample.write_hour(drop, HOUR, sessions=200, files=2)
    # The drop's last delivery: the hour that ended 6 h before the latest complete hour, so the
    # silence reaches 6 hours in the interval of the run that unpausing makes (its one alert).
    # That run is made a minute or more from now (the scheduler starts first): near the end of an
    # hour, wait for the next one, or the run would be a later hour's, past the silence's reach.
    now = datetime.now(UTC)
    if now.minute >= 54:
        wait = (60 - now.minute) * 60 - now.second + 5
        print(f"waiting {wait} s for the hour to turn: the scheduled run must be this hour's")
        time.sleep(wait)
    latest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    files += sample.write_hour(drop, latest - timedelta(hours=7), sessions=20, files=1, seed=5)
    old = time.time() - 3600
    for f in files:
        os.utime(f, (old, old))
    conn = db.connect(db_url)
    migrations.init_db(conn)  # once, before two runs' fetch would both try
    conn.close()

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SESSION_STREAM"))}
    env = {
        **clean,
        **airflow_env(home),
        # `airflow standalone` starts its components with the airflow on PATH.
        "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "SSL_CERT_FILE": str(mail.ca_file),  # the mail server's certificate, as a CA would vouch
        "AIRFLOW_VAR_SESSION_STREAM_STALL_MINUTES": str(STALL_MINUTES),
        **mysql_conn_env(db_url),
        **var_env(session_stream_drop_url=drop, session_stream_staging_url=home / "staging"),
    }
    standalone = Standalone(home, env, port)

    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    slack_url, _ = slack_sink
    block = readme_alerting_block()
    for old_text, new_text in {
        "--conn-host smtp.example.com --conn-port 587": f"--conn-host localhost --conn-port {mail.port}",
        "https://hooks.slack.com/services/T000/B000/XXXX": slack_url,
    }.items():
        assert old_text in block, f"the README's alerting block no longer says {old_text!r}"
        block = block.replace(old_text, new_text)
    setup = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
    )
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]

    standalone.start()
    try:
        standalone.wait_until_ready(["session_stream", "monetate_metadata_refresh"], timeout=240)
        print(f"\nairflow standalone up {time.monotonic() - began:.0f}s after the set-up began")
        yield standalone, drop
    finally:
        standalone.stop()


def wait_for(what: str, check, timeout: float, standalone: Standalone, step: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}\n{standalone.tail(6000)}")


def emails_about(mail, run_id: str) -> list:
    return [m for m in list(mail.messages) if run_id in m["Subject"]]


def body(message) -> str:
    # Every mail: multipart/alternative, the text part saying what the HTML part says.
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    shown = html.unescape(message.get_body(("html",)).get_content())
    assert text.strip() in shown
    return shown


def test_one_alert_per_failed_run_a_stall_alert_and_working_links_under_the_real_scheduler(
    airflow, mail, slack_sink, db_url
):
    standalone, drop = airflow
    started = time.monotonic()
    standalone.api("PATCH", "/dags/monetate_metadata_refresh", {"is_paused": False})
    standalone.api("PATCH", "/dags/session_stream", {"is_paused": False})
    # The hour in the drop, loaded by hand: no pool session_stream_load exists yet.
    manual = standalone.api(
        "POST",
        "/dags/session_stream/dagRuns",
        {
            "logical_date": None,
            "conf": {
                "start": HOUR.isoformat(),
                "end": HOUR.replace(hour=1).isoformat(),
                "lookback_hours": 0,
                "settle_seconds": 0,
                "alert": True,  # a manual run alerts only when asked to
            },
        },
    )["dag_run_id"]

    # Unpausing made the latest scheduled run of each DAG.
    metadata = wait_for(
        "the scheduled metadata run",
        lambda: standalone.runs("monetate_metadata_refresh"),
        60,
        standalone,
    )[0]
    silent = wait_for(
        "the scheduled session_stream run",
        lambda: [r for r in standalone.runs("session_stream") if r["run_type"] == "scheduled"],
        60,
        standalone,
    )[0]

    # 1. Five refreshes fail at once on a permanent error: one e-mail, within a minute.
    queued = datetime.fromisoformat(metadata["queued_at"])
    [alert] = wait_for(
        "the metadata run's e-mail",
        lambda: emails_about(mail, metadata["dag_run_id"]),
        300,
        standalone,
    )
    seconds = (mail.received_at[mail.messages.index(alert)] - queued).total_seconds()
    assert seconds < 60, f"the alert came {seconds:.0f}s after the run was queued"
    print(f"the metadata run's alert arrived {seconds:.0f}s after the run was queued")
    wait_for(
        "the metadata run to end failed",
        lambda: (
            standalone.run_state("monetate_metadata_refresh", metadata["dag_run_id"]) == "failed"
        ),
        60,
        standalone,
    )
    # Paused only now (the scheduler leaves a paused DAG's runs as they are): the manual run's
    # Asset event must not start another metadata run.
    standalone.api("PATCH", "/dags/monetate_metadata_refresh", {"is_paused": True})
    text = body(alert)
    assert alert["Subject"].endswith("failed: " + ", ".join(METADATA_TASKS))
    assert text.count("no Airflow connection monetate_api") == len(METADATA_TASKS)
    states = standalone.task_instances("monetate_metadata_refresh", metadata["dag_run_id"])
    assert {t: states[t] for t in METADATA_TASKS} == {t: ("failed", 1) for t in METADATA_TASKS}
    # The README's set-up as written: STARTTLS and a login, to the README's recipients.
    assert alert["To"] == "data-team@example.com, oncall@example.com"
    assert b"alerts@example.com" in bytes(mail.logins[mail.messages.index(alert)])
    # The same alert on Slack (sent right after the e-mail).
    _, slack = slack_sink
    on_slack = wait_for(
        "the Slack message",
        lambda: [m for m in slack if metadata["dag_run_id"] in m["text"]],
        30,
        standalone,
    )
    assert len(on_slack) == 1 and on_slack[0]["text"].startswith(f"*{alert['Subject']}*")

    # Its links are built from the base URL and lead to the task's log on the API server.
    links = re.findall(r"log: (\S+)", text)
    assert len(links) == len(METADATA_TASKS)
    for link in links:
        assert link.startswith(f"{standalone.base_url}/dags/monetate_metadata_refresh/runs/")
        assert (
            "<!doctype html>" in standalone.request("GET", link[len(standalone.base_url) :]).lower()
        )
    path = urlsplit(links[0]).path.split("/")  # /dags/<dag>/runs/<run>/tasks/<task>
    log = standalone.api("GET", f"/dags/{path[2]}/dagRuns/{path[4]}/taskInstances/{path[6]}/logs/1")
    assert "no Airflow connection monetate_api" in json.dumps(log)

    # 2. The scheduled session_stream run finds nothing new for hours: one e-mail.
    [quiet] = wait_for(
        "the silent drop's e-mail",
        lambda: emails_about(mail, silent["dag_run_id"]),
        300,
        standalone,
    )
    assert quiet["Subject"].endswith("failed: check")
    assert "no new file in the drop for 6 hours" in body(quiet) and str(drop) in body(quiet)

    # 3. The manual run cannot load: the deadline alert names the pool.
    [stalled] = wait_for(
        "the stalled run's e-mail",
        lambda: emails_about(mail, manual),
        STALL_MINUTES * 60 + 60,
        standalone,
    )
    # It names the stuck task, its state and why.
    assert stalled["Subject"].endswith(
        f"has not finished after {STALL_MINUTES} min: load[0] scheduled"
    )
    assert "  - load[0] (scheduled): waiting for a slot of the pool session_stream_load" in body(
        stalled
    )
    assert "the pool does not exist or has no slots" in body(stalled)
    assert "airflow pools set session_stream_load 2" in body(stalled)
    states = standalone.task_instances("session_stream", manual)
    assert states["load[0]"][0] == "scheduled", states
    standalone.api("POST", "/pools", {"name": "session_stream_load", "slots": 2})
    wait_for(
        "the manual run to succeed",
        lambda: standalone.run_state("session_stream", manual) == "success",
        120,
        standalone,
        step=2,
    )
    loaded = query(db_url, f"SELECT COUNT(*) FROM {tables.LEDGER_TABLE} WHERE status = 'loaded'")
    assert loaded == [(2,)]

    # One e-mail per run, no more: the stalled run that then succeeded sent no failure.
    time.sleep(3)
    for run_id in (metadata["dag_run_id"], silent["dag_run_id"], manual):
        assert len(emails_about(mail, run_id)) == 1, [m["Subject"] for m in mail.messages]
    print(f"real-scheduler scenario: {time.monotonic() - started:.0f}s after the scheduler was up")
