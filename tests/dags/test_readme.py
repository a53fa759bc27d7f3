"""The README's command blocks run as written, so they cannot rot (and those of docs/).

Each test takes one ```bash block from README.md or a page of docs/, swaps the example values (a server URL, an
SFTP address, the day's sizes) for test ones listed here, and runs it with bash -e. Lines that
need what a test cannot have (a long-running web server, the real Monetate SFTP) are listed too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from warehouse import query

from session_stream import tables
from session_stream.drop import sample

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
# The README and the docs/ pages: each topic moved there keeps the test that kept it true.
PAGES = {p: p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}


def page_with(heading: str) -> tuple[str, int]:
    """The text of the one page with a heading that says `heading` (at any level), and where."""
    title = heading.lstrip("#").strip()
    found = [
        (text, m.start())
        for text in PAGES.values()
        for m in re.finditer(rf"^#+ {re.escape(title)}$", text, re.M)
    ]
    assert len(found) == 1, f"{len(found)} headings {title!r} in README.md and docs/"
    return found[0]


def bash_block(heading: str) -> str:
    """The first ```bash block after `heading`."""
    text, start = page_with(heading)
    match = re.compile(r"```bash\n(.*?)```", re.S).search(text, start)
    assert match, f"no bash block after {heading!r}"
    return match.group(1)


def run_block(block: str, replace: dict[str, str], skip: tuple[str, ...], env: dict[str, str]):
    for old, new in replace.items():
        assert old in block, f"the README no longer says {old!r}: update this test"
        block = block.replace(old, new)
    lines = [line for line in block.splitlines() if not line.lstrip().startswith(skip)]
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SESSION_STREAM"))}
    return subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_block_runs(fresh_db_url, tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "split"
    result = run_block(
        bash_block("## Loading files from the command line"),
        replace={
            "mysql://loader:secret@127.0.0.1:3306/warehouse": fresh_db_url,
            "/tmp/drop": str(drop),
            "--sessions 80000 --files 16": "--sessions 400 --files 4",
            "FILE.json.gz": f"$(find {drop} -name '*.json.gz' | sort | head -1)",
            "--out DIR": f"--out {out}",
        },
        skip=("mysql -e",),  # the fixture made the database
        env={},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 loaded" in result.stdout
    assert query(fresh_db_url, f"SELECT COUNT(*) FROM {tables.SESSIONS.name}") == [(400,)]
    assert (out / "manifest.json").exists()


def test_airflow_block_runs(fresh_db_url, tmp_path):
    drop = tmp_path / "drop"
    files = sample.write_hour(drop, datetime(2026, 11, 1, 0, tzinfo=UTC), sessions=120, files=3)
    old = time.time() - 3600  # delivered an hour ago: settled
    for f in files:
        os.utime(f, (old, old))
    home = tmp_path / "airflow"
    database = fresh_db_url.rsplit("/", 1)[1]
    block = bash_block("### Point it at your drop and your warehouse")
    result = run_block(
        block,
        replace={
            "$PWD/.airflow": str(home),
            # The test's own database, on the test server, in place of `warehouse`.
            "CREATE DATABASE IF NOT EXISTS warehouse": f"CREATE DATABASE IF NOT EXISTS {database}",
            "mysql://loader:secret@127.0.0.1:3306/warehouse": fresh_db_url,
            "sftp://monetate_user@sftp.monetate.net/~/1234/raw_data/session_stream": str(drop),
        },
        skip=("airflow standalone",),  # a web server that runs until stopped
        env={},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # Complete and in order: the database before its tables, connections, Variables and the
    # pool before the first run, every DAG unpaused, the port and the base URL for the links.
    order = [
        "CREATE DATABASE",
        "session-stream init-db",
        "airflow db migrate",
        "airflow connections add session_stream_mysql",
        "airflow variables set session_stream_drop_url",
        "airflow pools set session_stream_load",
        "airflow dags unpause session_stream\n",
        "airflow dags unpause session_stream_daily",
        "airflow dags unpause monetate_metadata_refresh",
        "airflow dags test",
        "airflow standalone",
    ]
    at = [block.index(step) for step in order]
    assert at == sorted(at), "the README's Airflow set-up is out of order"
    assert "AIRFLOW__API__PORT=" in block and "AIRFLOW__API__BASE_URL=" in block
    assert query(
        fresh_db_url, f"SELECT COUNT(*) FROM {tables.LEDGER_TABLE} WHERE status = 'loaded'"
    ) == [(3,)]
    sessions = query(fresh_db_url, f"SELECT COUNT(*) FROM {tables.SESSIONS.name}")[0][0]
    assert sessions == 120

    # The backfill command, as a dry run: creating runs needs a scheduler to execute them.
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    listed = run_block("airflow dags list -o json", replace={}, skip=(), env=env)
    # The JSON list is the line that starts with "[" (Airflow may log before it).
    found = [line for line in listed.stdout.splitlines() if line.startswith("[")]
    assert found, listed.stdout + listed.stderr
    paused = {d["dag_id"]: str(d["is_paused"]) == "True" for d in json.loads(found[-1])}
    assert paused == {
        "session_stream": False,
        "session_stream_daily": False,
        "monetate_metadata_refresh": False,
    }, listed.stdout + listed.stderr
    result = run_block(
        bash_block("### Backfill"),
        replace={"--to-date 2026-10-31": "--to-date 2026-10-02 --dry-run"},
        skip=(),
        env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # One run a day: the daily DAG.
    assert (
        "2026-10-01 00:00:00+00:00" in result.stdout
        and "2026-10-02 00:00:00+00:00" in result.stdout
    )
    assert "2026-10-01 01:00:00+00:00" not in result.stdout


@pytest.mark.parametrize("heading", ["## The two commands", "## Benchmark"])
def test_make_targets_named_in_the_readme_exist(heading):
    makefile = (REPO / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", bash_block(heading), re.M):
        assert re.search(rf"^{target}:", makefile, re.M), (
            f"make {target} is in the README but not the Makefile"
        )


def test_the_design_section_names_every_module_and_no_other():
    text, start = page_with("## Design")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    named = set(re.findall(r"`([\w/]+\.py)`", section))
    modules = {
        str(p.relative_to(REPO / root))
        for root, folder in (
            ("include/session_stream", "include/session_stream"),
            ("plugins", "plugins"),
            (".", "benchmarks"),
        )
        for p in (REPO / folder).rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules - named == set(), "modules the README's Design section does not describe"
    assert named - modules == set(), "the Design section names modules that do not exist"
