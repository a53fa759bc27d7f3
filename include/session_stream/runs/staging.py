"""The staging area: where DAG tasks hand downloaded files and split CSVs to one another.

A local folder when every task runs on one machine, an `s3://bucket/prefix` when tasks may
run on different workers (Celery, Kubernetes). Keys are '/'-separated names relative to the
area's root; they can never climb out of it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from session_stream.drop.roots import contained
from session_stream.drop.s3_client import S3Source, endpoint_of, s3_client, s3_config_error
from session_stream.errors import ConfigError, LoadError
from session_stream.redact import mask_url

_MISSING_HINT = (
    "if tasks run on different workers, the staging area must be shared by all of them "
    "(an s3:// prefix or a shared folder)"
)


def _check_key(key: str, *, allow_empty: bool = False) -> str:
    key = key.strip("/")
    parts = key.split("/") if key else []
    if (not parts and not allow_empty) or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"bad staging key {key!r}: use '/'-separated names without '.', '..' or empty parts"
        )
    return key


def _atomic_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


class StagingArea(ABC):
    url: str

    @classmethod
    def from_url(cls, url: str, *, s3: S3Source = None) -> StagingArea:
        return open_staging(url, s3=s3)

    @abstractmethod
    def put_file(self, local: Path, key: str) -> None:
        """Store a local file under `key` (replacing what was there)."""

    @abstractmethod
    def get_file(self, key: str, local: Path) -> Path:
        """Copy the file at `key` to `local`; a missing key is a LoadError."""

    @abstractmethod
    def delete(self, key_prefix: str) -> None:
        """Remove the key itself and everything under `key_prefix/`; missing is fine."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True for a stored file, or for a prefix with files under it."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """Where `key` lives, for logs and messages."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        pass

    def __enter__(self) -> StagingArea:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStaging(StagingArea):
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().absolute()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the staging folder {self.root}: {exc.strerror}"
            ) from None
        self.url = str(self.root)

    def path_for(self, key: str) -> Path:
        return self.root / _check_key(key)

    def url_for(self, key: str) -> str:
        return str(self.path_for(key))

    def put_file(self, local: Path, key: str) -> None:
        dest = self.path_for(key)
        if not _same_file(Path(local), dest):  # a task that wrote straight into the area
            _atomic_copy(Path(local), dest)

    def get_file(self, key: str, local: Path) -> Path:
        src, local = self.path_for(key), Path(local)
        if not src.is_file():
            raise LoadError(f"staged file {src} is missing: {_MISSING_HINT}")
        if not _same_file(src, local):
            _atomic_copy(src, local)
        return local

    def delete(self, key_prefix: str) -> None:
        path = self.path_for(key_prefix)
        if not os.path.lexists(path):
            return
        # A folder on the way that links out of the area would make rmtree remove files the
        # area never held: only what really lies inside the root is deleted.
        if not contained(path.parent, self.root):
            raise ConfigError(
                f"refusing to delete {path}: a folder on its way leads out of the staging area {self.root}"
            )
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # never follows symlinks inside the tree
        else:
            path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        path = self.path_for(key)
        return path.is_file() or (path.is_dir() and any(path.iterdir()))


class S3Staging(StagingArea):
    """`s3`: S3Options, or a factory of ready boto3 clients (the DAG's comes from the Amazon
    provider's hook); the area closes the client it made."""

    def __init__(self, bucket: str, prefix: str = "", s3: S3Source = None):
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._errors = (BotoCoreError, ClientError)
        self.endpoint_url = None
        self.client = self._call(s3_client, s3)  # a role is assumed here: its errors are one line
        self.endpoint_url = endpoint_of(self.client)

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _call(self, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise s3_config_error(exc, self.url, self.endpoint_url) from exc

    def _keys_under(self, key_prefix: str) -> list[str]:
        """Full object keys equal to the prefix or under 'prefix/' (never 'prefixes' that merely start alike)."""
        base = self._key(key_prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        )
        keys = []
        for page in self._call(list, pages):
            for obj in page.get("Contents", []):
                if obj["Key"] == base or obj["Key"].startswith(base + "/"):
                    keys.append(obj["Key"])
        return keys

    def put_file(self, local: Path, key: str) -> None:
        from boto3.exceptions import S3UploadFailedError

        try:
            self._call(self.client.upload_file, str(local), self.bucket, self._key(key))
        except S3UploadFailedError as exc:  # boto3 wraps the ClientError in text only
            if "NoSuchBucket" in str(exc):
                raise ConfigError(
                    f"S3 bucket {self.bucket!r} of the staging area {self.url} does not exist"
                ) from exc
            raise LoadError(f"could not stage {local} at {self.url_for(key)}: {exc}") from exc

    def get_file(self, key: str, local: Path) -> Path:
        from botocore.exceptions import ClientError

        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp))
            os.replace(tmp, local)
        except ClientError as exc:
            tmp.unlink(missing_ok=True)
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                raise LoadError(f"staged file {self.url_for(key)} is missing") from None
            raise s3_config_error(exc, self.url, self.endpoint_url) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return local

    def delete(self, key_prefix: str) -> None:
        keys = self._keys_under(key_prefix)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            result = self._call(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            if result.get("Errors"):
                first = result["Errors"][0]
                raise LoadError(
                    f"could not delete {first['Key']} from {self.url}: {first.get('Message')}"
                )

    def exists(self, key: str) -> bool:
        base = self._key(key)
        # Keys sort by bytes, so if `base` itself exists it is the first key starting with it.
        listed = self._call(self.client.list_objects_v2, Bucket=self.bucket, Prefix=base, MaxKeys=1)
        if any(o["Key"] == base for o in listed.get("Contents", [])):
            return True
        listed = self._call(
            self.client.list_objects_v2, Bucket=self.bucket, Prefix=base + "/", MaxKeys=1
        )
        return bool(listed.get("Contents"))

    def close(self) -> None:
        self.client.close()


def open_staging(url: str, *, s3: S3Source = None) -> StagingArea:
    """A staging area from a local folder path, a file:// URL or an s3://bucket/prefix;
    `s3`: S3Options or a factory of ready boto3 S3 clients (see s3_client.py)."""
    if not url or not url.strip():
        raise ConfigError("no staging area given: use a local folder or s3://bucket/prefix")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise ConfigError(
                f"S3 staging URL needs a bucket: s3://bucket/prefix, got {mask_url(url)!r}"
            )
        if "@" in parts.netloc or ":" in parts.netloc:
            raise ConfigError(
                f"S3 staging URL {mask_url(url)!r} names a bucket only (s3://bucket/prefix): "
                "credentials come from the aws_default connection or the boto3 chain"
            )
        return S3Staging(parts.netloc, unquote(parts.path), s3)
    if scheme == "file":
        return LocalStaging(unquote(parts.path))
    if scheme == "":
        return LocalStaging(url)
    raise ConfigError(
        f"unsupported staging area {mask_url(url)!r}: use a local folder or s3://bucket/prefix"
    )
