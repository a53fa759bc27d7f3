"""Lookup tables of Monetate Metadata API objects: one spec per API kind, its DDL, its rows.

One `Lookup` spec per API kind drives both the table's DDL and the conversion of API objects
into rows (like tables.py does for the session tables). Filling the tables is
refresh.py's job; the BI views that join them to the sessions are in views.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from session_stream.metadata.client import KINDS, MetadataApiError
from session_stream.sql import quote
from session_stream.utc import to_utc

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


# When each lookup table was last refreshed whole, even to no rows: the Asset-triggered
# refresh runs at most once per interval (lookup_refresh.refresh_due).
REFRESHES_TABLE = "session_stream_lookup_refreshes"


def refreshes_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS {quote(REFRESHES_TABLE)} (
  `kind` VARCHAR(64) NOT NULL,
  `lookup_table` VARCHAR(64) NOT NULL,
  `refreshed_at` DATETIME(3) NOT NULL,
  `row_count` INT UNSIGNED NOT NULL,
  PRIMARY KEY (`kind`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


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
        return to_utc(datetime.fromisoformat(value)).replace(tzinfo=None)
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
