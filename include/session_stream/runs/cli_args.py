"""What every `session-stream` command shares: its two consoles, the warehouse arguments, and a
password kept off the command line (--password-file, --password-prompt, or masked and warned of)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from session_stream.errors import ConfigError
from session_stream.redact import mask_text
from session_stream.warehouse import db

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
