"""Lookup tables filled from the Monetate Metadata API, the BI views that use them, and the CLI.

One `Lookup` spec per API kind drives both the table's DDL and the conversion of API objects
into rows (like tables.py does for the session tables). A refresh fills `<table>__new` and
swaps it in with one RENAME TABLE, so readers see the old rows or the new ones, never an empty
or half-filled table; a failed refresh drops `__new` and leaves the previous contents
(../shared/CONTRACT.md, "Output: metadata lookups").

`create_lookups_and_views(conn)` is schema migration 2 (registered in schema.MIGRATIONS).
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import MySQLdb
import orjson

from . import db, tables
from .errors import ConfigError
from .metadata import DEFAULT_API_BASE, DEFAULT_AUTH_BASE, KINDS, MetadataApiError, MetadataClient
from .sql import quote

log = logging.getLogger(__name__)

# Kinds of lookup column; `convert` has one branch per kind.
ID = "id"  # BIGINT NOT NULL primary key: the API's integer id
INT = "int"  # BIGINT
STR = "str"  # VARCHAR(n): short codes and enums
TEXT = "text"  # TEXT: names and descriptions of unknown length
BOOL = "bool"  # TINYINT(1): JSON true/false
TIME = "time"  # DATETIME(6) UTC, from the API's ISO-8601 strings
JSON = "json"  # JSON: lists and objects, kept whole

RAW_COLUMN = "raw"  # the whole API object, so a field we did not model is never lost
REFRESHED_AT_COLUMN = "refreshed_at"
NEW_SUFFIX, OLD_SUFFIX = "__new", "__old"
LOCK_SECONDS = 300


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    length: int = 0  # characters, for STR
    source: str | None = None  # key in the API object; default: name

    @property
    def json_key(self) -> str:
        return self.source or self.name

    def sql_type(self) -> str:
        if self.kind == STR:
            return f"VARCHAR({self.length})"
        return {
            ID: "BIGINT",
            INT: "BIGINT",
            TEXT: "TEXT",
            BOOL: "TINYINT(1)",
            TIME: "DATETIME(6)",
            JSON: "JSON",
        }[self.kind]


@dataclass(frozen=True)
class Lookup:
    kind: str  # Metadata API kind
    table: str
    fields: tuple[Field, ...]  # the first is the ID
    indexes: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.fields] + [RAW_COLUMN, REFRESHED_AT_COLUMN]


_ID = Field("id", ID)

# Fields as the Metadata API (v1) documents them; anything else still lands in `raw`.
CUSTOM_TARGETS = Lookup(
    "customtarget",
    "monetate_custom_targets",
    (
        _ID,
        Field("title", TEXT),
        Field("description", TEXT),
        Field("is_identifier", BOOL),
        Field("collects_person_id", BOOL),
    ),
)
PAGE_EVENTS = Lookup("pageevent", "monetate_page_events", (_ID, Field("title", TEXT)))
# A variant is one split of an experience; its id is what session maps call an offer id.
VARIANTS = Lookup(
    "variant",
    "monetate_variants",
    (
        _ID,
        Field("experience_id", INT),
        Field("experience_name", TEXT),
        Field("experience_type", STR, 255),
        Field("split_name", STR, 255),
        Field("split_description", TEXT),
        Field("account_domain", STR, 255),
        Field("integration_type", STR, 64),
        Field("preview_token", TEXT),
    ),
    indexes=("experience_id",),
)
EXPERIENCES = Lookup(
    "experience-summary",
    "monetate_experiences",
    (
        _ID,
        Field("experience_name", TEXT),
        Field("experience_type", STR, 255),
        Field("status", STR, 64),
        Field("archived", BOOL),
        Field("create_time", TIME),
        Field("start_time", TIME),
        Field("end_time", TIME),
        Field("account_domain", STR, 255),
        Field("integration_type", STR, 64),
        Field("splits", JSON),
        Field("tags", JSON),
        Field("goals", JSON),
        Field("variant_splits", JSON),
    ),
)
ACCOUNTS = Lookup(
    "account",
    "monetate_accounts",
    (
        _ID,
        Field("name", TEXT),
        Field("type", STR, 64),
        Field("kind", STR, 64),
        Field("archived", BOOL),
        Field("channel", STR, 255),
        Field("preview_url", TEXT),
    ),
)

LOOKUPS: tuple[Lookup, ...] = (CUSTOM_TARGETS, PAGE_EVENTS, VARIANTS, EXPERIENCES, ACCOUNTS)
BY_KIND = {lk.kind: lk for lk in LOOKUPS}
assert set(BY_KIND) == set(KINDS), "one lookup table per Metadata API kind"


# -- DDL --------------------------------------------------------------------------------------


def lookup_ddl(lookup: Lookup, table: str | None = None, *, if_not_exists: bool = True) -> str:
    cols = []
    for f in lookup.fields:
        null = " NOT NULL" if f.kind == ID else " NULL"
        cols.append(f"  {quote(f.name)} {f.sql_type()}{null}")
    cols.append(f"  {quote(RAW_COLUMN)} JSON NOT NULL")
    cols.append(f"  {quote(REFRESHED_AT_COLUMN)} DATETIME(6) NOT NULL")
    cols.append(f"  PRIMARY KEY ({quote(lookup.fields[0].name)})")
    for name in lookup.indexes:
        cols.append(f"  KEY {quote('ix_' + name)} ({quote(name)})")
    exists = "IF NOT EXISTS " if if_not_exists else ""
    return (
        f"CREATE TABLE {exists}{quote(table or lookup.table)} (\n"
        + ",\n".join(cols)
        + "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


def _col(table: tables.Table, name: str) -> str:
    """A session-table column for the views, checked against the one table spec."""
    if name not in table.column_names:
        raise AssertionError(f"{table.name} has no column {name!r}: update lookups.py views")
    return quote(name)


def _utc(ms: str) -> str:
    # Epoch ms to a UTC DATETIME(3) without FROM_UNIXTIME, whose result follows the reader's
    # session time zone: BI tools connect in their own.
    return f"TIMESTAMPADD(MICROSECOND, {ms} * 1000, TIMESTAMP'1970-01-01 00:00:00')"


def _int_id(expr: str) -> str:
    # Session maps key ids as strings, the API's ids are integers: the one cast, done here.
    # Anything not a plain number becomes NULL (no lookup row) instead of a cast warning.
    return f"CASE WHEN {expr} REGEXP '^[0-9]{{1,18}}$' THEN CAST({expr} AS UNSIGNED) END"


def _lookup_col(lookup: Lookup, name: str) -> str:
    if name not in lookup.column_names:
        raise AssertionError(f"{lookup.table} has no column {name!r}")
    return quote(name)


def view_ddls() -> dict[str, str]:
    """CREATE OR REPLACE VIEW statements by view name."""
    sid = _col(tables.SESSIONS, "session_id")
    key = quote(tables.SESSION_KEY_COLUMN)  # joins to session_sessions by its primary key
    offer_id, offer_ts = _col(tables.OFFERS, "offer_id"), _col(tables.OFFERS, "timestamp")
    event_id, event_ts = (
        _col(tables.PAGE_EVENT_IDS, "event_id"),
        _col(tables.PAGE_EVENT_IDS, "timestamp"),
    )
    ct_id, ct_value = (
        _col(tables.CUSTOM_TARGETS, "custom_target_id"),
        _col(tables.CUSTOM_TARGETS, "custom_target_value"),
    )
    v, e, p, c = VARIANTS, EXPERIENCES, PAGE_EVENTS, CUSTOM_TARGETS
    s = tables.SESSIONS
    start = _col(s, "start_time")
    purchase_value = _col(tables.PURCHASES, "purchase_value")

    views = {}
    # Offer ids in session_offers are variant ids (one split of an experience): the Metadata
    # API's `variant` kind is the documented way to name them, and it carries experience_id,
    # which leads to the experience summary (status, type). Offers unknown to the lookup stay,
    # with NULL names, so counts in BI do not depend on the last refresh.
    views["v_session_offers"] = f"""CREATE OR REPLACE VIEW `v_session_offers` AS
