"""The DAG's task functions (session_stream.runs.dag_tasks) without Airflow: a local drop, a local staging
area and the real MariaDB."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import warehouse

from session_stream import tables
from session_stream.drop.names import parse_name
from session_stream.drop.opener import open_drop
from session_stream.drop.sample import truncate_file, write_drop
from session_stream.errors import ConfigError
from session_stream.runs import dag_tasks
from session_stream.runs.staging import open_staging
from session_stream.warehouse import db, migrations
from session_stream.warehouse.load import Loader

DAY = date(2026, 11, 1)
HOUR0 = dag_tasks.Window(datetime(2026, 11, 1, 0, tzinfo=UTC), datetime(2026, 11, 1, 1, tzinfo=UTC))


# ---------------------------------------------------------------- window


def test_params_start_and_end_override_the_data_interval():
    w = dag_tasks.resolve_window(
        {"start": "2026-10-01", "end": "2026-10-02T06:00:00Z"},
        datetime(2026, 11, 1, 0, tzinfo=UTC),
        datetime(2026, 11, 1, 1, tzinfo=UTC),
        None,
    )
    assert w == dag_tasks.Window(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, 6, tzinfo=UTC)
    )


def test_a_time_with_an_offset_is_converted_to_utc():
    w = dag_tasks.resolve_window(
        {"start": "2026-11-01T02:00:00+02:00", "end": "2026-11-01T03:00:00+02:00"}
    )
    assert w.start == datetime(2026, 11, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"start": "2026-11-01"}, "both params 'start' and 'end'"),
        ({"start": "2026-11-02", "end": "2026-11-01"}, "must be after"),
        ({"start": "yesterday", "end": "2026-11-01"}, "ISO-8601"),
    ],
)
def test_bad_start_or_end_is_a_config_error_saying_what_to_give(params, message):
    with pytest.raises(ConfigError, match=message):
        dag_tasks.resolve_window(params)


def test_the_data_interval_is_the_window():
    w = dag_tasks.resolve_window(
        {}, datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC), None
    )
    assert w == dag_tasks.Window(
        datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)
    )


def test_an_empty_interval_takes_the_complete_hour_before_the_logical_date():
    at = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    w = dag_tasks.resolve_window({}, at, at, at)
    assert w == dag_tasks.Window(
        datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 5, tzinfo=UTC)
    )


def test_a_manual_run_without_logical_date_takes_the_last_complete_hour():
    now = datetime(2026, 11, 1, 5, 42, 10, tzinfo=UTC)
    w = dag_tasks.resolve_window({"start": None, "end": ""}, None, None, None, now=now)
    assert w == dag_tasks.Window(
        datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 5, tzinfo=UTC)
    )


def test_staging_prefix_is_one_safe_segment_under_runs_and_distinct_per_run_id():
    prefix = dag_tasks.staging_prefix("scheduled__2026-11-01T01:00:00+00:00")
    assert prefix.startswith("runs/scheduled__2026-11-01T01_00_00_00_00-")
    # Run ids the readable part maps alike still get their own prefix.
    assert dag_tasks.staging_prefix("scheduled__2026-11-01T01_00_00_00_00") != prefix
    assert dag_tasks.checked_prefix(prefix) == prefix


# ---------------------------------------------------------------- batches


def test_a_day_of_files_becomes_a_few_batches():
    files = [{"name": f"f{i}"} for i in range(96 * 3)]  # a day, three files per window
    batches = dag_tasks.plan_batches(files, 16)
    assert len(batches) == 18
    assert [f for b in batches for f in b] == files


def test_batches_grow_so_a_long_backfill_stays_under_the_map_limit():
    files = [{"name": f"f{i}"} for i in range(96 * 3 * 100)]
    batches = dag_tasks.plan_batches(files, 16)
    assert len(batches) <= dag_tasks.MAX_MAP_ITEMS
    assert sum(len(b) for b in batches) == len(files)
    assert dag_tasks.plan_batches([], 16) == []


# ---------------------------------------------------------------- tasks, end to end


@pytest.fixture
def env(tmp_path, fresh_db_url):
    """A drop of hour 0 (one file per window), a local staging area and a loader on a fresh database."""
    paths = write_drop(tmp_path / "drop", DAY, sessions=200, files=4, hours=1, seed=3, bad_lines=2)
    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    conn.close()
    loader = Loader(lambda: db.connect(fresh_db_url))
    drop = open_drop(str(tmp_path / "drop"))
    staging = open_staging(str(tmp_path / "staging"))
    yield type(
        "Env",
        (),
        dict(
            paths=paths, loader=loader, drop=drop, staging=staging, url=fresh_db_url, tmp=tmp_path
        ),
    )
    loader.close()
    drop.close()


def P(run_id: str) -> str:
    return dag_tasks.staging_prefix(run_id)


RUN1 = P("run1")


def run(env, prefix=RUN1, now=None, **kwargs):
    """fetch → split_and_load for every batch, as the DAG chains them (split here, without worker
    processes: test_split_and_load_in_one_task... runs them); returns (fetched, errors)."""
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        HOUR0,
        dag_tasks.FetchSettings(prefix=prefix, settle_seconds=0, **kwargs),
        now=now,
    )
    errors = []
    for batch in fetched["batches"]:
        try:
            dag_tasks.split_and_load(batch, env.staging, env.loader, workers=0)
        except dag_tasks.FilesFailedError as exc:
            errors.append(exc)
    return fetched, errors


def staged_files(env) -> list[Path]:
    return [p for p in (env.tmp / "staging").rglob("*") if p.is_file()]


def ledger(url) -> dict[str, tuple]:
    return {
        n: (s, a)
        for n, s, a in warehouse.query(
            url, f"SELECT file_name, status, attempts FROM `{tables.LEDGER_TABLE}`"
        )
    }


def test_a_run_loads_every_file_of_its_window_and_cleans_the_staging_area(env):
    fetched, errors = run(env, batch_size=3)
    assert errors == []
    assert fetched["fetched"] == [p.name for p in env.paths]
    assert [len(b["files"]) for b in fetched["batches"]] == [3, 1]
    assert ledger(env.url) == {p.name: ("loaded", 1) for p in env.paths}
    summary = dag_tasks.check(fetched, env.loader, max_rejects=10, staging=env.staging)
    assert summary["loaded"] == 4 and summary["rejects"] == 2
    assert staged_files(env) == []
    # XCom carries names and counts only: nothing but str, int, None, lists and dicts of them.
    assert all(isinstance(f["size"], int) for b in fetched["batches"] for f in b["files"])


def test_check_shows_the_keys_the_files_carried_that_the_spec_does_not_know(env, caplog):
    fetched, errors = run(env)
    assert errors == []
    with caplog.at_level("WARNING", logger="session_stream.runs.dag_tasks"):
        summary = dag_tasks.check(fetched, env.loader, max_rejects=10)
    # The sample's quirky sessions carry keys Monetate might add one day, top level and nested.
    unknown = summary[tables.UNKNOWN_KEYS_COLUMN]
    assert {"session.x_debug", "session.schema_version", "cart_lines[].color_name"} <= set(unknown)
    assert unknown["session.x_debug"] == 11  # sessions, over the run's 4 files
    assert "keys the spec does not know (not stored): " in caplog.text
    assert "session.x_debug: 11 sessions in 4 files" in caplog.text
    assert summary[tables.MISSING_KEYS_COLUMN] == {}, "the sample sends every expected key"


def test_a_second_run_fetches_nothing(env):
    run(env)
    fetched, errors = run(env, prefix=P("run2"))
    assert (fetched["listed"], fetched["already_loaded"], fetched["fetched"], errors) == (
        4,
        4,
        [],
        [],
    )
    assert dag_tasks.check(fetched, env.loader)["loaded"] == 0


def test_a_file_still_being_written_waits_for_the_next_run(env):
    young = env.paths[2]
    now = time.time()
    os.utime(young, (now, now))
    for p in env.paths:
        if p != young:
            os.utime(p, (now - 3600, now - 3600))
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        HOUR0,
        # A scheduled run: the next run's look-back lists the file.
        dag_tasks.FetchSettings(prefix=P("r"), settle_seconds=600, leave_for_next_run=True),
    )
    assert fetched["waiting"] == [young.name] and fetched["left_behind"] == []
    assert young.name not in fetched["fetched"] and len(fetched["fetched"]) == 3


def test_a_backfill_of_files_written_a_moment_ago_waits_for_them_and_loads_them_all(env, caplog):
    """The drop copied in just now, then backfilled: no later run lists a past window, so the
    run waits until each file holds still (seconds, not settle_seconds) and loads them all."""
    now = time.time()
    for p in env.paths:
        os.utime(p, (now, now))
    caplog.set_level("INFO")
    began = time.monotonic()
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        HOUR0,
        dag_tasks.FetchSettings(prefix=P("bf"), settle_seconds=600),
    )
    assert time.monotonic() - began < 60
    assert (fetched["waiting"], fetched["left_behind"]) == ([], [])
    assert fetched["fetched"] == [p.name for p in env.paths]
    assert "waiting for 4 file(s) of a window no later run lists to hold still" in caplog.text

    # Copied a minute ago: their mtimes show they have held still; no wait at all.
    for p in env.paths:
        os.utime(p, (now - 60, now - 60))
    began = time.monotonic()
    again = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        HOUR0,
        dag_tasks.FetchSettings(prefix=P("bf2"), settle_seconds=600, force=True),
    )
    assert time.monotonic() - began < 4
    assert again["fetched"] == [p.name for p in env.paths] and again["left_behind"] == []


def test_a_scheduled_run_waits_for_a_young_file_the_next_run_would_not_list(env):
    """A late file of the oldest look-back hour: the next run's look-back starts after it."""
    late = env.paths[0]
    now = time.time()
    for p in env.paths:
        os.utime(p, (now, now) if p == late else (now - 3600, now - 3600))
    three_hours_later = dag_tasks.Window(
        HOUR0.start + timedelta(hours=3), HOUR0.end + timedelta(hours=3)
    )
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        three_hours_later,
        dag_tasks.FetchSettings(prefix=P("s"), settle_seconds=600, leave_for_next_run=True),
    )
    assert fetched["waiting"] == [] and late.name in fetched["fetched"]


