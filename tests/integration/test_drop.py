"""Drop locations against real stores: a local folder, moto's S3 server and OpenSSH's sftp."""

from __future__ import annotations

import gzip
import os
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from session_stream.drop.base import DropFile
from session_stream.drop.local import LocalDrop, list_tree
from session_stream.drop.names import order_key, parse_name
from session_stream.drop.opener import open_drop
from session_stream.drop.settle import settled
from session_stream.drop.sftp import SftpCredentials, SftpDrop
from session_stream.errors import ConfigError, UnreachableError
from session_stream.private_keys import paramiko_private_key

OLD = time.time() - 3600  # an mtime well past any settle time


def name(ts: str, number: int) -> str:
    """Monetate name for a window start written 'YYYY-MM-DD HH:MM'."""
    start = datetime.strptime(ts, "%Y-%m-%d %H:%M")
    return f"{start:%Y%m%dT%H%M%S}.000Z_PT15M-{number}.json.gz"


def rel(ts: str, number: int) -> str:
    return f"{ts[:10].replace('-', '/')}/{name(ts, number)}"


def gz(text: str) -> bytes:
    return gzip.compress(text.encode())


# Windows around the midnight between 2026-11-01 and 2026-11-02; the test range is 23:00-01:00.
IN_RANGE = [
    rel("2026-11-01 23:00", 9),  # same window as the next: 9 < 10 numerically, not as text
    rel("2026-11-01 23:00", 10),
    rel("2026-11-01 23:45", 3),
    rel("2026-11-02 00:00", 1),
    rel("2026-11-02 00:45", 7),
]
OUT_OF_RANGE = [
    rel("2026-10-31 23:45", 1),  # a day folder the range does not touch
    rel("2026-11-01 22:45", 1),  # a touched folder, but before the start
    rel("2026-11-02 01:00", 1),  # the end is exclusive
    rel("2026-11-03 00:00", 1),  # a day folder the range does not touch
]
START = datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
END = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


class Store:
    """One backend under test: writes files where the drop location will see them, opens it,
    and records which day folders the implementation lists (through the library it calls)."""

    def __init__(self, kind: str, tmp_path: Path, request, monkeypatch):
        self.kind, self.monkeypatch, self.listed = kind, monkeypatch, []
        if kind == "local":
            self.root = tmp_path / "drop"
            self.root.mkdir()
        elif kind == "sftp":
            self.server = request.getfixturevalue("sftp_server")
            self.root = self.server.new_root()  # sshd serves this local folder
        else:
            self.server = request.getfixturevalue("s3_server")
            self.bucket = self.server.create_bucket()
            self.prefix = "acct/raw_data/session_stream"
            self.client = self.server.client()

    def write(self, path: str, data: bytes, mtime: float | None = OLD) -> None:
        if self.kind == "s3":  # S3 sets LastModified itself
            self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{path}", Body=data)
            return
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if mtime is not None:
            os.utime(target, (mtime, mtime))

    def open(self):
        if self.kind == "local":
            return open_drop(str(self.root))
        if self.kind == "sftp":
            return open_drop(self.server.url_for(self.root), sftp=self.server.credentials())
        return open_drop(f"s3://{self.bucket}/{self.prefix}", s3=self.server.options())

    def spy_listings(self, drop) -> None:
        listed = self.listed
        if self.kind == "local":
            real = os.scandir

            def scandir(path="."):
                if str(path).startswith(str(self.root)):
                    listed.append(Path(path).relative_to(self.root).as_posix())
                return real(path)

            self.monkeypatch.setattr(os, "scandir", scandir)
        elif self.kind == "sftp":
            real = paramiko.SFTPClient.listdir_attr

            def listdir_attr(sftp, path="."):
                listed.append(Path(path).relative_to(self.root).as_posix())
                return real(sftp, path)

            self.monkeypatch.setattr(paramiko.SFTPClient, "listdir_attr", listdir_attr)
        else:

            def on_list(params, **_):
                listed.append(params["Prefix"][len(self.prefix) + 1 :].rstrip("/"))

            drop.client.meta.events.register("provide-client-params.s3.ListObjectsV2", on_list)


