"""The failure notifier: what the message says, and which channels it uses."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import session_stream_alerts as alerts
from airflow_harness import conn_env

from session_stream.dag_tasks import FilesFailedError

BAD = "20261101T001500.000Z_PT15M-1793493000205.json.gz"
OTHER = "20261101T003000.000Z_PT15M-1793493900742.json.gz"


def context(exception, **ti_fields):
    ti = SimpleNamespace(
        dag_id="session_stream",
        run_id="scheduled__2026-11-01T01:00:00+00:00",
        task_id="load",
        map_index=2,
        try_number=1,
        log_url="http://airflow.example/dags/session_stream/runs/r/tasks/load/mapped/2?try_number=1",
    )
    for k, v in ti_fields.items():
        setattr(ti, k, v)
    return {
        "ti": ti,
        "run_id": ti.run_id,
        "logical_date": datetime(2026, 11, 1, 1, tzinfo=UTC),
        "exception": exception,
    }


def test_report_names_dag_run_task_files_and_log_url():
    exc = FilesFailedError(f"2 file(s) failed: {BAD}: truncated; {OTHER}: truncated", [BAD, OTHER])
    report = alerts.build_report(context(exc))
    text = alerts.format_text(report)
    assert report.files == [BAD, OTHER]
    for needle in (
        "session_stream",
        "scheduled__2026-11-01T01:00:00+00:00",
        "load[2]",
        BAD,
        OTHER,
        "truncated",
    ):
        assert needle in text
    assert (
        "http://airflow.example/dags/session_stream/runs/r/tasks/load/mapped/2?try_number=1" in text
    )
    assert "2 file(s) failed" in report.subject and "load[2]" in report.subject


def test_files_come_from_the_cause_when_airflow_wraps_the_error():
    try:
        try:
            raise FilesFailedError("1 file failed", [BAD])
        except FilesFailedError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert alerts.failed_files(outer) == [BAD]


def test_files_are_found_in_the_message_text_when_the_error_has_no_list():
    exc = RuntimeError(f"could not load {BAD} and {OTHER}; {BAD} again")
    assert alerts.failed_files(exc) == [BAD, OTHER]
    assert alerts.failed_files(RuntimeError("MySQL server has gone away")) == []


def test_html_body_escapes_the_error_text():
    report = alerts.build_report(context(RuntimeError("<script>x</script>")))
    assert "<script>" not in alerts.format_html(report)


def logged(caplog, capsys) -> str:
    # Until Airflow configures logging (on first use), records reach caplog; after, stdout.
    return caplog.text + capsys.readouterr().out


def test_without_any_alert_connection_a_warning_says_what_to_configure(monkeypatch, caplog, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SESSION_STREAM_SLACK", raising=False)
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        alerts.notify_failure(context(FilesFailedError("x", [BAD])))
    text = logged(caplog, capsys)
    assert "no failure alert was sent" in text
    assert "smtp_default" in text and "session_stream_slack" in text and BAD in text


def test_email_goes_through_smtp_default_to_the_alert_recipients(monkeypatch, smtp_sink):
    for name, value in conn_env("smtp_default", **_smtp_fields(smtp_sink)).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", "data@example.test, oncall@example.test"
    )
    alerts.notify_failure(context(FilesFailedError(f"{BAD}: truncated", [BAD])))
    assert len(smtp_sink.messages) == 1
    msg = smtp_sink.messages[0]
    assert msg["To"] == "data@example.test, oncall@example.test"
    assert "session_stream" in msg["Subject"] and "1 file(s) failed" in msg["Subject"]
    assert BAD in msg.get_body(("html",)).get_content()


def test_smtp_without_recipients_warns_instead_of_sending(monkeypatch, smtp_sink, caplog, capsys):
    for name, value in conn_env("smtp_default", **_smtp_fields(smtp_sink)).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", raising=False)
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        alerts.notify_failure(context(RuntimeError("boom")))
    assert smtp_sink.messages == []
    assert "nobody to e-mail" in logged(caplog, capsys)


def test_an_unreachable_mail_server_is_logged_not_raised(monkeypatch, caplog, capsys):
    from servers import free_port

    fields = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": free_port(),
        "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 2},
    }
    for name, value in conn_env("smtp_default", **fields).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_VAR_SESSION_STREAM_ALERT_TO", "data@example.test")
    with caplog.at_level(logging.WARNING, logger=alerts.__name__):
        alerts.notify_failure(context(RuntimeError("boom")))  # must not raise
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
    for name, value in conn_env("session_stream_slack", **fields).items():
        monkeypatch.setenv(name, value)
    alerts.notify_failure(context(FilesFailedError(f"{BAD}: truncated", [BAD])))
    assert len(slack_sink.received) == 1
    assert BAD in slack_sink.received[0]["text"] and "load[2]" in slack_sink.received[0]["text"]


def _smtp_fields(sink) -> dict:
    return {
        "conn_type": "smtp",
        "host": sink.host,
        "port": sink.port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.test"},
    }


def test_a_failure_without_files_does_not_claim_files_were_marked_failed():
    report = alerts.build_report(context(RuntimeError("cannot reach MySQL at 127.0.0.1:3306")))
    text = alerts.format_text(report)
    assert report.files == [] and "Failed files" not in text
    assert "task failed" in report.subject
