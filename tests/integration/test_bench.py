"""The benchmark's two modes, small: the figures the README quotes are printed, and the databases
it makes are dropped."""

from __future__ import annotations

import os
import re

import pytest
from conftest import TEST_SERVER

from benchmarks import bench
from session_stream.warehouse import db

pytestmark = pytest.mark.integration

SERVER = TEST_SERVER.rsplit("/", 1)[0] + "/"


# The databases the benchmark makes, by prefix; each name holds the process id of the run that
# made it (other tests and other runs on the server may make others meanwhile).
PREFIXES = ("ss_bench_day_", "ss_bench_floor_", "ss_bench_window_", "ss_bench_rowbyrow_")
PREFIXES += ("ss_bench_days_", "ss_bench_day1_")


def _bench_databases() -> set[str]:
    conn = db.connect(TEST_SERVER, database=False)
    cur = conn.cursor()
    cur.execute("SHOW DATABASES LIKE 'ss\\_bench\\_%'")
    mine = f"_{os.getpid()}_"
    names = {row[0] for row in cur.fetchall() if row[0].startswith(PREFIXES) and mine in row[0]}
    conn.close()
    return names


def test_a_day_in_each_style_prints_the_floor_the_windows_and_the_ratio(tmp_path, capsys):
    before = _bench_databases()
    args = ["--server", SERVER, "--sessions", "300", "--files", "2", "--repeat", "1"]
    args += ["--settle", "0"]  # a test does not wait for a shared server to flush
    args += ["--styles", "uuid,timestamp", "--window-sessions", "100,400"]
    assert bench.main([*args, "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^(uuid|timestamp) +\d+\.\d\d s +\d+\.\d\d s +(\d+\.\d\d)x +\d+\.\d s +(\d+\.\d)x  yes$",
        out,
        re.M,
    )
    assert [r[0] for r in rows] == ["uuid", "timestamp"], out
    # x floor: the median of each run's own multiple; with one run, the medians' ratio too
    medians = dict(re.findall(r"(uuid|timestamp) (\d+\.\d\d)x[,)]", out))
    assert medians == {name: x for name, x, _ in rows}, out
    assert re.search(r"^  timestamp ids against random UUIDs: \d+\.\d\dx$", out, re.M)
    assert re.search(
        r"^one window \(timestamp ids\): 100 sessions \d+ µs a session \| 400 sessions \d+ µs"
        r" a session \| \d+\.\d\dx$",
        out,
        re.M,
    )
    assert re.search(r"unknown-key audit: \d+\.\d\d s of CPU .* = \d+\.\d% of the day's load", out)
    assert _bench_databases() == before


def test_growing_days_print_growth_every_guide_join_and_where_a_join_goes(tmp_path, capsys):
    before = _bench_databases()
    args = ["--server", SERVER, "--sessions", "200", "--files", "2", "--repeat", "1"]
    args += ["--settle", "0"]
    args += ["--id-style", "timestamp"]
    assert bench.main([*args, "--days", "2", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 days of 200 sessions, timestamp ids" in out
    assert re.search(r"growth: day 2 took \d+\.\d\dx the same files", out)
    read = re.findall(r"^day +\d+ .* rows \| ([\d,]+) pages read from disk$", out, re.M)
    assert len(read) == 2, out
    for on in ("session_id", "session_key"):
        joined = re.findall(rf"sessions -> (session_\w+) on {on} .* \| +\d+\.\dx", out)
        assert len(joined) == 8, out
        assert f"slowest join of session_sessions to a child table on {on}" in out
    steps = re.findall(r"^    (session_sessions read once|\+ .+?) +\d+\.\d\d s$", out, re.M)
    assert len(steps) == 3, out
    assert _bench_databases() == before