SELECT o.{key}, o.{sid} AS session_id, o.{offer_id} AS offer_id, o.variant_id,
       o.{offer_ts} AS offer_timestamp, {_utc("o." + offer_ts)} AS offer_time,
       v.{_lookup_col(v, "experience_id")} AS experience_id,
       COALESCE(v.{_lookup_col(v, "experience_name")}, e.{_lookup_col(e, "experience_name")}) AS experience_name,
       v.{_lookup_col(v, "split_name")} AS split_name,
       v.{_lookup_col(v, "split_description")} AS split_description,
       COALESCE(v.{_lookup_col(v, "experience_type")}, e.{_lookup_col(e, "experience_type")}) AS experience_type,
       e.{_lookup_col(e, "status")} AS experience_status
FROM (SELECT {key}, {sid}, {offer_id}, {offer_ts}, {_int_id(offer_id)} AS variant_id
      FROM {quote(tables.OFFERS.name)}) o
LEFT JOIN {quote(v.table)} v ON v.`id` = o.variant_id
LEFT JOIN {quote(e.table)} e ON e.`id` = v.{_lookup_col(v, "experience_id")}"""

    views["v_session_page_events"] = f"""CREATE OR REPLACE VIEW `v_session_page_events` AS
SELECT pe.{key}, pe.{sid} AS session_id, pe.{event_id} AS event_id, pe.page_event_id,
       p.{_lookup_col(p, "title")} AS page_event_title,
       pe.{event_ts} AS event_timestamp, {_utc("pe." + event_ts)} AS event_time
