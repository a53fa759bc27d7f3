"""The DAG's task functions (session_stream.dag_tasks) without Airflow: a local drop, a local staging
area and the real MariaDB."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import warehouse

from session_stream import dag_tasks, db, schema, tables
from session_stream.drop import open_drop
from session_stream.errors import ConfigError
from session_stream.load import Loader
from session_stream.names import parse_name
from session_stream.sample import truncate_file, write_drop
from session_stream.staging import open_staging

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


def test_staging_prefix_is_safe_as_a_key():
    assert (
        dag_tasks.staging_prefix("scheduled__2026-11-01T01:00:00+00:00")
        == "scheduled__2026-11-01T01_00_00_00_00"
    )


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
    schema.init_db(conn)
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


def run(env, prefix="run1", **kwargs):
    """fetch → split → load for every batch → check, as the DAG chains them; returns (fetched, errors)."""
    fetched = dag_tasks.fetch(
        env.drop, env.loader, env.staging, HOUR0, prefix=prefix, settle_seconds=0, **kwargs
    )
    errors = []
    for batch in fetched["batches"]:
        try:
            dag_tasks.load_batch(dag_tasks.split_batch(batch, env.staging), env.staging, env.loader)
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
    with caplog.at_level("WARNING", logger="session_stream.dag_tasks"):
        summary = dag_tasks.check(fetched, env.loader, max_rejects=10)
    # The sample's quirky sessions carry keys Monetate might add one day, top level and nested.
    unknown = summary[tables.UNKNOWN_KEYS_COLUMN]
    assert {"session.x_debug", "session.schema_version", "cart_lines[].color_name"} <= set(unknown)
    assert unknown["session.x_debug"]["files"] == 4
    assert "keys the spec does not know (not stored): " in caplog.text
    assert "session.x_debug: 11 sessions in 4 files" in caplog.text
    assert summary[tables.MISSING_KEYS_COLUMN] == {}, "the sample sends every expected key"


def test_a_second_run_fetches_nothing(env):
    run(env)
    fetched, errors = run(env, prefix="run2")
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
        env.drop, env.loader, env.staging, HOUR0, prefix="r", settle_seconds=600
    )
    assert fetched["waiting"] == [young.name]
    assert young.name not in fetched["fetched"] and len(fetched["fetched"]) == 3


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

    again, errors = run(env, prefix="run2")
    assert again["fetched"] == [bad.name]
    assert ledger(env.url)[bad.name] == ("failed", 2)


def test_a_retried_load_skips_what_the_first_try_loaded(env):
    fetched = dag_tasks.fetch(
        env.drop, env.loader, env.staging, HOUR0, prefix="r", settle_seconds=0
    )
    split = dag_tasks.split_batch(fetched["batches"][0], env.staging)
    first = dag_tasks.load_batch(split, env.staging, env.loader)
    retry = dag_tasks.load_batch(split, env.staging, env.loader)  # staged files are gone by now
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
        env.drop, env.loader, env.staging, six_hours_later, prefix="r6", silence_hours=6
    )
    # [01:00, 07:00) holds no file; the listing (look-back 3 h) covered only [03:00, 07:00).
    assert fetched["silent"] and "no new file in the drop for 6 hours" in fetched["silent"]
    assert str(env.drop.url) in fetched["silent"]
    with pytest.raises(dag_tasks.DropSilentError, match="check that Monetate still delivers"):
        dag_tasks.check(fetched, env.loader)

    # Hour 0 is within 7 hours of 07:00: not silent. Nor is a run that does not ask.
    for kwargs in ({"silence_hours": 7}, {}):
        fetched = dag_tasks.fetch(
            env.drop, env.loader, env.staging, six_hours_later, prefix="r7", **kwargs
        )
        assert fetched["silent"] is None
        assert dag_tasks.check(fetched, env.loader)["loaded"] == 0


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
        prefix="r2",
        settle_seconds=0,
        lookback_hours=3,
    )
    assert fetched["fetched"] == [target.name]
    assert parse_name(target.name)[0] < next_hour.start