@pytest.fixture(params=["local", "s3", "sftp"])
def store(request, tmp_path, monkeypatch):
    return Store(request.param, tmp_path, request, monkeypatch)


@pytest.fixture
def drop_tree(store):
    for i, path in enumerate(IN_RANGE + OUT_OF_RANGE):
        store.write(path, gz(f'{{"session_id": "s{i}"}}\n'))
    store.write("2026/11/01/README.txt", b"not a drop file")
    store.write("2026/11/02/" + name("2026-11-02 00:30", 1) + ".filepart", b"upload in progress")
    return store


def test_listing_returns_the_window_oldest_first_across_midnight(drop_tree):
    with drop_tree.open() as drop:
        files = drop.list_files(START, END)
    assert [f.path for f in files] == IN_RANGE
    assert all(isinstance(f, DropFile) and f.size > 0 and f.mtime for f in files)
    assert files[0].window_start == START
    assert files[0].name == name("2026-11-01 23:00", 9)


def test_listing_reads_only_the_day_folders_the_window_touches(drop_tree):
    with drop_tree.open() as drop:
        drop_tree.spy_listings(drop)
        drop.list_files(START, END)
    assert sorted(drop_tree.listed) == ["2026/11/01", "2026/11/02"]


def test_listing_a_day_without_a_folder_is_empty(drop_tree):
    with drop_tree.open() as drop:
        assert drop.list_files(datetime(2025, 1, 1), datetime(2025, 1, 3)) == []


def test_naive_datetimes_are_taken_as_utc(drop_tree):
    with drop_tree.open() as drop:
        naive = drop.list_files(START.replace(tzinfo=None), END.replace(tzinfo=None))
        offset = drop.list_files(
            START.astimezone(timezone(timedelta(hours=-5))), END
        )  # same instant, other zone
    assert [f.path for f in naive] == [f.path for f in offset] == IN_RANGE


def test_download_round_trips_bytes_atomically(store, tmp_path):
    payload = gz("".join(f'{{"session_id": "s{i}", "x": "é😀"}}\n' for i in range(500)))
    store.write(rel("2026-11-01 23:15", 42), payload)
    dest = tmp_path / "got" / "nested" / "file.json.gz"
    with store.open() as drop:
        [f] = drop.list_files(START, END)
        assert f.size == len(payload)
        assert drop.download(f, dest) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["file.json.gz"]  # no temp file left


def test_fresh_file_waits_for_the_settle_time(store):
    store.write(rel("2026-11-01 23:00", 1), gz("old\n"), mtime=OLD)
    store.write(rel("2026-11-01 23:15", 1), gz("fresh\n"), mtime=None)  # mtime: now
    with store.open() as drop:
        files = drop.list_files(START, END)
        ready, waiting = settled(drop, files, settle_seconds=300, recheck_after=0)
        if store.kind == "s3":  # S3 stamps every object with its upload time: both are fresh
            assert (ready, [f.name for f in waiting]) == ([], [f.name for f in files])
        else:
            assert [f.name for f in ready] == [name("2026-11-01 23:00", 1)]
            assert [f.name for f in waiting] == [name("2026-11-01 23:15", 1)]
        ready, waiting = settled(drop, files, settle_seconds=0, recheck_after=0)
        assert (ready, waiting) == (files, [])


def test_file_whose_size_changes_between_two_looks_waits(store):
    store.write(rel("2026-11-01 23:00", 1), gz("stable\n"))
    growing = rel("2026-11-01 23:15", 1)
    store.write(growing, gz("first part\n"))
    with store.open() as drop:
        files = drop.list_files(START, END)  # first look
        store.write(growing, gz("first part\n" + "more sessions\n" * 50))  # still being written
        ready, waiting = settled(drop, files, settle_seconds=0, recheck_after=0.01)
    assert [f.path for f in ready] == [rel("2026-11-01 23:00", 1)]
    assert [f.path for f in waiting] == [growing]


