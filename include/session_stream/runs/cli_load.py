"""`session-stream load`: files and drop folders into the warehouse, with progress and a summary
that accounts for every file listed and every line read."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from session_stream import tables
from session_stream.runs.cli_args import db_url, err, out
from session_stream.warehouse import db


def cmd_load(args) -> int:
    from session_stream.drop.local import scan_tree
    from session_stream.drop.names import text_name, window_start
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
        err.print(f"[red]refused[/] {escape(text_name(str(path)))}: {escape(why)}", soft_wrap=True)
        others.append(FileOutcome(text_name(path.name), "failed", error=f"refused: {why}"))
    for path, why in ignored:
        loader.record_ignored(path.name, path.lstat().st_size, why)
        if not args.quiet:
            err.print(
                f"[yellow]ignored[/] {escape(text_name(str(path)))}: {escape(why)}", soft_wrap=True
            )
        others.append(FileOutcome(text_name(path.name), "ignored", error=why))
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
        f" a stored or later version, not written)"
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
