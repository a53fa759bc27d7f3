"""`make demo`: from a fresh clone to a day of Monetate sessions in MySQL, through the real DAG.

1. picks a MySQL database: $SESSION_STREAM_DB, else MariaDB/MySQL on 127.0.0.1:3306 as root with
   no password (database session_stream_demo), else a private mariadbd it starts in .demo/mariadb,
2. writes a sample drop (one UTC day of files) under .demo/drop,
3. runs `session-stream init-db`,
4. runs the session_stream DAG for the day with `airflow dags test` (a private AIRFLOW_HOME in
   .demo/airflow; the connection and Variable go in as AIRFLOW_CONN_*/AIRFLOW_VAR_* env vars),
5. prints what the ledger says was loaded, a few example queries, and how to connect.

Safe to run again: the ledger skips files already loaded, and the summary is printed anyway.

Environment: DEMO_DAY (2026-11-01), DEMO_SESSIONS (80000), DEMO_FILES (16), DEMO_BAD_LINES (3),
DEMO_DIR (.demo; the tests point it at a temporary folder), SESSION_STREAM_DB.
Exit status: 0 loaded, 1 the DAG run failed, 2 a set-up problem (one line says what to do).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from session_stream import tables
    from session_stream.errors import ConfigError, SessionStreamError
    from session_stream.runs.policy import LOAD_POOL
    from session_stream.sql import quote
    from session_stream.warehouse import db
    from session_stream.warehouse.load import is_loaded
except ImportError:  # run with a Python that is not the project's venv
    sys.exit("scripts/demo.py needs the project's virtualenv: run `make demo` (it creates .venv/)")

BIN = Path(sys.executable).parent  # session-stream and airflow live next to the venv's python
DEMO_DATABASE = "session_stream_demo"
LOCAL_SERVER = ("127.0.0.1", 3306)
DAG_ID = "session_stream"
INSTALL_HINT = (
    "no MySQL found: install MariaDB (`sudo apt-get install mariadb-server`, or "
    "`brew install mariadb`) and run `make demo` again, or set SESSION_STREAM_DB="
    f"{db.URL_FORM} to use a server you have"
)
# Where package managers put mariadbd, often outside a normal user's PATH.
SERVER_DIRS = (
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/opt/homebrew/bin",
    "/usr/local/mysql/bin",
)

# Piped output (CI, tests) gets room for the tables instead of rich's default 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@dataclass(frozen=True)
class Settings:
    day: date
    sessions: int
    files: int
    bad_lines: int
    home: Path  # DEMO_DIR: everything the demo writes

    @property
    def drop(self) -> Path:
        return self.home / "drop"

    @property
    def day_folder(self) -> Path:
        return self.drop / f"{self.day:%Y}" / f"{self.day:%m}" / f"{self.day:%d}"

    @classmethod
    def from_env(cls) -> Settings:
        def number(name: str, default: int, minimum: int) -> int:
            raw = os.environ.get(name) or str(default)
            if not raw.isdigit() or int(raw) < minimum:
                raise ConfigError(f"{name} must be a whole number >= {minimum}, got {raw!r}")
            return int(raw)

        raw_day = os.environ.get("DEMO_DAY") or "2026-11-01"
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            raise ConfigError(f"DEMO_DAY must look like YYYY-MM-DD, got {raw_day!r}") from None
        return cls(
            day=day,
            sessions=number("DEMO_SESSIONS", 80_000, 1),
            files=number("DEMO_FILES", 16, 1),
            bad_lines=number("DEMO_BAD_LINES", 3, 0),
            home=Path(os.environ.get("DEMO_DIR") or REPO / ".demo").resolve(),
        )


def show_command(args: list[str], env_note: str = "") -> None:
    """Echo a command the way a user would type it from the repo (.venv/bin/airflow ...)."""
    program = Path(args[0])
    if program.is_relative_to(Path.cwd()):
        program = program.relative_to(Path.cwd())
    shown = " ".join([str(program) if "/" in str(program) else program.name, *args[1:]])
    console.print(f"[dim]$ {escape(env_note + shown)}[/]", soft_wrap=True)


def run(args: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
    """Run a command, returning its output; a failure ends the demo with that output."""
    proc = subprocess.run(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        console.print(proc.stdout.rstrip(), markup=False)
        raise ConfigError(f"{what} failed (exit {proc.returncode}); its output is above")
    return proc.stdout


# ---------------------------------------------------------------- the sample drop


def make_drop(s: Settings) -> list[Path]:
    """The day's files, written once: a marker remembers what was generated, so a second run
    reuses the files (same names, same sizes: the ledger skips them)."""
    marker = s.home / "drop.json"
    wanted = {
        "day": s.day.isoformat(),
        "sessions": s.sessions,
        "files": s.files,
        "bad_lines": s.bad_lines,
    }
    existing = sorted(s.day_folder.glob("*.json.gz"))
    if marker.exists() and json.loads(marker.read_text()) == wanted and len(existing) == s.files:
        console.print(f"sample drop already there: {len(existing)} files in {s.day_folder}")
        return existing
    # Other settings than last time: start the day over, or old files would load alongside.
    shutil.rmtree(s.day_folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    args = [
        str(BIN / "session-stream"),
        "generate-sample",
        "--out",
        str(s.drop),
        "--day",
        s.day.isoformat(),
        "--sessions",
        str(s.sessions),
        "--files",
        str(s.files),
        "--bad-lines",
        str(s.bad_lines),
    ]
    show_command(args)
    with console.status(f"writing {s.sessions:,} sessions into {s.files} files"):
        console.print(run(args, what="generate-sample").strip())
    marker.write_text(json.dumps(wanted))
    return sorted(s.day_folder.glob("*.json.gz"))


# ---------------------------------------------------------------- the database


@dataclass
class Database:
    url: db.DbUrl
    origin: str  # how it was chosen, for the output
    stop_hint: str | None = None  # how to stop a server the demo started


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def can_login(url: db.DbUrl) -> bool:
    try:
        db.connect(url, database=False).close()
        return True
    except SessionStreamError:
        return False


def create_database(url: db.DbUrl) -> None:
    conn = db.connect(url, database=False)
    conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}` CHARACTER SET utf8mb4")
    conn.close()


def find_binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SERVER_DIRS))
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_private_server(folder: Path, server: str, install_db: str) -> Database:
    """A mariadbd of our own in `folder`, on a free port of 127.0.0.1; reused while it runs.

    Root logs in without a password, which is fine for a server that listens on loopback only
    and holds nothing but demo data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data, pid_file, port_file = folder / "data", folder / "mariadbd.pid", folder / "port"
    sock = folder / "mariadbd.sock"
    if len(str(sock)) > 100:  # a Unix socket path is limited to ~107 bytes
        sock = Path("/tmp") / f"session_stream_demo_{zlib.crc32(bytes(folder)):08x}.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise

    if not (data / "mysql").is_dir():
        shutil.rmtree(data, ignore_errors=True)
        args = [
            install_db,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            # No DNS check of the host name: the server runs with --skip-name-resolve, and a fresh
            # container or chroot often has no /etc/hosts ("Neither host ... could be looked up").
            "--force",
            *user,
        ]
        show_command(args)
        run(args, what="mariadb-install-db")

    port = int(port_file.read_text()) if port_file.exists() else 0
    started = None
    if not pid_alive(pid_file):
        if not port or port_open("127.0.0.1", port):
            port = free_port()
        port_file.write_text(str(port))
        args = [
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={sock}",
            f"--pid-file={pid_file}",
            f"--log-error={folder / 'error.log'}",
            "--skip-name-resolve",
            "--local-infile=1",
            *user,
        ]
        show_command(args)
        # A session of its own: the server outlives the demo and ignores the terminal's Ctrl-C.
        started = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = db.DbUrl("127.0.0.1", port, "root", "", DEMO_DATABASE)
    deadline = time.monotonic() + 60
    while not can_login(url):
        if time.monotonic() > deadline or (started and started.poll() is not None):
            raise ConfigError(f"the private MariaDB did not start: see {folder / 'error.log'}")
        time.sleep(0.5)
    return Database(url, f"private MariaDB in {folder}", stop_hint=f"kill $(cat {pid_file})")