def test_a_file_still_changing_after_the_wait_is_left_behind_and_fails_the_check(env):
    import threading

    busy = env.paths[1]
    stop = threading.Event()

    def keep_writing():
        while not stop.wait(0.5):
            with open(busy, "ab") as f:
                f.write(b"x")

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        fetched = dag_tasks.fetch(
            env.drop,
            env.loader,
            env.staging,
            HOUR0,
            dag_tasks.FetchSettings(prefix=P("lb"), settle_seconds=6),
        )
    finally:
        stop.set()
        writer.join()
    assert fetched["left_behind"] == [busy.name] and busy.name not in fetched["fetched"]
    for batch in fetched["batches"]:
        dag_tasks.split_and_load(batch, env.staging, env.loader, workers=0)
    with pytest.raises(dag_tasks.FilesFailedError) as failed:
        dag_tasks.check(fetched, env.loader)
    assert failed.value.files == [busy.name]
    assert "no later run lists its window" in failed.value.problems[busy.name]


def test_overlapping_runs_each_count_only_the_files_they_loaded(env):
    """Two runs fetch the same files; the first loads them, the second finds them loaded."""
    runs = {}
    for run_id in ("backfill__a", "backfill__b"):
        runs[run_id] = dag_tasks.fetch(
            env.drop,
            env.loader,
            env.staging,
            HOUR0,
            dag_tasks.FetchSettings(
                prefix=P(run_id), settle_seconds=0, run_key=dag_tasks.run_key(run_id)
            ),
        )
    for run_id, fetched in runs.items():
        loader = Loader(lambda: db.connect(env.url), token_prefix=dag_tasks.run_key(run_id))
        for batch in fetched["batches"]:
            dag_tasks.split_and_load(batch, env.staging, loader, workers=0)
        loader.close()
    first = dag_tasks.check(runs["backfill__a"], env.loader)
    second = dag_tasks.check(runs["backfill__b"], env.loader)
    assert (first["loaded"], first["loaded_elsewhere"]) == (4, 0)
    assert (second["loaded"], second["loaded_elsewhere"]) == (0, 4)
    assert first["sessions_written"] > 0 and second["sessions_written"] == 0
    assert first["session_versions_read"] >= first["sessions_written"]
    # Stored: the warehouse's distinct sessions, fewer than written (re-emitted sessions).
    [(stored,)] = warehouse.query(env.url, f"SELECT COUNT(*) FROM `{tables.SESSIONS.name}`")
    assert first["sessions_stored"] == second["sessions_stored"] == stored
    assert stored < first["sessions_written"]


