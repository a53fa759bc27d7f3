"""Drop-location access: list and download Monetate Session Stream files from SFTP, S3 or a folder.

Monetate writes `<root>/YYYY/MM/DD/YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz` (see
shared/CONTRACT.md). Every location lists only the day folders a time range touches, so a
backfill over 820 days never walks the whole tree, and downloads atomically (temp name +
rename) so a reader never sees half a file. Failures a user can fix are `ConfigError`s.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import logging
import os
import posixpath
import re
import shutil
import socket
import stat
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigError

if TYPE_CHECKING:  # the S3 and SFTP libraries are optional extras, imported when used
    import paramiko

log = logging.getLogger(__name__)

URL_FORMS = "sftp://user@host[:port]/path, s3://bucket/prefix, /local/path or file:///local/path"

_NAME_RE = re.compile(
    r"^(?P<ts>\d{8}T\d{6})(?:\.(?P<frac>\d{1,6}))?Z_(?P<dur>P[0-9A-Z.]+)-(?P<num>\d+)\.json\.gz$"
)
_DURATION_RE = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


# --------------------------------------------------------------------------- names


def parse_name(name: str) -> tuple[datetime, timedelta, int]:
    """(window start UTC, window length, number) of a Monetate file name; ValueError otherwise."""
    m = _NAME_RE.match(name)
    if not m:
        raise ValueError(
            f"{name!r} is not a Monetate Session Stream file name "
            "(expected YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz)"
        )
    try:
        start = datetime.strptime(m["ts"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{name!r} has an impossible window start {m['ts']!r}") from None
    if m["frac"]:
        start += timedelta(microseconds=int(m["frac"].ljust(6, "0")))
    d = _DURATION_RE.match(m["dur"])
    if not d or m["dur"] in ("P", "PT") or m["dur"].endswith("T"):
        raise ValueError(
            f"{name!r} has a window length {m['dur']!r} that is not an ISO-8601 duration"
        )
    length = timedelta(
        weeks=int(d["w"] or 0),
        days=int(d["d"] or 0),
        hours=int(d["h"] or 0),
        minutes=int(d["m"] or 0),
        seconds=float(d["s"] or 0),
    )
    return start, length, int(m["num"])


def is_drop_name(name: str) -> bool:
    try:
        parse_name(name)
    except ValueError:
        return False
    return True


def order_key(name: str) -> tuple:
    """Sort key for the "later file" order: window start, then the number (numerically)."""
    start, _, number = parse_name(posixpath.basename(name))
    return (start, number)


@dataclass(frozen=True)
class DropFile:
    path: str  # relative to the root: 'YYYY/MM/DD/<name>'
    size: int
    mtime: float | None = None  # epoch seconds, when the store tells

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def window_start(self) -> datetime:
        return parse_name(self.name)[0]


def _utc(dt: datetime) -> datetime:
    # Naive datetimes are taken as UTC: Monetate's names and Airflow's data intervals are UTC.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def day_folders(start: datetime, end: datetime) -> list[str]:
    """The 'YYYY/MM/DD' folders holding windows that start in [start, end)."""
    start, end = _utc(start), _utc(end)
    if end <= start:
        return []
    last: date = (end - timedelta(microseconds=1)).date()
    day, out = start.date(), []
    while day <= last:
        out.append(day.strftime("%Y/%m/%d"))
        day += timedelta(days=1)
    return out


# --------------------------------------------------------------------------- locations


class DropLocation(ABC):
    """A drop root. Subclasses list one day folder and fetch one file; the rest is shared."""

    url: str  # for logs and messages: never holds a password

    def list_files(self, start: datetime, end: datetime) -> list[DropFile]:
        """Monetate files whose window start lies in [start, end), oldest first by `order_key`."""
        start, end = _utc(start), _utc(end)
        found: list[tuple[tuple, DropFile]] = []
        for folder in day_folders(start, end):
            for f in self._list_folder(folder):
                try:
                    key = order_key(f.name)
                except ValueError:
                    log.info("skipping %s/%s: not a Monetate file name", self.url, f.path)
                    continue
                if start <= key[0] < end:
                    found.append((key, f))
        found.sort(key=lambda kf: kf[0])
        return [f for _, f in found]

    def restat(self, files: Iterable[DropFile]) -> dict[str, DropFile]:
        """Look again at the given files (one listing per day folder): path -> current state."""
        files = list(files)
        folders = sorted({posixpath.dirname(f.path) for f in files})
        wanted = {f.path for f in files}
        return {
            f.path: f for folder in folders for f in self._list_folder(folder) if f.path in wanted
        }

    def download(self, f: DropFile, dest: Path) -> Path:
        """Copy `f` to `dest` under a temporary name, then rename: `dest` is whole or absent."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self._fetch(f, tmp)
            size = tmp.stat().st_size
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if size != f.size:
            log.warning(
                "%s/%s was %d bytes when listed, %d when downloaded", self.url, f.path, f.size, size
            )
        return dest

    @abstractmethod
    def _list_folder(self, folder: str) -> list[DropFile]:
        """Regular files directly in `folder` (relative to the root); a missing folder is empty."""

    @abstractmethod
    def _fetch(self, f: DropFile, local: Path) -> None:
        """Write the bytes of `f` to `local`."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass

    def __enter__(self) -> DropLocation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalDrop(DropLocation):
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        if not self.root.is_dir():
            raise ConfigError(
                f"drop folder {self.root} does not exist: check the drop location path"
            )

    def _list_folder(self, folder: str) -> list[DropFile]:
        out = []
        try:
            with os.scandir(self.root / folder) as entries:
                for e in entries:
                    if e.is_file(follow_symlinks=True):
                        st = e.stat()
                        out.append(DropFile(f"{folder}/{e.name}", st.st_size, st.st_mtime))
        except FileNotFoundError:
            if not self.root.is_dir():
                raise ConfigError(f"drop folder {self.root} has disappeared") from None
        return out

    def _fetch(self, f: DropFile, local: Path) -> None:
        shutil.copyfile(self.root / f.path, local)


# --------------------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)


def s3_client(options: S3Options | None = None) -> Any:
    """A boto3 S3 client; with no keys given, boto3's default credential chain applies."""
    import boto3
    from botocore.config import Config

    o = options or S3Options()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=o.endpoint_url or None,
        region_name=o.region_name or None,
        aws_access_key_id=o.aws_access_key_id or None,
        aws_secret_access_key=o.aws_secret_access_key or None,
        aws_session_token=o.aws_session_token or None,
        config=Config(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=20, read_timeout=120
        ),
    )