def choose_database(s: Settings) -> Database:
    if os.environ.get(db.DB_ENV):
        return Database(db.DbUrl.parse(None), f"${db.DB_ENV}")
    local = db.DbUrl(*LOCAL_SERVER, "root", "", DEMO_DATABASE)
    if port_open(*LOCAL_SERVER) and can_login(local):
        create_database(local)
        return Database(local, "the server on 127.0.0.1:3306")
    server = find_binary("mariadbd", "mysqld")
    install_db = find_binary("mariadb-install-db", "mysql_install_db")
    if not (server and install_db):
        raise ConfigError(INSTALL_HINT)
    database = start_private_server(s.home / "mariadb", server, install_db)
    create_database(database.url)
    return database


def url_with_password(url: db.DbUrl) -> str:
    """The full URL, for child processes' environments only: never printed or put in argv."""
    from urllib.parse import quote

    auth = quote(url.user, safe="") + (":" + quote(url.password, safe="") if url.password else "")
    tls = tls_query(url)
    return f"mysql://{auth}@{url.host}:{url.port}/{quote(url.database, safe='')}{tls}"


def tls_query(url: db.DbUrl) -> str:
    """The URL's TLS settings as its query string again (MySQL's option names), or ''."""
    from urllib.parse import urlencode

    names = {v: k for k, v in db.SSL_FILES.items()}
    options = ([("ssl-mode", url.ssl_mode)] if url.ssl_mode else []) + [
        (names[k], v) for k, v in url.ssl
    ]
    return f"?{urlencode(options)}" if options else ""


