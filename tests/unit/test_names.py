"""File names that are not text: a drop listed by another system's locale may hold names of
bytes that are not UTF-8, which neither the ledger nor the staged files can keep."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from session_stream.drop.base import NOT_TEXT, ignored_reason
from session_stream.drop.local import LocalDrop
from session_stream.drop.names import is_text, text_name
from session_stream.warehouse import ledger

GOOD = "20261102T001500.000Z_PT15M-2.json.gz"
ODD = os.fsdecode(GOOD.replace("-2.", "-2\xff.").encode("latin-1"))  # b"...-2\xff.json.gz"


def test_a_name_of_other_bytes_is_ignored_and_kept_with_x_escapes():
    assert is_text(GOOD) and not is_text(ODD)
    assert text_name(GOOD) == GOOD
    assert text_name(ODD) == GOOD.replace("-2.", "-2\\xff.")
    assert ignored_reason(ODD) == NOT_TEXT and ignored_reason(GOOD) is None
    assert ledger.file_name(ODD) == text_name(ODD)
    assert ledger.file_name(ODD).encode("utf-8")  # the ledger can keep it


def test_the_drop_listing_ignores_it_and_lists_the_rest(tmp_path):
    day = tmp_path / "2026" / "11" / "02"
    day.mkdir(parents=True)
    (day / GOOD.replace("-2.", "-3.")).write_bytes(b"")
    (day / ODD).write_bytes(b"")
    drop = LocalDrop(tmp_path)
    found = drop.list_files(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    assert [f.name for f in found] == [GOOD.replace("-2.", "-3.")]
    assert [(f.name, why) for f, why in drop.ignored] == [(ODD, NOT_TEXT)]
