"""S3 clients for the drop location and the staging area, and the S3 errors a user can fix.

The engine never decides where credentials come from: it is handed either `S3Options` (use
outside Airflow, and the tests: plain boto3, its default chain when no keys are given) or a
factory that makes a ready boto3 client (the DAG: the Amazon provider's S3Hook on `aws_default`,
so role assumption, profiles and web identity work as Airflow users expect).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from session_stream.errors import ConfigError, UnreachableError


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)


# Makes a new boto3 S3 client each call; whoever it is given to owns (and closes) the client.
S3ClientFactory = Callable[[], Any]
S3Source = S3Options | S3ClientFactory | None


def client_config() -> Any:
    """The engine's botocore settings for S3: retries with back-off, bounded waits. A client
    factory merges its own settings over these (see session_stream_config.s3_client_factory)."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": 5}, connect_timeout=20, read_timeout=120
    )


def s3_client(source: S3Source = None) -> Any:
    """A boto3 S3 client: the factory's, or one built from `S3Options` (with no keys given,
    boto3's default credential chain applies)."""
    if callable(source):
        return source()
    import boto3

    o = source or S3Options()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=o.endpoint_url or None,
        region_name=o.region_name or None,
        aws_access_key_id=o.aws_access_key_id or None,
        aws_secret_access_key=o.aws_secret_access_key or None,
        aws_session_token=o.aws_session_token or None,
        config=client_config(),
    )


def endpoint_of(client: Any) -> str | None:
    """The endpoint a client talks to, for messages."""
    return getattr(getattr(client, "meta", None), "endpoint_url", None)


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
        return UnreachableError(f"cannot reach the S3 endpoint for {url}: {exc}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if getattr(exc, "operation_name", "") in ("AssumeRole", "AssumeRoleWithWebIdentity"):
            return ConfigError(
                f"could not assume the AWS role for {url} ({code}): check role_arn in the "
                "aws_default connection and the role's trust policy"
            )
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
