"""`session-stream`: create the schema, load drop folders or files, split for inspection.

Exit status: 0 when everything asked for succeeded, 1 when a file failed to load,
2 for a usage or configuration problem (bad URL, unreachable server, local_infile off, ...).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import MySQLdb
from rich.markup import escape

from session_stream.errors import ConfigError, SessionStreamError
from session_stream.redact import mask_text
from session_stream.runs.cli_args import (
    add_db_arguments,
    db_url,
    err,
    hide_command_line_password,
    out,
)
from session_stream.runs.cli_load import cmd_load
from session_stream.runs.cli_metadata import add_refresh_metadata
from session_stream.runs.workers import DEFAULT_WORKERS
from session_stream.warehouse import db


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
