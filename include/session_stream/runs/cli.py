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

import MySQLdb
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from session_stream import tables
from session_stream.errors import ConfigError, SessionStreamError
from session_stream.redact import mask_text
from session_stream.runs.workers import DEFAULT_WORKERS
from session_stream.warehouse import db

PRIVATE_KEY_ENV = "MONETATE_PRIVATE_KEY"
API_USER_ENV = "MONETATE_API_USER"
RETAILER_ENV = "MONETATE_RETAILER"
DB_HELP = (
    f"warehouse URL, {db.URL_FORM}, TLS with ?ssl-mode=VERIFY_IDENTITY&ssl-ca=FILE "
    f"(default: ${db.DB_ENV}); leave the password out of it: see --password-file"
)
PASSWORD_WARNING = (
    "warning: the database password was given on the command line, where other users of this "
    f"machine can read it (ps, /proc) and your shell history keeps it: set {db.DB_PASSWORD_ENV}, "
    "or use --password-file or --password-prompt"
)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)  # one line per line in logs and pipes


def hide_command_line_password(argv: list[str], *, retitle: bool = True) -> bool:
    """When a --db URL on the command line holds a password: overwrite this process's command line
    (what ps and /proc/<pid>/cmdline show) with the password masked, and warn. Returns whether
    there was one. The command line is visible until this runs, and in the shell's history: the
    warning says how to keep the password off it altogether."""
    given = [
        a for i, a in enumerate(argv) if a.startswith("--db=") or (i and argv[i - 1] == "--db")
    ]
    userinfo = [a.split("://", 1)[-1].split("@", 1)[0] for a in given if "@" in a]
    if not any(u.partition(":")[2] for u in userinfo):
        return False
    try:
        import setproctitle
    except ImportError:  # not installed with the engine alone: the warning still stands
        retitle = False
    if retitle:
        setproctitle.setproctitle(" ".join(mask_text(a) for a in ["session-stream", *argv]))
    err.print(PASSWORD_WARNING, soft_wrap=True)
    return True


def db_url(args) -> db.DbUrl:
    """The warehouse URL with the password from, first match wins: --password-file,
    --password-prompt, the URL itself, $SESSION_STREAM_DB_PASSWORD."""
    password = None
    if getattr(args, "password_file", None):
        try:
            lines = Path(args.password_file).read_text().splitlines()
            password = lines[0] if lines else ""
        except OSError as exc:
            raise ConfigError(
                f"cannot read --password-file {args.password_file}: {exc.strerror}"
            ) from None
    elif getattr(args, "password_prompt", False):
        import getpass

        url = db.DbUrl.parse(args.db)
        password = getpass.getpass(f"password for {url.user}@{url.host}: ")
    return db.DbUrl.parse(args.db, password=password)


def add_db_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get(db.DB_ENV), help=DB_HELP)
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the database password from FILE (its first line), not from the URL",
    )
    p.add_argument(
        "--password-prompt",
        action="store_true",
        help=f"ask for the database password (default: the URL's, else ${db.DB_PASSWORD_ENV})",
    )


def cmd_init_db(args) -> int:
    from session_stream.warehouse.privileges import migrate_if_pending

    url = db_url(args)
    conn = db.connect(url)
    try:
        applied = migrate_if_pending(conn)
    finally:
        conn.close()
    if applied:
        for m in applied:
            out.print(f"applied migration {m.version}: {m.name}")
    else:
        out.print(f"{url}: schema is up to date")
    return 0


def cmd_split(args) -> int:
    from session_stream.split.splitter import split_file

    result = split_file(Path(args.file), Path(args.out))
    out.print(
        f"{result.source_name}: {result.lines:,} lines = {result.sessions:,} sessions +"
        f" {result.repeats:,} older versions later in the file + {result.rejects:,} rejects +"
        f" {result.blank_lines:,} blank, {result.seconds}s -> {result.out_dir}",
        markup=False,
    )
    for table, n in result.rows.items():
        out.print(f"  {table}.tsv  {n} rows")
    return 0


