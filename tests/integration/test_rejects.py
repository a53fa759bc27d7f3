"""Rejected lines of any size (issue 10, finding 7): a line longer than the server's
max_allowed_packet is stored whole in parts without failing its file, and reads back byte for
byte through `session-stream reject` and through the README's SQL."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from warehouse import query

from session_stream import tables
from session_stream.drop import sample
from session_stream.split.layout import REJECTS_RAW_FILE
from session_stream.split.splitter import split_file
from session_stream.warehouse import db, migrations, rejects, schema
from session_stream.warehouse.load import Loader

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "session_stream.runs.cli"]
README = (Path(__file__).resolve().parents[2] / "docs" / "operating.md").read_text()
NAME = "20261101T000000.000Z_PT15M-1793494800123.json.gz"
EXAMPLE_NAME = "20261101T004500.000Z_PT15M-1793494800123.json.gz"  # the README's


def cli(*args, url: str, binary: bool = False):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_STREAM")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=not binary,
        timeout=300,
        env={**clean, db.DB_ENV: url},
    )


def max_allowed_packet(url: str) -> int:
    return int(query(url, "SELECT @@max_allowed_packet")[0][0])


def not_json(size: int, seed: int) -> bytes:
    """A line of `size` bytes that is not JSON: every byte value but the newline, NUL, quotes,
    backslashes and invalid UTF-8 included, in an order that does not repeat within a part."""
    block = bytes(b for b in hashlib.shake_256(str(seed).encode()).digest(3 << 20) if b != 10)
    head = b'{"session_id": "huge-%d", "city": "' % seed
    body = (block * (size // len(block) + 1))[: size - len(head)]
    return head + body


def write_file(path: Path, lines: dict[int, bytes]) -> Path:
    """A sample file of good sessions (and the sample's one bad line) with `lines` put in at
    their line numbers."""
    made = sample.write_drop(
        path.parent / "gen", date(2026, 11, 1), sessions=80, files=1, hours=1, seed=11, bad_lines=1
    )
    text = gzip.decompress(made[0].read_bytes()).splitlines(keepends=True)
    for line_no in sorted(lines):
        text.insert(line_no - 1, lines[line_no] + b"\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.writelines(text)
    return path


@pytest.fixture(scope="module")
def loaded(url, tmp_path_factory):
    """A file with good lines, a line longer than max_allowed_packet (not a whole number of
    parts), a line of a few parts and the sample's small bad line, loaded by the CLI."""
    huge = not_json(max_allowed_packet(url) + rejects.PART_BYTES + 12345, seed=1)
    medium = not_json(3 * rejects.PART_BYTES + 7, seed=2)
    path = write_file(tmp_path_factory.mktemp("drop") / "day" / NAME, {10: huge, 30: medium})
    result = cli("load", "-q", str(path), url=url)
    return path, result, {10: huge, 30: medium}


def test_a_reject_larger_than_max_allowed_packet_leaves_its_file_loaded(url, loaded):
    path, result, _ = loaded
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 loaded" in result.stdout and "0 failed" in result.stdout
    ((status, sessions, stored_rejects, error),) = query(
        url, f"SELECT status, sessions, rejects, error FROM {tables.LEDGER_TABLE}"
    )
    assert (status, sessions, stored_rejects, error) == ("loaded", 80, 3, None)
    assert query(url, f"SELECT COUNT(*) FROM {tables.SESSIONS.name}") == [(80,)]


def test_the_cli_writes_each_reject_back_byte_for_byte(url, loaded, tmp_path):
    _, _, lines = loaded
    for line_no, line in lines.items():
        to_stdout = cli("reject", NAME, str(line_no), url=url, binary=True)
        assert to_stdout.returncode == 0, to_stdout.stderr
        assert to_stdout.stdout == line
        out = tmp_path / f"line{line_no}.json"
        to_file = cli("reject", NAME, str(line_no), "--output", str(out), url=url)
        assert to_file.returncode == 0, to_file.stderr
        assert out.read_bytes() == line and f"wrote {len(line):,} bytes" in to_file.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line10.json", "line30.json"]


def test_each_part_is_far_under_max_allowed_packet_and_raw_line_is_part_0(url, loaded):
    _, _, lines = loaded
    rows = query(
        url,
        f"SELECT line_no, LENGTH(raw_line), raw_length, raw_sha256 FROM {tables.REJECTS_TABLE}",
    )
    by_line = {r[0]: r[1:] for r in rows}
    for line_no, line in lines.items():
        assert by_line[line_no] == (
            rejects.PART_BYTES,
            len(line),
            hashlib.sha256(line).hexdigest(),
        )
    parts = query(
        url,
        f"SELECT line_no, COUNT(*), MAX(LENGTH(chunk)) FROM {tables.REJECT_PARTS_TABLE}"
        " GROUP BY line_no ORDER BY line_no",
    )
    huge = len(lines[10])
    assert parts == [
        (10, -(-huge // rejects.PART_BYTES) - 1, rejects.PART_BYTES),
        (30, 3, rejects.PART_BYTES),
    ]
    assert max_allowed_packet(url) >= rejects.PART_BYTES * 4


def test_a_small_reject_reads_as_before(url, loaded):
    _, _, lines = loaded
    small = query(
        url,
        f"SELECT line_no, raw_line, raw_length = LENGTH(raw_line), raw_sha256 = SHA2(raw_line, 256)"
        f" FROM {tables.REJECTS_TABLE} WHERE line_no NOT IN (10, 30)",
    )
    ((line_no, raw, length_ok, hash_ok),) = small
    assert (length_ok, hash_ok) == (1, 1) and raw.startswith(b"{")
    assert query(
        url, f"SELECT COUNT(*) FROM {tables.REJECT_PARTS_TABLE} WHERE line_no = %s", (line_no,)
    ) == [(0,)]


def readme_sql(n: int, line_no: int) -> list[str]:
    """The statements of the n-th ```sql block of "Reading a rejected line", for our line."""
    section = README[README.index("### Reading a rejected line") :]
    block = re.findall(r"```sql\n(.*?)```", section, re.S)[n]
    assert EXAMPLE_NAME in block and re.search(r"\b42\b", block)
    block = re.sub(r"\b42\b", str(line_no), block.replace(EXAMPLE_NAME, NAME))
    return [s for s in block.split(";\n") if s.strip()]


def run_readme_sql(url: str, n: int, line_no: int) -> list[tuple]:
    conn = db.connect(url)
    cur = conn.cursor()
    for statement in readme_sql(n, line_no):
        cur.execute(statement)
    rows = list(cur.fetchall())
    conn.close()
    return rows


def test_the_readme_sql_reads_a_line_back_whole(url, loaded):
    _, _, lines = loaded
    # One value, for a line shorter than max_allowed_packet.
    ((length, sha256, whole, line),) = run_readme_sql(url, 0, 30)
    assert (length, sha256, whole) == (len(lines[30]), hashlib.sha256(lines[30]).hexdigest(), 1)
    assert line == lines[30]
    # A longer one does not fit one value, as the README says ...
    ((length, _, whole, line),) = run_readme_sql(url, 0, 10)
    assert (length, whole, line) == (len(lines[10]), None, None)
    # ... and its parts, in order, are the line.
    parts = run_readme_sql(url, 1, 10)
    assert [p[0] for p in parts] == list(range(len(parts)))
    assert b"".join(p[1] for p in parts) == lines[10]


def test_errors_reading_a_reject_back_are_one_line(url, loaded, tmp_path):
    missing = cli("reject", NAME, "9999", url=url)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    (line,) = missing.stderr.strip().splitlines()
    assert f"{NAME} has no rejected line 9999" in line
    nowhere = cli("reject", NAME, "10", "--output", str(tmp_path / "no" / "x"), url=url)
    assert nowhere.returncode == 2 and "cannot write" in nowhere.stderr


def test_a_reject_not_stored_whole_is_refused_and_nothing_is_written(url, loaded, tmp_path):
    parts, where = tables.REJECT_PARTS_TABLE, "WHERE file_name = %s AND line_no = 30"
    (saved,) = query(url, f"SELECT chunk FROM {parts} {where} AND part_no = 2", (NAME,))[0]
    out = tmp_path / "line.json"
    try:
        query(url, f"UPDATE {parts} SET part_no = 9 {where} AND part_no = 3", (NAME,))
        gap = cli("reject", NAME, "30", "--output", str(out), url=url)
        query(url, f"UPDATE {parts} SET part_no = 3 {where} AND part_no = 9", (NAME,))
        query(
            url, f"UPDATE {parts} SET chunk = CONCAT(chunk, 'x') {where} AND part_no = 2", (NAME,)
        )
        changed = cli("reject", NAME, "30", url=url, binary=True)
    finally:
        query(url, f"UPDATE {parts} SET chunk = %s {where} AND part_no = 2", (saved, NAME))
    assert gap.returncode == 1 and "(a part is missing)" in gap.stderr
    assert changed.returncode == 1 and changed.stdout == b""
    assert b"is not stored whole" in changed.stderr and len(changed.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    assert cli("reject", NAME, "30", url=url, binary=True).stdout == loaded[2][30]


def test_a_reload_replaces_the_rejects_and_their_parts(url, loaded, tmp_path):
    # Runs after the tests above, which read the first version of the file.
    path, _, _ = loaded
    changed = write_file(tmp_path / "day" / NAME, {5: not_json(rejects.PART_BYTES + 1, seed=3)})
    assert changed.stat().st_size != path.stat().st_size
    result = cli("load", "-q", str(changed), url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert query(
        url, f"SELECT line_no, part_no FROM {tables.REJECT_PARTS_TABLE} ORDER BY 1, 2"
    ) == [(5, 1)]
    line_nos = [n for (n,) in query(url, f"SELECT line_no FROM {tables.REJECTS_TABLE}")]
    assert len(line_nos) == 2 and 5 in line_nos and not {10, 30} & set(line_nos)


def test_a_failed_load_keeps_nothing_of_its_file(fresh_db_url, tmp_path):
    """Rows, rejects (parts included) and the ledger row of a file commit together or not at all."""
    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    conn.close()
    path = write_file(tmp_path / "day" / NAME, {7: not_json(2 * rejects.PART_BYTES + 3, seed=4)})
    split = split_file(path, tmp_path / "split")
    (long_line,) = [r for r in split.staged_rejects() if r.line_no == 7]
    with (split.out_dir / REJECTS_RAW_FILE).open("r+b") as raw:
        raw.seek(long_line.offset + long_line.length - 1)  # its last part is damaged
        last = raw.read(1)[0]
        raw.seek(-1, 1)
        raw.write(bytes([last ^ 0xFF]))
    loader = Loader(lambda: db.connect(fresh_db_url))
    try:
        outcome = loader.load(split, size=path.stat().st_size)
    finally:
        loader.close()
    assert outcome.status == "failed" and "rejected line 7 is damaged" in outcome.error
    for table in (tables.SESSIONS.name, tables.REJECTS_TABLE, tables.REJECT_PARTS_TABLE):
        assert query(fresh_db_url, f"SELECT COUNT(*) FROM {table}") == [(0,)], table
    assert query(fresh_db_url, f"SELECT status FROM {tables.LEDGER_TABLE}") == [("failed",)]


def test_migration_6_on_a_warehouse_made_before(fresh_db_url, tmp_path, monkeypatch):
    """A warehouse at migration 5 with a reject stored the old way: init-db adds the length, the
    hash and the parts table; the old reject reads back; a long one loads."""
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
        conn = db.connect(fresh_db_url)
        assert [x.version for x in migrations.init_db(conn)] == [1, 2, 3, 4, 5]
        old_line = b'{"session_id": "old", "city": "\xff"}'
        conn.cursor().execute(
            f"INSERT INTO {tables.REJECTS_TABLE} (file_name, line_no, reason, raw_line)"
            " VALUES (%s, 3, 'not JSON', %s)",
            (NAME, old_line),
        )
        conn.commit()
        conn.close()
    assert not schema.has_column(db.connect(fresh_db_url), tables.REJECTS_TABLE, "raw_length")

    result = cli("init-db", url=fresh_db_url)
    assert result.returncode == 0 and "applied migration 6" in result.stdout, result.stderr
    assert query(fresh_db_url, f"SELECT raw_length, raw_sha256 FROM {tables.REJECTS_TABLE}") == [
        (len(old_line), hashlib.sha256(old_line).hexdigest())
    ]
    conn = db.connect(fresh_db_url)
    migrations.MIGRATIONS[5].apply(conn)  # again, as if its row were lost: nothing changes
    conn.close()
    assert cli("reject", NAME, "3", url=fresh_db_url, binary=True).stdout == old_line

    other = "20261101T001500.000Z_PT15M-1.json.gz"
    line = not_json(rejects.PART_BYTES + 10, seed=5)
    path = write_file(tmp_path / "day" / other, {2: line})
    assert cli("load", "-q", str(path), url=fresh_db_url).returncode == 0
    assert cli("reject", other, "2", url=fresh_db_url, binary=True).stdout == line
