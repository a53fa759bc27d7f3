"""`make stack-test`: the Docker Compose stack as a newcomer meets it, from a fresh .env to a
loaded day, checked from outside the stack. The README's Docker section types the same steps.

  1. build the image (one build for every Airflow service) and the sample SFTP server's
  2. write a fresh .env in a temporary folder (docker/make-env.sh: random secrets, no prompt),
     with free ports, the mail sink as SMTP server and the fake Metadata API
  3. `up -d` (LocalExecutor, profile `test`), wait until every service is healthy and the
     one-shot services have finished
  4. the UI and the REST API v2 answer; unpause session_stream: its first scheduled run finds an
     old sample drop and must not alert
  5. trigger session_stream through the REST API for the sample day, wait for success
  6. as `analyst`, through the published MySQL port over verified TLS: the day's sessions, a
     child view, a lookup view; the run's quality report through the REST API
  7. a truncated file in the SFTP drop fails its run, and the alert reaches the mail sink with a
     link under the configured base URL
  8. monetate_metadata_refresh fills the lookups from the fake Metadata API
  9. the same load under `--profile celery` with CeleryExecutor: the tasks ran on the worker
 10. `down -v`

Each step prints its time; a failure prints the failing service's last log lines (or the failed
task's log). Works with `docker compose` (v2) and with `docker-compose` v1 on podman's socket;
set COMPOSE to choose ("docker compose", "docker-compose").

    python scripts/stack_test.py [--keep] [--local-only] [--no-build]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DAG = "session_stream"
METADATA_DAG = "monetate_metadata_refresh"
SAMPLE_DAY = "2026-11-01"
SAMPLE_SESSIONS = 5000
SAMPLE_FILES = 16
ONE_SHOT = {"stack-init", "airflow-init"}
PROFILES_LOCAL = ["test"]
PROFILES_CELERY = ["test", "celery"]
# The fake API's addresses inside the stack, and a retailer for its URLs.
FAKE_API = "http://fake-monetate:8000"
FAKE_RETAILER = "stacktest"
T0 = time.monotonic()


class StackTestError(Exception):
    """A check failed: the message says what, `service` whose logs to show."""

    def __init__(self, message: str, service: str | None = None, log: str | None = None):
        super().__init__(message)
        self.service = service
        self.log = log


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {text}", flush=True)


STEPS = {"passed": 0, "failed": 0}


@contextlib.contextmanager
def step(name: str):
    say(f"{name} ...")
    start = time.monotonic()
    try:
        yield
    except BaseException:
        STEPS["failed"] += 1
        raise
    STEPS["passed"] += 1
    say(f"{name}: ok ({time.monotonic() - start:.1f} s)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- compose ------------------------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose` (v2) where it works, else `docker-compose` (v1, the front-end that honours
    service_healthy on podman), or what COMPOSE says."""
    if os.environ.get("COMPOSE"):
        return shlex.split(os.environ["COMPOSE"])
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackTestError(
        "no compose front-end: install Docker Compose v2, or docker-compose with podman "
        "(../shared/containers/README.md), or set COMPOSE"
    )


def engine_command() -> list[str]:
    """The container engine's CLI, for inspecting containers (health, exit codes)."""
    if shutil.which("podman"):
        return ["podman"]
    if shutil.which("docker"):
        return ["docker"]
    raise StackTestError("neither podman nor docker is installed")


