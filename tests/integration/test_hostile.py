"""Hostile files and hung servers (issue 20), each case as a hostile data engineer ran it, on a
real MariaDB: every line and every listed entry accounted for, memory bounded, no silent wait,
one line of error where the README promises one."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from warehouse import query

from session_stream import db, tables
from session_stream.errors import ConfigError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "session_stream.cli"]
DAY = "2026/11/02"


def name(minute: int, number: int = 1) -> str:
    return f"20261102T00{minute:02d}00.000Z_PT15M-{number}.json.gz"


def session(sid: str, end: int = 1793500000000, **more) -> dict:
    return {"session_id": sid, "end_time": end, **more}


def write_gz(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line))
            f.write(b"\n")
    return path


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=600, env=env, cwd=REPO
    )


# ---------------------------------------------------------------- 10. a malformed database URL


@pytest.mark.parametrize(
    "url", ["mysql://u:pw@[::1/db", "mysql://u:p[w@host/db", "mysql://u:pw@host:99999/db"]
)
def test_a_malformed_database_url_is_one_line_and_exit_2(url, tmp_path):
    result = cli("load", str(tmp_path), "--db", url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "database URL" in errors[0], result.stderr
    assert "pw" not in result.stderr.replace("password", "")


def test_a_malformed_drop_url_is_a_config_error():
    from session_stream.drop import DropUrl

    with pytest.raises(ConfigError, match="drop URL cannot be read"):
        DropUrl.parse("sftp://u:pw@[::1/drop")


README_KEYS_QUERY = re.compile(r"```sql\n(-- Keys Monetate sent[^`]*?)```", re.S)


def test_the_readme_unknown_keys_query_reads_keys_holding_quotes_and_backslashes(url):
    counts = {'session.say "hi"': 3, "session.back\\slash": 2, "session.plain": 1}
    conn = db.connect(url)
    cur = conn.cursor()
    cur.execute(
        f"INSERT INTO `{tables.LEDGER_TABLE}` (file_name, size, window_start, status,"
        f" `{tables.UNKNOWN_KEYS_COLUMN}`) VALUES (%s, 1, '2026-11-02 00:00:00', 'loaded', %s)",
        ("quoted-keys.json.gz", orjson.dumps(counts).decode()),
    )
    conn.close()
    (sql,) = README_KEYS_QUERY.findall((REPO / "README.md").read_text())
    rows = query(url, sql)
    found = {path: int(objects) for kind, path, objects, *_ in rows if kind == "unknown"}
    assert found == counts