def test_a_bad_file_fails_alone_is_marked_failed_and_the_next_run_retries_it(env):
    bad = env.paths[1]
    truncate_file(bad)
    fetched, errors = run(env)
    assert len(errors) == 1 and errors[0].files == [bad.name]
    assert str(errors[0]).count(bad.name) == 1  # named once, though the split's error names it too
    assert "cannot be read to its end" in errors[0].problems[bad.name]
    assert ledger(env.url) == {p.name: ("failed" if p == bad else "loaded", 1) for p in env.paths}
    assert staged_files(env) == []
    with pytest.raises(dag_tasks.FilesFailedError) as failed:
        dag_tasks.check(fetched, env.loader)
    assert failed.value.files == [bad.name]
    assert str(failed.value).count(bad.name) == 1

    again, errors = run(env, prefix=P("run2"))
    assert again["fetched"] == [bad.name]
    assert ledger(env.url)[bad.name] == ("failed", 2)


def test_a_zero_byte_file_fails_and_the_next_run_retries_it(env):
    """Issue 10, finding 9, through the DAG's tasks: an upload cut at its start."""
    cut = env.paths[2]
    whole = cut.read_bytes()
    cut.write_bytes(b"")
    fetched, errors = run(env)
    assert len(errors) == 1 and errors[0].files == [cut.name]
    assert errors[0].problems[cut.name] == (
        "is empty (0 bytes), not a gzip file: an upload cut at its start? Nothing was staged from it"
    )
    assert ledger(env.url)[cut.name] == ("failed", 1)
    with pytest.raises(dag_tasks.FilesFailedError) as failed:
        dag_tasks.check(fetched, env.loader)
    assert failed.value.files == [cut.name]

    again, _ = run(env, prefix=P("run2"))
    assert again["fetched"] == [cut.name] and ledger(env.url)[cut.name] == ("failed", 2)
    cut.write_bytes(whole)  # the upload completes
    last, errors = run(env, prefix=P("run3"))
    assert errors == [] and last["fetched"] == [cut.name]
    assert ledger(env.url)[cut.name] == ("loaded", 3)


