"""Helpers for tests that compare staged splits."""

from __future__ import annotations

from session_stream.split.layout import MANIFEST, SplitResult


def staged_bytes(result: SplitResult) -> dict[str, bytes]:
    """Every staged file of a split by name, but the manifest: it holds the split's duration,
    and its counts are compared apart."""
    return {p.name: p.read_bytes() for p in result.out_dir.iterdir() if p.name != MANIFEST}
