"""The one table spec: every warehouse table, its columns, SQL types and the JSON that feeds them.

The DDL (schema.py), the value converters (convert.py) and row builders (split.py), the staged
files' columns and LOAD DATA column lists (layout.py), the newest-wins merge (load.py), the BI
views (views.py), the row-by-row baseline (rowbyrow.py) and the tests all read this module. A
column name is written here and nowhere else.

Input shape (see ../shared/CONTRACT.md): one JSON object per line::

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
SEQ = "seq"  # position of the item in its list (0-based): part of the child row's key

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
            SEQ: "SMALLINT UNSIGNED",
        }[self.kind]


@dataclass(frozen=True)
class Table:
    """A warehouse table fed from one place in the session object.

    `path` says where rows come from: () for the session itself, ("offers",) for a map whose
    keys and values become two columns, ("cart_lines",) for a list of objects, and
    ("purchase_lines", "items") for the lists nested inside each value of a map.
    """

    name: str
    shape: str  # "session" | "map" | "list" | "map_of_objects" | "map_of_lists"
    path: tuple[str, ...]
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, ...], ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.key]


SESSION_ID = Column("session_id", STR, 64, key=True, not_null=True)


def _child_id(name: str, length: int = 255) -> Column:
    return Column(name, STR, length, key=True, not_null=True)


SESSIONS = Table(
    "session_sessions",
    "session",
    (),
    (
        SESSION_ID,
        Column("account_id", INT),
        Column("mid", STR, 64),
        Column("customer_id", STR, 255),
        Column("start_time", BIGINT),
        Column("end_time", BIGINT),
        Column("page_views", INT),
        Column("ip_address", STR, 45),
        Column("user_agent", STR, 2048),
        Column("browser", STR, 255),
        Column("os", STR, 255),
        Column("device_type", STR, 255),
        Column("country", STR, 64),
        Column("region", STR, 255),
        Column("city", STR, 255),
        Column("referrer", STR, 2048),
        Column("has_cart", FLAG),
        Column("has_new_customer", FLAG),
        Column("has_product_view", FLAG),
        Column("has_purchase", FLAG),
        Column("has_stealth", FLAG),
        Column("is_bounce", FLAG),
        Column("is_closed", FLAG),
    ),
)

CUSTOM_TARGETS = Table(
    "session_custom_targets",
    "map",
    ("custom_targets",),
    (SESSION_ID, _child_id("custom_target_id", 64), Column("custom_target_value", STR, 1024)),
)

OFFERS = Table(
    "session_offers",
    "map",
    ("offers",),
    (SESSION_ID, _child_id("offer_id", 64), Column("timestamp", BIGINT)),
)

PAGE_EVENT_IDS = Table(
    "session_page_event_ids",
    "map",
    ("page_event_ids",),
    (SESSION_ID, _child_id("event_id", 64), Column("timestamp", BIGINT)),
)

PURCHASES = Table(
    "session_purchases",
    "map",
    ("purchases",),
    (SESSION_ID, _child_id("purchase_id"), Column("purchase_value", MONEY)),
)

CART_LINES = Table(
    "session_cart_lines",
    "list",
    ("cart_lines",),
    (
        SESSION_ID,
        Column("line_no", SEQ, key=True, not_null=True),
        Column("product_id", STR, 255),
        Column("sku", STR, 255),
        Column("quantity", INT),
        Column("time", DATETIME),
    ),
)

VIEW_LINES = Table(
    "session_view_lines",
    "list",
    ("view_lines",),
    (
        SESSION_ID,
        Column("line_no", SEQ, key=True, not_null=True),
        Column("product_id", STR, 255),
        Column("time", DATETIME),
    ),
)

PURCHASE_LINES = Table(
    "session_purchase_lines",
    "map_of_objects",
    ("purchase_lines",),
    (
        SESSION_ID,
        _child_id("purchase_id"),
        Column("time", DATETIME),
        Column("total", MONEY),
    ),
)

PURCHASE_LINE_ITEMS = Table(
    "session_purchase_line_items",
    "map_of_lists",
    ("purchase_lines", "items"),
    (
        SESSION_ID,
        _child_id("purchase_id"),
        Column("line_no", SEQ, key=True, not_null=True),
        Column("product_id", STR, 255),
        Column("sku", STR, 255),
        Column("quantity", INT),
        Column("unit_price", MONEY),
    ),
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
BY_NAME = {t.name: t for t in TABLES}

# Columns the loader adds to session_sessions besides the source values (contract: extra
# columns are welcome). source_file decides newest-wins ties; loaded_at is filled by MySQL.
SOURCE_FILE_COLUMN = "source_file"
LOADED_AT_COLUMN = "loaded_at"
# Every session table starts with session_key: a surrogate number, given to a session version
# when it is loaded and growing with each load. Child tables are clustered by (session_key, ...),
# so a load only appends and a session's rows sit together; schema.py says why.
SESSION_KEY_COLUMN = "session_key"

LEDGER_TABLE = "session_stream_files"
REJECTS_TABLE = "session_stream_rejects"
MIGRATIONS_TABLE = "session_stream_schema_migrations"


def rows_column(table: Table) -> str:
    """The ledger column counting the rows a file put into `table`."""
    return "rows_" + table.name.removeprefix("session_")