FROM (SELECT {key}, {sid}, {event_id}, {event_ts}, {_int_id(event_id)} AS page_event_id
      FROM {quote(tables.PAGE_EVENT_IDS.name)}) pe
LEFT JOIN {quote(p.table)} p ON p.`id` = pe.page_event_id"""

    views["v_session_custom_targets"] = f"""CREATE OR REPLACE VIEW `v_session_custom_targets` AS
SELECT t.{key}, t.{sid} AS session_id, t.{ct_id} AS custom_target_id, t.custom_target_int_id,
       c.{_lookup_col(c, "title")} AS custom_target_title,
       t.{ct_value} AS custom_target_value
FROM (SELECT {key}, {sid}, {ct_id}, {ct_value}, {_int_id(ct_id)} AS custom_target_int_id
      FROM {quote(tables.CUSTOM_TARGETS.name)}) t
LEFT JOIN {quote(c.table)} c ON c.`id` = t.custom_target_int_id"""

    # Revenue is session_purchases.purchase_value (one row per purchase, the value Monetate
    # reports per session); it is summed per session first so the join cannot multiply the
    # session counts. carts/purchases count sessions with a cart/purchase; orders counts purchases.
    views["v_daily_sessions"] = f"""CREATE OR REPLACE VIEW `v_daily_sessions` AS
SELECT DATE({_utc("s." + start)}) AS session_date,
       s.{_col(s, "device_type")} AS device_type,
       s.{_col(s, "country")} AS country,
       COUNT(*) AS sessions,
       COALESCE(SUM(s.{_col(s, "is_bounce")}), 0) AS bounces,
       COALESCE(SUM(s.{_col(s, "has_cart")}), 0) AS carts,
       COALESCE(SUM(s.{_col(s, "has_purchase")}), 0) AS purchases,
       COALESCE(SUM(pv.orders), 0) AS orders,
       COALESCE(SUM(pv.revenue), 0) AS revenue,
       COALESCE(SUM(s.{_col(s, "has_purchase")}), 0) / COUNT(*) AS conversion_rate,
       COALESCE(SUM(s.{_col(s, "is_bounce")}), 0) / COUNT(*) AS bounce_rate
FROM {quote(s.name)} s
LEFT JOIN (SELECT {key}, COUNT(*) AS orders, SUM({purchase_value}) AS revenue
           FROM {quote(tables.PURCHASES.name)} GROUP BY {key}) pv ON pv.{key} = s.{key}
