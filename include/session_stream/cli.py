"""`session-stream`: create the schema, load drop folders or files, split for inspection.

Exit status: 0 when everything asked for succeeded, 1 when a file failed to load,
2 for a usage or configuration problem (bad URL, unreachable server, local_infile off, ...).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import db, schema, tables
from .errors import ConfigError, SessionStreamError

PRIVATE_KEY_ENV = "MONETATE_PRIVATE_KEY"
API_USER_ENV = "MONETATE_API_USER"
RETAILER_ENV = "MONETATE_RETAILER"
DB_HELP = f"warehouse URL, {db.URL_FORM} (default: ${db.DB_ENV})"

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)  # one line per line in logs and pipes


def cmd_init_db(args) -> int:
    conn = db.connect(args.db)
    applied = schema.init_db(conn)
    conn.close()
    url = db.DbUrl.parse(args.db)
    if applied:
        for m in applied:
            out.print(f"applied migration {m.version}: {m.name}")
    else:
        out.print(f"{url}: schema is up to date")
    return 0


def cmd_split(args) -> int:
    from .split import split_file

    result = split_file(Path(args.file), Path(args.out))
    out.print(
        f"{result.source_name}: {result.sessions} sessions, {result.rejects} rejects, {result.seconds}s -> {result.out_dir}"
    )
    for table, n in result.rows.items():
        out.print(f"  {table}.tsv  {n} rows")
    return 0


def cmd_load(args) -> int:
    from .drop import list_tree
    from .load import Loader
    from .pipeline import load_files

    paths: list[Path] = []
    for source in args.source:
        paths.extend(list_tree(Path(source)))
    url = db.DbUrl.parse(args.db)
    loader = Loader(lambda: db.connect(url))
    loader.connect_now()  # fail fast on config problems, before any splitting starts
    if not paths:
        err.print(f"no Monetate files found under {', '.join(args.source)}")
        return 0

    show_progress = err.is_terminal and not args.quiet
    progress = Progress(
        TextColumn("[bold]loading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
        disable=not show_progress,
    )

    with progress:
        task = progress.add_task("", total=len(paths))

        def on_file(path, outcome):
            progress.update(task, advance=1, description=f"{path.name} {outcome.status}")
            if outcome.status == "failed":
                err.print(f"[red]failed[/] {path.name}: {outcome.error}")
            elif not show_progress and not args.quiet:
                err.print(
                    f"{outcome.status} {path.name} ({outcome.sessions} sessions, {outcome.seconds}s)"
                )

        summary = load_files(paths, loader, force=args.force, workers=args.jobs, on_file=on_file)
    loader.close()
    print_summary(summary)
    return 1 if summary.failed else 0


def print_summary(summary) -> None:
    table = Table(title="session-stream load", show_header=True, header_style="bold")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for t in tables.TABLES:
        table.add_row(t.name, f"{summary.rows[t.name]:,}")
    out.print(table)
    out.print(
        f"files: {summary.loaded} loaded, {summary.skipped} skipped, {summary.failed} failed | "
        f"sessions: {summary.sessions:,} ({summary.replaced:,} replaced an older version, "
        f"{summary.superseded:,} older than the stored one) | rows: {summary.total_rows:,} | "
        f"rejects: {summary.rejects:,} | "
        f"{summary.seconds:.1f}s | {summary.sessions_per_second:,.0f} sessions/s"
    )
    for name, error in summary.failures:
        out.print(f"[red]failed[/] {name}: {error}")
    print_key_counts(summary.unknown_keys, summary.missing_keys)


def print_key_counts(unknown, missing) -> None:
    """The keys files carried that the spec does not know (their values are not stored), and
    the expected keys lines lacked (stored as NULL): the ledger has them per file."""
    if unknown:
        out.print(
            "[yellow]keys the spec does not know[/] (not stored; see unknown_keys in the ledger):"
        )
        for line in unknown.describe():
            out.print(f"  {escape(line)}")
    if missing:
        out.print(
            "[yellow]expected keys missing[/] (stored as NULL; see missing_keys in the ledger):"
        )
        for line in missing.describe():
            out.print(f"  {escape(line)}")


# -- refresh-metadata ----------------------------------------------------------------------


def _kinds(text: str) -> tuple[str, ...]:
    from .metadata import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"kinds must be a comma-separated subset of {','.join(KINDS)}"
        )
    return kinds


def add_refresh_metadata(subparsers) -> None:
    """Add `refresh-metadata` (needs the metadata extras: httpx, pyjwt)."""
    from .metadata import DEFAULT_API_BASE, DEFAULT_AUTH_BASE, KINDS

    p = subparsers.add_parser(
        "refresh-metadata",
        help="refresh the Monetate lookup tables (names for offer, page event and target ids)",
        description="Fetch every object of each kind from the Monetate Metadata API and replace "
        "its lookup table atomically; a failure leaves the previous contents.",
    )
    p.add_argument("--db", help=f"database URL {db.URL_FORM} (default: ${db.DB_ENV})")
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
    from .lookup_refresh import refresh_lookup
    from .lookups import BY_KIND
    from .metadata import MetadataClient

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
        api_base=args.api_base,
        auth_base=args.auth_base,
        timeout=args.timeout,
        max_wait_seconds=args.max_wait,
    )
    conn = db.connect(args.db)
    try:
        with client:
            for kind in args.kinds:
                rows = refresh_lookup(conn, client, kind)
                print(f"{kind:<20} {BY_KIND[kind].table:<26} {rows:>8} rows")
    finally:
        conn.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-stream",
        description="Load Monetate Session Stream files into MySQL (split, LOAD DATA, newest-wins merge).",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what happens, for debugging"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "init-db",
        help="create or upgrade the warehouse tables (safe to run again)",
        description="Create every table of the data contract, the ledger and the rejects table, "
        "applying numbered migrations not yet applied. Safe to run again.",
    )
    p.add_argument("--db", default=os.environ.get(db.DB_ENV), help=DB_HELP)
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser(
        "load",
        help="load .json.gz files or drop folders (YYYY/MM/DD/) into MySQL",
        description="Load every Monetate file found, oldest window first. Files already loaded "
        "with the same size are skipped; a changed file is reloaded. Newest version of each "
        "session wins. Exit status 0 only when every file loaded.",
    )
    p.add_argument("source", nargs="+", help="a .json.gz file or a folder laid out YYYY/MM/DD/")
    p.add_argument("--db", default=os.environ.get(db.DB_ENV), help=DB_HELP)
    p.add_argument(
        "--force", action="store_true", help="reload files even if the ledger says they are loaded"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes splitting ahead while MySQL loads (default 1; 0 = no workers)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser(
        "split",
        help="split one file into staged TSVs, for inspection",
        description="Write one staged TSV per table (LOAD DATA format), rejects.jsonl and "
        "manifest.json into DIR, without touching any database.",
    )
    p.add_argument("file", help="a Monetate .json.gz file")
    p.add_argument("--out", required=True, help="output folder (replaced)")
    p.set_defaults(func=cmd_split)

    from . import sample

    p = sub.add_parser(
        "generate-sample",
        help="write a realistic sample drop folder (for demos and tests)",
        description="Write Monetate-like .json.gz files under OUT/YYYY/MM/DD/, deterministic by seed.",
    )
    sample.add_arguments(p)
    p.set_defaults(func=sample.run)

    try:
        import httpx  # noqa: F401
        import jwt  # noqa: F401
    except ImportError:  # the metadata extras are not installed: no refresh-metadata
        pass
    else:
        add_refresh_metadata(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except SessionStreamError as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