def s3_config_error(exc: Exception, url: str, endpoint: str | None = None) -> Exception:
    """Turn boto errors a user can fix into one-line ConfigErrors; return anything else unchanged."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, NoCredentialsError):
        return ConfigError(
            f"no AWS credentials for {url}: configure the aws_default connection or the boto3 "
            "credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role)"
        )
    if isinstance(exc, EndpointConnectionError):
        return ConfigError(f"cannot reach the S3 endpoint for {url}: {exc}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            bucket = urlsplit(url).netloc
            return ConfigError(
                f"S3 bucket {bucket!r} does not exist{where}: check the bucket in {url}"
            )
        if code in (
            "AccessDenied",
            "403",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
        ):
            return ConfigError(
                f"access to {url}{where} denied ({code}): check the AWS credentials "
                "(aws_default connection or boto3 chain) and the bucket policy"
            )
    return exc


class S3Drop(DropLocation):
    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None):
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint_url = (options or S3Options()).endpoint_url
        self.client = s3_client(options)
        self._errors = (BotoCoreError, ClientError)
        # Check bucket and credentials now, with a call that a prefix-scoped IAM policy allows
        # (HeadBucket would need rights on the whole bucket).
        try:
            self.client.list_objects_v2(Bucket=bucket, Prefix=self._key(""), MaxKeys=1)
        except self._errors as exc:
            raise s3_config_error(exc, self.url, self.endpoint_url) from exc

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _list_folder(self, folder: str) -> list[DropFile]:
        prefix = self._key(folder).rstrip("/") + "/" if (folder or self.prefix) else ""
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if name:
                        rel = f"{folder}/{name}" if folder else name
                        out.append(DropFile(rel, obj["Size"], obj["LastModified"].timestamp()))
        except self._errors as exc:
            raise s3_config_error(exc, self.url, self.endpoint_url) from exc
        return out

    def _fetch(self, f: DropFile, local: Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(f.path), str(local))
        except self._errors as exc:
            raise s3_config_error(exc, self.url, self.endpoint_url) from exc

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- SFTP


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


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """A paramiko key from OpenSSH, PKCS#1/SEC1 or PKCS#8 PEM text (Ed25519, ECDSA or RSA)."""
    import paramiko
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if "\\n" in text and "\n" not in text.strip():  # pasted into a one-line field
        text = text.replace("\\n", "\n")
    data = text.strip().encode() + b"\n"
    password = passphrase.encode() if passphrase else None
    # cryptography reads every format; paramiko's own readers miss PKCS#8 ("BEGIN PRIVATE KEY").
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password)
    except TypeError:  # cryptography's way of saying a passphrase is missing (or not needed)
        raise ConfigError(
            "the SFTP private key is encrypted: give its passphrase"
            if not passphrase
            else "the SFTP private key is not encrypted: remove the passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            "the SFTP private key cannot be read: give the whole OpenSSH or PEM text of an "
            f"Ed25519, ECDSA or RSA key, and its passphrase if it has one ({exc})"
        ) from None
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
            pkey = load_private_key(c.private_key, c.passphrase)
        elif c.private_key_path:
            path = Path(c.private_key_path).expanduser()
            if not path.is_file():
                raise ConfigError(f"SFTP private key file {path} does not exist")
            pkey = load_private_key(path.read_text(), c.passphrase)
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
            raise ConfigError(
                f"cannot reach SFTP server {self._where} ({exc}): check the host and port and that the server is up"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise ConfigError(f"SSH connection to {self._where} failed: {exc}") from None
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
        return [
            DropFile(f"{folder}/{a.filename}", a.st_size or 0, a.st_mtime)
            for a in attrs
            if a.st_mode is None or stat.S_ISREG(a.st_mode)
        ]

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


# --------------------------------------------------------------------------- entry points


def open_drop(
    url: str, *, sftp: SftpCredentials | None = None, s3: S3Options | None = None
) -> DropLocation:
    """Open a drop location from its URL: one of URL_FORMS.

    SFTP paths are absolute; `sftp://user@host/~/dir` is `dir` under the login folder.
    """
    if not url or not url.strip():
        raise ConfigError(f"no drop location given: use {URL_FORMS}")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(
                    f"file:// URLs must be local (file:///path), got host {parts.netloc!r}"
                )
            return LocalDrop(unquote(parts.path))
        return LocalDrop(url)
    if scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"S3 drop URL needs a bucket: s3://bucket/prefix, got {url!r}")
        return S3Drop(parts.netloc, unquote(parts.path), s3)
    if scheme == "sftp":
        creds = sftp or SftpCredentials()
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"SFTP drop URL has a bad port: {url!r}") from None
        overrides: dict[str, Any] = {}
        if parts.hostname:
            overrides["host"] = parts.hostname
        if port:
            overrides["port"] = port
        if parts.username:
            overrides["username"] = unquote(parts.username)
        if parts.password and not creds.password:
            overrides["password"] = unquote(parts.password)
        creds = dataclasses.replace(creds, **overrides)
        path = unquote(parts.path)
        if path == "/~" or path.startswith("/~/"):
            root = path[3:].strip("/")
        else:
            root = path.rstrip("/") or "/"
        return SftpDrop(creds, root)
    raise ConfigError(f"unsupported drop location {url!r}: use {URL_FORMS}")


