"""SQL text helpers shared by the DDL, the loader and the lookups."""

from __future__ import annotations


def quote(identifier: str) -> str:
    """Backquote an identifier that comes from our own specs (never from input)."""
    return f"`{identifier}`"
