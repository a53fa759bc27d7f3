"""A fake Monetate Metadata + Auth API on loopback, as pytest fixtures.

`metadata_server` starts a threaded HTTP server that implements the documented endpoints:

- ``GET /auth/v0/refresh/?ttl=<s>`` with ``Authorization: JWT <jwt>``: verifies the RS256
  signature with the PUBLIC half of a key pair made for the test run, and the ``username`` and
  ``iat`` claims; answers ``{"data": {"token", "expires_in", "expires_at"}}``.
- ``GET /metadata/v1/<retailer>/production/metadata/<kind>?page_size=&page=``: needs
  ``Authorization: Token <a token it minted>``; pages ``objects[kind]`` with ``meta.next``.

Tests steer failures with `fail(...)` (401, 403, 500, ... n times or always, optionally only on
a given page) and `hang(...)`, and read `requests` to count what the client did.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RETAILER = "acme"
API_USER = "api-user-1234"
AUTH_PATH = "/auth/v0/refresh/"
API_PREFIX = f"/metadata/v1/{RETAILER}/production/metadata/"
MAX_PAGE_SIZE = 1000


@dataclass
class Rule:
    """Answer `status` (or hang for `hang` seconds) to matching requests, `times` times (None: always)."""

    target: str  # "auth" or "api"
    status: int = 500
    times: int | None = 1
    page: int | None = None  # only this page of a listing (1-based)
    kind: str | None = None
    hang: float = 0.0

    def matches(self, target: str, kind: str | None, page: int) -> bool:
        return (
            self.target == target
            and (self.times is None or self.times > 0)
            and (self.page is None or self.page == page)
            and (self.kind is None or self.kind == kind)
        )


@dataclass
class Seen:
    target: str
    path: str
    query: dict
    authorization: str
    status: int


@dataclass
class FakeMonetate:
    public_key: rsa.RSAPublicKey
    api_user: str = API_USER
    retailer: str = RETAILER
    objects: dict[str, list[dict]] = field(default_factory=dict)
    # Pages hold min(page_size asked, this): small values make paging visible with few objects.
    page_limit: int = MAX_PAGE_SIZE
    rules: list[Rule] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    base_url: str = ""
    next_base: str | None = None  # where `meta.next` points (default: this server's API)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def auth_base(self) -> str:
        return f"{self.base_url}/auth/v0"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/metadata/v1"

    def fail(self, target: str, status: int, times: int | None = 1, **match) -> None:
        self.rules.append(Rule(target, status, times, **match))

    def hang(self, target: str, seconds: float, times: int | None = None, **match) -> None:
        """Answer matching requests normally but only after `seconds` (or at server shutdown)."""
        self.rules.append(Rule(target, 200, times, hang=seconds, **match))

    def revoke_tokens(self) -> None:
        """Forget every token minted so far, as if they expired on the server's clock."""
        self.tokens.clear()

    def seen(self, target: str) -> list[Seen]:
        return [r for r in self.requests if r.target == target]

    # -- request handling (called from the server's threads) ---------------------------------

    def handle(self, path: str, query: dict, authorization: str) -> tuple[int, dict | None, float]:
        """Returns (status, body, seconds to hang before answering)."""
        if path == AUTH_PATH:
            target, kind, page = "auth", None, 1
        elif path.startswith(API_PREFIX):
            target, kind = "api", path[len(API_PREFIX) :]
            page = int(query.get("page", "1"))
        else:
            return 404, {"meta": {"code": 404}, "data": {}}, 0.0
        with self.lock:
            rule = next((r for r in self.rules if r.matches(target, kind, page)), None)
            if rule and rule.times is not None:
                rule.times -= 1
        delay = rule.hang if rule else 0.0
        if rule and not rule.hang:
            status, body = rule.status, {"meta": {"code": rule.status}, "data": {}}
        elif target == "auth":
            status, body = self._refresh(query, authorization)
        else:
            # A hang answers normally, only late: long hangs outlast the client's timeout.
            status, body = self._listing(kind, page, query, authorization)
        with self.lock:
            self.requests.append(Seen(target, path, query, authorization, status))
        return status, body, delay

    def _refresh(self, query: dict, authorization: str) -> tuple[int, dict]:
        scheme, _, assertion = authorization.partition(" ")
        if scheme != "JWT":
            return 401, {
                "meta": {"code": 401, "errors": ["expected Authorization: JWT"]},
                "data": {},
            }
        try:
            claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"])
        except jwt.InvalidTokenError as exc:
            return 401, {"meta": {"code": 401, "errors": [str(exc)]}, "data": {}}
        if claims.get("username") != self.api_user or abs(time.time() - claims.get("iat", 0)) > 60:
            return 401, {"meta": {"code": 401, "errors": ["bad username or iat"]}, "data": {}}
        ttl = int(query.get("ttl", "3600"))
        with self.lock:
            token = f"token-{len(self.tokens)}-{time.monotonic_ns()}"
            self.tokens.add(token)
        now = int(time.time())
        return 200, {
            "meta": {"code": 200},
            "data": {"token": token, "expires_in": ttl, "expires_at": now + ttl},
        }

    def _listing(self, kind: str, page: int, query: dict, authorization: str) -> tuple[int, dict]:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Token" or token not in self.tokens:
            return 401, {"meta": {"code": 401}, "data": {}}
        if kind not in self.objects:
            return 404, {"meta": {"code": 404}, "data": {}}
        size = min(int(query.get("page_size", "10")), MAX_PAGE_SIZE, self.page_limit)
        items = self.objects[kind]
        chunk = items[(page - 1) * size : page * size]
        meta = {"code": 200, "count": len(chunk)}
        if page * size < len(items):
            base = self.next_base or self.api_base
            meta["next"] = (
                f"{base}/{self.retailer}/production/metadata/{kind}?page={page + 1}&page_size={size}"
            )
        return 200, {"meta": meta, "data": chunk}


def _handler(fake: FakeMonetate):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            status, body, delay = fake.handle(
                parts.path, query, self.headers.get("Authorization", "")
            )
            if delay and fake.stopping.wait(delay):
                return
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args):  # keep pytest output quiet
            pass

    return Handler


@pytest.fixture(scope="session")
def monetate_key_pair() -> tuple[str, rsa.RSAPublicKey]:
    """(private key PEM, public key) made for this test run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


@pytest.fixture
def metadata_server(monetate_key_pair):
    """A running FakeMonetate on 127.0.0.1; `objects` starts empty for every kind."""
    _, public_key = monetate_key_pair
    fake = FakeMonetate(public_key=public_key)
    from session_stream.metadata.client import KINDS

    fake.objects = {kind: [] for kind in KINDS}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    server.block_on_close = False
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="fake-monetate",
        daemon=True,
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()  # wake hanging handlers
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def metadata_client_factory(metadata_server, monetate_key_pair):
    """make(**overrides) -> MetadataClient pointed at the fake, with test-sized timeouts."""
    from session_stream.metadata.client import ClientSettings, MetadataClient

    private_pem, _ = monetate_key_pair
    clients = []

    def make(**overrides) -> MetadataClient:
        settings = dict(
            api_user=metadata_server.api_user,
            private_key=private_pem,
            retailer=metadata_server.retailer,
            api_base=metadata_server.api_base,
            auth_base=metadata_server.auth_base,
            timeout=2.0,
            max_wait_seconds=3.0,
            backoff_initial=0.01,
            backoff_max=0.05,
        )
        settings.update(overrides)
        account = [settings.pop(k) for k in ("api_user", "private_key", "retailer")]
        transport = settings.pop("transport", None)
        client = MetadataClient(*account, ClientSettings(**settings), transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