# ---------------------------------------------------------------- init-db


def init_db(database: Database) -> None:
    conn = db.connect(database.url)
    try:
        db.check_local_infile(conn)  # the DAG's LOAD DATA LOCAL needs it; say so before Airflow
    finally:
        conn.close()
    args = [str(BIN / "session-stream"), "init-db"]
    show_command(args, env_note=f"SESSION_STREAM_DB={database.url} ")
    env = {**os.environ, db.DB_ENV: url_with_password(database.url)}
    console.print(run(args, env=env, what="session-stream init-db").strip())


# ---------------------------------------------------------------- the DAG run


def airflow_env(home: Path, database: Database, drop: Path) -> dict[str, str]:
    """A private Airflow: our DAGs folder, SQLite in `home`, the connection and Variable as env
    vars. The caller's own AIRFLOW_* settings are left out so they cannot change the demo."""
    url = database.url
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    pythonpath = [str(REPO / "include"), str(REPO / "plugins")]
    if base.get("PYTHONPATH"):
        pythonpath.append(base["PYTHONPATH"])
    connection = {
        "conn_type": "mysql",
        "host": url.host,
        "port": url.port,
        "login": url.user,
        "password": url.password,
        "schema": url.database,
    }
    if url.ssl_mode or url.ssl:  # TLS as SESSION_STREAM_DB asked for it, in the provider's extras
        connection["extra"] = {"ssl_mode": url.ssl_mode, "ssl": dict(url.ssl)}
    return {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "AIRFLOW_CONN_SESSION_STREAM_MYSQL": json.dumps(connection),
        "AIRFLOW_VAR_SESSION_STREAM_DROP_URL": str(drop),
        # A failure should show at once, not after the production retry back-off.
        "AIRFLOW_VAR_SESSION_STREAM_RETRIES": "0",
    }


def prepare_airflow(home: Path, env: dict[str, str]) -> None:
    """`airflow db migrate` and the load pool, once per Airflow version."""
    from importlib.metadata import version

    marker = home / ".demo-migrated"
    wanted = version("apache-airflow")
    if marker.exists() and marker.read_text() == wanted:
        return
    home.mkdir(parents=True, exist_ok=True)
    for args, what in (
        ([str(BIN / "airflow"), "db", "migrate"], "airflow db migrate"),
        (
            [str(BIN / "airflow"), "pools", "set", LOAD_POOL, "2", "session_stream loads"],
            "airflow pools set",
        ),
    ):
        show_command(args)
        with console.status(f"{what} (first run only)"):
            run(args, env=env, what=what)
    marker.write_text(wanted)


@dataclass
class DagRun:
    ok: bool  # `airflow dags test` exits non-zero when the run failed
    seconds: float
    log: Path


def run_dag(s: Settings, env: dict[str, str], home: Path) -> DagRun:
    start = f"{s.day.isoformat()}T00:00:00+00:00"
    end = f"{(s.day + timedelta(days=1)).isoformat()}T00:00:00+00:00"
    # start/end make one run load the whole day; the files were written moments ago, so no
    # settle time, and no look-back outside the day.
    conf = {"start": start, "end": end, "settle_seconds": 0, "lookback_hours": 0}
    args = [str(BIN / "airflow"), "dags", "test", DAG_ID, end, "-c", json.dumps(conf)]
    show_command(args[:-1] + [f"'{args[-1]}'"])
    log = home / "last_run.log"
    began = time.monotonic()
    with open(log, "w") as out, console.status(f"running the DAG (log: {log})"):
        proc = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    return DagRun(proc.returncode == 0, time.monotonic() - began, log)