def cmd_load(args) -> int:
    from session_stream.drop.local import scan_tree
    from session_stream.drop.names import window_start
    from session_stream.runs.pipeline import load_files
    from session_stream.warehouse.load import FileOutcome, Loader

    paths: list[Path] = []
    refused: list[tuple[Path, str]] = []
    ignored: list[tuple[Path, str]] = []
    for source in args.source:
        scan = scan_tree(Path(source))
        paths.extend(scan.files)
        refused.extend(scan.refused)
        ignored.extend(scan.ignored)
    url = db_url(args)
    loader = Loader(lambda: db.connect(url))
    loader.connect_now()  # fail fast on config problems, before any splitting starts
    # Every entry listed ends in one place the summary counts: entries that are not regular
    # files inside the folder (a symlink out of it, a FIFO, a folder named like a file) are
    # failed in the ledger with the reason, other names ignored there with theirs; never read.
    others = []
    for path, why in refused:
        size = path.lstat().st_size if not path.is_dir() else 0
        loader.record_failure(path.name, size, window_start(path.name), f"refused: {why}")
        err.print(f"[red]refused[/] {escape(str(path))}: {escape(why)}", soft_wrap=True)
        others.append(FileOutcome(path.name, "failed", error=f"refused: {why}"))
    for path, why in ignored:
        loader.record_ignored(path.name, path.lstat().st_size, why)
        if not args.quiet:
            err.print(f"[yellow]ignored[/] {escape(str(path))}: {escape(why)}", soft_wrap=True)
        others.append(FileOutcome(path.name, "ignored", error=why))
    if not paths and not others:
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
                err.print(f"[red]failed[/] {_failure(path.name, outcome.error)}", soft_wrap=True)
            elif outcome.replaced_copy:
                err.print(
                    f"[yellow]replaced[/] {escape(path.name)}: {escape(outcome.replaced_copy)}",
                    soft_wrap=True,
                )
            elif not show_progress and not args.quiet:
                how = (
                    f"{outcome.error}"
                    if outcome.status == "skipped"
                    else f"{outcome.sessions} sessions, {outcome.seconds}s"
                )
                err.print(f"{outcome.status} {escape(path.name)} ({escape(how)})", soft_wrap=True)

        summary = load_files(paths, loader, force=args.force, workers=args.jobs, on_file=on_file)
    stored = loader.count_sessions()
    loader.close()
    for outcome in others:
        summary.add(outcome)
    print_summary(summary, stored)
    return 1 if summary.failed else 0


def print_summary(summary, stored: int | None = None) -> None:
    table = Table(title="session-stream load", show_header=True, header_style="bold")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for t in tables.TABLES:
        table.add_row(t.name, f"{summary.rows[t.name]:,}")
    out.print(table)
    out.print(
        f"files: {summary.listed:,} listed = {summary.loaded:,} loaded + {summary.skipped:,}"
        f" skipped (already loaded) + {summary.failed:,} failed + {summary.ignored:,} ignored"
        f" (not Monetate files) | lines of the files loaded: {summary.lines:,} ="
        f" {summary.sessions:,} sessions + {summary.repeats:,} older versions later in the same"
        f" file + {summary.rejects:,} rejects + {summary.blank_lines:,} blank",
        markup=False,
    )
    versions = summary.sessions + summary.repeats
    written = summary.rows.get(tables.SESSIONS.name, 0)
    out.print(
        f"session versions read: {versions:,} | sessions written: {written:,}"
        f" ({summary.replaced:,} replaced an older version, {summary.superseded:,} older than"
        f" the stored one, not written)"
        + (f" | sessions now stored: {stored:,}" if stored is not None else "")
        + f" | rows: {summary.total_rows:,} | {summary.seconds:.1f}s |"
        f" {summary.sessions_per_second:,.0f} sessions/s",
        markup=False,
    )
    for name, what in summary.replaced_copies:
        out.print(f"[yellow]replaced[/] {escape(name)}: {escape(what)}")
    for name, error in summary.failures:
        out.print(f"[red]failed[/] {_failure(name, error)}")
    for name, why in summary.ignored_files[:20]:
        out.print(f"[yellow]ignored[/] {escape(name)}: {escape(why)}")
    if len(summary.ignored_files) > 20:
        out.print(f"... and {len(summary.ignored_files) - 20:,} more ignored (see the ledger)")
    print_key_counts(summary.unknown_keys, summary.missing_keys)


def _failure(name: str, error: str | None) -> str:
    """`name: error`, one line, the name once (a split's error starts with it already)."""
    return escape(f"{name}: {(error or 'failed').removeprefix(f'{name}: ')}")


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
    from session_stream.metadata.client import MetadataClient
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
        api_base=args.api_base,
        auth_base=args.auth_base,
        timeout=args.timeout,
        max_wait_seconds=args.max_wait,
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


