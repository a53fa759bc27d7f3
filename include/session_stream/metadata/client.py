"""Monetate Metadata API client: JWT sign-in, token reuse, retries with back-off, paging.

The flow is the Metadata API's (docs/warehouse.md, "Metadata lookups and BI"):

1. sign ``{"username": <api user>, "iat": <now>}`` with the account's RSA private key (RS256);
2. ``GET <auth_base>/refresh/?ttl=<s>`` with ``Authorization: JWT <jwt>`` returns ``data.token``;
3. ``GET <api_base>/<retailer>/production/metadata/<kind>?page_size=1000`` with
   ``Authorization: Token <token>``, then follow ``meta.next`` until it is absent.

No Airflow here: the CLI (runs/cli_metadata.py, refresh-metadata) and the DAG both build a MetadataClient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
import jwt
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from session_stream.errors import ConfigError, SessionStreamError
from session_stream.private_keys import rsa_private_key

log = logging.getLogger(__name__)

KINDS = ("customtarget", "pageevent", "variant", "experience-summary", "account")
DEFAULT_API_BASE = "https://api.monetate.net/api/metadata/v1"
DEFAULT_AUTH_BASE = "https://api.monetate.net/api/auth/v0"
PAGE_SIZE = 1000  # the API's maximum; larger values are clamped by the server anyway
TOKEN_TTL = 3600  # seconds; the auth API accepts 600..43200
# Re-mint when this share of the token's life has passed, so a token never expires mid-refresh.
RENEW_AFTER = 0.9

KEYS_HELP = "Settings > Sites > API Keys in the Monetate platform"


def origin(url: str) -> str:
    """scheme://host:port of a URL, the default port spelled out, for same-origin checks."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:
        port = None
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


class MetadataApiError(SessionStreamError):
    """The Metadata API kept failing (5xx, timeouts) or answered something we cannot use."""


class ApiKeyRefusedError(ConfigError):
    """The auth API refused our JWT, or the API answered 403: retrying cannot help."""


class _Transient(Exception):
    """A failure worth another attempt: 5xx, 429, a timeout or a broken connection."""


@dataclass(frozen=True)
class ClientSettings:
    """How a MetadataClient talks to the API: where it is, and how long it waits and retries.

    Every request (with its retries and any token mint it needs) gives up after
    `max_wait_seconds`; each single attempt after `timeout` seconds. Back-off between attempts
    grows exponentially from `backoff_initial` up to `backoff_max` seconds.
    """

    api_base: str | None = None  # None: DEFAULT_API_BASE
    auth_base: str | None = None  # None: DEFAULT_AUTH_BASE
    token_ttl: int = TOKEN_TTL
    timeout: float = 30.0
    max_wait_seconds: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    page_size: int = PAGE_SIZE


