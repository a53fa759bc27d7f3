"""The staged split: the folder splitter.py writes for one source file and load.py reads.

    <table>.tsv       one per table of tables.TABLES, one row per table row, led by the session's
                      index in the file (the loader turns it into session_key). session_sessions:
                      index, then its columns in spec order (session_id first), then the source
                      file name. A child table: index, row_no (the row's number among the
                      session's rows of that table), then its columns in spec order
    session_keys.tsv  one row per session: index, session_id, end_time, start_time (all the
                      newest-wins merge reads before loading)
    rejects.jsonl     one JSON object per rejected line: line_no, reason, and where its raw bytes
                      are in rejects.raw (offset, length) with their SHA-256; for a line not
                      kept whole, also the whole line's length and SHA-256
    rejects.raw       the rejected lines' raw bytes, one after another (without their newline):
                      a line is copied from the source once, in pieces, never encoded or held
                      whole. Lines are kept whole while a file's rejected bytes stay within
                      REJECT_BYTES_PER_FILE; a line that would pass it keeps its first
                      REJECT_HEAD_BYTES (or what is left), so a small file that unpacks to
                      gigabytes of bad lines cannot fill the warehouse
    manifest.json     the counts (SplitResult); written last, so its presence means complete

Rows use MySQL's own LOAD DATA text format (`LOAD_FORMAT`: tab-separated, backslash escapes,
`\\N` for NULL, no enclosing quotes), so NULL, '', 'NULL', '\\N', quotes, commas, backslashes,
tabs, CR, LF and 4-byte UTF-8 all survive byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from session_stream import tables
from session_stream.errors import BadInputError, LoadError
from session_stream.sql import quote

NULL = "\\N"
LOAD_FORMAT = (
    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
)
MANIFEST = "manifest.json"
REJECTS_FILE = "rejects.jsonl"
REJECTS_RAW_FILE = "rejects.raw"
KEYS_FILE = "session_keys.tsv"
INDEX_FIELD = "@idx"  # the leading field of every table row, as LOAD DATA reads it
# LOAD DATA columns of the keys file, into the loader's temporary table (idx, session_id, end_time).
KEYS_FIELDS = ("idx", "session_id", "end_time", "@start")

# What one file's rejected lines may keep (see rejects.raw above): a line that is rejected is
# kept whole while the file's kept bytes stay within the budget, else its head only.
REJECT_BYTES_PER_FILE = 64 << 20
REJECT_HEAD_BYTES = 1 << 20

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
needs_escape = re.compile(r"[\\\t\n\r\0]").search


def escape(s: str) -> str:
    # isprintable() is False for every character _ESCAPES maps but the backslash: a quick
    # answer for the common string, the search for the rest.
    if s.isprintable() and "\\" not in s:
        return s
    return s.translate(_ESCAPES) if needs_escape(s) else s


def row_lead(index: int, session_id: str) -> str:
    """The leading fields of a session_sessions row: the session's index in the file and its
    escaped session_id (the table's first column)."""
    return f"{index}\t{session_id}"


def load_columns(table: tables.Table) -> list[str]:
    """The LOAD DATA column list of a table's staged file, in the order of its fields."""
    if table.is_child:
        return [INDEX_FIELD, quote(tables.ROW_NO_COLUMN), *(quote(c) for c in table.value_names)]
    return [INDEX_FIELD, *(quote(c) for c in table.value_names), quote(tables.SOURCE_FILE_COLUMN)]


def table_file(out_dir: Path, table: tables.Table) -> Path:
    return out_dir / f"{table.name}.tsv"


@dataclass(frozen=True)
class StagedReject:
    """One rejected line of a staged split; its bytes are in rejects.raw."""

    line_no: int
    reason: str
    offset: int
    length: int  # of the bytes kept in rejects.raw
    sha256: str  # hex, of the bytes kept
    # The whole line's, when only its head is kept (None: the line is kept whole).
    line_length: int | None = None
    line_sha256: str | None = None

    @property
    def whole(self) -> bool:
        return self.line_length is None


@dataclass
class SplitResult:
    """A staged split and its counts (the manifest)."""

    source_name: str
    out_dir: Path
    sessions: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    rejects: int = 0
    lines: int = 0
    blank_lines: int = 0  # empty or whitespace only: nothing to store
    repeats: int = 0  # sessions written again later in the file: only the newest is staged
    seconds: float = 0.0
    sha256: str | None = None  # of the source file's bytes (its content identity)
    # The latest time (ms) any session of the file reaches: max of start_time and end_time
    # (kept in the ledger: how far the file's sessions reach).
    horizon: int | None = None
    # Keys the spec does not know / expected keys that lines lacked: {path: count} (split.KeyAudit).
    unknown_keys: dict[str, int] = field(default_factory=dict)
    missing_keys: dict[str, int] = field(default_factory=dict)

    def files(self) -> dict[str, Path]:
        return {t.name: table_file(self.out_dir, t) for t in tables.TABLES}

    @property
    def keys_path(self) -> Path:
        return self.out_dir / KEYS_FILE

    @property
    def rejects_path(self) -> Path:
        return self.out_dir / REJECTS_FILE

    def staged_rejects(self) -> Iterator[StagedReject]:
        """Each rejected line's record, in line order (its bytes: `reject_parts`)."""
        if not self.rejects_path.exists():
            return
        with self.rejects_path.open("rb") as f:
            for line in f:
                try:
                    yield StagedReject(**orjson.loads(line))
                except TypeError:
                    raise LoadError(
                        f"{self.source_name}: its staged rejects are in an older layout;"
                        " the next run splits the file again"
                    ) from None

    def reject_parts(self, reject: StagedReject, part_bytes: int) -> Iterator[bytes]:
        """The raw line of `reject` in parts of `part_bytes` (at least one part, b"" for an empty
        line), checked against its length and SHA-256 once the last part is read."""
        digest, left = hashlib.sha256(), reject.length
        with (self.out_dir / REJECTS_RAW_FILE).open("rb") as f:
            f.seek(reject.offset)
            while True:
                part = f.read(min(part_bytes, left))
                if part or left == reject.length:  # only the first part may be empty
                    digest.update(part)
                    left -= len(part)
                    yield part
                if not part or not left:
                    break
        if left or digest.hexdigest() != reject.sha256:
            raise LoadError(
                f"{self.source_name}: the staged copy of rejected line {reject.line_no} is damaged"
                " (its length or SHA-256 differs); the next run splits the file again"
            )

    def read_rejects(self) -> list[tuple[int, str, bytes]]:
        """(line number, reason, the bytes kept of its raw line) for each rejected line, in memory."""
        return [
            (r.line_no, r.reason, b"".join(self.reject_parts(r, 1 << 20)))
            for r in self.staged_rejects()
        ]

    def write_manifest(self) -> None:
        fields = (
            "source_name",
            "sessions",
            "rows",
            "rejects",
            "lines",
            "blank_lines",
            "repeats",
            "seconds",
            "sha256",
            "horizon",
            "unknown_keys",
            "missing_keys",
        )
        data = {k: getattr(self, k) for k in fields}
        tmp = self.out_dir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(
            self.out_dir / MANIFEST
        )  # the manifest appears last: its presence means complete

    @classmethod
    def read(cls, out_dir: Path) -> SplitResult:
        out_dir = Path(out_dir)
        try:
            data = json.loads((out_dir / MANIFEST).read_text())
        except FileNotFoundError:
            raise BadInputError(f"{out_dir} holds no complete split (no {MANIFEST})") from None
        return cls(out_dir=out_dir, **data)


class SplitWriter:
    """Buffered writers of one staged split: `handles[table name]` take lines ready-made."""

    def __init__(self, out_dir: Path):
        self.handles = {
            t.name: table_file(out_dir, t).open(
                "w", encoding="utf-8", newline="", buffering=1 << 20
            )
            for t in tables.TABLES
        }
        self.rejects = (out_dir / REJECTS_FILE).open("wb")
        self.rejects_raw = (out_dir / REJECTS_RAW_FILE).open("wb")
        self.keys = (out_dir / KEYS_FILE).open("w", encoding="utf-8", newline="", buffering=1 << 16)
        self.kept = 0  # bytes of rejected lines kept in rejects.raw

    def write_key(self, index: int, session_id: str, end_time: str, start_time: str) -> None:
        """One session's row of the keys file (fields already in staged form)."""
        self.keys.write(f"{index}\t{session_id}\t{end_time}\t{start_time}\n")

    def write_reject(self, line_no: int, reason: str, raw: bytes) -> None:
        # A view, not a slice: a line of megabytes is written and hashed without a copy.
        sink = self.reject(line_no)
        sink.add(memoryview(raw)[:-1] if raw.endswith(b"\n") else memoryview(raw))
        sink.end(reason)

    def reject(self, line_no: int) -> RejectSink:
        """A rejected line written piece by piece (`add`), then recorded with its reason (`end`)."""
        return RejectSink(self, line_no)

    def close(self) -> None:
        for h in self.handles.values():
            h.close()
        self.rejects.close()
        self.rejects_raw.close()
        self.keys.close()


class RejectSink:
    """One rejected line on its way to rejects.raw, in pieces: kept whole if it fits in what is
    left of the file's REJECT_BYTES_PER_FILE, else its first REJECT_HEAD_BYTES (or what is left);
    its whole length and SHA-256 are counted either way."""

    def __init__(self, writer: SplitWriter, line_no: int):
        self.writer, self.line_no = writer, line_no
        self.raw = writer.rejects_raw
        self.offset = self.raw.tell()
        self.room = max(0, REJECT_BYTES_PER_FILE - writer.kept)
        self.head = min(REJECT_HEAD_BYTES, self.room)
        self.digest = hashlib.sha256()
        self.length = 0
        self.cut = False  # past `room`: only the head is kept

    def add(self, data) -> None:
        self.digest.update(data)
        start, self.length = self.length, self.length + len(data)
        if not self.cut and self.length <= self.room:
            self.raw.write(data)
            return
        if not self.cut:
            self.cut = True
            if start > self.head:  # more than the head is written already: cut it back
                self.raw.truncate(self.offset + self.head)
                self.raw.seek(self.offset + self.head)
        if start < self.head:
            self.raw.write(memoryview(data)[: self.head - start])

    def end(self, reason: str) -> StagedReject:
        kept = self.raw.tell() - self.offset
        whole = self.digest.hexdigest()
        if self.cut:
            self.raw.flush()
            with open(self.raw.name, "rb") as f:  # the head, hashed as the loader will check it
                f.seek(self.offset)
                kept_sha = hashlib.sha256(f.read(kept)).hexdigest()
            reason = (
                f"{reason}; only its first {kept:,} of {self.length:,} bytes are kept"
                f" (a file's rejected lines keep {REJECT_BYTES_PER_FILE >> 20} MiB at most)"
            )
        record = StagedReject(
            line_no=self.line_no,
            reason=reason[:1000],
            offset=self.offset,
            length=kept,
            sha256=kept_sha if self.cut else whole,
            line_length=self.length if self.cut else None,
            line_sha256=whole if self.cut else None,
        )
        fields = {k: v for k, v in record.__dict__.items() if v is not None}
        self.writer.rejects.write(orjson.dumps(fields) + b"\n")
        self.writer.kept += kept
        return record


# --- reading staged files back, for the loader -------------------------------------------------


def sessions_starting_by(keys: Path, reach: int | None) -> tuple[Path, int]:
    """The rows of a keys file whose session may already be stored: those starting at or before
    `reach` (None: nothing is stored), or with no start_time. Returns the file and its rows."""
    out = keys.with_name("keys_to_check.tsv")
    kept = 0
    with (
        keys.open("r", encoding="utf-8", newline="") as src,
        out.open("w", encoding="utf-8", newline="") as dst,
    ):
        if reach is not None:
            for line in src:
                start = line.rsplit("\t", 1)[1].rstrip("\n")
                if start == NULL or int(start) <= reach:
                    dst.write(line)
                    kept += 1
    return out, kept


# bytes of a staged file filtered at a time (without_sessions): its lines, the kept ones and
# their join take ~4.5x that (37 MB at 8 MiB)
FILTER_CHUNK = 1 << 20


def without_sessions(path: Path, indexes: set[str]) -> tuple[Path, int]:
    """A copy of a staged table file without the rows of the sessions at `indexes` (their index
    in the file, as text: the first field of every row), and its row count. A row starts with
    its session's index and a tab (tabs and line ends in values are escaped); the file is read
    FILTER_CHUNK bytes of whole rows at a time, as bytes, not decoded (a day's files with a
    tenth of their sessions dropped: ~0.2 s, not ~0.6 s)."""
    out = path.with_suffix(".filtered.tsv")
    drop = {index.encode("ascii") for index in indexes}
    kept = 0
    with path.open("rb") as src, out.open("wb") as dst:
        rest = b""
        while chunk := src.read(FILTER_CHUNK):
            block = rest + chunk
            cut = block.rfind(b"\n") + 1  # whole rows only; the rest waits for the next chunk
            block, rest = block[:cut], block[cut:]
            lines = block.split(b"\n")
            del lines[-1]  # after the last line end
            found = [line for line in lines if line[: line.find(b"\t")] not in drop]
            if found:
                found.append(b"")
                dst.write(b"\n".join(found))
                kept += len(found) - 1
        if rest:
            raise LoadError(f"{path.name}: the staged file ends inside a row")
    return out, kept
