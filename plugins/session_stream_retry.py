"""Which failures Airflow retries, for both DAGs: one rule, decided by `classify`.

- **permanent**: configuration and permission errors. Bad params or settings, a missing
  connection or Variable, MySQL refusing the login (1045/1698) or a right the loader lacks,
  `local_infile` off, an unknown SSH host key, a revoked Metadata API key (403), files that failed
  or loaded with too many rejects, a drop that stopped delivering. The same try fails the same
  way, so the task fails at once, without retries, and the run alerts at once.
- **transient**: a server that does not answer or drops the connection (`UnreachableError`,
  MySQL 2002/2003/2006/2013, SSH/HTTP transport errors, connection resets), lock waits and
  deadlocks (1205/1213), Metadata API 5xx/429 (already retried inside the client), a task that
  ran past its `execution_timeout`. Retried with the task's back-off.

Anything else is retried too (Airflow's default): an error nobody classified may well pass.

The engine's errors say which is which (`ConfigError` permanent, its `UnreachableError` subclass
transient); this module adds what only Airflow and the libraries under it raise. The exception
and its causes are looked at outermost first: the first that says something decides.

`SessionStreamRetryPolicy` applies the rule: `default_args["retry_policy"]` (Airflow 3.3
evaluates it in the task's own process, with the real exception). It also leaves each failed
try's error in XCom for the run's alert (session_stream_alerts.note_failure).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

log = logging.getLogger(__name__)

PERMANENT = "permanent"
TRANSIENT = "transient"

# MySQL/MariaDB error codes. Permanent: access denied to a database / for a user / for a command
# or column, a privilege the user lacks, LOAD DATA LOCAL refused (client or server), unknown
# database, no database selected.
MYSQL_PERMANENT = {1044, 1045, 1046, 1049, 1142, 1143, 1148, 1227, 1698, 2068, 3948}
# Too many connections, shutdown in progress, lock wait timeout, deadlock, cannot connect
# (socket, TCP, unknown host: DNS can fail for a while), server gone away, connection lost.
MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 2002, 2003, 2005, 2006, 2013, 2055}
HTTP_PERMANENT = {400, 401, 403, 404}
S3_PERMANENT = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "NoSuchBucket",
}


def classify(exc: BaseException) -> str:
    """PERMANENT or TRANSIENT for a task's exception (see the module docstring)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _classify_one(current)
        if kind is not None:
            return kind
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return TRANSIENT


def _classify_one(exc: BaseException) -> str | None:
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRuntimeError,
        AirflowTaskTimeout,
        ErrorType,
        ParamValidationError,
    )

    from session_stream.errors import BadInputError, ConfigError, LoadError, UnreachableError
    from session_stream.metadata.client import MetadataApiError
    from session_stream.metadata.lookups import BadMetadataError
    from session_stream.runs.dag_tasks import DropSilentError, FilesFailedError

    # The engine's own errors first: they know what they mean.
    if isinstance(exc, UnreachableError):
        return TRANSIENT
    if isinstance(
        exc, (ConfigError, FilesFailedError, DropSilentError, BadMetadataError, BadInputError)
    ):
        # Files that failed are retried by the next run (they are marked failed), not by an
        # immediate retry that would fail them again.
        return PERMANENT
    if isinstance(exc, (MetadataApiError, LoadError)):
        return TRANSIENT

    # Airflow: a missing connection or Variable, bad params, a task past its time limit.
    if isinstance(exc, (AirflowFailException, AirflowNotFoundException, ParamValidationError)):
        return PERMANENT
    if isinstance(exc, AirflowRuntimeError):
        refused = {
            ErrorType.CONNECTION_NOT_FOUND,
            ErrorType.VARIABLE_NOT_FOUND,
            ErrorType.PERMISSION_DENIED,
        }
        return PERMANENT if getattr(exc.error, "error", None) in refused else None
    if isinstance(exc, AirflowTaskTimeout):
        return TRANSIENT

    # The libraries under the hooks, when an error reaches the task unwrapped.
    import MySQLdb

    if isinstance(exc, MySQLdb.Error):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in MYSQL_PERMANENT:
            return PERMANENT
        return TRANSIENT if code in MYSQL_TRANSIENT else None

    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return PERMANENT if exc.response.status_code in HTTP_PERMANENT else TRANSIENT
    if isinstance(exc, httpx.TransportError):
        return TRANSIENT

    import paramiko

    if isinstance(exc, (paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return PERMANENT
    if isinstance(exc, paramiko.SSHException):
        return TRANSIENT

    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return PERMANENT
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return PERMANENT if code in S3_PERMANENT else TRANSIENT
    if isinstance(exc, EndpointConnectionError):
        return TRANSIENT

    if isinstance(exc, PermissionError):
        return PERMANENT
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, EOFError)):
        return TRANSIENT
    return None


@contextmanager
def final_try_when(failed: list[str]) -> Iterator[None]:
    """An error raised inside fails the task at once when `failed` names tasks of its run that
    have failed already: the run alerts anyway, and retrying a task that reports on the run
    (check, after a load failed because MySQL is down) would only hold the alert back by the
    retries' back-off. Permanent errors pass as they are; without `failed`, so does everything.
    """
    try:
        yield
    except Exception as exc:
        if not failed or classify(exc) == PERMANENT:
            raise
        from airflow.sdk.exceptions import AirflowFailException
        from session_stream_alerts import describe

        raise AirflowFailException(
            f"{describe(exc)} (not retried: {', '.join(failed)} of this run failed already)"
        ) from exc


def failed_tasks(ti) -> list[str]:
    """The task instances of `ti`'s run that failed (a mapped one as '<task_id>_<map_index>')."""
    from session_stream_alerts import run_states

    return sorted(key for key, state in run_states(ti).items() if state == "failed")


class SessionStreamRetryPolicy(RetryPolicy):
    """Permanent failures fail the task now; the rest retry with the task's back-off.

    Every failed try passes through here, in the task's process, before Airflow records its
    state: the one place to note the error for the run's alert, whichever task failed.
    """

    def evaluate(self, exception, try_number, max_tries, context=None) -> RetryDecision:
        kind = classify(exception)
        if context is not None:
            from session_stream_alerts import note_failure

            note_failure(context, exception, kind)
        if kind == PERMANENT:
            return RetryDecision.fail(reason="a permanent error: retrying cannot help")
        return RetryDecision.retry(reason="a transient error: retrying with back-off")

    def serialize(self) -> dict:
        # The scheduler needs only to know a policy exists; the task process builds its own.
        return {"__type": type(self).__name__}