class MetadataClient:
    """One account's Metadata API, as `settings` says (ClientSettings). Use as a context manager,
    or call close(). `transport`: an httpx transport in place of the network."""

    def __init__(
        self,
        api_user: str,
        private_key: str | bytes,
        retailer: str,
        settings: ClientSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_user:
            raise ConfigError(
                f"no Monetate API user given: it is the API username shown under {KEYS_HELP}"
            )
        if not retailer:
            raise ConfigError(
                "no Monetate retailer shortname given (the <retailer> in the API's URLs)"
            )
        self.api_user = api_user
        self.retailer = retailer
        settings = settings or ClientSettings()
        self.api_base = (settings.api_base or DEFAULT_API_BASE).rstrip("/")
        self.auth_base = (settings.auth_base or DEFAULT_AUTH_BASE).rstrip("/")
        self.token_ttl = settings.token_ttl
        self.timeout = settings.timeout
        self.max_wait_seconds = settings.max_wait_seconds
        self.backoff_initial = settings.backoff_initial
        self.backoff_max = settings.backoff_max
        self.page_size = settings.page_size
        # Parsed now, so a wrong key fails with a clear message before any request.
        self._key = rsa_private_key(
            private_key,
            label="the Monetate private key",
            hint="pass the unencrypted PEM private key that matches the public key uploaded under "
            + KEYS_HELP,
        )
        self._token: str | None = None
        self._renew_at = 0.0  # time.monotonic() after which the token is re-minted
        self._http = httpx.Client(
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "session-stream"},
        )

    def __enter__(self) -> MetadataClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- public API ---------------------------------------------------------------------------

    def kind_url(self, kind: str) -> str:
        if kind not in KINDS:
            raise ConfigError(f"unknown metadata kind {kind!r}: choose from {', '.join(KINDS)}")
        return f"{self.api_base}/{self.retailer}/production/metadata/{kind}"

    def iter_pages(self, kind: str) -> Iterator[list[dict]]:
        """Yield each page's `data` list, following `meta.next` until it is absent."""
        url: str | None = self.kind_url(kind)
        params: dict | None = {"page_size": self.page_size}
        seen: set[str] = set()
        while url:
            body = self._get_json(url, params)
            data = body.get("data")
            if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
                raise MetadataApiError(f"{url} answered without a list of objects in 'data'")
            yield data
            meta = body.get("meta") or {}
            nxt = meta.get("next") if isinstance(meta, dict) else None
            if not nxt:
                return
            # `next` carries its own query (page, page_size); it may be relative.
            url, params = urljoin(url, nxt), None
            if origin(url) != origin(self.api_base):
                # The token goes to the API's own origin only, never where a response points.
                raise MetadataApiError(
                    f"the Metadata API's next page is on another origin ({origin(url)}, not "
                    f"{origin(self.api_base)}): not followed, so the API token stays with the API"
                )
            if url in seen:
                raise MetadataApiError(f"the Metadata API's paging loops back to {url}")
            seen.add(url)

    def fetch(self, kind: str) -> list[dict]:
        """Every object of one kind, all pages."""
        return [obj for page in self.iter_pages(kind) for obj in page]

    def token(self) -> str:
        """A valid API token, minted now if there is none or it is close to expiry."""
        return self._valid_token(time.monotonic() + self.max_wait_seconds)

    # -- auth ---------------------------------------------------------------------------------

    def _valid_token(self, deadline: float) -> str:
        if self._token is None or time.monotonic() >= self._renew_at:
            self._mint(deadline)
        assert self._token is not None
        return self._token

    def _jwt_header(self) -> dict[str, str]:
        # A fresh iat per attempt: the auth API allows only about a minute of skew.
        assertion = jwt.encode(
            {"username": self.api_user, "iat": int(time.time())}, self._key, algorithm="RS256"
        )
        return {"Authorization": f"JWT {assertion}"}

    def _mint(self, deadline: float) -> None:
        url = f"{self.auth_base}/refresh/"
        started = time.monotonic()
        resp = self._call(url, {"ttl": self.token_ttl}, self._jwt_header, deadline)
        if resp.status_code == 403:
            raise self._revoked(resp)
        if resp.status_code in (400, 401):
            raise ApiKeyRefusedError(
                f"Monetate's auth API refused the signed request for API user {self.api_user!r} "
                f"(HTTP {resp.status_code}): check the API user, that the private key matches the "
                f"public key uploaded under {KEYS_HELP}, and this machine's clock"
            )
        body = self._json(resp, url)
        data = body.get("data") if isinstance(body, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        if not token or not isinstance(token, str):
            raise MetadataApiError(f"{url} answered without data.token")
        try:
            lifetime = min(float(data.get("expires_in") or self.token_ttl), self.token_ttl)
        except (TypeError, ValueError):
            lifetime = self.token_ttl
        self._token = token
        self._renew_at = started + lifetime * RENEW_AFTER
        log.info("minted a Monetate API token for %s (valid %ss)", self.api_user, int(lifetime))

    def _revoked(self, resp: httpx.Response) -> ApiKeyRefusedError:
        return ApiKeyRefusedError(
            f"Monetate refused the API key of user {self.api_user!r} (HTTP 403 from "
            f"{resp.request.url.copy_with(query=None)}: the key was revoked or deactivated): upload "
            f"a new public key under {KEYS_HELP} and configure its private key"
        )

    # -- requests -----------------------------------------------------------------------------

    def _get_json(self, url: str, params: dict | None) -> dict:
        deadline = time.monotonic() + self.max_wait_seconds
        self._valid_token(deadline)

        def auth() -> dict[str, str]:
            return {"Authorization": f"Token {self._token}"}

        resp = self._call(url, params, auth, deadline)
        if resp.status_code == 401:
            # The server no longer accepts the token (expired early, rotated): mint once, retry once.
            log.info("Metadata API answered 401; minting a new token and retrying once")
            self._mint(deadline)
            resp = self._call(url, params, auth, deadline)
            if resp.status_code == 401:
                raise ApiKeyRefusedError(
                    f"the Metadata API rejected a freshly minted token for {self.api_user!r} "
                    f"(HTTP 401 from {url}): check that the API user may read retailer {self.retailer!r}"
                )
        if resp.status_code == 403:
            raise self._revoked(resp)
        if resp.status_code == 404:
            raise ConfigError(
                f"the Metadata API has no {url} (HTTP 404): check the retailer shortname "
                f"{self.retailer!r} and the API base URL {self.api_base}"
            )
        body = self._json(resp, url)
        if not isinstance(body, dict):
            raise MetadataApiError(f"{url} answered JSON that is not an object")
        return body

    def _json(self, resp: httpx.Response, url: str):
        if resp.status_code >= 400:
            raise MetadataApiError(f"HTTP {resp.status_code} from {url}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError:
            raise MetadataApiError(
                f"{url} answered something that is not JSON: {resp.text[:200]!r}"
            ) from None

    def _call(
        self,
        url: str,
        params: dict | None,
        headers: Callable[[], dict[str, str]],
        deadline: float,
    ) -> httpx.Response:
        """GET with retries on transient failures until `deadline`; returns any other response."""

        def stop(state: RetryCallState) -> bool:
            # Give up when the next back-off would end past the deadline: the total stays bounded.
            return time.monotonic() + state.upcoming_sleep >= deadline

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=wait_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            stop=stop,
            reraise=True,
            before_sleep=lambda s: log.warning(
                "attempt %d at %s failed (%s); retrying in %.1fs",
                s.attempt_number,
                url,
                s.outcome.exception() if s.outcome else "?",
                s.upcoming_sleep,
            ),
        )
        started = time.monotonic()
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(url, params, headers(), deadline)
        except _Transient as exc:
            raise MetadataApiError(
                f"the Monetate API at {url} kept failing for {time.monotonic() - started:.1f}s "
                f"(last error: {exc}): try again later, or check the API and auth base URLs"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, url: str, params: dict | None, headers: dict, deadline: float
    ) -> httpx.Response:
        # The last attempt gets only the time left, so a hanging server cannot stretch the bound.
        timeout = max(0.05, min(self.timeout, deadline - time.monotonic()))
        try:
            resp = self._http.get(url, params=params, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise _Transient(f"no answer within {timeout:.1f}s") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed: {exc}") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Transient(f"HTTP {resp.status_code}")
        return resp
