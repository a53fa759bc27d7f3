"""`make bench-backfill`: a backfill through Airflow's real scheduler against the CLI, same files.

1. Writes three days of the sample drop (3 x 96 files, 80,000 sessions a day) into a fresh
   folder: every file is seconds old, as after copying history into the drop.
2. Starts `airflow standalone` (scheduler with LocalExecutor, DAG processor, triggerer, API
   server) in a throwaway AIRFLOW_HOME, configured as the README says, on a fresh warehouse.
3. Right away, `airflow backfill create --dag-id session_stream_daily` for the three days, and
   waits for the three runs to end: its wall time, from the command to the last run's end.
4. `session-stream load` of the same files into another fresh database (the CLI's pipeline).
5. Checks every file is loaded in both (the ledger) and the session tables are identical
   (an order-free checksum of every row of every table).

Prints the figures and exits 1 when a check fails or the backfill is slower than
1.5 x the CLI + 60 s (the issue's bar). Loopback only; the databases and folders are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from benchmarks import benchkit
from session_stream import tables
from session_stream.drop import sample
from session_stream.warehouse import db

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AIRFLOW = BIN / "airflow"
DAG_ID = "session_stream_daily"
FIRST_DAY = date(2026, 11, 1)
DAYS = 3


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    print(text, flush=True)


def checksums(url: str) -> dict[str, tuple[int, int]]:
    """Per table: (rows, sum of a 60-bit hash of each row's analyst-visible columns), so two
    warehouses loaded in different orders (other session_key values) compare equal."""
    conn = db.connect(url)
    cur = conn.cursor()
    out = {}
    for table in tables.TABLES:
        cols = table.column_names + (
            [tables.SOURCE_FILE_COLUMN] if table is tables.SESSIONS else []
        )
        row = (
            "CONCAT_WS(0x1f, "
            + ", ".join(f"COALESCE(CAST(`{c}` AS CHAR), 0x1e)" for c in cols)
            + ")"
        )
        cur.execute(
            # CAST: CONV gives text, which SUM would add as floating point (inexact).
            "SELECT COUNT(*),"
            f" COALESCE(SUM(CAST(CONV(LEFT(SHA2({row}, 256), 15), 16, 10) AS UNSIGNED)), 0)"
            f" FROM `{table.name}`"
        )
        n, total = cur.fetchone()
        out[table.name] = (int(n), int(total))
    conn.close()
    return out


def ledger_status(url: str) -> dict[str, str]:
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute(f"SELECT file_name, status FROM `{tables.LEDGER_TABLE}`")
    out = dict(cur.fetchall())
    conn.close()
    return out


class Airflow:
    def __init__(self, home: Path, env: dict[str, str], port: int):
        self.home, self.env, self.port = home, env, port
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(AIRFLOW), *args], env=self.env, cwd=self.home, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise SystemExit(
                f"airflow {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
        return proc

    def start(self) -> None:
        log = open(self.home / "standalone.log", "wb")  # noqa: SIM115 - open while it runs
        self.proc = subprocess.Popen(
            [str(AIRFLOW), "standalone"],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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

    def tail(self) -> str:
        path = self.home / "standalone.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def api(self, path: str):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2{path}", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"airflow standalone died:\n{self.tail()}")
            try:
                self.api(f"/dags/{DAG_ID}")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise SystemExit(f"airflow standalone did not come up in {timeout:.0f} s:\n{self.tail()}")

    def runs(self) -> list[dict]:
        runs = self.api(f"/dags/{DAG_ID}/dagRuns?limit=50")["dag_runs"]
        return [r for r in runs if r["run_type"] == "backfill"]

    def tasks(self, run_id: str) -> list[dict]:
        return self.api(f"/dags/{DAG_ID}/dagRuns/{quote(run_id)}/taskInstances")["task_instances"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server", default=os.environ.get("BENCH_SERVER", "mysql://root:@127.0.0.1:3306")
    )
    parser.add_argument("--sessions", type=int, default=80_000, help="per day")
    parser.add_argument("--files", type=int, default=96, help="per day")
    parser.add_argument("--keep", action="store_true", help="keep the folder and databases")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="ss_bench_backfill_"))
    home, drop = root / "airflow", root / "drop"
    home.mkdir()
    urls = {
        "airflow": benchkit.fresh_database(args.server, "ss_bf_airflow"),
        "cli": benchkit.fresh_database(args.server, "ss_bf_cli"),
    }
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SESSION_STREAM"))}
    parsed = db.DbUrl.parse(urls["airflow"])
    env = {
        **clean,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins")]),
        "AIRFLOW_HOME": str(home),
        # SQLite, as `airflow standalone` makes it: a writer waits up to a minute for the lock
        # (Python's default, 5 s, made `backfill create` fail beside the busy scheduler).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=60",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW_CONN_SESSION_STREAM_MYSQL": json.dumps(
            {
                "conn_type": "mysql",
                "host": parsed.host,
                "port": parsed.port,
                "login": parsed.user,
                "password": parsed.password,
                "schema": parsed.database,
            }
        ),
        "AIRFLOW_VAR_SESSION_STREAM_DROP_URL": str(drop),
        "AIRFLOW_VAR_SESSION_STREAM_STAGING_URL": str(home / "staging"),
    }
    airflow = Airflow(home, env, port)
    status = 1
    try:
        say(f"bench-backfill: {DAYS} days x {args.files} files, {args.sessions:,} sessions a day")
        t = time.monotonic()
        airflow.cli("db", "migrate")
        airflow.cli("pools", "set", "session_stream_load", "2", "session-stream loads")
        airflow.start()
        airflow.wait_ready(300)
        # A paused DAG's tasks are never queued, backfills' included (README: unpause it).
        airflow.cli("dags", "unpause", DAG_ID)
        startup = time.monotonic() - t
        say(f"  airflow standalone up (db migrate, pool, DAGs parsed): {startup:.1f} s")

        t = time.monotonic()
        paths = []
        for d in range(DAYS):
            paths += sample.write_drop(
                drop,
                FIRST_DAY + timedelta(days=d),
                sessions=args.sessions,
                files=args.files,
                seed=d,
            )
        say(
            f"  wrote {len(paths)} files ({sum(p.stat().st_size for p in paths) / 1e6:.1f} MB)"
            f" in {time.monotonic() - t:.1f} s; backfilling them at once"
        )

        last = FIRST_DAY + timedelta(days=DAYS)
        began = time.monotonic()
        airflow.cli(
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            f"{FIRST_DAY.isoformat()}T00:00:00+00:00",
            "--to-date",
            f"{(last - timedelta(days=1)).isoformat()}T00:00:00+00:00",
        )
        created = time.monotonic() - began
        runs: list[dict] = []
        while time.monotonic() - began < 1800:
            runs = airflow.runs()
            if len(runs) >= DAYS and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(0.5)
        backfill = time.monotonic() - began
        states = {r["dag_run_id"]: r["state"] for r in runs}
        tis = [t for r in states for t in airflow.tasks(r)]
        say(
            f"  airflow backfill create → {len(runs)} runs done: {backfill:.1f} s"
            f" (the command itself {created:.1f} s); {len(tis)} task instances; {states}"
        )
        # Where the time went: each task's run time, and its wait from queued to started.
        by_task: dict[str, list[tuple[float, float]]] = {}
        for t in tis:
            if t.get("start_date") and t.get("end_date"):
                start, end = (datetime.fromisoformat(t[k]) for k in ("start_date", "end_date"))
                queued = datetime.fromisoformat(t.get("queued_when") or t["start_date"])
                by_task.setdefault(t["task_id"], []).append(
                    ((end - start).total_seconds(), (start - queued).total_seconds())
                )
        say(
            "  per task, over the runs: "
            + "; ".join(
                f"{task} {min(r for r, _ in v):.1f}-{max(r for r, _ in v):.1f} s"
                f" (queued {max(w for _, w in v):.1f} s at most)"
                for task, v in by_task.items()
            )
        )

        # The CLI, the same files, another database: as `session-stream load` runs them,
        # once InnoDB has written out what the backfill left dirty.
        benchkit.quiet_server(args.server)
        _, cli_seconds = benchkit.load(urls["cli"], sorted(paths), 2)
        say(f"  session-stream load, same files, another database: {cli_seconds:.1f} s")

        names = {p.name for p in paths}
        loaded = {
            u: {n for n, s in ledger_status(url).items() if s == "loaded"}
            for u, url in urls.items()
        }
        sums = {u: checksums(url) for u, url in urls.items()}
        all_loaded = all(loaded[u] >= names for u in urls)
        same = sums["airflow"] == sums["cli"]
        bar = 1.5 * cli_seconds + 60
        sessions = sums["cli"][tables.SESSIONS.name][0]
        say("")
        say("| path | wall time | files loaded | sessions now stored |")
        say("|---|---:|---:|---:|")
        say(
            f"| `airflow backfill create` ({DAG_ID}, {DAYS} runs) | {backfill:.1f} s |"
            f" {len(loaded['airflow'] & names)} of {len(names)} | {sums['airflow'][tables.SESSIONS.name][0]:,} |"
        )
        say(
            f"| `session-stream load` | {cli_seconds:.1f} s | {len(loaded['cli'] & names)} of"
            f" {len(names)} | {sessions:,} |"
        )
        say("")
        say(
            f"backfill / CLI = {backfill / cli_seconds:.2f}x; bar 1.5 x CLI + 60 s = {bar:.1f} s:"
            f" {'met' if backfill <= bar else 'MISSED'}"
        )
        say(
            f"every file loaded: {'yes' if all_loaded else 'NO'}; tables identical (row"
            f" checksums of {len(sums['cli'])} tables): {'yes' if same else 'NO'}"
        )
        if not same:
            for table in sums["cli"]:
                if sums["cli"][table] != sums["airflow"][table]:
                    say(f"  {table}: cli {sums['cli'][table]} airflow {sums['airflow'][table]}")
        status = (
            0
            if (all_loaded and same and backfill <= bar and set(states.values()) == {"success"})
            else 1
        )
    finally:
        airflow.stop()
        if args.keep:
            say(f"kept {root} and {', '.join(urls.values())}")
        else:
            for url in urls.values():
                benchkit.drop_database(url)
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
