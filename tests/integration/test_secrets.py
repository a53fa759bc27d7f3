"""No password in what the CLI and the engine print: every failure path is run with a known
password and its whole output searched for it (issue 9, finding 4). The DAG's task logs and
alerts are searched the same way in tests/dags/test_security_dag.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from session_stream.drop.opener import open_drop
from session_stream.drop.sftp import SftpCredentials
from session_stream.errors import ConfigError
from session_stream.warehouse import db

pytestmark = pytest.mark.integration

# Two halves around a '/': an unencoded '/' once made the bad-port error print the first half.
HEAD, TAIL = "Kn0wn-S3cret", "Tail-0f-Pw"
PASSWORD = f"{HEAD}/{TAIL}"
CLI = [sys.executable, "-m", "session_stream.runs.cli"]


def leaks(text: str) -> list[str]:
    return [piece for piece in (PASSWORD, HEAD, TAIL, quote(PASSWORD, safe="")) if piece in text]


def run_cli(*args, env=None, **kwargs):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_STREAM")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        **kwargs,
    )


@pytest.fixture(scope="module")
def drop(tmp_path_factory):
    from datetime import date

    from session_stream.drop.sample import write_drop

    root = tmp_path_factory.mktemp("drop")
    write_drop(root, date(2026, 11, 1), sessions=20, files=1, hours=1, seed=3)
    return root


ENCODED = quote(PASSWORD, safe="")


@pytest.mark.parametrize(
    ("db_arg", "expected"),
    [
        # bad port, with the '/' unencoded as a user would paste it
        (f"mysql://loader:{PASSWORD}@127.0.0.1:3306/warehouse", "cannot be read"),
        (f"mysql://loader:{ENCODED}@127.0.0.1:33o6/warehouse", "port is not a number"),
        (f"mysql://loader:{ENCODED}@no-such-host.invalid:3306/warehouse", "cannot reach MySQL"),
        (f"mysql://loader:{ENCODED}@127.0.0.1:1/warehouse", "cannot reach MySQL"),
        (f"mysql://nobody:{ENCODED}@127.0.0.1:3306/test", "refused user"),
        (f"mysql://root:{ENCODED}@127.0.0.1:3306/test?sslmode=1", "unknown database URL option"),
    ],
)
def test_cli_failures_never_print_the_password(db_arg, expected, drop):
    result = run_cli("load", "--db", db_arg, str(drop))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert expected in output
    assert "password was given on the command line" in output  # and it says how not to
    assert leaks(output) == [], output


@pytest.mark.parametrize("how", ["env", "file", "prompt"])
def test_the_password_can_come_from_the_environment_a_file_or_a_prompt(how, tmp_path, drop):
    url = "mysql://nobody@127.0.0.1:3306/test"
    args, env, stdin = ["load", "--db", url, str(drop)], {}, None
    if how == "env":
        env[db.DB_PASSWORD_ENV] = PASSWORD
    elif how == "file":
        secret = tmp_path / "pw"
        secret.write_text(PASSWORD + "\n")
        args += ["--password-file", str(secret)]
    else:
        args += ["--password-prompt"]
        stdin = PASSWORD + "\n"
    result = run_cli(*args, env=env, input=stdin)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "refused user 'nobody'" in output, output
    assert "command line" not in output  # no warning: nothing was on the command line
    assert leaks(output) == []


def test_a_password_on_the_command_line_is_gone_from_ps_while_the_cli_runs(drop):
    # --password-prompt keeps the process waiting on stdin: long enough to look at it.
    proc = subprocess.Popen(
        [
            *CLI,
            "load",
            "--password-prompt",
            "--db",
            f"mysql://nobody:{ENCODED}@127.0.0.1:3306/test",
            str(drop),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cmdline = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            if cmdline.startswith(b"session-stream"):
                break
            time.sleep(0.05)
        shown = cmdline.replace(b"\0", b" ").decode()
        assert shown.startswith("session-stream load"), shown
        assert "nobody:***@127.0.0.1" in shown
        assert leaks(shown) == []
        out, err = proc.communicate("wrong\n", timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert leaks(out + err) == []


@pytest.mark.parametrize(
    "url",
    [
        f"sftp://monetate:{PASSWORD}@sftp.example.com:22/upload",  # unencoded '/': a bad port
        f"sftp://monetate:{ENCODED}@sftp.example.com:2x2/upload",
        f"ftp://monetate:{ENCODED}@ftp.example.com/upload",
        f"file://monetate:{ENCODED}@elsewhere.example.com/upload",
        f"s3://monetate:{ENCODED}@/upload",
    ],
)
def test_bad_drop_urls_never_print_the_password(url):
    with pytest.raises(ConfigError) as refused:
        open_drop(url)
    assert leaks(str(refused.value)) == []


def test_an_sftp_login_failure_never_prints_the_password(sftp_server, caplog):
    caplog.set_level(logging.DEBUG)
    root = sftp_server.new_root()
    url = f"sftp://{sftp_server.username}:{ENCODED}@{sftp_server.host}:{sftp_server.port}{root}"
    creds = SftpCredentials(host_key=sftp_server.host_key)  # no key: the password is tried
    with pytest.raises(ConfigError, match="SFTP login") as refused:
        open_drop(url, sftp=creds)
    assert leaks(str(refused.value)) == []
    assert leaks(caplog.text) == []