def test_missing_bucket_is_a_config_error(s3_server):
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        open_drop("s3://no-such-bucket/x", s3=s3_server.options())


def test_s3_refused_credentials_are_a_config_error(s3_server):
    bucket = s3_server.create_bucket()
    with (
        s3_server.enforcing_auth(),
        pytest.raises(ConfigError, match="denied.*check the AWS credentials"),
    ):
        open_drop(f"s3://{bucket}/p", s3=s3_server.options())


def test_an_s3_drop_uses_the_client_its_factory_makes_and_closes_it(s3_server):
    bucket = s3_server.create_bucket()
    s3_server.client().put_object(Bucket=bucket, Key=f"p/{rel('2026-11-01 00:00', 1)}", Body=gz(""))
    made, closed = [], []

    def factory():
        client = s3_server.client()
        client.close = lambda: closed.append(client)
        made.append(client)
        return client

    with open_drop(f"s3://{bucket}/p", s3=factory) as drop:
        assert drop.client is made[0]
        start = datetime(2026, 11, 1, tzinfo=UTC)
        assert [f.path for f in drop.list_files(start, start + timedelta(hours=1))] == [
            rel("2026-11-01 00:00", 1)
        ]
        assert closed == []
    assert closed == made and len(made) == 1  # the drop owns the client its factory made


def test_a_client_factory_that_fails_is_one_config_error_line(s3_server):
    from botocore.exceptions import ClientError, NoCredentialsError

    from session_stream.runs.staging import open_staging

    def no_credentials():
        raise NoCredentialsError()

    def role_refused():
        error = {"Error": {"Code": "AccessDenied", "Message": "not allowed"}}
        raise ClientError(error, "AssumeRole")

    for factory, message in (
        (no_credentials, "no AWS credentials"),
        (role_refused, "could not assume the AWS role"),
    ):
        with pytest.raises(ConfigError, match=message):
            open_drop("s3://bucket/x", s3=factory)
        with pytest.raises(ConfigError, match=message):
            open_staging("s3://bucket/x", s3=factory)


