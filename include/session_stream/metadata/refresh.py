"""Refresh a lookup table from the Monetate Metadata API, atomically.

A refresh fills `<table>__new` and swaps it in with one RENAME TABLE, so readers see the old
rows or the new ones, never an empty or half-filled table; a failed refresh drops `__new` and
leaves the previous contents (docs/warehouse.md, "Metadata lookups and BI").
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import MySQLdb

from session_stream.errors import ConfigError
from session_stream.metadata.client import KINDS, ClientSettings, MetadataApiError, MetadataClient
from session_stream.metadata.lookups import (
    BY_KIND,
    REFRESHES_TABLE,
    BadMetadataError,
    Lookup,
    lookup_ddl,
    row_values,
)
from session_stream.sql import quote
from session_stream.utc import to_utc

log = logging.getLogger(__name__)

NEW_SUFFIX, OLD_SUFFIX = "__new", "__old"
LOCK_SECONDS = 300
ER_NO_SUCH_TABLE = 1146

# Throttling of the refresh that new session data triggers (refresh_due).
THROTTLED_RUN_TYPES = {"asset_triggered"}
DEFAULT_MIN_INTERVAL_HOURS = 6.0
MIN_INTERVAL_VARIABLE = "monetate_metadata_min_interval_hours"  # read by the DAG


def refresh_lookup(conn, client: MetadataClient, kind: str) -> int:
    """Replace one lookup table with what the API holds now; returns its row count.

    On any failure (API error mid-paging, data that does not fit) the live table is untouched
    and the error is raised.
    """
    if kind not in BY_KIND:
        raise ConfigError(f"unknown metadata kind {kind!r}: choose from {', '.join(KINDS)}")
    lookup = BY_KIND[kind]
    live, new, old = lookup.table, lookup.table + NEW_SUFFIX, lookup.table + OLD_SUFFIX
    cur = conn.cursor()
    # Two refreshes at once (CLI while the DAG runs) would share `__new`: one at a time per table.
    lock = f"session_stream_lookup_{live}"
    cur.execute("SELECT GET_LOCK(%s, %s)", (lock, LOCK_SECONDS))
    if cur.fetchone()[0] != 1:
        raise MetadataApiError(
            f"another refresh of {live} held its lock for {LOCK_SECONDS}s; try again later"
        )
    try:
        cur.execute(f"DROP TABLE IF EXISTS {quote(new)}")  # a crashed run's leftovers
        cur.execute(lookup_ddl(lookup, new, if_not_exists=False))
        try:
            rows = _fill(conn, cur, client, lookup, new)
        except BaseException:
            _drop_quietly(conn, new)
            raise
        # The live table exists unless migration 2 never ran; then the swap creates it.
        cur.execute(f"CREATE TABLE IF NOT EXISTS {quote(live)} LIKE {quote(new)}")
        cur.execute(f"DROP TABLE IF EXISTS {quote(old)}")
        # One statement, atomic: readers see the old table or the new one, never neither.
        cur.execute(f"RENAME TABLE {quote(live)} TO {quote(old)}, {quote(new)} TO {quote(live)}")
        cur.execute(f"DROP TABLE {quote(old)}")
        _record_refresh(conn, lookup, rows)
    finally:
        cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        cur.close()
    log.info("refreshed %s: %d rows", live, rows)
    return rows


def _record_refresh(conn, lookup: Lookup, rows: int) -> None:
    cur = conn.cursor()
    try:
        # The new values as parameters again, not VALUES(): MySQL 8.0.20 deprecated VALUES() in
        # ON DUPLICATE KEY UPDATE, and its replacement (a row alias) is MySQL's alone.
        cur.execute(
            f"INSERT INTO {quote(REFRESHES_TABLE)} (kind, lookup_table, refreshed_at, row_count)"
            " VALUES (%s, %s, UTC_TIMESTAMP(3), %s) ON DUPLICATE KEY UPDATE"
            " lookup_table = %s, refreshed_at = UTC_TIMESTAMP(3), row_count = %s",
            (lookup.kind, lookup.table, rows, lookup.table, rows),
        )
        conn.commit()
    except MySQLdb.ProgrammingError as exc:
        if exc.args[0] != ER_NO_SUCH_TABLE:
            raise
        # A warehouse whose init-db predates migration 4: the refresh stands, untimed.
        log.info("%s is missing (run `session-stream init-db`); refresh time not kept", exc)
    finally:
        cur.close()


def last_refreshes(conn, kinds=KINDS) -> tuple[dict[str, datetime | None], datetime]:
    """When each kind was last refreshed (None: never, as far as the warehouse knows), and the
    database's clock now, both naive UTC."""
    cur = conn.cursor()
    cur.execute("SELECT UTC_TIMESTAMP(3)")
    (now,) = cur.fetchone()
    found: dict[str, datetime] = {}
    try:
        cur.execute(f"SELECT kind, refreshed_at FROM {quote(REFRESHES_TABLE)}")
        found = dict(cur.fetchall())
    except MySQLdb.ProgrammingError as exc:
        if exc.args[0] != ER_NO_SUCH_TABLE:
            raise
    finally:
        cur.close()
    return {kind: found.get(kind) for kind in kinds}, now


