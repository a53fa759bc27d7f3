"""Stand-ins the stack can be tried and tested with (docker-compose.yaml, profile `test`).

    python fakes.py mailsink --port 1025 --dir DIR   an SMTP server that keeps every message
                                                     as DIR/<n>.eml (and logs a line for each)
    python fakes.py monetate --port 8000 --dir DIR   Monetate's Auth and Metadata API: makes a key
                                                     pair at start (DIR/api_key.pem, the private half
                                                     a connection signs its JWTs with) and serves
                                                     what PUT /_objects/<kind> gave it
    python fakes.py ping --port N                    exit 0 when something answers on the port

Standard library only (plus PyJWT and cryptography, in the image): no test tool in the image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_MESSAGE = 10 * 1024 * 1024


# ---- mail sink ---------------------------------------------------------------------------------


class MailSink:
    """Just enough SMTP (RFC 5321) for smtplib: HELO/EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.count = len(list(folder.glob("*.eml")))

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        sender, recipients = "", []
        await reply("220 mailsink ESMTP")
        try:
            while line := await reader.readline():
                verb, _, arg = line.decode("latin-1").strip().partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    await reply("250-mailsink\r\n250-SIZE 10485760\r\n250 8BITMIME")
                elif verb == "HELO":
                    await reply("250 mailsink")
                elif verb == "MAIL":
                    sender, recipients = arg.partition(":")[2].split(" ")[0], []
                    await reply("250 OK")
                elif verb == "RCPT":
                    recipients.append(arg.partition(":")[2].strip())
                    await reply("250 OK")
                elif verb == "DATA":
                    await reply("354 end with <CRLF>.<CRLF>")
                    body = bytearray()
                    while (chunk := await reader.readline()) not in (b".\r\n", b".\n", b""):
                        body += chunk[1:] if chunk.startswith(b"..") else chunk
                        if len(body) > MAX_MESSAGE:
                            await reply("552 too big")
                            return
                    self.keep(sender, recipients, bytes(body))
                    await reply("250 OK: kept")
                elif verb in ("RSET", "NOOP"):
                    sender, recipients = ("", []) if verb == "RSET" else (sender, recipients)
                    await reply("250 OK")
                elif verb == "QUIT":
                    await reply("221 bye")
                    return
                else:
                    await reply("502 not implemented")
        finally:
            writer.close()

    def keep(self, sender: str, recipients: list[str], body: bytes) -> None:
        self.count += 1
        path = self.folder / f"{self.count:04d}.eml"
        head = f"X-Mailsink-From: {sender}\r\nX-Mailsink-To: {', '.join(recipients)}\r\n"
        path.write_bytes(head.encode() + body)
        subject = next(
            (
                ln
                for ln in body.decode("utf-8", "replace").splitlines()
                if ln.startswith("Subject:")
            ),
            "Subject: (none)",
        )
        print(
            f"mailsink: {path.name} from {sender} to {', '.join(recipients)}: {subject}", flush=True
        )


async def _serve_mail(port: int, folder: Path) -> None:
    sink = MailSink(folder)
    server = await asyncio.start_server(sink.session, "0.0.0.0", port)
    print(f"mailsink: listening on port {port}, keeping messages in {folder}", flush=True)
    async with server:
        await server.serve_forever()


# ---- Monetate's Auth and Metadata API ----------------------------------------------------------

AUTH_PATH = "/auth/v0/refresh/"
API_PREFIX = "/metadata/v1/"


class FakeMonetate:
    def __init__(self, folder: Path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = folder / "api_key.pem"
        path.write_bytes(pem)
        path.chmod(0o600)
        self.public_key = key.public_key()
        self.tokens: set[str] = set()
        self.objects: dict[str, list] = {}
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, query: dict, auth: str, body: bytes, host: str):
        if method == "PUT" and path.startswith("/_objects/"):
            # Test set-up: what a kind lists from now on (a JSON list of objects).
            with self.lock:
                self.objects[path.rsplit("/", 1)[1]] = json.loads(body)
            return 204, None
        if method != "GET":
            return 405, {"meta": {"code": 405}, "data": {}}
        if path == AUTH_PATH:
            return self.refresh(auth, query)
        if path.startswith(API_PREFIX) and "/production/metadata/" in path:
            return self.listing(f"http://{host}{path}", auth, query)
        return 404, {"meta": {"code": 404}, "data": {}}

    def refresh(self, auth: str, query: dict):
        import jwt

        scheme, _, assertion = auth.partition(" ")
        try:
            if scheme != "JWT":
                raise jwt.InvalidTokenError("expected Authorization: JWT")
            claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"])
            if not claims.get("username") or abs(time.time() - claims.get("iat", 0)) > 300:
                raise jwt.InvalidTokenError("bad username or iat")
        except jwt.InvalidTokenError as exc:
            return 401, {"meta": {"code": 401, "errors": [str(exc)]}, "data": {}}
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens.add(token)
        ttl = int(query.get("ttl", "3600"))
        data = {"token": token, "expires_in": ttl, "expires_at": int(time.time()) + ttl}
        return 200, {"meta": {"code": 200}, "data": data}

    def listing(self, url: str, auth: str, query: dict):
        kind = url.rsplit("/", 1)[1]
        scheme, _, token = auth.partition(" ")
        if scheme != "Token" or token not in self.tokens:
            return 401, {"meta": {"code": 401}, "data": {}}
        size = max(1, min(int(query.get("page_size", "100")), 1000))
        page = int(query.get("page", "1"))
        items = self.objects.get(kind, [])
        meta = {"code": 200, "count": len(items)}
        if page * size < len(items):
            meta["next"] = f"{url}?page={page + 1}&page_size={size}"
        return 200, {"meta": meta, "data": items[(page - 1) * size : page * size]}


def _serve_monetate(port: int, folder: Path) -> None:
    fake = FakeMonetate(folder)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_MESSAGE)) if length else b""
            status, answer = fake.handle(
                method,
                parts.path,
                query,
                self.headers.get("Authorization", ""),
                body,
                self.headers.get("Host", "fake-monetate"),
            )
            payload = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._answer("GET")

        def do_PUT(self):  # noqa: N802
            self._answer("PUT")

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"fake-monetate: listening on port {port}, key in {folder}/api_key.pem", flush=True)
    server.serve_forever()


def _ping(port: int) -> int:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["mailsink", "monetate", "ping"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args(argv)
    if args.what == "ping":
        return _ping(args.port)
    folder = args.dir or Path(f"/tmp/{args.what}")
    folder.mkdir(parents=True, exist_ok=True)
    if args.what == "mailsink":
        asyncio.run(_serve_mail(args.port, folder))
    else:
        _serve_monetate(args.port, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