def test_a_retried_load_skips_what_the_first_try_loaded(env):
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        HOUR0,
        dag_tasks.FetchSettings(prefix=P("r"), settle_seconds=0),
    )
    batch = fetched["batches"][0]
    first = dag_tasks.split_and_load(batch, env.staging, env.loader, workers=0)
    # The same batch again, as a retried task sees it: its staged files are gone by now.
    retry = dag_tasks.split_and_load(batch, env.staging, env.loader, workers=0)
    assert len(first["loaded"]) == 4
    assert retry["loaded"] == [] and sorted(retry["skipped"]) == sorted(first["loaded"])


def test_check_names_files_with_more_rejects_than_allowed(env):
    fetched, _ = run(env)
    with pytest.raises(dag_tasks.FilesFailedError, match="max_rejects=0") as failed:
        dag_tasks.check(fetched, env.loader, max_rejects=0)
    with_rejects = {
        n
        for (n,) in warehouse.query(
            env.url, f"SELECT DISTINCT file_name FROM `{tables.REJECTS_TABLE}`"
        )
    }
    assert set(failed.value.files) == with_rejects and with_rejects
    # The ledger has them loaded: the error must not say they were marked failed or will be retried.
    text = str(failed.value)
    assert "marked failed" not in text and "retr" not in text
    assert all(p.startswith("loaded, but with") for p in failed.value.problems.values())
    assert all(text.count(name) == 1 for name in with_rejects)
    assert ledger(env.url) == {p.name: ("loaded", 1) for p in env.paths}


