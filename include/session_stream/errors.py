"""Failures a user can cause and fix. Each message says what to do; the CLI prints it as one line."""


class SessionStreamError(Exception):
    """Base class: the CLI prints str(error) and exits with `exit_code`."""

    exit_code = 1


class ConfigError(SessionStreamError):
    """Bad configuration: a malformed URL, a missing setting, refused credentials. Trying again
    without changing something cannot help."""

    exit_code = 2


class UnreachableError(ConfigError):
    """A server that did not answer (down, restarting, wrong address, network trouble). For the
    CLI it is a ConfigError like the others (exit 2, one line); Airflow retries it with back-off,
    since the server may be back by the next try."""


class BadInputError(SessionStreamError):
    """A source file that cannot be read to its end (truncated gzip, I/O error)."""


class LoadError(SessionStreamError):
    """A file whose load failed for a reason other than its content."""


class StoredRejectError(SessionStreamError):
    """A rejected line asked for that is not stored, or not stored whole (its length or SHA-256
    differs from the bytes read back)."""
