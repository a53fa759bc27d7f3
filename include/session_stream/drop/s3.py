"""An S3 prefix as the drop location (many teams mirror Monetate's SFTP delivery to S3)."""

from __future__ import annotations

from pathlib import Path

from session_stream.drop.base import DropFile, DropLocation, folder_entry
from session_stream.drop.s3_client import S3Source, endpoint_of, s3_client, s3_config_error


class S3Drop(DropLocation):
    """`s3`: S3Options, or a factory of ready boto3 clients (the DAG's comes from the Amazon
    provider's hook); the drop closes the client it made."""

    def __init__(self, bucket: str, prefix: str = "", s3: S3Source = None):
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._errors = (BotoCoreError, ClientError)
        self.endpoint_url = None
        # Check credentials (a role is assumed as the client is made) and the bucket now, with a
        # call that a prefix-scoped IAM policy allows (HeadBucket needs rights on the whole bucket).
        try:
            self.client = s3_client(s3)
            self.endpoint_url = endpoint_of(self.client)
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
                        out.append(
                            DropFile(
                                rel,
                                obj["Size"],
                                obj["LastModified"].timestamp(),
                                version=obj.get("ETag"),
                            )
                        )
                # Keys below a "sub-folder" (with the delimiter): listed as the folder.
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) :].rstrip("/")
                    if name:
                        out.append(folder_entry(f"{folder}/{name}" if folder else name))
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