def test_a_scheduled_run_fails_when_the_drop_has_been_silent_for_too_long(env):
    run(env)  # hour 0 is in the drop and loaded
    six_hours_later = dag_tasks.Window(
        HOUR0.start + timedelta(hours=6), HOUR0.end + timedelta(hours=6)
    )
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        six_hours_later,
        dag_tasks.FetchSettings(prefix="r6", silence_hours=6),
    )
    # [01:00, 07:00) holds no file; the listing (look-back 3 h) covered only [03:00, 07:00).
    assert fetched["silent"] and "no new file in the drop for 6 hours" in fetched["silent"]
    assert str(env.drop.url) in fetched["silent"]
    with pytest.raises(dag_tasks.DropSilentError, match="check that Monetate still delivers"):
        dag_tasks.check(fetched, env.loader)

    # Hour 0 is within 7 hours of 07:00: not silent. Nor is a run that does not ask.
    for kwargs in ({"silence_hours": 7}, {}):
        fetched = dag_tasks.fetch(
            env.drop,
            env.loader,
            env.staging,
            six_hours_later,
            dag_tasks.FetchSettings(prefix="r7", **kwargs),
        )
        assert fetched["silent"] is None
        assert dag_tasks.check(fetched, env.loader)["loaded"] == 0


def test_a_silence_alerts_once_when_it_begins_and_says_when_it_ends(env):
    """Hour 0 delivered; the hourly runs after it: the silence reaches 6 hours in the run of
    [06:00, 07:00) (hour 0's files are then older than 6 h): that run fails; the next ones only
    log it; a run whose window has files again after 6 silent hours says it ended."""
    run(env)
    found = {}
    for h in range(1, 10):
        w = dag_tasks.Window(HOUR0.start + timedelta(hours=h), HOUR0.end + timedelta(hours=h))
        fetched = dag_tasks.fetch(
            env.drop,
            env.loader,
            env.staging,
            w,
            dag_tasks.FetchSettings(prefix=P(f"s{h}"), silence_hours=6),
        )
        found[h] = tuple(bool(fetched[k]) for k in ("silent", "silence_ongoing", "silence_ended"))
    assert [h for h, (began, _, _) in found.items() if began] == [6]
    assert [h for h, (_, ongoing, _) in found.items() if ongoing] == [7, 8, 9]
    # Files again in hour 10, after [04:00, 10:00) held none.
    write_drop(env.tmp / "drop", DAY, sessions=20, files=1, start_hour=10, hours=1, seed=9)
    w10 = dag_tasks.Window(HOUR0.start + timedelta(hours=10), HOUR0.end + timedelta(hours=10))
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        w10,
        dag_tasks.FetchSettings(prefix=P("s10"), silence_hours=6, settle_seconds=0),
    )
    assert fetched["silent"] is None and "delivers again" in fetched["silence_ended"]


def test_the_look_back_picks_up_a_late_file_of_an_earlier_hour(env):
    run(env)
    late = write_drop(env.tmp / "late", DAY, sessions=20, files=1, start_hour=0, hours=1, seed=99)[
        0
    ]
    target = env.tmp / "drop" / late.relative_to(env.tmp / "late")
    target.write_bytes(late.read_bytes())
    next_hour = dag_tasks.Window(HOUR0.end, HOUR0.end + timedelta(hours=1))
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        next_hour,
        dag_tasks.FetchSettings(prefix=P("r2"), settle_seconds=0, lookback_hours=3),
    )
    assert fetched["fetched"] == [target.name]
    assert parse_name(target.name)[0] < next_hour.start


