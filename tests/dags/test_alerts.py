"""The failure notifier: what the run's alert says, when it is sent, and through which channels."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import session_stream_alerts as alerts
from airflow_harness import conn_env

from session_stream.runs.dag_tasks import FilesFailedError

BAD = "20261101T001500.000Z_PT15M-1793493000205.json.gz"
OTHER = "20261101T003000.000Z_PT15M-1793493900742.json.gz"
REJECTS = "20261101T004500.000Z_PT15M-1793494800123.json.gz"
RUN = "scheduled__2026-11-01T01:00:00+00:00"
BASE = "https://airflow.example.test/prod"
TASK_IDS = ["fetch", "split", "load", "check", "finish"]  # split: as an older DAG had it


class RunTI:
    """The `finish` task instance as the Task SDK shows it: other tasks' states and XCom notes."""

    dag_id, run_id, task_id, map_index, try_number = "session_stream", RUN, "finish", -1, 1

    def __init__(
        self,
        states: dict[str, str],
        notes: dict[tuple[str, int], dict],
        checked: dict | None = None,
    ):
        self.states, self.notes, self.checked = states, notes, checked

    def get_task_states(self, dag_id, run_ids):
        assert (dag_id, run_ids) == (self.dag_id, [self.run_id])
        return {self.run_id: {**self.states, "finish": "running"}}

    def xcom_pull(self, task_ids, key="return_value", map_indexes=None):
        if task_ids == "check" and key in ("return_value", "report"):
            return self.checked if key == "report" else None  # check failed: no return value
        assert key == "failure"
        return self.notes.get((task_ids, map_indexes))


DAG = SimpleNamespace(dag_id="session_stream", task_ids=TASK_IDS)


def two_loads_failed() -> alerts.RunReport:
    """load[0] failed on a truncated file, load[2] on two files; split[1] failed, so load[1]
    never ran; check ran after them all (trigger rule all_done) and failed naming the files."""
    ti = RunTI(
        {
            "fetch": "success",
            "split_0": "success",
            "split_1": "failed",
            "split_2": "success",
            "load_0": "failed",
            "load_1": "upstream_failed",
            "load_2": "failed",
            "check": "failed",
        },
        {
            ("split", 1): {
                "error": "UnreachableError: cannot reach S3 at http://127.0.0.1:9",
                "kind": "transient",
                "try_number": 4,
                "problems": {},
            },
            ("check", -1): {
                "error": "3 file(s) of window [2026-11-01T00:00, 2026-11-01T01:00) need a look",
                "kind": "permanent",
                "try_number": 1,
                "problems": {BAD: "not loaded (truncated)", OTHER: "not loaded (gone away)"},
            },
            ("load", 0): {
                "error": "1 of 4 file(s) failed; they are marked failed in the ledger and the next run retries them",
                "kind": "permanent",
                "try_number": 1,
                "problems": {BAD: "cannot be read to its end (EOFError: truncated)"},
            },
            ("load", 2): {
                "error": "2 of 4 file(s) failed; they are marked failed in the ledger and the next run retries them",
                "kind": "permanent",
                "try_number": 1,
                "problems": {OTHER: "MySQL server has gone away", BAD: "again"},
            },
        },
    )
    return alerts.run_report(ti, DAG)


@pytest.fixture
def base_url(monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE + "/")


def test_the_run_report_names_every_failed_task_and_file_once(base_url):
    report = two_loads_failed()
    assert [f.label for f in report.failed] == ["split[1]", "load[0]", "load[2]", "check"]
    assert report.not_run == ["load[1]"]
    alert = alerts.run_alert(report)
    assert "split[1], load[0], load[2], check" in alert.subject and "2 file(s)" in alert.subject
    assert "session_stream" in alert.subject and RUN in alert.subject
    for name in (BAD, OTHER):
        assert alert.text.count(name) == 1, alert.text  # each failed file once, with its problem
    assert f"{BAD}: cannot be read to its end" in alert.text  # the first problem noted for it
    assert "Not run (an upstream task failed): load[1]" in alert.text


def test_log_links_are_built_from_the_configured_base_url(base_url):
    alert = alerts.run_alert(two_loads_failed())
    run = f"{BASE}/dags/session_stream/runs/scheduled__2026-11-01T01%3A00%3A00%2B00%3A00"
    assert f"Link:  {run}\n" in alert.text
    assert f"log: {run}/tasks/load/mapped/0?try_number=1" in alert.text
    assert f"log: {run}/tasks/load/mapped/2?try_number=1" in alert.text
    assert "localhost" not in alert.text


