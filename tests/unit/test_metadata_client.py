"""The Metadata API client against the loopback fake (tests/metadata_server.py)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from session_stream.errors import ConfigError
from session_stream.metadata.client import ApiKeyRefusedError, MetadataApiError


def _targets(n: int) -> list[dict]:
    return [{"id": i, "title": f"target {i}"} for i in range(1, n + 1)]


def test_token_is_minted_once_and_reused_across_calls(metadata_server, metadata_client_factory):
    metadata_server.objects["customtarget"] = _targets(2)
    metadata_server.objects["pageevent"] = [{"id": 7, "title": "Add to cart"}]
    client = metadata_client_factory()

    client.fetch("customtarget")
    client.fetch("pageevent")

    assert len(metadata_server.seen("auth")) == 1
    api_calls = metadata_server.seen("api")
    assert len(api_calls) == 2
    assert {c.authorization for c in api_calls} == {f"Token {client._token}"}


def test_token_request_carries_ttl_and_a_jwt_the_server_verified(
    metadata_server, metadata_client_factory
):
    client = metadata_client_factory(token_ttl=900)
    client.token()
    (auth,) = metadata_server.seen("auth")
    assert auth.status == 200
    assert auth.query["ttl"] == "900"
    assert auth.authorization.startswith("JWT ")


def test_token_is_reminted_before_it_expires(metadata_server, metadata_client_factory, monkeypatch):
    client = metadata_client_factory(token_ttl=600)
    first = client.token()
    # Past RENEW_AFTER of its 600 s life, the client mints a new one rather than wait for a 401.
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 550)
    second = client.token()
    assert second != first
    assert len(metadata_server.seen("auth")) == 2


def test_token_is_reminted_once_on_401(metadata_server, metadata_client_factory):
    metadata_server.objects["customtarget"] = _targets(1)
    client = metadata_client_factory()
    client.token()
    metadata_server.revoke_tokens()  # the server forgets it: the next API call gets a 401

    assert client.fetch("customtarget") == _targets(1)
    assert len(metadata_server.seen("auth")) == 2
    assert [c.status for c in metadata_server.seen("api")] == [401, 200]


def test_401_after_reminting_fails_without_looping(metadata_server, metadata_client_factory):
    metadata_server.objects["customtarget"] = _targets(1)
    metadata_server.fail("api", 401, times=None)
    client = metadata_client_factory()

    with pytest.raises(ApiKeyRefusedError, match="freshly minted token"):
        client.fetch("customtarget")
    assert len(metadata_server.seen("api")) == 2
    assert len(metadata_server.seen("auth")) == 2


@pytest.mark.parametrize("target", ["api", "auth"])
def test_403_fails_at_once_saying_the_key_was_revoked(
    metadata_server, metadata_client_factory, target
):
    metadata_server.objects["customtarget"] = _targets(1)
    metadata_server.fail(target, 403, times=None)
    client = metadata_client_factory()

    with pytest.raises(ApiKeyRefusedError, match="revoked") as info:
        client.fetch("customtarget")
    assert isinstance(info.value, ConfigError)  # the CLI exits 2, like any bad setting
    assert len(metadata_server.seen(target)) == 1  # no retry


def test_jwt_signed_with_another_key_is_refused_as_config_error(
    metadata_server, metadata_client_factory
):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    client = metadata_client_factory(private_key=pem)
    with pytest.raises(ApiKeyRefusedError, match="private key matches"):
        client.token()
    assert [a.status for a in metadata_server.seen("auth")] == [401]


def test_malformed_private_key_is_a_config_error_before_any_request(
    metadata_server, metadata_client_factory
):
    with pytest.raises(ConfigError, match="PEM private key"):
        metadata_client_factory(private_key="not a key")
    assert metadata_server.requests == []


def test_server_errors_are_retried_then_succeed(metadata_server, metadata_client_factory):
    metadata_server.objects["variant"] = [{"id": 5, "experience_name": "Hero banner"}]
    metadata_server.fail("api", 500, times=3)
    metadata_server.fail("auth", 503, times=2)
    client = metadata_client_factory()

    assert client.fetch("variant") == [{"id": 5, "experience_name": "Hero banner"}]
    assert [a.status for a in metadata_server.seen("auth")] == [503, 503, 200]
    assert [a.status for a in metadata_server.seen("api")] == [500, 500, 500, 200]


def test_server_errors_past_the_time_bound_raise(metadata_server, metadata_client_factory):
    metadata_server.objects["variant"] = _targets(1)
    metadata_server.fail("api", 500, times=None)
    client = metadata_client_factory(max_wait_seconds=0.5)

    started = time.monotonic()
    with pytest.raises(MetadataApiError, match="kept failing"):
        client.fetch("variant")
    assert time.monotonic() - started < 1.5
    assert len(metadata_server.seen("api")) > 2


def test_hanging_server_times_out_within_the_bound(metadata_server, metadata_client_factory):
    metadata_server.objects["account"] = [{"id": 1, "name": "acme.com"}]
    metadata_server.hang("api", seconds=30)
    client = metadata_client_factory(timeout=0.3, max_wait_seconds=1.0)

    started = time.monotonic()
    with pytest.raises(MetadataApiError, match="no answer within"):
        client.fetch("account")
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert len(metadata_server.seen("api")) >= 2  # the timeout was retried before giving up


def test_a_single_hang_is_retried_and_succeeds(metadata_server, metadata_client_factory):
    metadata_server.objects["account"] = [{"id": 1, "name": "acme.com"}]
    metadata_server.hang("api", seconds=30, times=1)
    client = metadata_client_factory(timeout=0.3)

    assert client.fetch("account") == [{"id": 1, "name": "acme.com"}]


def test_paging_follows_meta_next_until_absent(metadata_server, metadata_client_factory):
    metadata_server.objects["pageevent"] = [{"id": i, "title": f"e{i}"} for i in range(1, 8)]
    metadata_server.page_limit = 3
    client = metadata_client_factory()

    pages = list(client.iter_pages("pageevent"))

    assert [len(p) for p in pages] == [3, 3, 1]
    assert [o["id"] for p in pages for o in p] == list(range(1, 8))
    calls = metadata_server.seen("api")
    assert calls[0].query == {"page_size": "1000"}
    assert [c.query.get("page", "1") for c in calls] == ["1", "2", "3"]


def test_unknown_kind_is_a_config_error(metadata_client_factory):
    with pytest.raises(ConfigError, match="unknown metadata kind"):
        metadata_client_factory().fetch("offers")


def test_wrong_retailer_is_a_config_error(metadata_server, metadata_client_factory):
    client = metadata_client_factory(retailer="nobody")
    with pytest.raises(ConfigError, match="retailer shortname 'nobody'"):
        client.fetch("account")


def test_connection_refused_is_retried_then_reported(metadata_client_factory):
    client = metadata_client_factory(auth_base="http://127.0.0.1:9/auth/v0", max_wait_seconds=0.3)
    with pytest.raises(MetadataApiError, match="connection failed"):
        client.token()


class _Recorder:
    """A second HTTP server on loopback: another origin, recording the Authorization it gets."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"meta": {}, "data": []}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "next_base",
    [
        "http://127.0.0.1:{port}/metadata/v1",  # another port
        "http://localhost:{api_port}/metadata/v1",  # another host name for the same server
        "https://127.0.0.1:{api_port}/metadata/v1",  # another scheme
        "http://127.0.0.1:{api_port}@127.0.0.1:{port}/metadata/v1",  # userinfo naming the API
    ],
)
def test_the_token_is_never_sent_where_meta_next_points_off_the_apis_origin(
    metadata_server, metadata_client_factory, next_base
):
    recorder = _Recorder()
    try:
        api_port = metadata_server.base_url.rsplit(":", 1)[1]
        metadata_server.next_base = next_base.format(port=recorder.port, api_port=api_port)
        metadata_server.objects["customtarget"] = _targets(3)
        metadata_server.page_limit = 1  # a `next` link after the first page
        client = metadata_client_factory()
        with pytest.raises(MetadataApiError, match="another origin") as refused:
            client.fetch("customtarget")
        assert "\n" not in str(refused.value) and client._token not in str(refused.value)
        assert recorder.seen == []
        assert len(metadata_server.seen("api")) == 1  # the first page only
    finally:
        recorder.close()


def test_the_same_origin_spelled_differently_is_still_the_same_origin():
    from session_stream.metadata.client import origin

    assert origin("https://API.monetate.net/api/x?page=2") == origin(
        "https://api.monetate.net:443/y"
    )
    assert origin("https://api.monetate.net/") != origin("http://api.monetate.net/")
    assert origin("https://api.monetate.net@evil.example/") == "https://evil.example:443"
