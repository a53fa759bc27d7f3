"""Open a drop location from its URL: the one module that imports every transport, and that none
of them imports, so base.py's types stay free of the transports (and the S3 and SFTP libraries
stay optional: a transport is imported when its URL is opened)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from session_stream.drop.base import DropLocation, DropUrl

if TYPE_CHECKING:
    from session_stream.drop.s3_client import S3Source
    from session_stream.drop.sftp import SftpCredentials


def open_drop(
    url: DropUrl | str, *, sftp: SftpCredentials | None = None, s3: S3Source = None
) -> DropLocation:
    """Open a drop location from its URL (one of URL_FORMS, or a parsed DropUrl).

    `s3`: S3Options or a factory of ready boto3 S3 clients (see s3_client.py); `sftp`: the login.

    SFTP paths are absolute; `sftp://user@host/~/dir` is `dir` under the login folder.
    """
    if not isinstance(url, DropUrl):
        url = DropUrl.parse(url)
    if url.scheme == "s3":
        from session_stream.drop.s3 import S3Drop

        return S3Drop(url.host, url.path, s3)
    if url.scheme == "sftp":
        from session_stream.drop.sftp import SftpDrop

        return SftpDrop.from_url(url, sftp)
    from session_stream.drop.local import LocalDrop

    return LocalDrop(url.path)
