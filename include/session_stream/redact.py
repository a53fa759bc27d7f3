"""Keep passwords out of everything printed: URLs are shown with their userinfo's password masked.

Used wherever a URL or a message that may quote one leaves the process: CLI output, errors, logs,
alerts, XCom and the ledger. It works on text that does not parse as a URL too (a password with
an unencoded '/', '?' or '#' splits a URL in surprising places), so it masks everything between
the first ':' after `scheme://` and the last '@' that ends a userinfo.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@ ... The password may hold anything but whitespace (quotes too: a
# password is never cut short); the greedy match runs to the LAST '@' of the token, as urllib's
# own parsing does.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*):(?P<password>\S*)@")


def mask_url(url: str) -> str:
    """`url` with the password of its userinfo replaced by ***; a URL without one is unchanged."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", str(url))


def mask_text(text: str, *secrets: str | None) -> str:
    """`text` with every URL password masked, and each of `secrets` (when given) replaced too."""
    text = mask_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