class Stack:
    def __init__(self, env_file: Path, project: str):
        self.env_file = env_file
        self.project = project
        self.compose = compose_command()
        self.engine = engine_command()
        self.profiles: list[str] = []
        self.env = dict(os.environ)
        podman_socket = Path("/run/podman/podman.sock")
        if (
            "DOCKER_HOST" not in self.env
            and not Path("/var/run/docker.sock").exists()
            and podman_socket.exists()
        ):
            self.env["DOCKER_HOST"] = f"unix://{podman_socket}"

    def run(
        self, *args: str, check: bool = True, timeout: float = 1800, quiet: bool = False
    ) -> subprocess.CompletedProcess:
        cmd = [
            *self.compose,
            "--project-directory",
            str(REPO),
            "-f",
            str(REPO / "docker-compose.yaml"),
            "-p",
            self.project,
            "--env-file",
            str(self.env_file),
        ]
        for profile in self.profiles:
            cmd += ["--profile", profile]
        cmd += list(args)
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, timeout=timeout, cwd=REPO
        )
        if check and result.returncode != 0:
            raise StackTestError(
                f"`{' '.join(cmd[len(self.compose) :][-len(args) :])}` failed "
                f"(exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
            )
        if not quiet and result.returncode != 0:
            say((result.stdout + result.stderr)[-2000:])
        return result

    def services(self) -> list[str]:
        """The services `up` starts with the active profiles (compose v1's `config --services`
        lists those of every profile)."""
        import yaml

        config = yaml.safe_load(self.run("config").stdout)["services"]
        return [
            name
            for name, service in config.items()
            if not service.get("profiles") or set(service["profiles"]) & set(self.profiles)
        ]

    def containers(self) -> dict[str, list[dict]]:
        """service -> the inspect records of its containers."""
        ids = self.run("ps", "-a", "-q").stdout.split()
        if not ids:
            return {}
        out = subprocess.run(
            [*self.engine, "inspect", *ids], capture_output=True, text=True, env=self.env
        )
        found: dict[str, list[dict]] = {}
        for record in json.loads(out.stdout or "[]"):
            labels = (record.get("Config") or {}).get("Labels") or {}
            service = labels.get("com.docker.compose.service")
            if service:
                found.setdefault(service, []).append(record)
        return found

    def culprit(self) -> str | None:
        """A service that exited with an error or is unhealthy, for the logs of a failed step."""
        with contextlib.suppress(Exception):
            for service, records in sorted(self.containers().items()):
                state = records[-1].get("State") or {}
                if (state.get("Status") == "exited" and state.get("ExitCode")) or _health(
                    records[-1]
                ) == "unhealthy":
                    return service
        return None

    def logs(self, service: str, lines: int = 40) -> str:
        out = self.run("logs", "--no-color", "--tail", str(lines), service, check=False).stdout
        return "\n".join(line[:400] for line in out.splitlines())

    def exec(self, service: str, *command: str, check: bool = True) -> str:
        return self.run("exec", "-T", service, *command, check=check).stdout


def _health(record: dict) -> str:
    state = record.get("State") or {}
    health = state.get("Health") or state.get("Healthcheck") or {}
    return health.get("Status") or ""


def wait_healthy(stack: Stack, timeout: float = 900) -> dict[str, str]:
    """Every service of the active profiles healthy, every one-shot service exited 0."""
    wanted = [s for s in stack.services() if s != "cli"]
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        containers = stack.containers()
        states = {}
        for service in wanted:
            records = containers.get(service) or []
            if not records:
                states[service] = "missing"
                continue
            state = records[-1].get("State") or {}
            status = state.get("Status", "")
            if service in ONE_SHOT:
                if status == "exited":
                    if state.get("ExitCode") != 0:
                        raise StackTestError(
                            f"{service} exited with code {state.get('ExitCode')}", service
                        )
                    states[service] = "done"
                else:
                    states[service] = status
            else:
                if status in ("exited", "dead") or state.get("Restarting"):
                    raise StackTestError(f"{service} is {status or 'restarting'}", service)
                states[service] = _health(record=records[-1]) or status
        pending = {s: v for s, v in states.items() if v not in ("done", "healthy")}
        if not pending:
            return states
        summary = ", ".join(f"{s}: {v}" for s, v in sorted(pending.items()))
        if summary != last:
            say(f"  waiting for {summary}")
            last = summary
        if time.monotonic() > deadline:
            service = next(iter(sorted(pending)))
            raise StackTestError(f"not healthy after {timeout:.0f} s: {summary}", service)
        time.sleep(5)


# ---- the REST API -------------------------------------------------------------------------------


