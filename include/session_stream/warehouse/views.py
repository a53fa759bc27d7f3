"""The BI views: session tables joined to the Metadata API lookups, names instead of ids.

`create_lookups_and_views(conn)` is schema migration 2 (registered in migrations.MIGRATIONS): the
lookup tables (empty until a refresh) and these views.
"""

from __future__ import annotations

from session_stream import tables
from session_stream.metadata.lookups import (
    CUSTOM_TARGETS,
    EXPERIENCES,
    LOOKUPS,
    PAGE_EVENTS,
    VARIANTS,
    Lookup,
    lookup_ddl,
)
from session_stream.sql import quote


def _col(table: tables.Table, name: str) -> str:
    """A session-table column for the views, checked against the one table spec."""
    if name not in table.column_names:
        raise AssertionError(f"{table.name} has no column {name!r}: update views.py")
    return quote(name)


def _utc_from_epoch_ms(ms: str) -> str:
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

    views = {}
    # Offer ids in session_offers are variant ids (one split of an experience): the Metadata
    # API's `variant` kind is the documented way to name them, and it carries experience_id,
    # which leads to the experience summary (status, type). Offers unknown to the lookup stay,
    # with NULL names, so counts in BI do not depend on the last refresh.
    views["v_session_offers"] = f"""CREATE OR REPLACE VIEW `v_session_offers` AS
SELECT o.{key}, o.{sid} AS session_id, o.{offer_id} AS offer_id, o.variant_id,
       o.{offer_ts} AS offer_timestamp, {_utc_from_epoch_ms("o." + offer_ts)} AS offer_time,
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
       pe.{event_ts} AS event_timestamp, {_utc_from_epoch_ms("pe." + event_ts)} AS event_time
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

    # One row per day, device and country, from Monetate's own per-session figures: revenue is
    # session_value and orders purchase_count, so no join can multiply the session counts.
    # carts/purchases count sessions with a cart/purchase.
    def total(name: str) -> str:
        return f"COALESCE(SUM(s.{_col(s, name)}), 0)"

    views["v_daily_sessions"] = f"""CREATE OR REPLACE VIEW `v_daily_sessions` AS
SELECT DATE({_utc_from_epoch_ms("s." + start)}) AS session_date,
       s.{_col(s, "device_type")} AS device_type,
       s.{_col(s, "country_code")} AS country_code,
       COUNT(*) AS sessions,
       {total("is_bounce")} AS bounces,
       {total("has_cart")} AS carts,
       {total("has_purchase")} AS purchases,
       {total("purchase_count")} AS orders,
       {total("session_value")} AS revenue,
       {total("page_views")} AS page_views,
       {total("time_on_site")} AS time_on_site,
       {total("has_purchase")} / COUNT(*) AS conversion_rate,
       {total("is_bounce")} / COUNT(*) AS bounce_rate
FROM {quote(s.name)} s
GROUP BY session_date, s.{_col(s, "device_type")}, s.{_col(s, "country_code")}"""
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