def cmd_reject(args) -> int:
    from session_stream.warehouse.rejects import save_line

    conn = db.connect(db_url(args))
    try:
        written, length = save_line(conn, args.file_name, args.line_no, args.output)
    finally:
        conn.close()
    if written < length:
        err.print(
            f"the line was {length:,} bytes, too long to keep whole: wrote its first {written:,}"
            f"{' to ' + str(args.output) if args.output else ''} (the whole line is in the"
            " source file; its SHA-256 is raw_sha256 in session_stream_rejects)",
            soft_wrap=True,
            markup=False,
        )
    elif args.output:
        err.print(f"wrote {written:,} bytes to {args.output}", soft_wrap=True, markup=False)
    return 0


def cmd_grants(args) -> int:
    from session_stream.warehouse.privileges import apply_grants, grant_statements

    if not (args.owner or args.loader or args.analyst):
        raise ConfigError("name at least one of --owner, --loader, --analyst")
    url = db_url(args) if (args.apply or not args.database) else None
    statements = grant_statements(
        args.database or url.database, owner=args.owner, loader=args.loader, analyst=args.analyst
    )
    for line in statements:
        out.print(line, markup=False)
    if args.apply:
        conn = db.connect(url)
        try:
            apply_grants(conn, statements)
        finally:
            conn.close()
        err.print(f"applied {len(statements)} GRANT statement(s) as {url}")
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
    add_db_arguments(p)
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser(
        "load",
        help="load .json.gz files or drop folders (YYYY/MM/DD/) into MySQL",
        description="Load every Monetate file found, oldest window first. Files already loaded "
        "with the same size are skipped; a changed file is reloaded. Newest version of each "
        "session wins. Exit status 0 only when every file loaded.",
    )
    p.add_argument("source", nargs="+", help="a .json.gz file or a folder laid out YYYY/MM/DD/")
    add_db_arguments(p)
    p.add_argument(
        "--force", action="store_true", help="reload files even if the ledger says they are loaded"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_WORKERS,
        help="worker processes splitting ahead while MySQL loads (default: 2, or 1 on a"
        " one-core machine; 0 = no workers)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser(
        "split",
        help="split one file into staged TSVs, for inspection",
        description="Write one staged TSV per table (LOAD DATA format), the rejected lines "
        "(rejects.jsonl, rejects.raw) and manifest.json into DIR, without touching any database.",
    )
    p.add_argument("file", help="a Monetate .json.gz file")
    p.add_argument("--out", required=True, help="output folder (replaced)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser(
        "reject",
        help="write a rejected line, whole and as it was, to stdout or a file",
        description="Read the raw line LINE_NO of FILE_NAME back from session_stream_rejects, "
        "whatever its size, check it against the length and SHA-256 stored with it, and write "
        "it (without its newline) to stdout or --output. Needs the loader's or the schema "
        "owner's rights: analysts may not read rejected lines.",
    )
    p.add_argument("file_name", help="the source file's name, as in session_stream_rejects")
    p.add_argument("line_no", type=int, help="the line's number in that file (from 1)")
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout"
    )
    add_db_arguments(p)
    p.set_defaults(func=cmd_reject)

    p = sub.add_parser(
        "grants",
        help="print the GRANT statements for the schema owner, the loader and the analysts",
        description="Print, for an admin to run, the least rights each user needs: the schema "
        "owner runs init-db; the loader loads (data rights only, plus the lookup tables' swap); "
        "analysts read the session tables, the BI views and the lookups, not the rejected raw "
        "lines. Run the analyst's grants after init-db, and again after a migration.",
    )
    p.add_argument(
        "--database", help="the warehouse database (schema) name (default: the --db URL's)"
    )
    p.add_argument("--owner", metavar="USER[@HOST]", help="the schema owner (runs init-db)")
    p.add_argument("--loader", metavar="USER[@HOST]", help="the loader (CLI load, the DAGs)")
    p.add_argument("--analyst", metavar="USER[@HOST]", help="a read-only BI user")
    p.add_argument(
        "--apply",
        action="store_true",
        help="also run them on --db, as a user allowed to grant them (the schema owner WITH "
        "GRANT OPTION, or an admin)",
    )
    add_db_arguments(p)
    p.set_defaults(func=cmd_grants)

    from session_stream.drop import sample

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
    hide_command_line_password(sys.argv[1:] if argv is None else argv, retitle=argv is None)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except SessionStreamError as exc:
        err.print(f"[red]error:[/] {escape(mask_text(str(exc)))}", soft_wrap=True)
        return exc.exit_code
    except MySQLdb.Error as exc:  # one the engine does not explain (a right the user lacks...)
        text = f"MySQL error {exc.args[0]}: {exc.args[1]}" if len(exc.args) >= 2 else str(exc)
        err.print(f"[red]error:[/] {escape(mask_text(text))}", soft_wrap=True)
        return ConfigError.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
