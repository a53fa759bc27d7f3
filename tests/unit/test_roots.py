"""Run params may only narrow the admin's roots (roots.py), and a run's staging prefix is safe
whatever its run id. The same checks run end to end through `airflow dags test` in
tests/dags/test_security_dag.py; here every hostile form is tried quickly."""

from __future__ import annotations

import os

import pytest

from session_stream.drop.roots import as_text, configured_roots, is_run_prefix, narrow, run_prefix
from session_stream.errors import ConfigError
from session_stream.runs import dag_tasks
from session_stream.runs.staging import LocalStaging


@pytest.fixture
def local(tmp_path):
    """A drop root with a subfolder, a sibling folder outside it, and links both ways."""
    root = tmp_path / "drop"
    (root / "2026").mkdir(parents=True)
    (tmp_path / "drop-other").mkdir()
    (tmp_path / "secrets").mkdir()
    (root / "out").symlink_to(tmp_path / "secrets")
    (root / "in").symlink_to(root / "2026")
    return tmp_path


@pytest.mark.parametrize(
    "param",
    [
        "{t}/drop-other",  # a sibling whose name starts like the root
        "{t}/secrets",
        "/etc",
        "{t}/drop/../secrets",
        "{t}/drop/2026/../../secrets",
        "file://{t}/drop/../secrets",
        "file:///etc",
        "file:{t}/secrets",
        "file://evil.example/{t}/drop",
        "file://user:pw@localhost{t}/drop",
        "{t}/drop/out",  # a symlink inside the root that leads out of it
        "file://{t}/drop/%2e%2e/secrets",  # percent-encoded '..'
        "drop/2026",  # relative: it would depend on the worker's working directory
        "s3://bucket/prefix",
        "sftp://monetate@sftp.example/upload",
    ],
)
def test_a_local_drop_param_outside_the_root_is_refused(local, param):
    param = param.format(t=local)
    with pytest.raises(ConfigError) as refused:
        narrow(param, [str(local / "drop")], "drop_url")
    assert "\n" not in str(refused.value) and "pw" not in str(refused.value)


@pytest.mark.parametrize(
    "param", ["{t}/drop", "{t}/drop/2026", "file://{t}/drop/2026", "{t}/drop/in"]
)
def test_a_local_drop_param_inside_the_root_is_the_root_narrowed(local, param):
    url = narrow(param.format(t=local), [str(local / "drop")], "drop_url")
    assert url.scheme == "file"
    assert os.path.realpath(url.path).startswith(os.path.realpath(local / "drop"))


S3_ROOT = "s3://acme-monetate/raw/session_stream"


@pytest.mark.parametrize(
    "param",
    [
        "s3://other-bucket/raw/session_stream",
        "s3://acme-monetate/raw",  # wider than the root
        "s3://acme-monetate/raw/session_stream_x",  # shares the text prefix only
        "s3://acme-monetate/raw/session_stream/../../finance",
        "s3://acme-monetate/../x",
        "s3://acme-monetate/raw/session_stream/%2e%2e/%2e%2e/finance",  # percent-encoded '..'
        "s3://acme-monetate/raw/session_stream/./x",
        "s3://acme-monetate@evil-bucket/raw/session_stream",  # userinfo that names the bucket
        "s3://key:secret@acme-monetate/raw/session_stream",
        "S3://ACME-MONETATE/raw/session_stream",
        "/raw/session_stream",
    ],
)
def test_an_s3_param_outside_the_root_is_refused(param):
    with pytest.raises(ConfigError) as refused:
        narrow(param, [S3_ROOT], "drop_url")
    assert "secret" not in str(refused.value)


def test_an_s3_param_inside_the_root_keeps_the_roots_bucket():
    url = narrow("s3://acme-monetate/raw/session_stream//2026/", [S3_ROOT], "drop_url")
    assert (url.scheme, url.host) == ("s3", "acme-monetate")
    assert as_text(url) == "s3://acme-monetate/raw/session_stream//2026/"


SFTP_ROOT = "sftp://monetate:rootpw@sftp.example.com:2222/~/1234/raw_data"


@pytest.mark.parametrize(
    "param",
    [
        "sftp://monetate@sftp.example.com:22/~/1234/raw_data/x",  # another port
        "sftp://other@sftp.example.com:2222/~/1234/raw_data/x",  # another user
        "sftp://monetate@evil.example.com:2222/~/1234/raw_data/x",
        "sftp://monetate@sftp.example.com:2222@evil.example.com:2222/~/1234/raw_data",
        "sftp://monetate@sftp.example.com:2222/~/1234/raw_data/../../etc",
        "sftp://monetate@sftp.example.com:2222/1234/raw_data",  # absolute, not under ~
        "sftp://monetate:hunter2@sftp.example.com:2222/~/1234/raw_data/x",  # a param password
    ],
)
def test_an_sftp_param_outside_the_root_is_refused(param):
    with pytest.raises(ConfigError) as refused:
        narrow(param, [SFTP_ROOT], "drop_url")
    assert "hunter2" not in str(refused.value) and "rootpw" not in str(refused.value)


def test_an_sftp_param_inside_the_root_uses_the_roots_login():
    url = narrow("sftp://sftp.example.com:2222/~/1234/raw_data/2026", [SFTP_ROOT], "drop_url")
    assert (url.host, url.port, url.username, url.password) == (
        "sftp.example.com",
        2222,
        "monetate",
        "rootpw",
    )
    assert url.path == "/~/1234/raw_data/2026"


def test_the_allow_list_variable_takes_lines_or_json():
    assert configured_roots("s3://a/x\n\n  /drop  \n") == ["s3://a/x", "/drop"]
    assert configured_roots('["s3://a/x", "/drop"]') == ["s3://a/x", "/drop"]
    with pytest.raises(ConfigError):
        configured_roots("[not json")


def test_any_allowed_root_may_be_narrowed(local):
    url = narrow("s3://b2/p/q", [str(local / "drop"), "s3://b2/p"], "drop_url")
    assert (url.host, url.path) == ("b2", "/p/q")


@pytest.mark.parametrize(
    "run_id",
    [
        "../../victim",
        "..",
        ".",
        "/etc/passwd",
        "victim",
        "a/../../b",
        "x\x00y",
        "",
        "runs",
        "manual__2026-11-01T01:00:00+00:00",
        "é" * 300,
    ],
)
def test_a_run_prefix_is_one_safe_segment_under_runs_whatever_the_run_id(run_id):
    prefix = run_prefix(run_id)
    head, segment = prefix.split("/")
    assert head == "runs" and segment not in ("", ".", "..") and is_run_prefix(prefix)
    assert len(segment) <= 100
    assert dag_tasks.checked_prefix(prefix) == prefix


def test_prefixes_not_made_by_the_dag_are_refused():
    for prefix in ("runs", "victim", "runs/../x", "runs/a/b", "", "runs/x-123"):
        with pytest.raises(ConfigError):
            dag_tasks.checked_prefix(prefix)


def test_deleting_a_run_never_follows_a_link_out_of_the_staging_area(tmp_path):
    victim = tmp_path / "victim"
    (victim / "keep").mkdir(parents=True)
    (victim / "keep" / "file").write_text("precious")
    area = LocalStaging(tmp_path / "staging")
    (tmp_path / "staging" / "runs").symlink_to(victim)
    with pytest.raises(ConfigError, match="leads out of the staging area"):
        area.delete("runs/keep")
    assert (victim / "keep" / "file").read_text() == "precious"