def list_tree(path: Path) -> list[Path]:
    """Monetate files under a local folder laid out YYYY/MM/DD/ (or the file itself), oldest first."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(
            f"{path} does not exist: give a .json.gz file or a drop folder laid out YYYY/MM/DD/"
        )
    found = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in names:
            try:
                key = order_key(name)
            except ValueError:
                if name.endswith(".json.gz"):
                    log.warning("skipping %s: not a Monetate file name", Path(folder, name))
                continue
            found.append((key, Path(folder, name)))
    found.sort(key=lambda kp: (kp[0], str(kp[1])))
    return [p for _, p in found]


def settled(
    drop: DropLocation,
    files: Iterable[DropFile],
    *,
    settle_seconds: float,
    recheck_after: float,
) -> tuple[list[DropFile], list[DropFile]]:
    """Split listed files into (ready, waiting); a file still being written waits.

    A file waits when its mtime is younger than `settle_seconds`, or when its size or mtime
    changed between the listing that produced `files` and a second look `recheck_after`
    seconds later (0 skips the second look). A file that vanished meanwhile also waits.
    """
    files = list(files)
    now = time.time()
    waiting = [f for f in files if f.mtime is not None and now - f.mtime < settle_seconds]
    young = set(waiting)
    candidates = [f for f in files if f not in young]
    ready = candidates
    if recheck_after > 0 and candidates:
        time.sleep(recheck_after)
        current = drop.restat(candidates)
        ready = []
        for f in candidates:
            now_f = current.get(f.path)
            if now_f is not None and (now_f.size, now_f.mtime) == (f.size, f.mtime):
                ready.append(f)
            else:
                waiting.append(f)
    ready.sort(key=lambda f: order_key(f.name))
    waiting.sort(key=lambda f: order_key(f.name))
    if waiting:
        log.info(
            "%d file(s) still being written wait for a later run: %s",
            len(waiting),
            [f.name for f in waiting],
        )
    return ready, waiting
