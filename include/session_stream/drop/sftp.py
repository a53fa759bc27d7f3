"""Monetate's SFTP server as the drop location (the real delivery).

paramiko, not the SSH provider's SSHHook: the hook cannot read PKCS#8 keys ("BEGIN PRIVATE KEY",
RSA or Ed25519, what `openssl genpkey` writes) and reads host keys from ~/.ssh/known_hosts only
(README, "Design"). The server's host key must be known (a known_hosts file or the key
itself); trusting any key is an explicit, logged opt-in for tests.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import posixpath
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from session_stream.drop.base import DropFile, DropLocation, DropUrl, folder_entry
from session_stream.drop.local import KINDS as _KINDS
from session_stream.errors import ConfigError, UnreachableError
from session_stream.private_keys import paramiko_private_key

if TYPE_CHECKING:  # paramiko is the optional sftp extra, imported when used
    import paramiko

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SftpCredentials:
    """How to log in and whom to trust. Host, port and user in the drop URL take precedence."""

    host: str | None = None
    port: int = 22
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)  # PEM / OpenSSH text
    private_key_path: Path | str | None = None
    passphrase: str | None = field(default=None, repr=False)  # of an encrypted private key
    host_key: str | None = None  # "ssh-ed25519 AAAA...", a known_hosts line, or bare base64
    known_hosts: Path | str | None = None
    allow_unknown_host: bool = False


def _fingerprint(key: paramiko.PKey) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def parse_host_keys(text: str) -> list[paramiko.PKey]:
    """Public keys from 'type base64 [comment]' lines, known_hosts lines, or bare base64."""
    import paramiko

    keys = []
    for line in text.strip().splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if tokens[0].startswith("@"):  # known_hosts markers (@cert-authority, @revoked)
            continue
        # The key blob names its own type, so find the base64 token and trust only the blob.
        key = None
        for token in tokens[:3]:
            try:
                blob = base64.b64decode(token, validate=True)
                key = paramiko.PKey.from_type_string(paramiko.Message(blob).get_text(), blob)
                break
            except Exception:
                continue
        if key is None:
            raise ConfigError(
                f"SFTP host key {line[:40]!r} is not a public key: give it as 'ssh-ed25519 AAAA...' "
                "(the server's /etc/ssh/ssh_host_*_key.pub) or as a known_hosts line"
            )
        keys.append(key)
    if not keys:
        raise ConfigError("the SFTP host key is empty: give it as 'ssh-ed25519 AAAA...'")
    return keys


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey):
        super().__init__(hostname)
        self.hostname, self.key = hostname, key


def _policies() -> tuple[type, type]:
    import paramiko

    class Reject(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            raise _UnknownHostKey(hostname, key)

    class TrustWithWarning(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            log.warning("trusting unknown SSH host key of %s: %s", hostname, _fingerprint(key))

    return Reject, TrustWithWarning


class SftpDrop(DropLocation):
    """SFTP root. The connection opens at construction (so errors surface early) and is reused.

    A paramiko SFTP session is not thread-safe: use one SftpDrop per thread.
    """

    @classmethod
    def from_url(cls, url: DropUrl, creds: SftpCredentials | None = None) -> SftpDrop:
        """Host, port, user (and a password, unless the credentials hold one) from the URL
        override the credentials'. The path is absolute; `/~/dir` is `dir` under the login folder."""
        creds = creds or SftpCredentials()
        overrides: dict[str, Any] = {}
        if url.host:
            overrides["host"] = url.host
        if url.port:
            overrides["port"] = url.port
        if url.username:
            overrides["username"] = url.username
        if url.password and not creds.password:
            overrides["password"] = url.password
        if url.path == "/~" or url.path.startswith("/~/"):
            root = url.path[3:].strip("/")
        else:
            root = url.path.rstrip("/") or "/"
        return cls(dataclasses.replace(creds, **overrides), root)

    def __init__(self, creds: SftpCredentials, root: str):
        if not creds.host:
            raise ConfigError("no SFTP host: give it in the drop URL (sftp://user@host/path)")
        if not creds.username:
            raise ConfigError(
                "no SFTP user: give it in the drop URL (sftp://user@host/path) or the connection"
            )
        self.creds = creds
        self.root = root
        port = "" if creds.port == 22 else f":{creds.port}"
        shown = root if root.startswith("/") else f"/~/{root}"
        self.url = f"sftp://{creds.username}@{creds.host}{port}{shown}"
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._connect()
        self._check_root()

    @property
    def _where(self) -> str:
        return f"{self.creds.host}:{self.creds.port}"

    def _connect(self) -> None:
        import paramiko

        c = self.creds
        client = paramiko.SSHClient()
        known = client.get_host_keys()
        entry = c.host if c.port == 22 else f"[{c.host}]:{c.port}"
        if c.known_hosts:
            try:
                # HostKeys.load, not client.load_host_keys: the latter would make paramiko write
                # to that file when a key is added.
                known.load(str(Path(c.known_hosts).expanduser()))
            except FileNotFoundError:
                raise ConfigError(f"known_hosts file {c.known_hosts} does not exist") from None
        if c.host_key:
            for key in parse_host_keys(c.host_key):
                known.add(entry, key.get_name(), key)
        if not c.known_hosts and not c.host_key:
            client.load_system_host_keys()  # ~/.ssh/known_hosts, as the ssh command would
        reject, trust = _policies()
        client.set_missing_host_key_policy(trust() if c.allow_unknown_host else reject())

        pkey = None
        if c.private_key:
            pkey = paramiko_private_key(c.private_key, c.passphrase)
        elif c.private_key_path:
            path = Path(c.private_key_path).expanduser()
            if not path.is_file():
                raise ConfigError(f"SFTP private key file {path} does not exist")
            pkey = paramiko_private_key(path.read_text(), c.passphrase)
        explicit = bool(pkey or c.password)
        try:
            client.connect(
                c.host,
                port=c.port,
                username=c.username,
                password=c.password,
                pkey=pkey,
                timeout=30,
                banner_timeout=30,
                auth_timeout=30,
                # With credentials given, use only those: a stray agent key must not decide.
                allow_agent=not explicit,
                look_for_keys=not explicit,
            )
            sftp = client.open_sftp()
        except _UnknownHostKey as exc:
            client.close()
            raise ConfigError(
                f"unknown SSH host key for {exc.hostname} ({_fingerprint(exc.key)}): after checking "
                "this fingerprint with the server's owner, put the host key in the SFTP connection "
                f"(host_key '{exc.key.get_name()} {exc.key.get_base64()}') or in a known_hosts file"
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise ConfigError(
                f"SSH host key for {self._where} does not match the configured one (server offers "
                f"{_fingerprint(exc.key)}, expected {_fingerprint(exc.expected_key)}): if the server's "
                "key really changed, update host_key/known_hosts; otherwise the connection may be intercepted"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise ConfigError(
                f"SFTP login as {c.username} to {self._where} failed ({exc}): check the user name "
                "and the password or private key"
            ) from None
        except (
            TimeoutError,
            paramiko.ssh_exception.NoValidConnectionsError,
            socket.gaierror,
        ) as exc:
            client.close()
            raise UnreachableError(
                f"cannot reach SFTP server {self._where} ({exc}): check the host and port and that the server is up"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # A reset or a dropped handshake: the refusals a user must fix are caught above.
            client.close()
            raise UnreachableError(f"SSH connection to {self._where} failed: {exc}") from None
        sftp.get_channel().settimeout(300)  # a stalled server fails the task instead of hanging it
        self._ssh, self._sftp = client, sftp

    def _check_root(self) -> None:
        try:
            st = self._sftp.stat(self.root or ".")
        except FileNotFoundError:
            raise ConfigError(
                f"SFTP folder {self.url} does not exist: check the path in the drop URL "
                "(absolute; start it with /~/ for a folder under the login folder)"
            ) from None
        except PermissionError:
            raise ConfigError(
                f"SFTP folder {self.url}: permission denied for {self.creds.username}"
            ) from None
        if st.st_mode is not None and not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"SFTP drop location {self.url} is not a folder")

    def _remote(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if self.root else rel

    def _call(self, op):
        """Run op(sftp), reconnecting once if the connection dropped (long backfills idle out)."""
        import paramiko

        try:
            return op(self._sftp)
        except (paramiko.SSHException, EOFError, ConnectionError) as exc:
            log.warning("SFTP connection to %s lost (%s): reconnecting", self._where, exc)
        except OSError as exc:
            if exc.errno is not None:  # a real file error (missing, permission): not the connection
                raise
            log.warning("SFTP connection to %s lost (%s): reconnecting", self._where, exc)
        self.close()
        self._connect()
        return op(self._sftp)

    def _list_folder(self, folder: str) -> list[DropFile]:
        try:
            attrs = self._call(lambda s: s.listdir_attr(self._remote(folder)))
        except FileNotFoundError:
            return []
        out = []
        for a in attrs:
            rel, mode = f"{folder}/{a.filename}", a.st_mode
            if mode is not None and stat.S_ISLNK(mode):
                # A link on the server is followed there (the server decides what this login
                # may read); what it leads to must be a regular file like any other.
                try:
                    a = self._call(lambda s, rel=rel: s.stat(self._remote(rel)))
                except FileNotFoundError:
                    out.append(DropFile(rel, 0, None, refused="a broken symlink"))
                    continue
                mode = a.st_mode
            if mode is None or stat.S_ISREG(mode):
                version = None if a.st_mtime is None else f"mtime:{a.st_mtime}"
                out.append(DropFile(rel, a.st_size or 0, a.st_mtime, version=version))
            elif stat.S_ISDIR(mode):
                out.append(folder_entry(rel, a.st_mtime))
            else:
                # Listed, so that one named like a Monetate file is refused and reported rather
                # than skipped without a word (local.py does the same).
                kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
                out.append(
                    DropFile(rel, a.st_size or 0, a.st_mtime, refused=f"{kind}, not a regular file")
                )
        return out

    def _fetch(self, f: DropFile, local: Path) -> None:
        self._call(lambda s: s.get(self._remote(f.path), str(local)))

    def close(self) -> None:
        for thing in (self._sftp, self._ssh):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # closing a dead connection must not mask the real error
                    pass
        self._sftp = self._ssh = None
