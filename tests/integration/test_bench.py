"""The benchmark's two modes, small: the figures the README quotes are printed, and the databases
it makes are dropped."""

from __future__ import annotations

import re

import pytest
from conftest import TEST_SERVER

from session_stream import bench, db

pytestmark = pytest.mark.integration

SERVER = TEST_SERVER.rsplit("/", 1)[0] + "/"


def _bench_databases() -> set[str]:
    conn = db.connect(TEST_SERVER, database=False)
    cur = conn.cursor()
    cur.execute("SHOW DATABASES LIKE 'ss\\_bench\\_%'")
    names = {row[0] for row in cur.fetchall()}
    conn.close()
    return names


def test_a_day_prints_the_ratio_and_finds_both_warehouses_identical(tmp_path, capsys):
    before = _bench_databases()
    args = ["--server", SERVER, "--sessions", "300", "--files", "2", "--repeat", "1"]
    assert bench.main([*args, "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warehouses identical: yes" in out
    assert re.search(r"ratio: session-stream is \d+\.\dx faster than row-by-row INSERT", out)
    assert re.search(r"unknown-key audit: \d+\.\d\d s of CPU .* = \d+\.\d% of the day's load", out)
    assert _bench_databases() == before


def test_growing_days_print_growth_every_guide_join_and_where_a_join_goes(tmp_path, capsys):
    before = _bench_databases()
    args = ["--server", SERVER, "--sessions", "200", "--files", "2", "--repeat", "1"]
    assert bench.main([*args, "--days", "2", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"growth: day 2 took \d+\.\d\dx the same files", out)
    read = re.findall(r"^day +\d+ .* rows \| ([\d,]+) pages read from disk$", out, re.M)
    assert len(read) == 2, out
    joined = re.findall(r"sessions -> (session_\w+) .* \| +\d+\.\dx", out)
    assert len(joined) == 8, out
    assert "slowest join of session_sessions to a child table" in out
    steps = re.findall(r"^    (session_sessions read once|\+ .+?) +\d+\.\d\d s$", out, re.M)
    assert len(steps) == 3, out
    assert _bench_databases() == before