def test_an_s3_endpoint_that_does_not_answer_is_unreachable():
    from servers import free_port

    from session_stream.drop.s3_client import S3Options

    options = S3Options(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(UnreachableError, match="cannot reach the S3 endpoint"):
        open_drop("s3://bucket/x", s3=options)


def test_missing_local_root_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        open_drop(str(tmp_path / "nope"))
    assert isinstance(open_drop(f"file://{tmp_path}"), LocalDrop)


def test_sftp_logs_in_with_a_key_file_and_a_known_hosts_file(sftp_server, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sftp_server.known_hosts_line + "\n")
    creds = SftpCredentials(private_key_path=sftp_server.private_key_path, known_hosts=known_hosts)
    with open_drop(sftp_server.url, sftp=creds) as drop:
        assert isinstance(drop, SftpDrop)
        assert drop.list_files(START, END) == []
    assert known_hosts.read_text() == sftp_server.known_hosts_line + "\n"  # never rewritten


def test_sftp_unknown_host_is_a_config_error_naming_host_and_fix(sftp_server):
    creds = sftp_server.credentials(host_key=None, known_hosts=None)
    with pytest.raises(ConfigError) as err:
        open_drop(sftp_server.url, sftp=creds)
    message = str(err.value)
    assert f"[127.0.0.1]:{sftp_server.port}" in message
    assert "known_hosts" in message and "host_key" in message
    assert sftp_server.host_key in message  # the key to verify and paste
    assert "\n" not in message


@pytest.mark.parametrize("form", ["known_hosts line", "bare base64"])
def test_sftp_host_key_accepts_the_usual_forms(sftp_server, form):
    text = (
        sftp_server.known_hosts_line
        if form == "known_hosts line"
        else sftp_server.host_key.split()[1]
    )
    with open_drop(sftp_server.url, sftp=sftp_server.credentials(host_key=text)) as drop:
        assert drop.list_files(START, END) == []


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
@pytest.mark.parametrize("fmt", ["OpenSSH", "PKCS8", "one line with \\n"])
def test_private_keys_load_from_text(kind, fmt):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private = {
        "ed25519": Ed25519PrivateKey.generate,
        "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }[kind]()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8
        if fmt == "PKCS8"
        else serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    if fmt.startswith("one line"):  # as pasted into a single-line connection field
        pem = pem.replace("\n", "\\n")
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert paramiko_private_key(pem).get_base64() == public.split()[1].decode()


def test_sftp_unknown_host_can_be_allowed_explicitly(sftp_server):
    creds = sftp_server.credentials(host_key=None, allow_unknown_host=True)
    with open_drop(sftp_server.url, sftp=creds) as drop:
        assert drop.list_files(START, END) == []


def test_sftp_wrong_host_key_is_a_config_error(sftp_server):
    other = Ed25519PrivateKey.generate().public_key()
    other_line = other.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    creds = sftp_server.credentials(host_key=other_line.decode())
    with pytest.raises(ConfigError, match="does not match the configured one"):
        open_drop(sftp_server.url, sftp=creds)


def test_sftp_wrong_user_key_is_a_config_error(sftp_server):
    other = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match="login as .* failed.*private key"):
        open_drop(sftp_server.url, sftp=sftp_server.credentials(private_key=other.decode()))


def test_sftp_unreachable_server_is_a_config_error_worth_retrying(sftp_server):
    from servers import free_port

    url = f"sftp://root@127.0.0.1:{free_port()}/x"
    with pytest.raises(ConfigError, match="cannot reach SFTP server") as raised:
        open_drop(url, sftp=sftp_server.credentials())
    # A ConfigError for the CLI (exit 2), and the kind Airflow retries: the server may come back.
    assert isinstance(raised.value, UnreachableError)


def test_sftp_missing_root_folder_is_a_config_error(sftp_server):
    with pytest.raises(ConfigError, match="does not exist"):
        open_drop(sftp_server.url + "/no/such/folder", sftp=sftp_server.credentials())


def test_sftp_url_never_shows_the_password(sftp_server):
    url = f"sftp://{sftp_server.username}:s3cret@127.0.0.1:{sftp_server.port}{sftp_server.root}"
    with open_drop(url, sftp=sftp_server.credentials()) as drop:
        assert "s3cret" not in drop.url and "s3cret" not in repr(drop)
    assert "s3cret" not in repr(sftp_server.credentials(password="s3cret"))


def test_sftp_reconnects_when_the_connection_drops(sftp_server):
    root = sftp_server.new_root()
    (root / "2026/11/01").mkdir(parents=True)
    (root / rel("2026-11-01 23:00", 1)).write_bytes(gz("x\n"))
    with open_drop(sftp_server.url_for(root), sftp=sftp_server.credentials()) as drop:
        drop._ssh.get_transport().close()  # e.g. an idle timeout on the server side
        assert [f.path for f in drop.list_files(START, END)] == [rel("2026-11-01 23:00", 1)]


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "s3:///prefix", "sftp://host:notaport/x", ""],
)
def test_bad_drop_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        open_drop(url)


def test_parse_name_reads_window_length_and_number():
    start, length, number = parse_name("20261101T231500.000Z_PT15M-1234567890123.json.gz")
    assert start == datetime(2026, 11, 1, 23, 15, tzinfo=UTC)
    assert length == timedelta(minutes=15)
    assert number == 1234567890123
    assert parse_name("20261101T000000.500Z_PT1H-1.json.gz")[:2] == (
        datetime(2026, 11, 1, 0, 0, 0, 500000, tzinfo=UTC),
        timedelta(hours=1),
    )


