"""Reading staged files back for the loader: without_sessions drops exactly the rows of the
sessions it is given, whatever the values hold."""

from __future__ import annotations

import random

import pytest

from session_stream.split import layout
from session_stream.split.layout import escape, without_sessions

# Values that look like a row's start once escaped wrongly: line ends and tabs followed by
# digits, backslashes, an index and a tab inside a value.
NASTY = ["\n3\t", "\t7\t", "12\t", "\\N", "\\\n1\t", "a\tb", "x\r\n2\t", "", "é😀"]


def staged(rng: random.Random, sessions: int) -> tuple[str, dict[int, int]]:
    """A staged table file: 0-3 rows a session, in index order; and its rows by session."""
    lines, count = [], {}
    for index in range(sessions):
        count[index] = rng.choice([0, 0, 1, 1, 2, 3])
        for row_no in range(count[index]):
            value = escape(rng.choice(NASTY) + str(rng.randint(0, 20)) + rng.choice(NASTY))
            lines.append(f"{index}\t{row_no}\t{value}\n")
    return "".join(lines), count


@pytest.mark.parametrize("chunk", [1, 7, 64, layout.FILTER_CHUNK])
@pytest.mark.parametrize("seed", range(30))
def test_without_sessions_drops_exactly_their_rows(tmp_path, monkeypatch, seed, chunk):
    """Random files, read in chunks of any size (rows across chunks, rows longer than one)."""
    monkeypatch.setattr(layout, "FILTER_CHUNK", chunk)
    rng = random.Random(seed)
    text, count = staged(rng, rng.randint(0, 300))
    path = tmp_path / "t.tsv"
    path.write_text(text, encoding="utf-8", newline="")
    drop = {str(i) for i in count if rng.random() < 0.3}
    if count and rng.random() < 0.3:
        drop |= {"0", str(max(count))}  # the first and the last session
    drop.add(str(len(count) + 5))  # an index with no rows at all
    out, kept = without_sessions(path, drop)
    expected = [line for line in text.splitlines(True) if line.split("\t", 1)[0] not in drop]
    assert out.read_bytes().decode("utf-8") == "".join(expected)
    assert kept == len(expected)


def test_without_sessions_of_an_empty_file(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"")
    out, kept = without_sessions(path, {"0", "1"})
    assert (out.read_bytes(), kept) == (b"", 0)
