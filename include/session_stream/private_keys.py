"""Private keys from text: the SFTP login key (for paramiko) and the Monetate API key (RS256).

cryptography reads every format a user may paste (OpenSSH, PKCS#1/SEC1 and PKCS#8 PEM, with or
without a passphrase); paramiko's own readers miss PKCS#8 ("BEGIN PRIVATE KEY"). A problem a user
can fix is one ConfigError line that names the key.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from session_stream.errors import ConfigError

if TYPE_CHECKING:  # paramiko is the optional sftp extra, imported when used
    import paramiko


def read_private_key(
    text: str | bytes,
    passphrase: str | None = None,
    *,
    label: str,
    hint: str,
    passphrases: bool = True,
):
    """The private key in `text`. `label` names it in errors ("the SFTP private key"), `hint`
    says what to give instead; `passphrases` tells whether the user can give one at all."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if "\\n" in text and "\n" not in text.strip():  # pasted into a one-line field
        text = text.replace("\\n", "\n")
    data = text.strip().encode() + b"\n"
    password = passphrase.encode() if passphrase else None
    try:
        try:
            return serialization.load_ssh_private_key(data, password)
        except ValueError:
            return serialization.load_pem_private_key(data, password)
    except TypeError:  # cryptography's way of saying a passphrase is missing (or not needed)
        if passphrase:
            message = f"{label} is not encrypted: remove the passphrase"
        elif passphrases:
            message = f"{label} is encrypted: give its passphrase"
        else:
            message = f"{label} is encrypted: {hint}"
        raise ConfigError(message) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{label} cannot be read ({exc}): {hint}") from None


def paramiko_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """The SFTP login key: Ed25519, ECDSA or RSA, in any format `read_private_key` reads."""
    import paramiko

    loaded = read_private_key(
        text,
        passphrase,
        label="the SFTP private key",
        hint="give the whole OpenSSH or PEM text of an Ed25519, ECDSA or RSA key, "
        "and its passphrase if it has one",
    )
    classes = [
        (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
        (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
        (rsa.RSAPrivateKey, paramiko.RSAKey),
    ]
    cls = next((k for t, k in classes if isinstance(loaded, t)), None)
    if cls is None:
        raise ConfigError(
            f"SFTP private keys must be Ed25519, ECDSA or RSA, not {type(loaded).__name__}"
        )
    plain = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return cls.from_private_key(io.StringIO(plain.decode()))


def rsa_private_key(text: str | bytes, *, label: str, hint: str) -> rsa.RSAPrivateKey:
    """An unencrypted RSA key, for signing RS256 JWTs (the Monetate API key)."""
    loaded = read_private_key(text, label=label, hint=hint, passphrases=False)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ConfigError(f"{label} must be an RSA key (the API signs with RS256)")
    return loaded
