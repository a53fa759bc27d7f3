"""The one retry rule of both DAGs: configuration and permission errors fail at once, servers that
do not answer (and whatever nobody classified) are retried with back-off."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import MySQLdb
import paramiko
import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowNotFoundException,
    AirflowRuntimeError,
    AirflowTaskTimeout,
    ErrorType,
    ParamValidationError,
)
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from session_stream_retry import (
    PERMANENT,
    TRANSIENT,
    SessionStreamRetryPolicy,
    classify,
    failed_tasks,
    final_try_when,
)

from session_stream.errors import ConfigError, LoadError, UnreachableError
from session_stream.metadata.client import ApiKeyRefusedError, MetadataApiError
from session_stream.runs.dag_tasks import DropSilentError, FilesFailedError

BAD = "20261101T001500.000Z_PT15M-1793493000205.json.gz"


def http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api.monetate.net/api/metadata/v1/acme")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


def runtime_error(kind: ErrorType) -> AirflowRuntimeError:
    return AirflowRuntimeError(SimpleNamespace(error=kind, detail={"key": "x"}))


PERMANENT_ERRORS = {
    "bad params (the engine)": ConfigError("give both params 'start' and 'end'"),
    "bad params (Airflow)": ParamValidationError("lookback_hours: -1 is less than 0"),
    "MySQL refused the login (1045)": MySQLdb.OperationalError(1045, "Access denied"),
    "MySQL refused the login (1698)": MySQLdb.OperationalError(1698, "Access denied"),
    "a right the loader lacks (1142)": MySQLdb.OperationalError(1142, "CREATE command denied"),
    "local_infile off (3948)": MySQLdb.OperationalError(3948, "Loading local data is disabled"),
    "missing connection": AirflowNotFoundException("The conn_id `monetate_api` isn't defined"),
    "missing Variable": runtime_error(ErrorType.VARIABLE_NOT_FOUND),
    "revoked Metadata API key (403)": ApiKeyRefusedError("Monetate refused the API key"),
    "HTTP 403 unwrapped": http_error(403),
    "SFTP login refused": paramiko.AuthenticationException("Authentication failed"),
    "unknown host key": ConfigError("unknown SSH host key for sftp.example.com"),
    "no AWS credentials": NoCredentialsError(),
    "S3 access denied": ClientError({"Error": {"Code": "AccessDenied"}}, "ListObjectsV2"),
    "failed files": FilesFailedError("1 of 4 file(s) failed", {BAD: "truncated"}),
    "a silent drop": DropSilentError("no new file in the drop for 6 hours"),
}
TRANSIENT_ERRORS = {
    "MySQL unreachable (the engine)": UnreachableError("cannot reach MySQL at db:3306"),
    "MySQL unreachable (2003)": MySQLdb.OperationalError(2003, "Can't connect"),
    "MySQL gone away (2006)": MySQLdb.OperationalError(2006, "server has gone away"),
    "lock wait timeout (1205)": MySQLdb.OperationalError(1205, "Lock wait timeout exceeded"),
    "deadlock (1213)": MySQLdb.OperationalError(1213, "Deadlock found"),
    "load lock wait": LoadError("waited 1800s for another load of this database to finish"),
    "Metadata API 5xx": MetadataApiError("the Monetate API kept failing (last error: HTTP 503)"),
    "HTTP 503 unwrapped": http_error(503),
    "connection reset": ConnectionResetError(104, "Connection reset by peer"),
    "HTTP connect error": httpx.ConnectError("connection refused"),
    "SSH dropped": paramiko.SSHException("Error reading SSH protocol banner"),
    "S3 endpoint down": EndpointConnectionError(endpoint_url="http://s3.local"),
    "past execution_timeout": AirflowTaskTimeout("Timeout, PID: 1"),
    "nobody classified it": RuntimeError("something odd"),
}


@pytest.mark.parametrize("error", PERMANENT_ERRORS.values(), ids=PERMANENT_ERRORS.keys())
def test_configuration_and_permission_errors_are_permanent(error):
    assert classify(error) == PERMANENT


@pytest.mark.parametrize("error", TRANSIENT_ERRORS.values(), ids=TRANSIENT_ERRORS.keys())
def test_unreachable_servers_lock_waits_and_the_unknown_are_transient(error):
    assert classify(error) == TRANSIENT


def test_the_cause_decides_when_the_outer_error_says_nothing():
    try:
        try:
            raise MySQLdb.OperationalError(1045, "Access denied for user 'loader'")
        except MySQLdb.OperationalError as inner:
            raise RuntimeError("the hook failed") from inner
    except RuntimeError as outer:
        assert classify(outer) == PERMANENT


def test_the_outer_error_decides_when_it_knows():
    # The glue turns a refused connection into the engine's UnreachableError "from" the raw one.
    try:
        try:
            raise MySQLdb.OperationalError(2003, "Can't connect")
        except MySQLdb.OperationalError as inner:
            raise UnreachableError("cannot reach MySQL at db:3306") from inner
    except UnreachableError as outer:
        assert classify(outer) == TRANSIENT


class NotingTI:
    task_id, map_index, try_number = "fetch", -1, 2

    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_the_policy_fails_permanent_errors_at_once_and_retries_the_rest():
    policy = SessionStreamRetryPolicy()
    ti = NotingTI()
    refused = policy.evaluate(MySQLdb.OperationalError(1045, "Access denied"), 1, 3, {"ti": ti})
    assert refused.action == RetryAction.FAIL
    down = policy.evaluate(UnreachableError("cannot reach MySQL"), 1, 3, {"ti": ti})
    assert down.action == RetryAction.RETRY and down.retry_delay is None  # the task's back-off


def test_the_policy_notes_each_failed_try_for_the_runs_alert():
    ti = NotingTI()
    SessionStreamRetryPolicy().evaluate(
        FilesFailedError("1 of 4 file(s) failed; they are marked failed", {BAD: "truncated"}),
        2,
        3,
        {"ti": ti},
    )
    assert ti.pushed["failure"] == {
        "error": "1 of 4 file(s) failed; they are marked failed",
        "kind": PERMANENT,
        "try_number": 2,
        "problems": {BAD: "truncated"},
    }


def test_a_note_that_cannot_be_written_does_not_change_the_decision():
    class BrokenTI(NotingTI):
        def xcom_push(self, key, value):
            raise RuntimeError("API server down")

    decision = SessionStreamRetryPolicy().evaluate(ConfigError("bad"), 1, 3, {"ti": BrokenTI()})
    assert decision.action == RetryAction.FAIL


class RunTI:
    dag_id, run_id = "session_stream", "manual__1"

    def __init__(self, states):
        self.states = states

    def get_task_states(self, dag_id, run_ids):
        assert (dag_id, run_ids) == (self.dag_id, [self.run_id])
        return {self.run_id: self.states}


def test_after_a_failed_load_a_transient_error_fails_check_at_once_without_hiding_why():
    failed = failed_tasks(RunTI({"fetch": "success", "load_0": "failed", "load_1": "success"}))
    assert failed == ["load_0"]
    down = UnreachableError("cannot reach MySQL at db:3306")
    with pytest.raises(AirflowFailException) as raised, final_try_when(failed):
        raise down
    assert classify(raised.value) == PERMANENT  # so the policy does not retry it
    assert raised.value.__cause__ is down
    assert str(raised.value) == (
        "UnreachableError: cannot reach MySQL at db:3306"
        " (not retried: load_0 of this run failed already)"
    )


def test_check_keeps_its_retries_when_nothing_failed_and_permanent_errors_pass_as_they_are():
    assert failed_tasks(RunTI({"fetch": "success", "load_0": "success"})) == []
    with pytest.raises(UnreachableError), final_try_when([]):
        raise UnreachableError("cannot reach MySQL")
    files = FilesFailedError("1 file(s) of window [a, b) need a look", {BAD: "not loaded"})
    with pytest.raises(FilesFailedError) as raised, final_try_when(["load_0"]):
        raise files
    assert raised.value is files  # its files still reach the alert
