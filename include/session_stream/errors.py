"""Failures a user can cause and fix. Each message says what to do; the CLI prints it as one line."""


class SessionStreamError(Exception):
    """Base class: the CLI prints str(error) and exits with `exit_code`."""

    exit_code = 1


class ConfigError(SessionStreamError):
    """Bad configuration: a malformed URL, a missing setting, an unreachable server."""

    exit_code = 2


class BadInputError(SessionStreamError):
    """A source file that cannot be read to its end (truncated gzip, I/O error)."""


class LoadError(SessionStreamError):
    """A file whose load failed for a reason other than its content."""