# ---------------------------------------------------------------- the sweep of failed files


def run_window(env, window, prefix, now=None, **kwargs):
    """Like run(), for any window; returns (fetched, errors, load results)."""
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        window,
        dag_tasks.FetchSettings(prefix=P(prefix), settle_seconds=0, **kwargs),
        now=now,
    )
    errors, results = [], []
    for batch in fetched["batches"]:
        try:
            results.append(dag_tasks.split_and_load(batch, env.staging, env.loader, workers=0))
        except dag_tasks.FilesFailedError as exc:
            errors.append(exc)
    return fetched, errors, results


def later_hour(days: int, hour: int = 5) -> dag_tasks.Window:
    start = datetime(2026, 11, 1, hour, tzinfo=UTC) + timedelta(days=days)
    return dag_tasks.Window(start, start + timedelta(hours=1))


def failing_since(url, name):
    return warehouse.query(
        url,
        f"SELECT failed_since, attempts FROM `{tables.LEDGER_TABLE}` WHERE file_name = %s",
        (name,),
    )[0]


def test_a_backfilled_days_failed_file_is_retried_by_a_later_scheduled_run_and_ends_loaded(env):
    bad = env.paths[1]
    whole = bad.read_bytes()
    truncate_file(bad)  # cut short while the backfill ran
    _, errors, _ = run_window(env, HOUR0, "backfill")  # a backfill: no sweep
    assert [e.files for e in errors] == [[bad.name]]
    first_failure, _ = failing_since(env.url, bad.name)
    assert first_failure is not None
    bad.write_bytes(whole)  # the whole file is there now

    # Two days later, far outside the 3-hour look-back: a scheduled run an hour after the failure.
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    fetched, errors, _ = run_window(env, later_hour(2), "scheduled", sweep=True, now=in_an_hour)
    assert errors == []
    assert fetched["listed"] == 0 and fetched["retried"] == fetched["fetched"] == [bad.name]
    assert ledger(env.url) == {p.name: ("loaded", 2 if p == bad else 1) for p in env.paths}
    assert failing_since(env.url, bad.name)[0] is None  # not failing any more
    dag_tasks.check(fetched, env.loader)  # passes

    again, _, _ = run_window(env, later_hour(2, 6), "scheduled2", sweep=True, now=in_an_hour)
    assert again["retried"] == [] and again["fetched"] == []


def test_only_scheduled_runs_sweep():
    from airflow.utils.types import DagRunType

    assert dag_tasks.sweeps(DagRunType.SCHEDULED) and dag_tasks.sweeps("scheduled")
    for other in (DagRunType.MANUAL, DagRunType.BACKFILL_JOB, DagRunType.ASSET_TRIGGERED, None):
        assert not dag_tasks.sweeps(other)


def test_a_file_that_keeps_failing_is_retried_less_often_and_listed_but_not_alerted_again(
    env, caplog
):
    bad = env.paths[2]
    truncate_file(bad)
    run_window(env, HOUR0, "backfill")
    since, attempts = failing_since(env.url, bad.name)
    assert attempts == 1
    now = datetime.now(UTC)

    # Not yet due: its one attempt was a moment ago.
    fetched, _, _ = run_window(env, later_hour(1), "s1", sweep=True, now=now)
    assert fetched["retried"] == []
    # Due an hour later; failing again fails neither the load nor check, and check lists it.
    fetched, errors, results = run_window(
        env, later_hour(1, 6), "s2", sweep=True, now=now + timedelta(hours=1)
    )
    assert fetched["retried"] == [bad.name] and errors == []
    assert results[0]["still_failing"] == [bad.name]
    assert failing_since(env.url, bad.name) == (since, 2)  # still failing since the first time
    with caplog.at_level("WARNING", logger="session_stream.runs.dag_tasks"):
        dag_tasks.check(fetched, env.loader)
    listed = [r.getMessage() for r in caplog.records if "still failing" in r.getMessage()]
    assert len(listed) == 1
    assert (
        f"{bad.name} failing since {since.replace(tzinfo=UTC).isoformat()}" in listed[0]
        and "(2 attempt(s))" in listed[0]
    )
    assert "cannot be read to its end" in listed[0]
    # After two attempts (the second one just now, by the database's clock) it waits two hours.
    fetched, _, _ = run_window(
        env, later_hour(1, 7), "s3", sweep=True, now=now + timedelta(hours=1)
    )
    assert fetched["retried"] == []
    fetched, _, _ = run_window(
        env, later_hour(1, 8), "s4", sweep=True, now=now + timedelta(hours=2)
    )
    assert fetched["retried"] == [bad.name]


