"""`session-stream refresh-metadata`: the lookup tables from the Monetate Metadata API (needs the
metadata extras: httpx, pyjwt)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from session_stream.errors import ConfigError
from session_stream.runs.cli_args import add_db_arguments, db_url
from session_stream.warehouse import db

PRIVATE_KEY_ENV = "MONETATE_PRIVATE_KEY"
API_USER_ENV = "MONETATE_API_USER"
RETAILER_ENV = "MONETATE_RETAILER"


def _kinds(text: str) -> tuple[str, ...]:
    from session_stream.metadata.client import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"kinds must be a comma-separated subset of {','.join(KINDS)}"
        )
    return kinds


def add_refresh_metadata(subparsers) -> None:
    """Add `refresh-metadata` (needs the metadata extras: httpx, pyjwt)."""
    from session_stream.metadata.client import DEFAULT_API_BASE, DEFAULT_AUTH_BASE, KINDS

    p = subparsers.add_parser(
        "refresh-metadata",
        help="refresh the Monetate lookup tables (names for offer, page event and target ids)",
        description="Fetch every object of each kind from the Monetate Metadata API and replace "
        "its lookup table atomically; a failure leaves the previous contents.",
    )
    add_db_arguments(p)
    p.add_argument("--api-user", help=f"Monetate API username (default: ${API_USER_ENV})")
    p.add_argument(
        "--private-key-file",
        type=Path,
        help=f"PEM file of the API key's private half (default: the PEM text in ${PRIVATE_KEY_ENV})",
    )
    p.add_argument(
        "--retailer", help=f"retailer shortname used in the API URLs (default: ${RETAILER_ENV})"
    )
    p.add_argument("--api-base", help=f"Metadata API base URL (default: {DEFAULT_API_BASE})")
    p.add_argument("--auth-base", help=f"Auth API base URL (default: {DEFAULT_AUTH_BASE})")
    p.add_argument(
        "--kinds",
        type=_kinds,
        default=KINDS,
        help=f"comma-separated kinds to refresh (default: {','.join(KINDS)})",
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per HTTP attempt (default: 30)"
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=300.0,
        help="seconds one request may spend retrying before the refresh fails (default: 300)",
    )
    p.set_defaults(func=cmd_refresh_metadata)


def _private_key(args) -> str:
    if args.private_key_file:
        try:
            return args.private_key_file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --private-key-file {args.private_key_file}: {exc.strerror}"
            ) from None
    pem = os.environ.get(PRIVATE_KEY_ENV)
    if not pem:
        raise ConfigError(
            f"no Monetate private key: pass --private-key-file or set {PRIVATE_KEY_ENV} to the PEM"
        )
    return pem


def cmd_refresh_metadata(args) -> int:
    """`session-stream refresh-metadata`: errors are SessionStreamError, printed by main()."""
    from session_stream.metadata.client import ClientSettings, MetadataClient
    from session_stream.metadata.lookups import BY_KIND
    from session_stream.metadata.refresh import refresh_lookup

    api_user = args.api_user or os.environ.get(API_USER_ENV)
    retailer = args.retailer or os.environ.get(RETAILER_ENV)
    if not api_user:
        raise ConfigError(f"no Monetate API user: pass --api-user or set {API_USER_ENV}")
    if not retailer:
        raise ConfigError(f"no retailer shortname: pass --retailer or set {RETAILER_ENV}")
    client = MetadataClient(
        api_user,
        _private_key(args),
        retailer,
        ClientSettings(
            api_base=args.api_base,
            auth_base=args.auth_base,
            timeout=args.timeout,
            max_wait_seconds=args.max_wait,
        ),
    )
    conn = db.connect(db_url(args))
    try:
        with client:
            for kind in args.kinds:
                rows = refresh_lookup(conn, client, kind)
                print(f"{kind:<20} {BY_KIND[kind].table:<26} {rows:>8} rows")
    finally:
        conn.close()
    return 0