def test_without_a_base_url_the_alert_says_to_set_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    alert = alerts.run_alert(two_loads_failed())
    assert "http://localhost:8080/dags/session_stream/runs/" in alert.text
    assert "set [api] base_url, AIRFLOW__API__BASE_URL" in alert.text


def test_a_max_rejects_failure_does_not_claim_the_files_were_marked_failed(base_url):
    # check's FilesFailedError for files the ledger has loaded, noted by the retry rule.
    exc = FilesFailedError(
        "1 file(s) of window [2026-11-01T00:00:00+00:00, 2026-11-01T01:00:00+00:00) need a look",
        {
            REJECTS: "loaded, but with 150 rejects, more than max_rejects=100 "
            "(the lines are in session_stream_rejects)"
        },
    )
    ti = RunTI(
        {"fetch": "success", "load_0": "success", "check": "failed"},
        {("check", -1): {"error": alerts.describe(exc), "try_number": 1, "problems": exc.problems}},
    )
    text = alerts.run_alert(alerts.run_report(ti, DAG)).text
    assert "marked failed" not in text and "retries" not in text
    assert text.count(REJECTS) == 1 and "loaded, but with 150 rejects" in text


def test_a_task_that_left_no_note_is_still_named_with_a_link(base_url):
    ti = RunTI({"fetch": "failed", "check": "upstream_failed"}, {})
    report = alerts.run_report(ti, DAG)
    alert = alerts.run_alert(report)
    assert [f.label for f in report.failed] == ["fetch"]
    assert "no error was noted" in alert.text
    assert "/tasks/fetch\n" in alert.text + "\n"


def test_finish_raises_only_when_something_failed():
    with pytest.raises(alerts.RunFailed) as failed:
        alerts.raise_for_failed_tasks(RunTI({"fetch": "failed"}, {}), DAG)
    assert [f.label for f in failed.value.report.failed] == ["fetch"]
    ok = RunTI({"fetch": "success", "split_0": "skipped", "check": "success"}, {})
    assert alerts.raise_for_failed_tasks(ok, DAG).failed == []


def test_the_html_body_escapes_the_error_text():
    report = alerts.RunReport(
        "session_stream", RUN, failed=[alerts.TaskFailure("fetch", error="<script>x</script>")]
    )
    assert "<script>" not in alerts.run_alert(report).html


# ---------------------------------------------------------------- which callback sends


def task_context(task_id: str, exception, dag=DAG) -> dict:
    ti = SimpleNamespace(
        dag_id="session_stream", run_id=RUN, task_id=task_id, map_index=-1, try_number=1
    )
    return {"ti": ti, "task": SimpleNamespace(task_id=task_id), "dag": dag, "exception": exception}


def test_the_notifier_sends_finishs_report_and_nothing_for_the_other_tasks():
    notifier = alerts.SessionStreamNotifier()
    report = two_loads_failed()
    assert notifier.alert_for(task_context("finish", alerts.RunFailed(report))) == alerts.run_alert(
        report
    )
    failed_load = FilesFailedError("1 of 4 file(s) failed", {BAD: "truncated"})
    assert notifier.alert_for(task_context("load", failed_load)) is None


def test_in_a_dag_without_finish_the_notifier_reports_the_task():
    notifier = alerts.SessionStreamNotifier()
    dag = SimpleNamespace(dag_id="other", task_ids=["only"])
    alert = notifier.alert_for(task_context("only", RuntimeError("boom"), dag=dag))
    assert "only" in alert.subject and "RuntimeError: boom" in alert.text


def deadline_context(state: str) -> dict:
    return {
        "dag_run": {
            "dag_id": "session_stream",
            "dag_run_id": RUN,
            "state": state,
            "run_type": "scheduled",
            "queued_at": "2026-11-01T01:00:02Z",
            "start_date": "2026-11-01T01:00:03Z" if state != "queued" else None,
        },
        "deadline": {"id": "x", "deadline_time": "2026-11-01T02:00:02Z"},
    }


def test_a_run_still_going_at_its_deadline_alerts_naming_the_pool(base_url):
    notifier = alerts.SessionStreamNotifier(stall_minutes=60, pool="session_stream_load")
    alert = notifier.alert_for(deadline_context("running"))
    assert alert.subject == f"[Airflow] session_stream run {RUN} has not finished after 60 min"
    assert "airflow pools set session_stream_load 2" in alert.text
    assert f"{BASE}/dags/session_stream/runs/" in alert.text


