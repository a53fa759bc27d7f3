"""S3 clients for the drop location and the staging area, and the S3 errors a user can fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, UnreachableError


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
        return UnreachableError(f"cannot reach the S3 endpoint for {url}: {exc}")
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