class Api:
    def __init__(self, base: str, user: str, password: str):
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=60)
        self.user, self.password = user, password
        self.token = None

    def login(self) -> None:
        resp = self.http.post(
            "/auth/token", json={"username": self.user, "password": self.password}
        )
        if resp.status_code not in (200, 201):
            raise StackTestError(
                f"POST /auth/token answered {resp.status_code}: {resp.text[:300]}",
                "airflow-apiserver",
            )
        self.token = resp.json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def call(self, method: str, path: str, expect=(200,), **kwargs) -> httpx.Response:
        resp = self.http.request(method, path, **kwargs)
        if resp.status_code == 401 and self.token:
            self.login()
            resp = self.http.request(method, path, **kwargs)
        if resp.status_code not in expect:
            raise StackTestError(
                f"{method} {path} answered {resp.status_code}: {resp.text[:500]}",
                "airflow-apiserver",
            )
        return resp

    def trigger(self, dag: str, conf: dict) -> str:
        resp = self.call(
            "POST", f"/api/v2/dags/{dag}/dagRuns", json={"logical_date": None, "conf": conf}
        )
        return resp.json()["dag_run_id"]

    def runs(self, dag: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag}/dagRuns", params={"limit": 100}).json()[
            "dag_runs"
        ]

    def task_instances(self, dag: str, run_id: str) -> list[dict]:
        resp = self.call("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances")
        return resp.json()["task_instances"]

    def task_log(self, dag: str, run_id: str, ti: dict) -> str:
        resp = self.call(
            "GET",
            f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
            f"{max(ti.get('try_number') or 1, 1)}",
            params={"map_index": ti.get("map_index", -1)},
            headers={"Accept": "text/plain"},
            expect=(200, 404),
        )
        return resp.text

    def wait_run(self, dag: str, run_id: str, want: str = "success", timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.call("GET", f"/api/v2/dags/{dag}/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                break
            if time.monotonic() > deadline:
                raise StackTestError(
                    f"{dag} run {run_id} still {run['state']} after {timeout:.0f} s",
                    "airflow-scheduler",
                )
            time.sleep(3)
        if run["state"] != want:
            failed = [
                ti
                for ti in self.task_instances(dag, run_id)
                if ti["state"] in ("failed", "upstream_failed")
            ]
            log = "".join(
                f"--- {ti['task_id']}[{ti.get('map_index', -1)}] ---\n"
                + self.task_log(dag, run_id, ti)[-3000:]
                for ti in failed[:2]
            )
            raise StackTestError(
                f"{dag} run {run_id} ended {run['state']}, not {want} (failed: "
                f"{', '.join(ti['task_id'] for ti in failed) or 'none'})",
                "airflow-scheduler",
                log,
            )
        return run

    def xcom(self, dag: str, run_id: str, task: str, key: str = "return_value"):
        resp = self.call(
            "GET",
            f"/api/v2/dags/{dag}/dagRuns/{run_id}/taskInstances/{task}/xcomEntries/{key}",
            params={"deserialize": "true", "stringify": "false"},
        )
        value = resp.json()["value"]
        return json.loads(value) if isinstance(value, str) else value


# ---- the warehouse, from outside ---------------------------------------------------------------


def analyst_query(port: int, password: str, ca: Path, sql: str) -> list[tuple]:
    """As the BI user, through the published port, over TLS checked against the stack's CA."""
    from session_stream.warehouse import db

    url = db.DbUrl(
        host="127.0.0.1",
        port=port,
        user="analyst",
        password=password,
        database="warehouse",
        ssl_mode="VERIFY_IDENTITY",
        ssl=(("ca", str(ca)),),
    )
    conn = db.connect(url, local_infile=False)
    try:
        if not conn.tls_cipher():
            raise StackTestError("the analyst's connection is not encrypted", "mysql")
        cur = conn.cursor()
        cur.execute(sql)
        return list(cur.fetchall())
    finally:
        conn.close()


# ---- the test -----------------------------------------------------------------------------------


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def write_env(folder: Path, extra: dict[str, str]) -> Path:
    path = folder / ".env"
    if not path.exists():
        subprocess.run(
            ["sh", str(REPO / "docker/make-env.sh"), str(path)], check=True, capture_output=True
        )
    lines = [
        line
        for line in path.read_text().splitlines()
        if line.split("=", 1)[0].lstrip("#") not in extra
    ]
    lines += [f"{k}={v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def load_sample_day(api: Api, stack: Stack, force: bool) -> tuple[str, dict]:
    # settle_seconds=0: stack-init wrote the sample files and exited before any Airflow service
    # started, so they are whole; the day is one manual run (a backfill would be 24, each
    # leaving files younger than settle_seconds "for the next run", which a backfill never has).
    conf = {
        "start": f"{SAMPLE_DAY}T00:00:00+00:00",
        "end": f"{next_day(SAMPLE_DAY)}T00:00:00+00:00",
        "settle_seconds": 0,
        "force": force,
    }
    run_id = api.trigger(DAG, conf)
    say(f"  triggered {DAG} run {run_id} with conf {json.dumps(conf)}")
    api.wait_run(DAG, run_id)
    report = api.xcom(DAG, run_id, "check")
    return run_id, report


def next_day(day: str) -> str:
    import datetime

    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=1)).isoformat()


def check_report(report: dict) -> None:
    """check's return value: the run's quality report (report.run_report)."""
    figures = {
        k: report.get(k)
        for k in (
            "fetched",
            "loaded",
            "failed",
            "session_versions_read",
            "sessions_written",
            "sessions_stored",
            "rejects",
        )
    }
    say(f"  quality report: {json.dumps(figures)}, waiting {report.get('waiting')}")
    if (report.get("loaded"), report.get("failed"), report.get("waiting")) != (SAMPLE_FILES, 0, []):
        raise StackTestError(
            f"the run did not load the {SAMPLE_FILES} sample files whole: {report}"
        )


def mails(stack: Stack) -> list[str]:
    """The messages the mail sink kept, as text: headers, then each text part decoded."""
    import email
    from email import policy

    out = stack.exec(
        "mailsink",
        "sh",
        "-c",
        "for f in /tmp/mail-sink/*.eml; do [ -f $f ] && cat $f && echo '<<EOM>>'; done; true",
    )
    texts = []
    for raw in (m for m in out.split("<<EOM>>") if m.strip()):
        message = email.message_from_string(raw.lstrip("\n"), policy=policy.default)
        parts = [f"Subject: {message['Subject']}", f"To: {message['To']}"]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        texts.append("\n".join(parts))
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--local-only", action="store_true", help="skip the Celery part")
    parser.add_argument("--no-build", action="store_true", help="use the images already built")
    parser.add_argument(
        "--again",
        metavar="ENV_DIR",
        type=Path,
        help="run the checks again on the stack a --keep run left up, with its .env folder",
    )
    args = parser.parse_args(argv)
    # `kill` (CI's timeout, a user) still tears the stack down: the finally below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.again:
        tmp, args.no_build = args.again, True
        previous = read_env(tmp / ".env")
        project = previous["COMPOSE_PROJECT_NAME"]
        ui_port, mysql_port = (
            int(previous["AIRFLOW_PUBLISHED_PORT"]),
            int(previous["MYSQL_PUBLISHED_PORT"]),
        )
    else:
        tmp = Path(tempfile.mkdtemp(prefix="stack-test-"))
        project = f"sstest{os.getpid()}"
        ui_port, mysql_port = free_port(), free_port()
    base_url = f"http://localhost:{ui_port}"
    settings = {
        "COMPOSE_PROJECT_NAME": project,
        "AIRFLOW_PUBLISHED_PORT": str(ui_port),
        "MYSQL_PUBLISHED_PORT": str(mysql_port),
        "AIRFLOW_BASE_URL": base_url,
        "AIRFLOW_EXECUTOR": "LocalExecutor",
        "SMTP_HOST": "mailsink",
        "SMTP_PORT": "1025",
        "SMTP_STARTTLS": "false",
        "SMTP_SSL": "false",
        "SMTP_FROM": "airflow@example.com",
        "ALERT_EMAIL_TO": "data-team@example.com",
    }
    env_file = write_env(tmp, settings)
    secrets = read_env(env_file)
    stack = Stack(env_file, project)
    say(
        f"stack-test: project {project}, compose `{' '.join(stack.compose)}`, engine "
        f"{stack.engine[0]}, .env in {tmp}, UI {base_url}, MySQL 127.0.0.1:{mysql_port}"
    )
    ok = False
    try:
        run_all(args, stack, settings, secrets, tmp, base_url, mysql_port)
        ok = True
    except (StackTestError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        say(f"FAILED: {exc}")
        service = getattr(exc, "service", None) or stack.culprit()
        if getattr(exc, "log", None):
            print(exc.log, flush=True)
        if service:
            say(f"last log lines of {service}:")
            print(stack.logs(service), flush=True)
    finally:
        if args.keep:
            say(
                f"--keep: the stack stays up. Check again: {sys.argv[0]} --again {tmp}; stop it: "
                f"{' '.join(stack.compose)} -p {project} --env-file {env_file} down -v"
            )
        else:
            with step("down -v"):
                stack.profiles = PROFILES_CELERY
                stack.run("down", "-v", "--remove-orphans", check=False, timeout=600)
            shutil.rmtree(tmp, ignore_errors=True)
    say("stack-test: " + ("passed" if ok else "FAILED"))
    # the plain closing line CI reads: steps passed and failed
    print(
        f"stack-test: {STEPS['passed']} passed, {STEPS['failed'] + (not ok and not STEPS['failed'])} failed"
    )
    return 0 if ok else 1


def run_all(args, stack: Stack, settings, secrets, tmp: Path, base_url: str, mysql_port: int):
    if not args.no_build:
        with step("build the images (stack-init's image serves every Airflow service)"):
            stack.run("build", "stack-init", "sftp")

    stack.profiles = PROFILES_LOCAL
    with step("up -d (LocalExecutor, profile test)"):
        stack.run("up", "-d")
    with step("wait until every service is healthy"):
        states = wait_healthy(stack)
        say("  " + ", ".join(f"{s}: {v}" for s, v in sorted(states.items())))

    api = Api(base_url, "admin", secrets["AIRFLOW_ADMIN_PASSWORD"])
    with step("the UI and the REST API answer"):
        ui = httpx.get(base_url + "/", timeout=30, follow_redirects=True)
        if ui.status_code != 200 or "<html" not in ui.text.lower():
            raise StackTestError(f"the UI answered {ui.status_code}", "airflow-apiserver")
        api.login()
        version = api.call("GET", "/api/v2/version").json()["version"]
        deadline = time.monotonic() + 300
        while (
            api.call("GET", f"/api/v2/dags/{DAG}", expect=(200, 404)).status_code != 200
            or api.call("GET", f"/api/v2/dags/{METADATA_DAG}", expect=(200, 404)).status_code != 200
        ):
            if time.monotonic() > deadline:
                raise StackTestError("the DAGs were not parsed in 300 s", "airflow-dag-processor")
            time.sleep(3)
        errors = api.call("GET", "/api/v2/importErrors").json()
        if errors.get("total_entries"):
            raise StackTestError(f"DAG import errors: {errors}", "airflow-dag-processor")
        say(f"  Airflow {version}, UI at {base_url}, both DAGs parsed, no import error")

    with step(f"unpause {DAG}: its first scheduled run must not alert on the old sample drop"):
        api.call("PATCH", f"/api/v2/dags/{DAG}", json={"is_paused": False})
        deadline = time.monotonic() + 300
        while not (scheduled := [r for r in api.runs(DAG) if r["run_type"] == "scheduled"]):
            if time.monotonic() > deadline:
                raise StackTestError("no scheduled run after unpausing", "airflow-scheduler")
            time.sleep(3)
        api.wait_run(DAG, scheduled[0]["dag_run_id"])
        report = api.xcom(DAG, scheduled[0]["dag_run_id"], "check")
        say(
            f"  scheduled run {scheduled[0]['dag_run_id']}: success, silent={report.get('silent')!r}"
        )

    with step(f"load the sample day {SAMPLE_DAY} through the REST API (LocalExecutor)"):
        run_id, report = load_sample_day(api, stack, force=bool(args.again))
        check_report(report)

    ca = tmp / "ca.pem"
    ca.write_text(stack.exec("mysql", "cat", "/etc/mysql-tls/ca.pem"))
    password = secrets["WAREHOUSE_ANALYST_PASSWORD"]
    with step("as analyst, over TLS through the published port: the day is there"):
        (sessions,) = analyst_query(
            mysql_port, password, ca, "SELECT COUNT(*) FROM session_sessions"
        )[0]
        # (--again: a stack an earlier run of an older stack-test left may hold more)
        if sessions != SAMPLE_SESSIONS and not (args.again and sessions > SAMPLE_SESSIONS):
            raise StackTestError(f"{sessions} sessions in session_sessions, not {SAMPLE_SESSIONS}")
        (offers, with_id) = analyst_query(
            mysql_port,
            password,
            ca,
            "SELECT COUNT(*), COUNT(session_id) FROM session_offers",
        )[0]
        if not offers or offers != with_id:
            raise StackTestError(f"session_offers: {offers} rows, {with_id} with a session_id")
        (day_sessions,) = analyst_query(
            mysql_port,
            password,
            ca,
            f"SELECT SUM(sessions) FROM v_daily_sessions WHERE session_date = '{SAMPLE_DAY}'",
        )[0]
        (events,) = analyst_query(
            mysql_port, password, ca, "SELECT COUNT(*) FROM v_session_page_events"
        )[0]
        say(
            f"  {sessions} sessions; session_offers (a child view) {offers} rows, each with its "
            f"session_id; v_daily_sessions {day_sessions} sessions on {SAMPLE_DAY}; "
            f"v_session_page_events {events} rows"
        )
        try:
            analyst_query(mysql_port, password, ca, "SELECT COUNT(*) FROM session_stream_rejects")
        except Exception as exc:  # the analyst must not read the raw lines
            say(f"  the rejected lines stay hidden from analyst: {str(exc)[:100]}")
        else:
            raise StackTestError("analyst can read session_stream_rejects")

    with step("the engine's CLI (cli service) sees the day loaded, over TLS as loader"):
        cli = stack.run(
            "run",
            "--rm",
            "-T",
            "cli",
            "session-stream",
            "load",
            "-q",
            "/drop/session_stream/2026/11/01",
        )
        out = cli.stdout + cli.stderr
        skipped = (
            f"files: {SAMPLE_FILES} listed = 0 loaded + {SAMPLE_FILES} skipped (already loaded)"
            " + 0 failed"
        )
        if skipped not in out:
            raise StackTestError(f"the cli load did not skip the 16 loaded files:\n{out[-1500:]}")
        say("  " + next(ln for ln in out.splitlines() if ln.startswith("files:"))[:160])

    with step("the run's quality report through the REST API"):
        summary = api.xcom(DAG, run_id, "fetch", "summary")
        fetched = len(summary.get("fetched") or [])
        if fetched != SAMPLE_FILES:
            raise StackTestError(f"fetch staged {fetched} files, not {SAMPLE_FILES}: {summary}")
        say(
            f"  fetch: {summary.get('listed')} listed, {fetched} fetched; check returned {sorted(report)}"
        )

    with step("a truncated file fails its run and the alert reaches the mail sink"):
        before = len(mails(stack))
        bad = "20261102T000000.000Z_PT15M-999999.json.gz"
        # The first half of a real sample file: a gzip stream that ends early.
        script = (
            "import os, pathlib; day = pathlib.Path('/drop/session_stream/2026/11/01'); "
            "src = sorted(day.iterdir())[0].read_bytes(); "
            "p = pathlib.Path('/drop/session_stream/2026/11/02'); p.mkdir(exist_ok=True); "
            f"f = p / '{bad}'; f.write_bytes(src[: len(src) // 2]); "
            "os.chmod(p, 0o755); os.chmod(f, 0o644)"
        )
        proc = subprocess.run(
            [
                *stack.compose, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yaml"),
                "-p", stack.project, "--env-file", str(stack.env_file),
                "run", "--rm", "--no-deps", "-T", "--entrypoint", "python", "stack-init", "-c", script,
            ],
            capture_output=True, text=True, env=stack.env, timeout=300, cwd=REPO,
        )  # fmt: skip
        if proc.returncode != 0:
            raise StackTestError(f"could not write {bad} into the drop: {proc.stderr[-500:]!r}")
        conf = {
            "start": "2026-11-02T00:00:00+00:00",
            "end": "2026-11-02T01:00:00+00:00",
            "settle_seconds": 0,
            "alert": True,  # a manual run alerts only when asked (docs/operating.md)
        }
        bad_run = api.trigger(DAG, conf)
        api.wait_run(DAG, bad_run, want="failed")
        deadline = time.monotonic() + 180
        while len(found := mails(stack)) <= before:
            if time.monotonic() > deadline:
                raise StackTestError("no alert e-mail reached the mail sink", "mailsink")
            time.sleep(3)
        alert = found[-1]
        if bad not in alert or base_url not in alert:
            raise StackTestError(
                f"the alert does not name {bad} or link under {base_url}:\n{alert[:2000]}"
            )
        subject = next((ln for ln in alert.splitlines() if ln.startswith("Subject:")), "")
        say(f"  run {bad_run} failed; alert to data-team@example.com: {subject[:120]}")
        say(f"  it names {bad} and links under {base_url}")

    with step(f"{METADATA_DAG} fills the lookups from the fake Metadata API"):
        event_ids = [
            int(row[0])
            for row in analyst_query(
                mysql_port,
                password,
                ca,
                "SELECT DISTINCT page_event_id FROM v_session_page_events "
                "WHERE page_event_id IS NOT NULL LIMIT 20",
            )
        ]
        objects = json.dumps([{"id": i, "title": f"event {i}"} for i in event_ids])
        stack.exec(
            "fake-monetate",
            "python",
            "-c",
            "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
            "'http://127.0.0.1:8000/_objects/pageevent', data=sys.argv[1].encode(), method='PUT'))",
            objects,
        )
        pem = stack.exec("fake-monetate", "cat", "/tmp/fake-monetate/api_key.pem")
        api.call("DELETE", "/api/v2/connections/monetate_api", expect=(204, 404))
        api.call(
            "POST",
            "/api/v2/connections",
            json={
                "connection_id": "monetate_api",
                "conn_type": "http",
                "login": "stack-test",
                "password": pem,
                "extra": json.dumps(
                    {
                        "retailer_shortname": FAKE_RETAILER,
                        "api_base": f"{FAKE_API}/metadata/v1",
                        "auth_base": f"{FAKE_API}/auth/v0",
                    }
                ),
            },
            expect=(200, 201),
        )
        api.call("PATCH", f"/api/v2/dags/{METADATA_DAG}", json={"is_paused": False})
        meta_run = api.trigger(METADATA_DAG, {})
        api.wait_run(METADATA_DAG, meta_run)
        (named,) = analyst_query(
            mysql_port,
            password,
            ca,
            "SELECT COUNT(*) FROM v_session_page_events WHERE page_event_title IS NOT NULL",
        )[0]
        (lookup_rows,) = analyst_query(
            mysql_port, password, ca, "SELECT COUNT(*) FROM monetate_page_events"
        )[0]
        if lookup_rows != len(event_ids) or not named:
            raise StackTestError(
                f"monetate_page_events has {lookup_rows} rows (the fake served {len(event_ids)}), "
                f"{named} page events named in v_session_page_events"
            )
        say(
            f"  monetate_page_events: {lookup_rows} rows; v_session_page_events: {named} rows named"
        )

    if args.local_only:
        return

    write_env(tmp, {"AIRFLOW_EXECUTOR": "CeleryExecutor"})
    stack.profiles = PROFILES_CELERY
    with step("up -d --profile celery with AIRFLOW_EXECUTOR=CeleryExecutor"):
        stack.run("up", "-d")
    with step("wait until every service is healthy (redis, airflow-worker too)"):
        states = wait_healthy(stack)
        say("  " + ", ".join(f"{s}: {v}" for s, v in sorted(states.items())))
    with step("load the sample day again (force) under the CeleryExecutor"):
        api.login()
        run_id, report = load_sample_day(api, stack, force=True)
        check_report(report)
        workers = {
            (r.get("Config") or {}).get("Hostname") for r in stack.containers()["airflow-worker"]
        }
        hosts = {ti["task_id"]: ti.get("hostname") for ti in api.task_instances(DAG, run_id)}
        elsewhere = {t: h for t, h in hosts.items() if h not in workers}
        if elsewhere:
            raise StackTestError(
                f"tasks ran outside the Celery worker ({sorted(workers)}): {elsewhere}",
                "airflow-worker",
            )
        (sessions,) = analyst_query(
            mysql_port, password, ca, "SELECT COUNT(*) FROM session_sessions"
        )[0]
        if sessions != SAMPLE_SESSIONS:
            raise StackTestError(f"{sessions} sessions after the reload, not {SAMPLE_SESSIONS}")
        say(
            f"  every task ran on the worker ({', '.join(sorted(workers))}): {', '.join(sorted(hosts))}"
        )
        say(f"  {sessions} sessions after the forced reload")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "include"))
    sys.exit(main())