def test_the_sweep_is_bounded_newest_first_within_its_days(tmp_path, fresh_db_url):
    conn = db.connect(fresh_db_url)
    migrations.init_db(conn)
    conn.close()
    days = [date(2026, 11, d) for d in (1, 10, 20, 25)]
    paths = []
    for i, day in enumerate(days):
        paths += write_drop(tmp_path / "drop", day, sessions=40, files=2, hours=1, seed=20 + i)
    loader = Loader(lambda: db.connect(fresh_db_url))
    drop = open_drop(str(tmp_path / "drop"))
    try:
        for p in paths:  # every file failed once, in a backfill long ago
            loader.record_failure(p.name, p.stat().st_size, parse_name(p.name)[0], "boom")
        span = dag_tasks.Window(
            datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)
        )
        sweep = dict(
            drop=drop,
            loader=loader,
            skip={paths[-1].name},  # listed by the run itself
            now=datetime.now(UTC) + timedelta(hours=2),
        )
        found = dag_tasks.sweep_failed(span=span, max_files=3, **sweep)
        # Newest first: day 25's other file, then day 20's two; day 10 waits, day 1 is too old.
        assert [f.name for f in found] == [paths[6].name, paths[5].name, paths[4].name]
        found = dag_tasks.sweep_failed(span=span, max_files=100, **sweep)
        assert {f.name for f in found} == {p.name for p in paths[2:7]}
        assert dag_tasks.sweep_failed(span=span, max_files=0, **sweep) == []
    finally:
        loader.close()
        drop.close()


# ---------------------------------------------------------------- the run's quality report


def test_check_returns_the_runs_report_from_the_ledger_and_its_log_ends_with_the_table(env, caplog):
    bad = env.paths[3]
    truncate_file(bad)
    run_window(env, HOUR0, "backfill")  # 3 loaded, `bad` failed (and alerted)
    done = write_drop(env.tmp / "drop", DAY, sessions=30, files=1, start_hour=3, hours=1, seed=40)
    run_window(env, later_hour(0, 3), "hour3", lookback_hours=0)  # loaded before the run below
    # Hour 4 with a 2-hour look-back: its own file, a late file of hour 2, the one of hour 3
    # loaded already, and hour 0's failed file retried by the sweep (and failing again).
    own = write_drop(env.tmp / "drop", DAY, sessions=30, files=1, start_hour=4, hours=1, seed=41)
    late = write_drop(env.tmp / "late", DAY, sessions=20, files=1, start_hour=2, hours=1, seed=42)
    late_in_drop = env.tmp / "drop" / late[0].relative_to(env.tmp / "late")
    late_in_drop.write_bytes(late[0].read_bytes())
    fetched, errors, _ = run_window(
        env,
        later_hour(0, 4),
        "scheduled",
        lookback_hours=2,
        sweep=True,
        now=datetime.now(UTC) + timedelta(hours=1),
    )
    assert errors == [] and sorted(fetched["fetched"]) == sorted(
        [own[0].name, late_in_drop.name, bad.name]
    )
    assert done[0].name not in fetched["fetched"]
    with caplog.at_level("INFO", logger="session_stream.runs.dag_tasks"):
        report = dag_tasks.check(fetched, env.loader)

    row = warehouse.query(
        env.url,
        f"SELECT SUM(sessions + repeats), SUM(rejects), SUM(rows_offers) FROM `{tables.LEDGER_TABLE}`"
        " WHERE file_name IN (%s, %s)",
        (own[0].name, late_in_drop.name),
    )[0]
    assert (report["loaded"], report["failed"], report["skipped"]) == (2, 1, 1)
    assert report["listed"] == 3 and report["fetched"] == 3
    assert (report["session_versions_read"], report["rejects"]) == (row[0], row[1]) and row[0] > 0
    assert report["rows"]["session_offers"] == row[2]
    assert set(report["rows"]) == {t.name for t in tables.TABLES}
    assert report["late_files"] == [late_in_drop.name]
    assert report["retried"] == [bad.name] and report["failed_files"] == [bad.name]
    # The sample's quirky sessions carry keys the spec does not know; none lacks an expected key.
    assert report["unknown_keys"]["session.x_debug"] > 0 and report["missing_keys"] == {}
    [failing] = report["still_failing"]
    assert report["still_failing_total"] == 1
    assert (failing["file"], failing["attempts"]) == (bad.name, 2)
    assert failing["failing_since"].startswith(str(datetime.now(UTC).year))
    assert "cannot be read" in failing["error"]
    assert json.loads(json.dumps(report)) == report  # XCom- and Asset-extra-safe

    last = caplog.records[-1].getMessage()
    assert last.startswith("run report\n")
    assert re.search(r"loaded by this run\s+│\s+2 ", last)
    assert bad.name in last.split("files still failing (1")[1]


