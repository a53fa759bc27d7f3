"""The session ids of a generated drop, in each style the contract allows (an opaque string of 1
to 255 characters): UUIDs, timestamp-first, a long shared prefix, single characters, the longest."""

from __future__ import annotations

from session_stream import tables
from session_stream.errors import ConfigError

ACCOUNT_ID = 4521  # one retailer per drop, as in a real delivery


# Session id shapes (CONTRACT: an opaque string of 1 to 255 characters, nothing promised about
# its shape). Each is made from the same 128 random bits per session, so a drop differs between
# styles in its ids alone.
ID_STYLES = {
    "uuid": "random UUIDs (36 characters), as the default",
    "timestamp": "the window's start in epoch ms and the account first: '<ms>-<account>-<hex>',"
    " so every session of a window shares its first 19 characters",
    "prefix": "one long prefix shared by every session (64 characters), then 32 hex digits",
    "short": "one character each, any Unicode character but a surrogate (control characters,"
    " spaces and 4-byte emoji included), all distinct within a drop; another drop reuses"
    " them, so load one drop per warehouse in this style",
    "long": "255 characters: a 223-character prefix shared by every session, then 32 hex digits",
}
DEFAULT_ID_STYLE = "uuid"
SHARED_ID_PREFIX = "monetate:retailer-4521:site-www.example.com:session-stream:session:"[:64]
_LONG_ID_PREFIX = ("monetate-session-stream-" * 10)[: tables.SESSION_ID.length - 32]
# `short` ids: every Unicode scalar value but the surrogates, by UTF-8 length (1 to 4 bytes).
# Sessions take the classes in turn while each lasts, so a drop of any size holds characters of
# every length, and each class is walked with a stride coprime to its size.
_UTF8_CLASSES = (
    (0, 0x80, 37),
    (0x80, 0x780, 7),
    (0x800, 0xF000, 7919),
    (0x10000, 0x100000, 7919),
)


def _short_id(index: int) -> str:
    used, active, i = [0] * 4, [0, 1, 2, 3], index
    while active:
        turn = min(_UTF8_CLASSES[c][1] - used[c] for c in active)
        if i < turn * len(active):
            c = active[i % len(active)]
            first, size, stride = _UTF8_CLASSES[c]
            n = first + (used[c] + i // len(active)) * stride % size
            return chr(n + 0x800 if n >= 0xD800 else n) if c == 2 else chr(n)
        i -= turn * len(active)
        for c in active:
            used[c] += turn
        active = [c for c in active if used[c] < _UTF8_CLASSES[c][1]]
    raise ConfigError(f"the 'short' id style has {index:,} distinct ids, not {index + 1:,}")


def session_id(style: str, bits: int, window_ms: int, index: int) -> str:
    """The session id of style `style` made from a session's 128 random `bits`, the start of
    its first window (epoch ms) and its index in the drop."""
    h = f"{bits:032x}"
    if style == "uuid":
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if style == "timestamp":
        return f"{window_ms}-{ACCOUNT_ID}-{h}"
    if style == "prefix":
        return SHARED_ID_PREFIX + h
    if style == "short":
        return _short_id(index)
    if style == "long":
        return _LONG_ID_PREFIX + h
    raise ConfigError(f"unknown id style {style!r}: use one of {', '.join(ID_STYLES)}")