@pytest.mark.parametrize("state", ["failed", "success", "queued"])
def test_a_finished_or_waiting_run_does_not_alert_at_its_deadline(state):
    # failed: finish reported it; queued: a backfill run waiting for its turn has not stalled.
    notifier = alerts.SessionStreamNotifier(stall_minutes=60, pool="session_stream_load")
    assert notifier.alert_for(deadline_context(state)) is None


# ---------------------------------------------------------------- channels


def logged(caplog, capsys) -> str:
    # Until Airflow configures logging (on first use), records reach caplog; after, stdout.
    return caplog.text + capsys.readouterr().out


def set_env(monkeypatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def an_alert() -> alerts.Alert:
    return alerts.run_alert(
        alerts.RunReport(
            "session_stream",
            RUN,
            failed=[
                alerts.TaskFailure(
                    "load", 0, 1, "1 of 4 file(s) failed", problems={BAD: "truncated"}
                )
            ],
        )
    )


def test_without_any_alert_connection_a_warning_says_what_to_configure(monkeypatch, caplog, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SESSION_STREAM_SLACK", raising=False)
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        assert alerts.SessionStreamNotifier().send(an_alert()) == []
    text = logged(caplog, capsys)
    assert "no failure alert was sent" in text
    assert "no connection smtp_default" in text and "no connection session_stream_slack" in text
    assert BAD in text  # the alert itself is in the log


def test_email_goes_through_smtp_default_to_the_alert_recipients(monkeypatch, smtp_sink):
    set_env(monkeypatch, smtp_sink.conn_env())
    monkeypatch.setenv(
        "AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", "data@example.test, oncall@example.test"
    )
    assert alerts.SessionStreamNotifier().send(an_alert()) == ["smtp_default"]
    assert len(smtp_sink.messages) == 1
    msg = smtp_sink.messages[0]
    assert msg["To"] == "data@example.test, oncall@example.test"
    assert msg["Subject"] == an_alert().subject
    assert BAD in msg.get_body(("html",)).get_content()


def test_smtp_without_recipients_says_so_instead_of_asking_for_the_connection(
    monkeypatch, smtp_sink, caplog, capsys
):
    set_env(monkeypatch, smtp_sink.conn_env())
    monkeypatch.delenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SESSION_STREAM_SLACK", raising=False)
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        alerts.SessionStreamNotifier().send(an_alert())
    assert smtp_sink.messages == []
    text = logged(caplog, capsys)
    assert "connection smtp_default exists but names nobody to e-mail" in text
    assert "no connection smtp_default" not in text


def test_smtp_with_the_providers_ssl_default_on_a_plain_port_names_the_extra_to_set(
    monkeypatch, smtp_sink, caplog, capsys
):
    # host and port only: the SMTP provider then speaks implicit TLS, which a plain server refuses.
    set_env(
        monkeypatch,
        conn_env(
            "smtp_default",
            conn_type="smtp",
            host=smtp_sink.host,
            port=smtp_sink.port,
            extra={"timeout": 5, "retry_limit": 0},
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", "data@example.test")
    monkeypatch.delenv("AIRFLOW_CONN_SESSION_STREAM_SLACK", raising=False)
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        assert alerts.SessionStreamNotifier().send(an_alert()) == []
    text = logged(caplog, capsys)
    assert "sending through smtp_default failed" in text
    assert 'unless the connection extra "disable_ssl" is true' in text
    assert "no connection smtp_default" not in text


def test_an_unreachable_mail_server_is_logged_not_raised(monkeypatch, caplog, capsys):
    from servers import free_port

    fields = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": free_port(),
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 2},
    }
    set_env(monkeypatch, conn_env("smtp_default", **fields))
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", "data@example.test")
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        alerts.SessionStreamNotifier().send(an_alert())  # must not raise
    assert "could not send the failure alert through connection smtp_default" in logged(
        caplog, capsys
    )


@pytest.fixture
def slack_sink():
    """A local HTTP server standing in for Slack's incoming-webhook endpoint."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{server.server_port}/services/T/B/X", received=received
        )
    finally:
        server.shutdown()


def test_slack_webhook_gets_the_message_when_its_connection_exists(monkeypatch, slack_sink):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    fields = {"conn_type": "slackwebhook", "password": slack_sink.url}
    set_env(monkeypatch, conn_env("session_stream_slack", **fields))
    assert alerts.SessionStreamNotifier().send(an_alert()) == ["session_stream_slack"]
    assert len(slack_sink.received) == 1
    text = slack_sink.received[0]["text"]
    assert BAD in text and "load[0]" in text and text.startswith(f"*{an_alert().subject}*")


def test_the_stall_deadline_is_left_out_of_dags_test_and_when_turned_off(monkeypatch):
    monkeypatch.setattr("sys.argv", ["airflow", "scheduler"])
    deadline = alerts.stall_deadline(60, pool="session_stream_load")
    assert deadline.callback.kwargs == {"stall_minutes": 60, "pool": "session_stream_load"}
    assert alerts.stall_deadline(0) is None
    # apache/airflow#73428: `airflow dags test` exits 1 after a good run of a DAG with a deadline.
    monkeypatch.setattr("sys.argv", ["airflow", "dags", "test", "session_stream", "2026-11-01"])
    assert alerts.stall_deadline(60) is None


def test_the_run_alert_lists_the_files_of_earlier_windows_still_failing(base_url):
    failing = [
        {
            "file": OTHER,
            "failing_since": "2026-10-30T02:00:00+00:00",
            "attempts": 3,
            "error": "truncated",
        }
    ]
    ti = RunTI(
        {"fetch": "success", "load_0": "success", "check": "failed"},
        {("check", -1): {"error": "1 file(s) need a look", "problems": {BAD: "not loaded"}}},
        # The ledger's failing files include this run's own (BAD): listed once, above.
        checked={
            "still_failing": [*failing, {**failing[0], "file": BAD}],
            "still_failing_total": 26,
        },
    )
    alert = alerts.run_alert(alerts.run_report(ti, DAG))
    assert f"{BAD}: not loaded" in alert.text and alert.text.count(BAD) == 1
    assert "Files of earlier windows still failing (25):" in alert.text
    assert (
        f"{OTHER}: failing since 2026-10-30T02:00:00+00:00, 3 attempt(s): truncated" in alert.text
    )
    assert "and 24 more" in alert.text


def manual_context(task_id, exception, params=None):
    context = task_context(task_id, exception)
    context["dag_run"] = SimpleNamespace(run_type="manual")
    context["params"] = params or {}
    return context


def test_manual_runs_and_dags_test_alert_only_when_asked_to(monkeypatch):
    notifier = alerts.SessionStreamNotifier()
    report = two_loads_failed()
    monkeypatch.delenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_MANUAL_RUNS", raising=False)
    assert notifier.alert_for(manual_context("finish", alerts.RunFailed(report))) is None
    asked = manual_context("finish", alerts.RunFailed(report), params={"alert": True})
    assert notifier.alert_for(asked) == alerts.run_alert(report)
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_MANUAL_RUNS", "true")
    assert notifier.alert_for(manual_context("finish", alerts.RunFailed(report))) is not None
    # A stalled manual run: the same rule, from the run's conf.
    monkeypatch.delenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_MANUAL_RUNS")
    stalled = deadline_context("running")
    stalled["dag_run"]["run_type"] = "manual"
    assert notifier.alert_for(stalled) is None


@pytest.mark.parametrize(
    ("running", "why"),
    [
        (0, "the pool does not exist or has no slots"),
        (2, "which is full: 2 load(s) of session_stream, session_stream_daily run now"),
    ],
)
def test_the_stall_alert_names_the_stuck_task_its_state_and_why(
    monkeypatch, base_url, running, why
):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = {RUN: {"fetch": "success", "load_0": "scheduled", "check": None, "finish": None}}
    monkeypatch.setattr(
        RuntimeTaskInstance, "get_task_states", staticmethod(lambda dag_id, run_ids: states)
    )
    counts = {"session_stream": running, "session_stream_daily": 0}
    monkeypatch.setattr(
        RuntimeTaskInstance,
        "get_ti_count",
        staticmethod(lambda dag_id, task_ids, states: counts[dag_id]),
    )
    notifier = alerts.SessionStreamNotifier(
        stall_minutes=60,
        pool="session_stream_load",
        pool_tasks={"session_stream": ["load"], "session_stream_daily": ["load"]},
    )
    alert = notifier.alert_for(deadline_context("running"))
    assert alert.subject.endswith("has not finished after 60 min: load[0] scheduled")
    assert (
        "  - load[0] (scheduled): waiting for a slot of the pool session_stream_load" in alert.text
    )
    assert why in alert.text
    assert "  - check (no state): not started" in alert.text
    assert "fetch" not in alert.text.split("Unfinished tasks")[1]


def test_every_mail_has_a_text_part_and_an_html_part(monkeypatch, smtp_sink):
    set_env(monkeypatch, smtp_sink.conn_env())
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", "data@example.test")
    monkeypatch.delenv("AIRFLOW_CONN_SESSION_STREAM_SLACK", raising=False)
    assert alerts.SessionStreamNotifier().send(an_alert()) == ["smtp_default"]
    [msg] = smtp_sink.messages
    assert msg.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content().strip() == an_alert().text.strip()