def test_the_report_sums_the_ledgers_unknown_and_missing_keys(env):
    fetched, _ = run(env)
    names = fetched["fetched"]
    conn = db.connect(env.url)
    cur = conn.cursor()
    # The ledger's counts by JSON path, per file, set by hand for exact sums.
    per_file = [
        ('{"session.new_field": 3, "cart_lines[].discount": 1}', '{"session.city": 1}'),
        ('{"session.new_field": 2}', None),
        (None, '{"session.city": 1, "session.region": 1}'),
        (None, None),
    ]
    for name, (unknown, missing) in zip(names, per_file, strict=True):
        cur.execute(
            f"UPDATE `{tables.LEDGER_TABLE}` SET unknown_keys = %s, missing_keys = %s"
            " WHERE file_name = %s",
            (unknown, missing, name),
        )
    conn.close()
    from session_stream.runs.report import format_report, run_report

    report = run_report(fetched, env.loader)
    assert report["unknown_keys"] == {"session.new_field": 5, "cart_lines[].discount": 1}
    assert report["missing_keys"] == {"session.city": 2, "session.region": 1}
    assert "session.new_field 5, cart_lines[].discount 1" in format_report(report)


def test_split_and_load_in_one_task_loads_a_batch_and_a_bad_file_fails_alone(env):
    """The DAGs' load: split in worker processes while MySQL loads, one task per batch."""
    truncate_file(env.paths[1])
    fetched = dag_tasks.fetch(
        env.drop,
        env.loader,
        env.staging,
        HOUR0,
        dag_tasks.FetchSettings(prefix=P("sl"), settle_seconds=0, batch_size=96),
    )
    [batch] = fetched["batches"]
    with pytest.raises(dag_tasks.FilesFailedError) as failed:
        dag_tasks.split_and_load(batch, env.staging, env.loader, workers=2)
    assert failed.value.files == [env.paths[1].name]
    statuses = {n: s for n, (s, _) in ledger(env.url).items()}
    assert statuses == {p.name: ("failed" if p == env.paths[1] else "loaded") for p in env.paths}
    assert staged_files(env) == []
    # A retry of the task skips what the first try loaded (its staged copies are gone).
    again = dag_tasks.split_and_load(
        {**batch, "files": [f for f in batch["files"] if f["name"] != env.paths[1].name]},
        env.staging,
        env.loader,
    )
    assert sorted(again["skipped"]) == sorted(p.name for p in env.paths if p != env.paths[1])
