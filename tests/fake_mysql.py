"""A fake MySQL server on loopback that speaks just enough of the protocol to play a hostile one.

It sends a protocol-10 handshake, accepts any login (optionally after a TLS upgrade with a
certificate the test made), answers every query with OK, or with the rows `answers(query)` gives
(a text result set), and, when `wants_file(query)` names a file, answers that query with a LOCAL
INFILE request (0xFB + file name) instead, keeping whatever the client sends back. `requests` records what happened, so a test can assert that a file's
content never reached the server.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLIENT_LONG_PASSWORD = 1  # also "CLIENT_MYSQL": a MariaDB client then talks plain MySQL
CLIENT_LONG_FLAG = 4
CLIENT_CONNECT_WITH_DB = 8
CLIENT_LOCAL_FILES = 0x80
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PLUGIN_AUTH = 1 << 19

COM_QUIT, COM_QUERY = 0x01, 0x03


@dataclass
class FileRequest:
    query: str
    requested: str
    received: bytes  # what the client sent back: the file's bytes, or b"" when it refused


@dataclass
class FakeMySQL:
    wants_file: Callable[[str], str | None] = lambda query: None
    answers: Callable[[str], list[tuple] | None] = lambda query: None
    tls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[str] = field(default_factory=list)
    requests: list[FileRequest] = field(default_factory=list)
    logins: list[dict] = field(default_factory=list)  # user, tls, per accepted login
    errors: list[str] = field(default_factory=list)
    _sock: socket.socket | None = None

    def url(self, user: str = "loader", password: str = "pw", database: str = "warehouse") -> str:
        return f"mysql://{user}:{password}@{self.host}:{self.port}/{database}"

    def received_bytes(self) -> bytes:
        return b"".join(r.received for r in self.requests)

    # -- serving ---------------------------------------------------------------------------

    def start(self) -> FakeMySQL:
        self._sock = socket.socket()
        self._sock.bind((self.host, 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="fake-mysql").start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._session(conn)
        except (OSError, ssl.SSLError, ConnectionError, EOFError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _session(self, conn) -> None:
        caps = (
            CLIENT_LONG_PASSWORD
            | CLIENT_LONG_FLAG
            | CLIENT_CONNECT_WITH_DB
            | CLIENT_LOCAL_FILES
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_MULTI_STATEMENTS
            | CLIENT_MULTI_RESULTS
            | CLIENT_PLUGIN_AUTH
            | (CLIENT_SSL if self.tls else 0)
        )
        scramble = b"abcdefghijklmnopqrst"
        greeting = (
            b"\x0a8.0.36-fake\x00"
            + struct.pack("<I", 7)
            + scramble[:8]
            + b"\x00"
            + struct.pack("<H", caps & 0xFFFF)
            + bytes([45])  # utf8mb4_general_ci
            + struct.pack("<H", 2)  # autocommit
            + struct.pack("<H", caps >> 16)
            + bytes([len(scramble) + 1])
            + b"\x00" * 10
            + scramble[8:]
            + b"\x00"
            + b"mysql_native_password\x00"
        )
        _send(conn, 0, greeting)
        seq, payload = _recv(conn)
        client_caps = struct.unpack("<I", payload[:4])[0]
        used_tls = False
        if len(payload) == 32 and client_caps & CLIENT_SSL:
            if self.tls is None:
                raise ConnectionError("client asked for TLS the server did not offer")
            conn = self.tls.wrap_socket(conn, server_side=True)
            used_tls = True
            seq, payload = _recv(conn)
        user = payload[32 : payload.index(b"\x00", 32)].decode()
        self.logins.append({"user": user, "tls": used_tls})
        _send(conn, seq + 1, _OK)

        while True:
            try:
                seq, payload = _recv(conn)
            except EOFError:
                return
            if not payload or payload[0] == COM_QUIT:
                return
            if payload[0] != COM_QUERY:
                _send(conn, seq + 1, _OK)
                continue
            query = payload[1:].decode("utf-8", "replace")
            self.queries.append(query)
            rows = self.answers(query)
            if rows is not None:
                _send_rows(conn, seq + 1, rows)
                continue
            wanted = self.wants_file(query)
            if not wanted:
                _send(conn, seq + 1, _OK)
                continue
            _send(conn, seq + 1, b"\xfb" + wanted.encode())
            received, seq = bytearray(), seq + 1
            while True:  # the file's packets, then an empty one
                seq, chunk = _recv(conn)
                if not chunk:
                    break
                received += chunk
            self.requests.append(FileRequest(query, wanted, bytes(received)))
            _send(conn, seq + 1, _OK)


_OK = b"\x00\x00\x00" + struct.pack("<H", 2) + b"\x00\x00"
_EOF = b"\xfe\x00\x00" + struct.pack("<H", 2)
MYSQL_TYPE_VAR_STRING = 253


def _lenenc(data: bytes) -> bytes:
    assert len(data) < 251
    return bytes([len(data)]) + data


def _send_rows(conn, seq: int, rows: list[tuple]) -> None:
    """A text result set: the column count, one definition per column (all strings), EOF, the
    rows, EOF (the client did not ask for CLIENT_DEPRECATE_EOF)."""
    columns = len(rows[0]) if rows else 1
    packets = [bytes([columns])]
    for i in range(columns):
        name = f"c{i}".encode()
        packets.append(
            b"".join(_lenenc(x) for x in (b"def", b"", b"", b"", name, name))
            + b"\x0c"
            + struct.pack("<HIBHB", 45, 255, MYSQL_TYPE_VAR_STRING, 0, 0)
            + b"\x00\x00"
        )
    packets.append(_EOF)
    for row in rows:
        packets.append(b"".join(b"\xfb" if v is None else _lenenc(str(v).encode()) for v in row))
    packets.append(_EOF)
    for packet in packets:
        _send(conn, seq, packet)
        seq += 1


def _send(conn, seq: int, payload: bytes) -> None:
    conn.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)


def _recv_exactly(conn, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("client closed the connection")
        data += chunk
    return bytes(data)


def _recv(conn) -> tuple[int, bytes]:
    header = _recv_exactly(conn, 4)
    length = header[0] | header[1] << 8 | header[2] << 16
    return header[3], _recv_exactly(conn, length)


# ---------------------------------------------------------------- certificates


@dataclass
class TlsFiles:
    ca: Path  # the CA certificate a client must trust
    cert: Path  # the server's certificate, for localhost and 127.0.0.1
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_tls_files(folder: Path, name: str = "test") -> TlsFiles:
    """A CA and a server certificate it signed, for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        folder / f"{name}-ca.pem", folder / f"{name}-server.pem", folder / f"{name}-server.key"
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(pem(key))
    return files


@pytest.fixture
def fake_mysql():
    """start(**settings) -> a running FakeMySQL; every server started is stopped afterwards."""
    servers: list[FakeMySQL] = []

    def start(**settings) -> FakeMySQL:
        server = FakeMySQL(**settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