# ---------------------------------------------------------------- what was loaded


def server_now(url: db.DbUrl):
    """The server's clock: the ledger's loaded_at is MySQL's, so "changed by this run" is
    "loaded_at at or after this"."""
    conn = db.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT NOW(3)")
        return cur.fetchone()[0]
    finally:
        conn.close()


def ledger(url: db.DbUrl, names: list[str], since) -> tuple[dict[str, dict], dict[str, int]]:
    """The ledger rows of the sample files (`touched`: the row changed at or after `since`), and
    the row count of every table."""
    cols = [
        "file_name",
        "status",
        "size",
        "sessions",
        "repeats",
        *(tables.rows_column(t) for t in tables.TABLES),
        "rejects",
        "split_seconds",
        "load_seconds",
        "error",
    ]
    marks = ", ".join(["%s"] * len(names))
    conn = db.connect(url)
    try:
        cur = conn.cursor()
        cur.execute(
            f"SELECT {', '.join(quote(c) for c in cols)}, {quote(tables.LOADED_AT_COLUMN)} >= %s"
            f" FROM {quote(tables.LEDGER_TABLE)} WHERE file_name IN ({marks})",
            [since, *names],
        )
        rows = {r[0]: {**dict(zip(cols, r[:-1], strict=True)), "touched": bool(r[-1])} for r in cur}
        counts = {}
        for t in tables.TABLES:
            cur.execute(f"SELECT COUNT(*) FROM {quote(t.name)}")
            counts[t.name] = cur.fetchone()[0]
    finally:
        conn.close()
    return rows, counts


def print_summary(url: db.DbUrl, files: list[Path], since, dag: DagRun) -> None:
    """The ledger's view of the sample files, and what the tables hold now. A file counts as
    loaded when the ledger holds it as loaded at its current size; "by this run" when its
    ledger row changed during the run."""
    size = {p.name: p.stat().st_size for p in files}
    rows, counts = ledger(url, list(size), since)
    ok = [n for n in size if is_loaded(rows.get(n), size[n])]
    failed = [n for n in size if n in rows and n not in ok]
    now_loaded = [n for n in ok if rows[n]["touched"]]
    loaded = [rows[n] for n in ok]

    table = Table(
        title=f"ledger ({tables.LEDGER_TABLE}) for the {len(size)} sample files",
        header_style="bold",
    )
    table.add_column("table")
    table.add_column("rows loaded (ledger)", justify="right")
    table.add_column("rows in table now", justify="right")
    for t in tables.TABLES:
        table.add_row(
            t.name, f"{sum(r[tables.rows_column(t)] or 0 for r in loaded):,}", f"{counts[t.name]:,}"
        )
    console.print(table)

    def total(col: str) -> float:
        return sum(r[col] or 0 for r in loaded)

    console.print(
        f"files: {len(ok)} of {len(size)} loaded ({len(now_loaded)} by this run, "
        f"{len(ok) - len(now_loaded)} skipped as already loaded, {len(failed)} failed) | "
        f"session versions read: {total('sessions') + total('repeats'):,} | sessions written: "
        f"{total(tables.rows_column(tables.SESSIONS)):,} | sessions now stored: "
        f"{counts[tables.SESSIONS.name]:,} | rejects: {total('rejects'):,} | "
        f"split {total('split_seconds'):.1f}s + load {total('load_seconds'):.1f}s (ledger) | "
        f"DAG run {dag.seconds:.0f}s",
        soft_wrap=True,
    )
    console.print(
        "[dim]A session re-sent in a later file replaces its older version and that version's "
        "child rows (newest wins), so the tables hold fewer rows than were loaded.[/]",
        soft_wrap=True,
    )
    for n in failed:
        console.print(f"[red]failed[/] {n}: {escape(rows[n]['error'] or '')}", soft_wrap=True)


