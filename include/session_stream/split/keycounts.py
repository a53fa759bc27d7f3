"""Keys a run's files carried that the spec does not know, and expected keys their lines lacked.

Each file's split counts them by path (split.KeyAudit) and its ledger row keeps the counts
(session_stream_files.unknown_keys / missing_keys). This module adds up several files' counts
for a run's summary: the CLI's and the DAG's `check` print the same lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from session_stream import tables

# A file's counts keep this many paths at most (so its ledger row stays far below the server's
# max_allowed_packet, whatever keys its lines carry); the objects of any further path are counted
# under OTHER_PATHS.
KEY_PATHS_PER_FILE = 1000
OTHER_PATHS = "(other paths)"


@dataclass
class KeyCounts:
    """Lines (or items) and files per path, over the files added."""

    lines: Counter[str] = field(default_factory=Counter)
    files: Counter[str] = field(default_factory=Counter)

    def add(self, counts: Mapping[str, int] | str | bytes | None) -> None:
        """One file's counts: a dict, or the ledger's JSON text (NULL: none)."""
        if isinstance(counts, str | bytes):
            counts = orjson.loads(counts)
        for path, n in (counts or {}).items():
            self.lines[path] += int(n)
            self.files[path] += 1

    def __bool__(self) -> bool:
        return bool(self.lines)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """{path: {"lines": n, "files": m}}, most frequent first (for XCom and reports)."""
        return {
            path: {"lines": n, "files": self.files[path]} for path, n in self.lines.most_common()
        }

    def describe(self, limit: int = 20) -> list[str]:
        """One line per path, most frequent first: `session.new_field: 12 sessions in 3 files`."""
        out = []
        for path, n in self.lines.most_common(limit):
            what = "session" if path.startswith(f"{tables.SESSION_PATH}.") else "item"
            files = self.files[path]
            out.append(
                f"{path}: {n:,} {what}{'s' if n != 1 else ''} in {files:,} file{'s' if files != 1 else ''}"
            )
        if len(self.lines) > limit:
            out.append(f"... and {len(self.lines) - limit} more (see the ledger)")
        return out