GROUP BY session_date, s.{_col(s, "device_type")}, s.{_col(s, "country")}"""
    return views


VIEWS = tuple(view_ddls())


def create_lookups_and_views(conn) -> None:
    """Schema migration 2: the lookup tables (empty until a refresh) and the BI views. Idempotent."""
    cur = conn.cursor()
    for lookup in LOOKUPS:
        cur.execute(lookup_ddl(lookup))
    for ddl in view_ddls().values():
        cur.execute(ddl)
    cur.close()


# -- rows -------------------------------------------------------------------------------------


class BadMetadataError(MetadataApiError):
    """An API object that does not fit its lookup table; the refresh keeps the old contents."""


def convert(field: Field, value):
    """One API value to its column value; raises ValueError with the reason."""
    if value is None:
        return None
    kind = field.kind
    if kind in (ID, INT):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if kind in (STR, TEXT):
        if isinstance(value, dict | list | bool):
            raise ValueError(f"expected text, got {value!r}")
        text = str(value)
        if kind == STR and len(text) > field.length:
            raise ValueError(f"longer than {field.length} characters")
        return text
    if kind == BOOL:
        if isinstance(value, bool):
            return int(value)
        if value in (0, 1, "true", "false", "t", "f"):
            return int(value in (1, "true", "t"))
        raise ValueError(f"expected true/false, got {value!r}")
    if kind == TIME:
        if value == "":
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected an ISO-8601 time, got {value!r}")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed
    if kind == JSON:
        return orjson.dumps(value).decode()
    raise AssertionError(f"unknown field kind {kind}")


def row_values(lookup: Lookup, obj: dict, refreshed_at: datetime) -> tuple:
    values = []
    for f in lookup.fields:
        value = obj.get(f.json_key)
        try:
            converted = convert(f, value)
        except ValueError as exc:
            raise BadMetadataError(
                f"Metadata API {lookup.kind} object id={obj.get('id')!r}: field {f.json_key!r} {exc}; "
                f"{lookup.table} keeps its previous contents"
            ) from None
        if f.kind == ID and converted is None:
            raise BadMetadataError(
                f"Metadata API {lookup.kind} object without an id: {str(obj)[:200]}; "
                f"{lookup.table} keeps its previous contents"
            )
        values.append(converted)
    values.append(orjson.dumps(obj).decode())
    values.append(refreshed_at)
    return tuple(values)


# -- refresh ----------------------------------------------------------------------------------


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
    finally:
        cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        cur.close()
    log.info("refreshed %s: %d rows", live, rows)
    return rows


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
    # A PEM pasted into a one-line field often arrives with literal \n sequences.
    if "\\n" in pem and "\n" not in pem:
        pem = pem.replace("\\n", "\n")
    settings = dict(
        api_base=extra.get("api_base"),
        auth_base=extra.get("auth_base"),
    )
    for name, cast in (("timeout", float), ("max_wait_seconds", float)):
        if extra.get(name) is not None:
            settings[name] = cast(extra[name])
    settings.update(overrides)
    return MetadataClient(login or "", pem, extra.get("retailer_shortname") or "", **settings)


# -- CLI --------------------------------------------------------------------------------------

PRIVATE_KEY_ENV = "MONETATE_PRIVATE_KEY"
API_USER_ENV = "MONETATE_API_USER"
RETAILER_ENV = "MONETATE_RETAILER"


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"kinds must be a comma-separated subset of {','.join(KINDS)}"
        )
    return kinds


def register_cli(subparsers) -> None:
    """Add `refresh-metadata` to the session-stream CLI."""
    p = subparsers.add_parser(
        "refresh-metadata",
        help="refresh the Monetate lookup tables (names for offer, page event and target ids)",
        description="Fetch every object of each kind from the Monetate Metadata API and replace "
        "its lookup table atomically; a failure leaves the previous contents.",
    )
    p.add_argument("--db", help=f"database URL {db.URL_FORM} (default: ${db.DB_ENV})")
    p.add_argument("--api-user", help=f"Monetate API username (default: ${API_USER_ENV})")
    p.add_argument(
        "--private-key-file",
        type=Path,
        help=f"PEM file of the API key's private half (default: the PEM text in ${PRIVATE_KEY_ENV})",
    )
    p.add_argument(
        "--retailer", help=f"retailer shortname used in the API URLs (default: ${RETAILER_ENV})"
    )
    p.add_argument("--api-base", help=f"Metadata API base URL (default: {DEFAULT_API_BASE})")
    p.add_argument("--auth-base", help=f"Auth API base URL (default: {DEFAULT_AUTH_BASE})")
    p.add_argument(
        "--kinds",
        type=_kinds,
        default=KINDS,
        help=f"comma-separated kinds to refresh (default: {','.join(KINDS)})",
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per HTTP attempt (default: 30)"
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=300.0,
        help="seconds one request may spend retrying before the refresh fails (default: 300)",
    )
    p.set_defaults(func=run_refresh_metadata)


def _private_key(args) -> str:
    if args.private_key_file:
        try:
            return args.private_key_file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --private-key-file {args.private_key_file}: {exc.strerror}"
            ) from None
    pem = os.environ.get(PRIVATE_KEY_ENV)
    if not pem:
        raise ConfigError(
            f"no Monetate private key: pass --private-key-file or set {PRIVATE_KEY_ENV} to the PEM"
        )
    return pem


def run_refresh_metadata(args) -> int:
    """`session-stream refresh-metadata`: errors are SessionStreamError, printed by the CLI."""
    api_user = args.api_user or os.environ.get(API_USER_ENV)
    retailer = args.retailer or os.environ.get(RETAILER_ENV)
    if not api_user:
        raise ConfigError(f"no Monetate API user: pass --api-user or set {API_USER_ENV}")
    if not retailer:
        raise ConfigError(f"no retailer shortname: pass --retailer or set {RETAILER_ENV}")
    client = MetadataClient(
        api_user,
        _private_key(args),
        retailer,
        api_base=args.api_base,
        auth_base=args.auth_base,
        timeout=args.timeout,
        max_wait_seconds=args.max_wait,
    )
    conn = db.connect(args.db)
    try:
        with client:
            for kind in args.kinds:
                rows = refresh_lookup(conn, client, kind)
                print(f"{kind:<20} {BY_KIND[kind].table:<26} {rows:>8} rows")
    finally:
        conn.close()
    return 0