# Example queries a user can paste into mysql; the demo test runs every one of them.
QUERIES: list[tuple[str, str]] = [
    (
        "Sessions, purchases and revenue by country (Tableau maps country_code and city)",
        """\
SELECT country_code, COUNT(*) AS sessions, SUM(has_purchase) AS purchasing,
       SUM(session_value) AS revenue, ROUND(AVG(time_on_site)) AS avg_seconds
FROM session_sessions GROUP BY country_code ORDER BY sessions DESC LIMIT 6""",
    ),
    (
        "Monetate's guide: sessions left-joined to a child table on session_id",
        """\
SELECT s.device_type, COUNT(DISTINCT s.session_id) AS sessions, COUNT(c.product_id) AS cart_lines
FROM session_sessions s LEFT JOIN session_cart_lines c ON c.session_id = s.session_id
GROUP BY s.device_type ORDER BY sessions DESC""",
    ),
    (
        "Top offers (experience names fill in once `session-stream refresh-metadata` has run)",
        """\
SELECT offer_id, experience_name, COUNT(*) AS sessions
FROM v_session_offers GROUP BY offer_id, experience_name ORDER BY sessions DESC LIMIT 5""",
    ),
    (
        "Daily roll-up",
        """\
SELECT session_date, SUM(sessions) AS sessions, SUM(carts) AS carts,
       SUM(purchases) AS purchases, SUM(revenue) AS revenue,
       ROUND(SUM(purchases) / SUM(sessions), 4) AS conversion
FROM v_daily_sessions GROUP BY session_date ORDER BY session_date""",
    ),
    (
        "Rejected lines (the sample has a few broken ones on purpose)",
        """\
SELECT file_name, line_no, reason FROM session_stream_rejects
ORDER BY file_name, line_no LIMIT 5""",
    ),
    (
        "Keys the files carried that the spec does not know (the sample adds some on purpose)",
        """\
SELECT file_name, unknown_keys FROM session_stream_files
WHERE unknown_keys IS NOT NULL ORDER BY file_name LIMIT 3""",
    ),
]


def print_queries(url: db.DbUrl) -> None:
    conn = db.connect(url)
    cur = conn.cursor()
    for title, sql in QUERIES:
        cur.execute(sql)
        table = Table(header_style="bold")
        rows = cur.fetchall()
        for i, col in enumerate(cur.description):
            numeric = rows and all(isinstance(r[i], int | float | Decimal) for r in rows)
            table.add_column(col[0], justify="right" if numeric else "left")
        for row in rows:
            table.add_row(*("NULL" if v is None else escape(str(v)) for v in row))
        console.print(f"[bold]-- {title}[/]", soft_wrap=True)
        console.print(f"[dim]{sql};[/]", soft_wrap=True)
        console.print(table)
    conn.close()


def print_connect(database: Database) -> None:
    url = database.url
    password = " -p" if url.password else ""  # ask for it; never show it
    console.print(
        f"mysql:   mysql -h {url.host} -P {url.port} -u {url.user}{password} {url.database}",
        soft_wrap=True,
    )
    console.print(
        f"Tableau: Connect > To a Server > MySQL; server {url.host}, port {url.port}, "
        f"database {url.database}, user {url.user} (install the MySQL driver Tableau asks "
        "for); start with the views v_daily_sessions and v_session_offers.",
        soft_wrap=True,
    )
    if database.stop_hint:
        console.print(
            f"The private MariaDB keeps running; stop it with: {database.stop_hint}", soft_wrap=True
        )


# ---------------------------------------------------------------- main


def step(title: str) -> None:
    console.rule(f"[bold]{title}", align="left")


def demo() -> int:
    s = Settings.from_env()
    s.home.mkdir(parents=True, exist_ok=True)

    # The database first: without one there is no point writing the sample.
    step("1. MySQL")
    database = choose_database(s)
    console.print(f"using {database.url} ({database.origin})")

    step(f"2. sample drop: {s.day}, {s.sessions:,} sessions in {s.files} files")
    files = make_drop(s)

    step("3. schema")
    init_db(database)

    step("4. the session_stream DAG, through Airflow")
    home = s.home / "airflow"
    env = airflow_env(home, database, s.drop)
    prepare_airflow(home, env)
    since = server_now(database.url)
    dag = run_dag(s, env, home)
    if dag.ok:
        console.print(f"[green]DAG run succeeded[/] in {dag.seconds:.0f}s (log: {dag.log})")
    else:
        console.print(
            f"[red]the DAG run failed[/]; its log is in {dag.log}, the failed files below"
        )
        console.print(
            f"Fix what it names and run `make demo` again (rm -rf {s.home} starts over).",
            soft_wrap=True,
        )

    step("5. what was loaded")
    print_summary(database.url, files, since, dag)
    if not dag.ok:
        return 1

    step("6. example queries")
    print_queries(database.url)

    step("7. connect")
    print_connect(database)
    return 0


def main() -> int:
    try:
        return demo()
    except SessionStreamError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("interrupted")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