def refresh_due(
    conn,
    run_type,
    *,
    min_interval_hours: float = DEFAULT_MIN_INTERVAL_HOURS,
    kinds=KINDS,
    now: datetime | None = None,
) -> tuple[bool, str]:
    """Whether a run of the metadata DAG refreshes, and why, in a sentence for its log.

    Runs triggered by new data (Asset events, up to one per load) refresh at most once per
    `min_interval_hours`, counted from the oldest kind's last refresh, to spare the API quota;
    scheduled and manual runs always refresh. `now` defaults to the database's clock.
    """
    run_type = str(getattr(run_type, "value", run_type) or "")
    if run_type not in THROTTLED_RUN_TYPES:
        return True, f"a {run_type or 'manual'} run always refreshes"
    interval = timedelta(hours=min_interval_hours)
    last, db_now = last_refreshes(conn, kinds)
    now = to_utc(now or db_now)
    never = [kind for kind, at in last.items() if at is None]
    if never:
        return True, f"never refreshed: {', '.join(never)}"
    oldest = to_utc(min(last.values()))
    if now - oldest >= interval:
        return True, f"the oldest refresh is from {oldest:%Y-%m-%d %H:%M} UTC, over {interval} ago"
    return False, (
        f"refreshed at {oldest:%Y-%m-%d %H:%M} UTC, under {interval} ago: new data refreshes the"
        f" lookups at most every {interval} (Variable {MIN_INTERVAL_VARIABLE}); the next one"
        f" from {oldest + interval:%Y-%m-%d %H:%M} UTC, the daily run at 05:00 UTC regardless"
    )


def _drop_quietly(conn, table: str) -> None:
    """Clean up after a failed fill without hiding the failure (the connection may be gone)."""
    try:
        conn.rollback()
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {quote(table)}")
        cur.close()
    except MySQLdb.Error as exc:
        log.warning("could not drop %s after a failed refresh: %s", table, exc)


def _fill(conn, cur, client: MetadataClient, lookup: Lookup, table: str) -> int:
    refreshed_at = datetime.now(UTC).replace(tzinfo=None)
    columns = ", ".join(quote(c) for c in lookup.column_names)
    marks = ", ".join(["%s"] * len(lookup.column_names))
    # REPLACE: an id seen twice (the list shifted while we paged) keeps its latest form.
    sql = f"REPLACE INTO {quote(table)} ({columns}) VALUES ({marks})"
    for page in client.iter_pages(lookup.kind):
        rows = [row_values(lookup, obj, refreshed_at) for obj in page]
        if not rows:
            continue
        try:
            cur.executemany(sql, rows)
        except (MySQLdb.DataError, MySQLdb.IntegrityError) as exc:
            raise BadMetadataError(
                f"Metadata API {lookup.kind} data does not fit {lookup.table} ({exc.args[-1]}); "
                "it keeps its previous contents"
            ) from None
    conn.commit()
    cur.execute(f"SELECT COUNT(*) FROM {quote(table)}")
    return int(cur.fetchone()[0])


def refresh_lookups(
    conn, client: MetadataClient, kinds: tuple[str, ...] | list[str] = KINDS
) -> dict[str, int]:
    """Refresh each kind in turn; stops at the first failure (earlier kinds stay refreshed)."""
    return {kind: refresh_lookup(conn, client, kind) for kind in kinds}


def client_from_connection(
    login: str | None, password: str | None, extra: dict, **overrides
) -> MetadataClient:
    """A client from the fields of the Airflow connection `monetate_api` (no Airflow import here).

    login = API user; password, or extra `private_key`, = the PEM; extra `retailer_shortname`;
    optional extras `api_base`, `auth_base`, `timeout`, `max_wait_seconds`.
    """
    pem = password or extra.get("private_key")
    if not pem:
        raise ConfigError(
            "connection monetate_api has no private key: put the PEM in its password or in extra private_key"
        )
    settings = dict(
        api_base=extra.get("api_base"),
        auth_base=extra.get("auth_base"),
    )
    for name, cast in (("timeout", float), ("max_wait_seconds", float)):
        if extra.get(name) is not None:
            settings[name] = cast(extra[name])
    settings.update(overrides)
    transport = settings.pop("transport", None)
    return MetadataClient(
        login or "",
        pem,
        extra.get("retailer_shortname") or "",
        ClientSettings(**settings),
        transport=transport,
    )