@pytest.mark.parametrize(
    "bad",
    [
        "README.txt",
        "20261101T231500.000Z_PT15M-1.json",
        "20261301T231500.000Z_PT15M-1.json.gz",  # month 13
        "20261101T231500.000Z_PT-1.json.gz",
        "20261101T231500.000Z_PT15M-abc.json.gz",
        "20261101T231500.000Z_PT15M-\uff11.json.gz",  # a full-width digit: not a file number
    ],
)
def test_parse_name_rejects_other_names_clearly(bad):
    with pytest.raises(ValueError, match=r"Monetate|window"):
        parse_name(bad)


def test_order_key_breaks_window_ties_by_number_numerically():
    names = [
        name("2026-11-01 23:00", 10),
        name("2026-11-01 23:00", 9),
        name("2026-11-01 22:45", 99),
    ]
    assert sorted(names, key=order_key) == [names[2], names[1], names[0]]


def test_list_tree_finds_every_drop_file_oldest_first(tmp_path):
    paths = [
        "2026/11/02/" + name("2026-11-02 00:00", 1),
        rel("2026-11-01 23:00", 10),
        rel("2026-11-01 23:00", 9),
    ]
    for p in paths + ["2026/11/01/notes.txt"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"x")
    expected = [tmp_path / paths[2], tmp_path / paths[1], tmp_path / paths[0]]
    assert list_tree(tmp_path) == expected
    assert list_tree(tmp_path / "2026" / "11" / "01") == expected[:2]
    assert list_tree(tmp_path / paths[0]) == [tmp_path / paths[0]]
    with pytest.raises(ConfigError):
        list_tree(tmp_path / "missing")


def test_encrypted_private_key_needs_its_passphrase():
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
        .decode()
    )
    with pytest.raises(ConfigError, match="encrypted: give its passphrase"):
        paramiko_private_key(pem)
    assert paramiko_private_key(pem, "pass phrase").get_name() == "ssh-ed25519"


@pytest.fixture(params=["local", "sftp"])
def file_store(request, tmp_path, monkeypatch):
    """The stores whose folders hold links, FIFOs and folders (S3 has objects only)."""
    return Store(request.param, tmp_path, request, monkeypatch)


def test_entries_named_like_drop_files_are_read_refused_or_ignored_never_silently(file_store):
    """A link to a file in the drop is read as that file; a broken link, a FIFO or a folder
    named like a Monetate file is listed as refused (the run ledgers and reports it); an entry
    of another name is listed as ignored, with why (issue 20: it had vanished from every
    count)."""
    store = file_store
    payload = gz('{"session_id": "linked"}\n')
    store.write("2026/11/01/target.bin", payload)
    day = store.root / "2026/11/01"
    (day / name("2026-11-01 23:00", 1)).symlink_to("target.bin")
    (day / name("2026-11-01 23:15", 2)).symlink_to("missing.bin")
    os.mkfifo(day / name("2026-11-01 23:30", 3))
    (day / name("2026-11-01 23:45", 4)).mkdir()
    with store.open() as drop:
        files = {f.name: f for f in drop.list_files(START, END)}
        assert sorted(files) == [
            name(t, n)
            for t, n in [
                ("2026-11-01 23:00", 1),
                ("2026-11-01 23:15", 2),
                ("2026-11-01 23:30", 3),
                ("2026-11-01 23:45", 4),
            ]
        ]
        linked = files[name("2026-11-01 23:00", 1)]
        assert (linked.refused, linked.size) == (None, len(payload))
        assert "broken symlink" in files[name("2026-11-01 23:15", 2)].refused
        assert files[name("2026-11-01 23:30", 3)].refused == "a FIFO, not a regular file"
        assert files[name("2026-11-01 23:45", 4)].refused == "a folder, not a regular file"
        ((other, why),) = drop.ignored
        assert other.name == "target.bin" and "not a Monetate Session Stream file name" in why
        got = drop.download(linked, store.root.parent / "got.json.gz")
    assert got.read_bytes() == payload
