"""The DAG's S3 clients come from the Amazon provider's S3Hook on `aws_default`: whatever that
connection says (keys, role_arn, profile_name, endpoint_url, region_name, config_kwargs) is what
the client does. Checked on the client the plugin makes, against moto (STS, IAM and S3)."""

from __future__ import annotations

import boto3
import pytest
from airflow_harness import conn_env
from session_stream_config import open_drop_location, open_staging_area, s3_client_factory

from session_stream.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_default(monkeypatch):
    """Set the aws_default connection (as an AIRFLOW_CONN_ variable) for this test."""

    def set_connection(**fields) -> None:
        for name, value in conn_env("aws_default", conn_type="aws", **fields).items():
            monkeypatch.setenv(name, value)

    return set_connection


def caller_arn(client, endpoint_url: str) -> str:
    """Who AWS (here moto's STS) takes the client's credentials for."""
    creds = client._request_signer._credentials.get_frozen_credentials()
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    )
    return sts.get_caller_identity()["Arn"]


def test_the_client_assumes_the_connection_s_role_and_keeps_its_endpoint_and_region(
    s3_server, aws_default
):
    bucket = s3_server.create_bucket()
    role = s3_server.role_for_bucket(bucket)
    aws_default(
        **s3_server.role_connection(role, region="eu-west-1", config_kwargs={"read_timeout": 33})
    )
    client = s3_client_factory()()
    try:
        assert client.meta.endpoint_url == s3_server.endpoint_url
        assert client.meta.region_name == "eu-west-1"
        assert "Airflow/" in client.meta.config.user_agent_extra  # made by the provider's hook
        # The connection's botocore settings win; the engine's fill in the rest.
        assert client.meta.config.read_timeout == 33
        assert client.meta.config.connect_timeout == 20
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
        assert caller_arn(client, s3_server.endpoint_url).startswith(
            f"arn:aws:sts::123456789012:assumed-role/{role.role_name}/"
        )
        with s3_server.enforcing_auth():  # the role's rights, not the user's, reach the bucket
            client.put_object(Bucket=bucket, Key="probe", Body=b"x")
    finally:
        client.close()


def test_plain_keys_are_used_as_given(s3_server, aws_default):
    aws_default(
        login="AKIAPLAINKEYS0000001",
        password="plain-secret",
        extra={"endpoint_url": s3_server.endpoint_url, "region_name": "us-east-1"},
    )
    client = s3_client_factory()()
    creds = client._request_signer._credentials.get_frozen_credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == (
        "AKIAPLAINKEYS0000001",
        "plain-secret",
        None,  # not the environment's AWS_SESSION_TOKEN
    )
    client.close()


def test_a_profile_named_by_the_connection_is_read_from_the_shared_credentials_file(
    s3_server, aws_default, monkeypatch, tmp_path
):
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[loader]\naws_access_key_id = AKIAPROFILEKEY000001\naws_secret_access_key = from-profile\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    aws_default(extra={"profile_name": "loader", "endpoint_url": s3_server.endpoint_url})
    client = s3_client_factory()()
    creds = client._request_signer._credentials.get_frozen_credentials()
    assert (creds.access_key, creds.secret_key) == ("AKIAPROFILEKEY000001", "from-profile")
    client.close()


def test_a_role_the_user_may_not_assume_is_one_clear_line(s3_server, aws_default, monkeypatch):
    bucket = s3_server.create_bucket()
    role = s3_server.role_for_bucket(bucket, trusted=False)
    aws_default(**s3_server.role_connection(role))
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_DROP_URL", f"s3://{bucket}/drop")
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_STAGING_URL", f"s3://{bucket}/staging")
    with s3_server.enforcing_auth():
        for open_area in (open_drop_location, open_staging_area):
            with pytest.raises(ConfigError) as err:
                open_area({})
            assert "could not assume the AWS role" in str(err.value)
            assert "role_arn" in str(err.value) and "\n" not in str(err.value)


def test_without_the_connection_boto3_s_own_chain_applies(s3_server, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    client = s3_client_factory()()
    creds = client._request_signer._credentials.get_frozen_credentials()
    assert creds.access_key == "testing"  # AWS_ACCESS_KEY_ID of the s3_server fixture
    client.close()


def test_the_staging_area_and_the_drop_use_the_connection(s3_server, aws_default, monkeypatch):
    bucket = s3_server.create_bucket()
    role = s3_server.role_for_bucket(bucket)
    aws_default(**s3_server.role_connection(role))
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_DROP_URL", f"s3://{bucket}/drop")
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_STAGING_URL", f"s3://{bucket}/staging")
    with s3_server.enforcing_auth():
        with open_staging_area({}) as staging:
            staging.client.put_object(Bucket=bucket, Key="staging/x", Body=b"1")
            assert staging.exists("x")
            assert f"assumed-role/{role.role_name}/" in caller_arn(
                staging.client, s3_server.endpoint_url
            )
        with open_drop_location({}) as drop:
            assert f"assumed-role/{role.role_name}/" in caller_arn(
                drop.client, s3_server.endpoint_url
            )
