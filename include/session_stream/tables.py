"""The one table spec: every warehouse table, its columns, SQL types and the JSON that feeds them.

The DDL (schema.py), the value converters (convert.py) and row builders (splitter.py), the staged
files' columns and LOAD DATA column lists (layout.py), the newest-wins merge (merge.py), the BI
views (views.py), the row-by-row baseline (rowbyrow.py) and the tests all read this module. A
column name is written here and nowhere else.

Input shape (Monetate's "Session Stream Data" page; docs/warehouse.md): one JSON object per line::

    {"session_id": "...", "account_id": 123, "start_time": <ms>, "end_time": <ms>, ...scalars,
     "custom_targets": {"<id>": "<value>"}, "offers": {"<offer id>": <ms>},
     "page_event_ids": {"<event id>": <ms>}, "purchases": {"<purchase id>": <value>},
     "cart_lines": [{"product_id", "sku", "quantity", "time"}],
     "view_lines": [{"product_id", "time"}],
     "purchase_lines": {"<purchase id>": {"time", "total",
                                          "items": [{"product_id", "sku", "quantity", "unit_price"}]}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kinds of value conversion; convert.py has one converter per kind.
STR = "str"  # VARCHAR(n): strings kept exactly; numbers become their JSON text
INT = "int"  # INT: JSON integer or integer string
BIGINT = "bigint"  # BIGINT: epoch milliseconds, JSON integer or integer string
MONEY = "money"  # DECIMAL(16,4): JSON number or numeric string, never rounded
FLAG = "flag"  # 't' / 'f' (or JSON true/false) -> 1 / 0
DATETIME = "datetime"  # ISO-8601 (Z or offset) or epoch ms -> UTC DATETIME(3)

MONEY_DIGITS, MONEY_SCALE = 16, 4
INT_RANGE = (-(2**31), 2**31 - 1)
BIGINT_RANGE = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    length: int = 0  # characters, for STR
    key: bool = False  # part of the natural key (unique; compared byte for byte)
    source: str | None = None  # JSON key in the object the row comes from; default: name
    not_null: bool = False

    @property
    def json_key(self) -> str:
        return self.source or self.name

    def sql_type(self, key_collation: str) -> str:
        if self.kind == STR:
            collate = f" COLLATE {key_collation}" if self.key else ""
            return f"VARCHAR({self.length}){collate}"
        return {
            INT: "INT",
            BIGINT: "BIGINT",
            MONEY: f"DECIMAL({MONEY_DIGITS},{MONEY_SCALE})",
            FLAG: "TINYINT(1)",
            DATETIME: "DATETIME(3)",
        }[self.kind]


@dataclass(frozen=True)
class Table:
    """A warehouse table fed from one place in the session object.

    `path` says where rows come from: () for the session itself, ("offers",) for a map whose
    keys and values become two columns, ("cart_lines",) for a list of objects, and
    ("purchase_lines", "items") for the lists nested inside each value of a map.

    `columns` are the values the JSON carries, in the order of Monetate's sample schema. Every
    table also has the loader's own columns: session_key (the session version, see
    SESSION_KEY_COLUMN) and, for child tables, row_no (the row's number among its session's
    rows of that table, from 0). A child table is stored under `storage` and read through a view
    of its own `name` that adds session_id (and Monetate's `id`) from session_sessions: see
    schema.py for why.
    """

    name: str
    shape: str  # "session" | "map" | "list" | "map_of_objects" | "map_of_lists"
    path: tuple[str, ...]
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def is_child(self) -> bool:
        return self.shape != "session"

    @property
    def storage(self) -> str:
        """The base table the loader writes: the name itself for session_sessions."""
        return STORAGE_PREFIX + self.name.removeprefix("session_") if self.is_child else self.name

    @property
    def value_names(self) -> list[str]:
        """The columns fed from JSON, in order: what a staged row carries after its lead."""
        return [c.name for c in self.columns]

    @property
    def column_names(self) -> list[str]:
        """The source columns as analysts read them: child tables lead with session_id."""
        return ([SESSION_ID.name] if self.is_child else []) + self.value_names


SESSION_ID = Column("session_id", STR, 255, key=True, not_null=True)


def _text(name: str) -> Column:
    return Column(name, STR, 255)


def _id(name: str) -> Column:
    """An id compared byte for byte (joins and newest-wins use it)."""
    return Column(name, STR, 255, key=True)


# Exactly the columns of Monetate's sample schema, in its order, each fed by the JSON key of the
# same name (Monetate's "Session Stream Data" page, "Creating the Database Schema": tests/fixtures/monetate_sample_schema.sql).
SESSIONS = Table(
    "session_sessions",
    "session",
    (),
    (
        SESSION_ID,
        Column("account_id", INT),
        _text("browser"),
        _text("browser_version"),
        _text("city"),
        # VARCHAR(2) in the sample; wider here so that an unexpected code (a 3-letter one, a
        # placeholder) is stored as sent instead of rejecting the whole session.
        _text("country_code"),
        _text("customer_id"),
        _text("customer_link"),
        _text("device_type"),
        Column("end_time", BIGINT),
        _text("guid"),
        Column("has_cart", FLAG),
        Column("has_new_customer", FLAG),
        Column("has_product_view", FLAG),
        Column("has_purchase", FLAG),
        Column("has_stealth", FLAG),
        Column("is_bounce", FLAG),
        Column("is_closed", FLAG),
        _text("os"),
        _text("os_version"),
        Column("page_views", INT),
        Column("page_views_ss", INT),
        Column("product_view_count", INT),
        Column("purchase_count", INT),
        Column("purchase_value_ss", MONEY),
        _text("region"),
        Column("screen_height", INT),
        Column("screen_width", INT),
        Column("session_count", INT),
        Column("session_value", MONEY),
        Column("session_value_ss", MONEY),
        Column("start_time", BIGINT),
        Column("time_on_site", INT),
        Column("time_on_site_ss", INT),
    ),
)

# Child tables. For a map, the first column is fed by the key and the second by the value; for
# a map of objects or of lists, the first column is fed by the map's key.
CUSTOM_TARGETS = Table(
    "session_custom_targets",
    "map",
    ("custom_targets",),
    (_id("custom_target_id"), _text("custom_target_value")),
)

OFFERS = Table(
    "session_offers",
    "map",
    ("offers",),
    (_id("offer_id"), Column("timestamp", BIGINT)),
)

PAGE_EVENT_IDS = Table(
    "session_page_event_ids",
    "map",
    ("page_event_ids",),
    (_id("event_id"), Column("timestamp", BIGINT)),
)

PURCHASES = Table(
    "session_purchases",
    "map",
    ("purchases",),
    (_id("purchase_id"), Column("purchase_value", MONEY)),
)

CART_LINES = Table(
    "session_cart_lines",
    "list",
    ("cart_lines",),
    (_id("product_id"), _id("sku"), Column("quantity", INT), Column("time", DATETIME)),
)

VIEW_LINES = Table(
    "session_view_lines",
    "list",
    ("view_lines",),
    (_id("product_id"), Column("time", DATETIME)),
)

# Monetate's guide joins the line items to their purchase line on purchase_id: both are indexed.
PURCHASE_LINES = Table(
    "session_purchase_lines",
    "map_of_objects",
    ("purchase_lines",),
    (_id("purchase_id"), Column("time", DATETIME), Column("total", MONEY)),
    indexes=(("purchase_id",),),
)

PURCHASE_LINE_ITEMS = Table(
    "session_purchase_line_items",
    "map_of_lists",
    ("purchase_lines", "items"),
    (
        _id("purchase_id"),
        _id("product_id"),
        _id("sku"),
        Column("quantity", INT),
        Column("unit_price", MONEY),
    ),
    indexes=(("purchase_id",),),
)

# Load order: the session row first, then its children.
TABLES: tuple[Table, ...] = (
    SESSIONS,
    CUSTOM_TARGETS,
    OFFERS,
    PAGE_EVENT_IDS,
    PURCHASES,
    CART_LINES,
    VIEW_LINES,
    PURCHASE_LINES,
    PURCHASE_LINE_ITEMS,
)
CHILD_TABLES = TABLES[1:]

# The JSON keys a file may carry, by path, beyond which a key is "unknown" (CONTRACT: counted
# in the ledger, never dropped silently). Maps (custom_targets, offers, ...) have free keys.
SESSION_PATH = "session"
COLLECTION_KEYS = tuple(dict.fromkeys(t.path[0] for t in CHILD_TABLES))


def object_paths() -> dict[str, tuple[str, ...]]:
    """Each kind of JSON object the spec reads, by its path (as the ledger names it), and the
    scalar keys expected in it."""
    paths = {SESSION_PATH: tuple(c.json_key for c in SESSIONS.columns)}
    for table in (CART_LINES, VIEW_LINES):
        paths[f"{table.path[0]}[]"] = tuple(c.json_key for c in table.columns)
    lines, items = PURCHASE_LINE_ITEMS.path
    paths[f"{lines}{{}}"] = tuple(c.json_key for c in PURCHASE_LINES.columns[1:])
    paths[f"{lines}{{}}.{items}[]"] = tuple(c.json_key for c in PURCHASE_LINE_ITEMS.columns[1:])
    return paths


# Columns the loader adds to session_sessions besides the source values (contract: extra
# columns are welcome). source_file decides newest-wins ties; loaded_at is filled by MySQL.
SOURCE_FILE_COLUMN = "source_file"
NAME_CHARS = 255  # a file name: the ledger's file_name, and source_file in the session tables
LOADED_AT_COLUMN = "loaded_at"
# Every session table has session_key: a surrogate number, given to a session version when it
# is loaded and growing with each load. session_sessions is clustered by it and child tables by
# (session_key, row_no), so a load only appends and a session's rows sit together; schema.py
# says why.
SESSION_KEY_COLUMN = "session_key"
ROW_NO_COLUMN = "row_no"
ROW_NO_MAX = 65535  # SMALLINT UNSIGNED: at most 65,536 rows of one table per session
# Monetate's sample schema gives each child row an `id`; the views compute one from the key.
ID_COLUMN = "id"
STORAGE_PREFIX = "session_stream_"  # the loader's own tables: ledger, rejects, child storage

LEDGER_TABLE = "session_stream_files"
REJECTS_TABLE = "session_stream_rejects"
# A rejected line longer than one part continues here, part by part (rejects.py says why).
REJECT_PARTS_TABLE = "session_stream_reject_parts"
MIGRATIONS_TABLE = "session_stream_schema_migrations"
# The ledger's counts of keys by path (JSON objects {"session.new_field": lines, ...}).
UNKNOWN_KEYS_COLUMN = "unknown_keys"
MISSING_KEYS_COLUMN = "missing_keys"


def rows_column(table: Table) -> str:
    """The ledger column counting the rows a file put into `table`."""
    return "rows_" + table.name.removeprefix("session_")
