"""A run's files between its tasks: where they are staged (one prefix per run, `<prefix>/raw/<name>`),
the key that marks the rows a run's loads wrote, and the errors that name the files that failed."""

from __future__ import annotations

from pathlib import Path

from session_stream.errors import ConfigError, LoadError, SessionStreamError

RUN_KEY_CHARS = 12  # of the 32 of a load_token; the other 20 stay random per load


class FilesFailedError(LoadError):
    """Some files of a batch or run did not load, or loaded with too many rejects.

    `problems` maps each file name to what is wrong with it (without the name), `files` lists the
    names, `summary` says what happened to them as a whole: alerts show each file once.
    """

    def __init__(self, summary: str, problems: dict[str, str]):
        self.summary = summary
        self.problems = dict(problems)
        self.files = list(self.problems)
        super().__init__(f"{summary}: " + "; ".join(f"{n}: {p}" for n, p in self.problems.items()))


class DropSilentError(SessionStreamError):
    """A scheduled run found no file newer than the silence limit: is Monetate still delivering?"""


def without_name(name: str, error: str) -> str:
    """An error about a file usually starts with its name; drop it where the name is said anyway."""
    return error[len(name) + 2 :] if error.startswith(f"{name}: ") else error


def staging_prefix(run_id: str) -> str:
    """The key prefix of one run's staged files: one safe segment under `runs/` whatever the run
    id holds (see roots.run_prefix), so cleaning up a run removes only what it staged."""
    from session_stream.drop.roots import run_prefix

    return run_prefix(run_id)


def run_key(run_id: str) -> str:
    """The first characters of the ledger's load_token for the files a run loads (Loader's
    `token_prefix`): the run's report counts the rows that carry it, so runs that overlap (a
    backfill's look-backs) never count one file twice."""
    import hashlib

    return hashlib.sha256(str(run_id).encode()).hexdigest()[:RUN_KEY_CHARS]


def checked_prefix(prefix: str) -> str:
    """A run prefix read back from XCom, refused unless it has the form staging_prefix makes:
    tasks write and delete under it."""
    from session_stream.drop.roots import is_run_prefix

    if not is_run_prefix(prefix):
        raise ConfigError(f"refusing staging prefix {prefix!r}: not one this DAG made")
    return prefix


def raw_key(prefix: str, name: str) -> str:
    return f"{prefix}/raw/{name}"


def local_path(staging, key: str) -> Path | None:
    """Where a local staging area keeps `key`, so tasks read and write it in place (no copies)."""
    path_for = getattr(staging, "path_for", None)
    if path_for is None:
        return None
    path = Path(path_for(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def remove_staged(staging, prefix: str, name: str) -> None:
    """Remove a file's staged copy; one already removed (a retried task) is fine."""
    try:
        staging.delete(raw_key(prefix, name))
    except FileNotFoundError:
        pass
