"""Session-scoped fixtures for real remote stores on loopback: an OpenSSH SFTP server and moto's S3.

`sftp_server` runs the system's /usr/sbin/sshd with its own config, host key and user key in a
temp folder; `s3_server` runs moto in server mode, so boto3 talks real HTTP to it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with status {proc.returncode}:\n{log.read_text()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as s,
        ):
            if s.recv(4).startswith(b"SSH-"):  # the banner: sshd is really serving
                return
        time.sleep(0.1)
    pytest.fail(f"sshd did not listen on port {port} within {timeout}s:\n{log.read_text()}")


@dataclass
class SftpServer:
    host: str
    port: int
    username: str
    private_key: str  # OpenSSH private key text of a key the server accepts
    private_key_path: Path
    host_key: str  # "ssh-ed25519 AAAA..." of the server
    root: Path  # a folder to lay drop trees into (absolute; served as is)
    log_path: Path

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key}"

    @property
    def url(self) -> str:
        return self.url_for(self.root)

    def url_for(self, folder: Path) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{folder}"

    def credentials(self, **overrides):
        """SftpCredentials that log in with the user key and trust the server's host key."""
        from session_stream.drop.sftp import SftpCredentials

        values = dict(
            host=self.host,
            port=self.port,
            username=self.username,
            private_key=self.private_key,
            host_key=self.host_key,
        )
        values.update(overrides)
        return SftpCredentials(**values)

    def new_root(self) -> Path:
        """A fresh empty folder under the served root, so tests don't see each other's files."""
        folder = self.root / uuid.uuid4().hex[:10]
        folder.mkdir()
        return folder


def _keygen(path: Path) -> None:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "session-stream-test",
            "-f",
            str(path),
        ],
        check=True,
    )


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory):
    if not SSHD.exists():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd): apt-get install openssh-server")
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen not found: apt-get install openssh-client")
    work = tmp_path_factory.mktemp("sshd")
    host_key, user_key = work / "host_ed25519", work / "user_ed25519"
    _keygen(host_key)
    _keygen(user_key)
    authorized = work / "authorized_keys"
    authorized.write_text(user_key.with_suffix(".pub").read_text())
    root = work / "drop"
    root.mkdir()
    # Privilege separation directory; Debian's init script normally creates it.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

    port = free_port()
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {work / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    log = work / "sshd.log"
    with log.open("wb") as log_file:
        # -D: stay in the foreground (we own the process); -e: log to stderr, i.e. the log file.
        proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_port(port, proc, log)
        host_key_line = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
        yield SftpServer(
            host="127.0.0.1",
            port=port,
            username=getpass.getuser(),
            private_key=user_key.read_text(),
            private_key_path=user_key,
            host_key=host_key_line,
            root=root,
            log_path=log,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class AwsRole:
    """An IAM user's keys and the role they may assume (S3Server.role_for_bucket)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    role_arn: str = ""
    role_name: str = ""


@dataclass
class S3Server:
    endpoint_url: str

    def options(self, **overrides):
        from session_stream.drop.s3_client import S3Options

        return S3Options(endpoint_url=self.endpoint_url, region_name="us-east-1", **overrides)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    @contextlib.contextmanager
    def enforcing_auth(self):
        """Make moto check credentials (it accepts any by default): unknown keys are refused."""
        import urllib.request

        def set_count(value: str) -> None:
            req = urllib.request.Request(
                f"{self.endpoint_url}/moto-api/reset-auth",
                data=value.encode(),
                headers={"Content-Type": "text/plain"},  # a form type would hide the body
                method="POST",
            )
            urllib.request.urlopen(req, timeout=10).close()

        set_count("0")
        try:
            yield
        finally:
            set_count("inf")

    def iam(self):
        import boto3

        return boto3.client("iam", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def role_connection(self, role: AwsRole, *, region: str = "us-east-1", **extra) -> dict:
        """The fields of an `aws_default` connection that signs in with `role`'s user keys and
        assumes `role` on this server: login, password and extra (plus `extra`'s keys)."""
        return {
            "login": role.access_key_id,
            "password": role.secret_access_key,
            "extra": {
                "endpoint_url": self.endpoint_url,
                "region_name": region,
                "role_arn": role.role_arn,
                # The provider never sends AssumeRole to endpoint_url; STS has its own.
                "service_config": {"sts": {"endpoint_url": self.endpoint_url}},
                **extra,
            },
        }

    def role_for_bucket(self, bucket: str, *, trusted: bool = True) -> AwsRole:
        """An IAM user whose keys may only assume a role, and that role, which may do anything
        to `bucket`: under `enforcing_auth`, the keys alone cannot touch the bucket, so a client
        that can was made with the role. `trusted=False`: the role's trust policy names another
        principal, so the user cannot assume it."""
        import json

        iam, tag = self.iam(), uuid.uuid4().hex[:10]
        user = iam.create_user(UserName=f"airflow-{tag}")["User"]
        key = iam.create_access_key(UserName=user["UserName"])["AccessKey"]
        principal = user["Arn"] if trusted else user["Arn"].replace(tag, f"other-{tag}")
        role = iam.create_role(
            RoleName=f"session-stream-{tag}",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": principal},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]
        iam.put_role_policy(
            RoleName=role["RoleName"],
            PolicyName="bucket",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                        }
                    ],
                }
            ),
        )
        iam.put_user_policy(
            UserName=user["UserName"],
            PolicyName="assume",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role["Arn"]}
                    ],
                }
            ),
        )
        return AwsRole(key["AccessKeyId"], key["SecretAccessKey"], role["Arn"], role["RoleName"])

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name unless given) and return its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def upload_tree(self, local_root: Path, bucket: str, prefix: str = "") -> list[str]:
        """Upload every file under `local_root` to s3://bucket/prefix/<relative path>; returns the keys."""
        client, keys = self.client(), []
        local_root = Path(local_root)
        for path in sorted(p for p in local_root.rglob("*") if p.is_file()):
            rel = path.relative_to(local_root).as_posix()
            key = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
            client.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        # Dummy credentials, and no shared config files: nothing from the machine may leak in.
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield S3Server(endpoint_url=f"http://{host}:{port}")
        finally:
            server.stop()
