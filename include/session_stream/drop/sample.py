"""Write a realistic Monetate Session Stream drop tree, deterministic by seed.

Tests, the benchmark and demos use it instead of binary fixtures in git. The tree looks like
the real delivery (../shared/CONTRACT.md, "Input"): `<root>/YYYY/MM/DD/` holding gzip JSON-lines
files named `YYYYMMDDTHHMMSS.sssZ_PT15M-<number>.json.gz`, one session object per line.

What a drop holds:
- `sessions` distinct sessions spread evenly over `files` files, the files spread evenly over
  the 15-minute windows of `hours` hours. Every line's `end_time` lies in its file's window.
- Every field of Monetate's sample loader, with plausible values: browser and OS with their
  versions, screen sizes that fit the device, a 2-letter country_code, region and city, the
  visitor's guid and session_count, and the `_ss` totals over the visitor's sessions so far.
- About 30% bounces with no child rows; the others average ~12 child rows, so a day of
  80,000 sessions in 16 files is ~860k rows in all tables and ~110 MB of JSON (21 MB gzip).
- Session ids are unique across days, hours and seeds: each drop draws them from a stream of
  its seed and its first window. Their shape is `id_style` (ID_STYLES): random UUIDs by default,
  or one of the shapes the contract allows and an index must not be fooled by (ids that share
  their first characters with every session of their window, 1 character, 255 characters). The
  style changes the ids only: the sessions are the same in every style.
- A share of sessions (`reemit`, 10%) is written twice: open (`is_closed` 'f') in one file,
  then closed in a later file with a greater `end_time` and different children (more cart and
  view lines, a purchase, one custom target dropped), so a loader must replace, not merge.
- With `quirks`, every 20th session (index % 20 == QUIRK_PHASE) carries every input quirk of
  the contract at once (see QUIRKS); all values stay valid for the schema.
- `bad_lines` adds lines a loader must reject (BAD_KINDS), on top of the good ones.

Key names come from tables.py. The same seed gives the same bytes (gzip mtime is 0), and the
sessions themselves do not depend on `quirks` or `bad_lines`: those draw from their own streams.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import orjson

from session_stream import tables
from session_stream.drop.names import file_name
from session_stream.errors import ConfigError, SessionStreamError

WINDOW_MS = 15 * 60 * 1000
WINDOWS_PER_HOUR = 4
ACCOUNT_ID = 4521  # one retailer per drop, as in a real delivery

BOUNCE_SHARE = 0.3
REEMIT_SHARE = 0.1
QUIRK_EVERY, QUIRK_PHASE = 20, 3
GZIP_LEVEL = 3

# The quirks a quirky line carries, by name (tests look for each one).
QUIRKS = (
    "time_z",  # line times as ISO-8601 with Z (the usual form, kept on some lines)
    "time_offset",  # line times as ISO-8601 with an offset such as +02:00
    "time_epoch",  # line times as epoch milliseconds
    "numeric_strings",  # money, quantities and page_views as numeric strings
    "absent_maps",  # empty maps and lists left out instead of {} / []
    "unknown_keys",  # keys the loader does not know, at the top level and nested
    "tricky_strings",  # quotes, commas, backslashes, tabs, CR, LF, "NULL", "\\N", "", null, emoji
)
# Values a loader must keep byte for byte (None is JSON null -> SQL NULL).
TRICKY_STRINGS = (
    'say "hi", then leave',
    "C:\\temp\\new",
    "tab\there",
    "line one\r\nline two\rthree\nfour",
    "NULL",
    "\\N",
    "",
    None,
    "🛒 cart 🎉 €5",
    "trailing space ",
    '\\N,"NULL"\t\\\n',
)
BAD_KINDS = ("not_json", "no_session_id", "too_long")
BAD_SESSION_PREFIX = "bad-"  # session_id prefix of bad lines that still have one

NUMBER_RE = r"\d{13}"  # the opaque number in a file name: epoch-ms-like

# Session id shapes (CONTRACT: an opaque string of 1 to 255 characters, nothing promised about
# its shape). Each is made from the same 128 random bits per session, so a drop differs between
# styles in its ids alone.
ID_STYLES = {
    "uuid": "random UUIDs (36 characters), as the default",
    "timestamp": "the window's start in epoch ms and the account first: '<ms>-<account>-<hex>',"
    " so every session of a window shares its first 19 characters",
    "prefix": "one long prefix shared by every session (64 characters), then 32 hex digits",
    "short": "one character each, any Unicode character but a surrogate (control characters,"
    " spaces and 4-byte emoji included), all distinct within a drop; another drop reuses"
    " them, so load one drop per warehouse in this style",
    "long": "255 characters: a 223-character prefix shared by every session, then 32 hex digits",
}
DEFAULT_ID_STYLE = "uuid"
SHARED_ID_PREFIX = "monetate:retailer-4521:site-www.example.com:session-stream:session:"[:64]
_LONG_ID_PREFIX = ("monetate-session-stream-" * 10)[: tables.SESSION_ID.length - 32]
# `short` ids: every Unicode scalar value but the surrogates, by UTF-8 length (1 to 4 bytes).
# Sessions take the classes in turn while each lasts, so a drop of any size holds characters of
# every length, and each class is walked with a stride coprime to its size.
_UTF8_CLASSES = (
    (0, 0x80, 37),
    (0x80, 0x780, 7),
    (0x800, 0xF000, 7919),
    (0x10000, 0x100000, 7919),
)


def _short_id(index: int) -> str:
    used, active, i = [0] * 4, [0, 1, 2, 3], index
    while active:
        turn = min(_UTF8_CLASSES[c][1] - used[c] for c in active)
        if i < turn * len(active):
            c = active[i % len(active)]
            first, size, stride = _UTF8_CLASSES[c]
            n = first + (used[c] + i // len(active)) * stride % size
            return chr(n + 0x800 if n >= 0xD800 else n) if c == 2 else chr(n)
        i -= turn * len(active)
        for c in active:
            used[c] += turn
        active = [c for c in active if used[c] < _UTF8_CLASSES[c][1]]
    raise ConfigError(f"the 'short' id style has {index:,} distinct ids, not {index + 1:,}")


def session_id(style: str, bits: int, window_ms: int, index: int) -> str:
    """The session id of style `style` made from a session's 128 random `bits`, the start of
    its first window (epoch ms) and its index in the drop."""
    h = f"{bits:032x}"
    if style == "uuid":
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if style == "timestamp":
        return f"{window_ms}-{ACCOUNT_ID}-{h}"
    if style == "prefix":
        return SHARED_ID_PREFIX + h
    if style == "short":
        return _short_id(index)
    if style == "long":
        return _LONG_ID_PREFIX + h
    raise ConfigError(f"unknown id style {style!r}: use one of {', '.join(ID_STYLES)}")


def _keys(table: tables.Table) -> SimpleNamespace:
    """JSON keys by column name; a renamed column fails here at import, not silently later."""
    return SimpleNamespace(**{c.name: c.json_key for c in table.columns})


S = _keys(tables.SESSIONS)
CART = _keys(tables.CART_LINES)
VIEW = _keys(tables.VIEW_LINES)
PLINE = _keys(tables.PURCHASE_LINES)
ITEM = _keys(tables.PURCHASE_LINE_ITEMS)
CUSTOM_TARGETS_KEY = tables.CUSTOM_TARGETS.path[0]
OFFERS_KEY = tables.OFFERS.path[0]
PAGE_EVENTS_KEY = tables.PAGE_EVENT_IDS.path[0]
PURCHASES_KEY = tables.PURCHASES.path[0]
CART_KEY = tables.CART_LINES.path[0]
VIEW_KEY = tables.VIEW_LINES.path[0]
PURCHASE_LINES_KEY, ITEMS_KEY = tables.PURCHASE_LINE_ITEMS.path
COLLECTION_KEYS = tables.COLLECTION_KEYS
SESSION_KEYS = tuple(c.json_key for c in tables.SESSIONS.columns)

# (browser, browser versions, os, os versions, device type, screens (width, height), weight)
_DESKTOP = ((1920, 1080), (1536, 864), (1440, 900), (2560, 1440), (1366, 768))
_PHONE = ((390, 844), (393, 852), (412, 915), (360, 800), (430, 932))
_TABLET = ((820, 1180), (810, 1080), (800, 1280))
AGENTS = (
    ("Chrome", ("124.0", "125.0", "126.0"), "Windows", ("10", "11"), "Desktop", _DESKTOP, 30),
    ("Mobile Safari", ("17.4.1", "17.5"), "iOS", ("17.4.1", "17.5"), "Smartphone", _PHONE, 25),
    (
        "Chrome Mobile",
        ("124.0.6367", "125.0.6422"),
        "Android",
        ("13", "14"),
        "Smartphone",
        _PHONE,
        15,
    ),
    ("Safari", ("17.4.1",), "Mac OS X", ("10.15.7", "14.4"), "Desktop", _DESKTOP, 10),
    ("Edge", ("124.0.2478",), "Windows", ("10", "11"), "Desktop", _DESKTOP, 8),
    ("Firefox", ("125.0", "126.0"), "Windows", ("10", "11"), "Desktop", _DESKTOP, 5),
    ("Mobile Safari", ("17.4",), "iOS", ("17.4",), "Tablet", _TABLET, 4),
    ("Chrome", ("123.0",), "Linux", ("x86_64",), "Desktop", _DESKTOP, 2),
    ("Instagram", ("327.0.0",), "iOS", ("17.4.1",), "Smartphone", _PHONE, 6),
    ("Facebook", ("460.0.0",), "Android", ("14",), "Smartphone", _PHONE, 5),
    ("Googlebot", ("2.1",), "Other", ("Other",), "Other", ((1024, 768),), 1),
)
# (country, region, city, weight)
PLACES = (
    ("US", "California", "Los Angeles", 10),
    ("US", "New York", "New York", 10),
    ("US", "Texas", "Houston", 6),
    ("US", "Illinois", "Chicago", 6),
    ("US", "Washington", "Seattle", 4),
    ("US", "Florida", "Miami", 4),
    ("US", "Pennsylvania", "Philadelphia", 3),
    ("CA", "Ontario", "Toronto", 4),
    ("CA", "Quebec", "Montréal", 2),
    ("GB", "England", "London", 5),
    ("GB", "Scotland", "Edinburgh", 1),
    ("DE", "Berlin", "Berlin", 2),
    ("FR", "Île-de-France", "Paris", 2),
    ("AU", "New South Wales", "Sydney", 2),
    ("MX", "Ciudad de México", "Mexico City", 1),
    ("JP", "Tokyo", "Tokyo", 1),
    ("BR", "São Paulo", "São Paulo", 1),
)
CUSTOM_TARGET_VALUES = (
    "true",
    "false",
    "gold",
    "silver",
    "returning",
    "new",
    "3",
    "12",
    "loyalty-tier-2",
    "US-West",
    "spring_sale_2024",
    "free-shipping-eligible",
)
SIZES = ("XS", "S", "M", "L", "XL", "8", "9", "10", "11")
COLORS = ("BLK", "NVY", "RED", "GRN", "WHT", "GRY")
OFFSETS_MIN = (120, -300, 330, 0, -480, 60)  # minutes east of UTC for "time_offset"


class _Catalog:
    """Ids a retailer reuses across sessions: targets, experiences, page events, products."""

    def __init__(self, rng: random.Random):
        self.targets = [str(10000 + 37 * k) for k in range(60)]
        self.offers = [str(rng.randrange(1_000_000, 9_999_999)) for _ in range(200)]
        self.events = [str(90000 + 11 * k) for k in range(50)]
        self.products = [str(4_100_000_000 + 7919 * k) for k in range(2000)]
        self.price_cents = [rng.randrange(499, 25000) for _ in self.products]
        self.agents = [a[:6] for a in AGENTS]
        self.agent_weights = [a[6] for a in AGENTS]
        self.places = [p[:3] for p in PLACES]
        self.place_weights = [p[3] for p in PLACES]


class _Session:
    """One session's full history; versions are cut from it at an end time (see _render)."""

    __slots__ = (
        "sid",
        "scalars",
        "start",
        "targets",
        "offers",
        "events",
        "views",
        "carts",
        "purchases",
        "stale_target",
        "history",
    )


def _iso(ms: int, offset_min: int | None = None) -> str:
    """ISO-8601 with milliseconds: `Z` form, or local time with a ±HH:MM offset."""
    secs, frac = divmod(ms + (offset_min or 0) * 60_000, 1000)
    t = time.gmtime(secs)
    text = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{frac:03d}"
    )
    if offset_min is None:
        return text + "Z"
    sign = "+" if offset_min >= 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def _money(cents: int) -> float:
    # cents / 100 prints with at most two decimals (shortest repr of a correctly rounded quotient).
    return cents / 100


def _new_session(
    rng: random.Random,
    cat: _Catalog,
    start: int,
    end: int,
    *,
    busy: bool,
    bounce: bool,
    make_id=lambda bits, window_ms: session_id(DEFAULT_ID_STYLE, bits, window_ms, 0),
) -> _Session:
    """A session's history from `start` to `end`; `busy` guarantees a cart and a purchase.
    `make_id(bits, window_ms)` makes its id from 128 random bits and its window's start."""
    r = rng.random
    s = _Session()
    s.sid = make_id(rng.getrandbits(128), start - start % WINDOW_MS)
    browser, browser_versions, os_name, os_versions, device, screens = rng.choices(
        cat.agents, cat.agent_weights
    )[0]
    country, region, city = rng.choices(cat.places, cat.place_weights)[0]
    width, height = rng.choice(screens)
    returning = r() < 0.75
    customer = f"{rng.getrandbits(160):040x}" if r() < 0.3 else None  # a hashed e-mail
    s.start = start
    s.scalars = {
        S.account_id: ACCOUNT_ID,
        S.browser: browser,
        S.browser_version: rng.choice(browser_versions),
        S.city: city,
        S.country_code: country,
        S.customer_id: customer,
        # The retailer's link for a known customer (their id in another system), usually absent.
        S.customer_link: f"crm-{rng.randrange(10**8, 10**9)}" if customer and r() < 0.5 else None,
        S.device_type: device,
        S.guid: str(uuid.UUID(int=rng.getrandbits(128), version=4)),  # the visitor, across sessions
        S.os: os_name,
        S.os_version: rng.choice(os_versions),
        S.region: region,
        S.screen_height: height,
        S.screen_width: width,
        S.session_count: rng.randrange(2, 40) if returning else 1,
        S.has_new_customer: "f" if returning else "t",
        S.has_stealth: "t" if r() < 0.02 else "f",
    }
    # The visitor's earlier sessions, for the `_ss` ("so far", all sessions) totals:
    # page views, seconds on site, value (cents).
    s.history = (
        (
            rng.randrange(1, 300),
            rng.randrange(30, 40_000),
            rng.choice((0, 0, rng.randrange(999, 90_000))),
        )
        if returning
        else (0, 0, 0)
    )
    s.stale_target = None
    span = max(end - start, 1)

    def at() -> int:
        return start + int(r() * span)

    if bounce:
        s.targets = s.offers = s.events = s.views = s.carts = s.purchases = []
        return s
    s.targets = [
        (t, rng.choice(CUSTOM_TARGET_VALUES)) for t in rng.sample(cat.targets, rng.randint(1, 3))
    ]
    s.offers = sorted(((o, at()) for o in rng.sample(cat.offers, rng.randint(1, 3))), key=_second)
    s.events = sorted(((e, at()) for e in rng.sample(cat.events, rng.randint(1, 3))), key=_second)
    s.views = sorted(
        ((rng.choice(cat.products), at()) for _ in range(rng.randint(1, 4))), key=_second
    )
    s.carts = []
    s.purchases = []
    if busy or r() < 0.35:
        carts = []
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(cat.products))
            pid = cat.products[k]
            sku = f"{pid}-{rng.choice(SIZES)}-{rng.choice(COLORS)}"
            carts.append((pid, sku, rng.randint(1, 3), cat.price_cents[k], at()))
        carts.sort(key=_last)
        s.carts = carts
        if busy or r() < 0.25:
            # The cart is bought at the end of the session.
            order = f"ORD-{rng.randrange(10**9):09d}"
            s.purchases = [(order, end, carts)]
    return s


def _second(item):
    return item[1]


def _last(item):
    return item[-1]


def _reemit(rng: random.Random, cat: _Catalog, s: _Session, cut: int, end: int) -> None:
    """Make the history after `cut` differ: a cart line, a view and a purchase after it, and a
    custom target seen only in the open version."""
    span = max(end - cut, 2)
    k = rng.randrange(len(cat.products))
    pid = cat.products[k]
    late = cut + 1 + rng.randrange(span - 1)
    s.carts = [*s.carts, (pid, f"{pid}-{rng.choice(SIZES)}-BLK", 1, cat.price_cents[k], late)]
    s.views = [*s.views, (pid, late)]
    s.purchases = [(f"ORD-{rng.randrange(10**9):09d}", end, s.carts)]
    used = {t for t, _ in s.targets}
    s.stale_target = (next(t for t in cat.targets if t not in used), "cart-abandon-risk")


def _render(s: _Session, end: int, closed: bool, qr: random.Random | None) -> dict:
    """The session object as Monetate writes it at `end`; `qr` (quirk stream) makes it quirky."""
    targets = dict(s.targets)
    if not closed and s.stale_target:
        targets[s.stale_target[0]] = s.stale_target[1]
    offers = {o: t for o, t in s.offers if t <= end}
    events = {e: t for e, t in s.events if t <= end}
    views = [(p, t) for p, t in s.views if t <= end]
    carts = [c for c in s.carts if c[4] <= end]
    purchases = [p for p in s.purchases if p[1] <= end]

    if qr is None:
        fmt_time = _iso

        def fmt_money(cents):
            return _money(cents)

        def fmt_qty(q):
            return q
    else:

        def fmt_time(ms):
            form = qr.randrange(3)
            if form == 0:
                return _iso(ms)
            if form == 1:
                return _iso(ms, qr.choice(OFFSETS_MIN))
            return ms

        def fmt_money(cents):
            return f"{cents // 100}.{cents % 100:02d}00" if qr.random() < 0.5 else f"{cents / 100}"

        def fmt_qty(q):
            return str(q)

    page_views = max(1, len(views) + len(events) // 2)
    value = sum(q * cents for _, _, lines in purchases for _, _, q, cents, _ in lines)
    seconds = (end - s.start) // 1000
    views_so_far, seconds_so_far, value_so_far = s.history
    scalars = {
        **s.scalars,
        S.session_id: s.sid,
        S.start_time: s.start,
        S.end_time: end,
        S.page_views: page_views,
        S.page_views_ss: page_views + views_so_far,
        S.product_view_count: len(views),
        S.purchase_count: len(purchases),
        S.purchase_value_ss: fmt_money(value + value_so_far),
        S.session_value: fmt_money(value),
        S.session_value_ss: fmt_money(value + value_so_far),
        S.time_on_site: seconds,
        S.time_on_site_ss: seconds + seconds_so_far,
        S.has_cart: "t" if carts else "f",
        S.has_product_view: "t" if views else "f",
        S.has_purchase: "t" if purchases else "f",
        S.is_bounce: "t" if page_views == 1 and not (carts or views or targets) else "f",
        S.is_closed: "t" if closed else "f",
    }
    obj = {
        # Every field of Monetate's sample loader, in its schema's order.
        **{key: scalars[key] for key in SESSION_KEYS},
        CUSTOM_TARGETS_KEY: targets,
        OFFERS_KEY: offers,
        PAGE_EVENTS_KEY: events,
        PURCHASES_KEY: {},
        CART_KEY: [
            {CART.product_id: p, CART.sku: sku, CART.quantity: fmt_qty(q), CART.time: fmt_time(t)}
            for p, sku, q, _, t in carts
        ],
        VIEW_KEY: [{VIEW.product_id: p, VIEW.time: fmt_time(t)} for p, t in views],
        PURCHASE_LINES_KEY: {},
    }
    for order, t, lines in purchases:
        total = sum(q * cents for _, _, q, cents, _ in lines)
        obj[PURCHASES_KEY][order] = fmt_money(total)
        obj[PURCHASE_LINES_KEY][order] = {
            PLINE.time: fmt_time(t),
            PLINE.total: fmt_money(total),
            ITEMS_KEY: [
                {
                    ITEM.product_id: p,
                    ITEM.sku: sku,
                    ITEM.quantity: fmt_qty(q),
                    ITEM.unit_price: fmt_money(cents),
                }
                for p, sku, q, cents, _ in lines
            ],
        }
    if qr is not None:
        _add_quirks(obj, qr)
    return obj


def _add_quirks(obj: dict, qr: random.Random) -> None:
    """The non-time quirks (times are handled while rendering): see QUIRKS."""
    for key in (S.page_views, S.screen_width, S.time_on_site):
        obj[key] = str(obj[key])
    # Absent means empty: drop every empty collection, and empty one more to be sure one is absent.
    obj[OFFERS_KEY] = {}
    for key in COLLECTION_KEYS:
        if not obj[key]:
            del obj[key]
    # Unknown keys, top level and nested.
    obj["x_debug"] = {"build": "ss-2024.05.1", "shard": qr.randrange(64), "tags": ["a", "b"]}
    obj["schema_version"] = 3
    for line in obj.get(CART_KEY, ()):
        line["color_name"] = "navy"
    for line in obj.get(VIEW_KEY, ()):
        line["list_position"] = qr.randrange(1, 40)
    for pline in obj.get(PURCHASE_LINES_KEY, {}).values():
        pline["currency"] = "USD"
        for item in pline[ITEMS_KEY]:
            item["discount"] = {"code": None, "amount": "0.00"}
    # Tricky strings: one custom target each, plus a few scalars and line values.
    targets = obj.setdefault(CUSTOM_TARGETS_KEY, {})
    for n, value in enumerate(TRICKY_STRINGS):
        targets[f"7{n:04d}"] = value
    obj[S.city] = qr.choice(("Zürich 🏔️", "Kraków", "東京"))
    obj[S.customer_link] = 'https://shop.example.com/account?q="boots",\tsize=10\\11'
    obj[S.customer_id] = qr.choice(("NULL", "\\N", ""))
    obj[S.region] = None
    for line in obj.get(CART_KEY, ()):
        line[CART.sku] = line[CART.sku] + ' "limited", 50\\50'
    for line in obj.get(VIEW_KEY, ()):
        line[VIEW.product_id] = line[VIEW.product_id] + "\t🧦"


def _bad_line(kind: str, n: str, good: dict) -> bytes:
    if kind == "not_json":
        return (
            b'{"'
            + S.session_id.encode()
            + b'": "'
            + f"{BAD_SESSION_PREFIX}json-{n}".encode()
            + b'", "x": '
        )
    if kind == "no_session_id":
        obj = dict(good)
        del obj[S.session_id]
        return orjson.dumps(obj)
    obj = dict(good)
    obj[S.session_id] = f"{BAD_SESSION_PREFIX}long-{n}"
    browser = next(c for c in tables.SESSIONS.columns if c.name == "browser")
    obj[S.browser] = "X" * (browser.length + 1)
    return orjson.dumps(obj)


def write_drop(
    root: Path,
    day: date,
    *,
    sessions: int = 80_000,
    files: int = 16,
    start_hour: int = 0,
    hours: int = 24,
    seed: int = 0,
    quirks: bool = True,
    reemit: float = REEMIT_SHARE,
    bad_lines: int = 0,
    compresslevel: int = GZIP_LEVEL,
    id_style: str = DEFAULT_ID_STYLE,
    window_count: int | None = None,
) -> list[Path]:
    """Write a drop under `root/YYYY/MM/DD/` and return the files written, oldest first.

    The files are spread evenly over the windows of hours [start_hour, start_hour + hours) of
    `day`, or over the first `window_count` of them; when `files` exceeds the windows, several files
    share a window.
    """
    if files < 1 or sessions < 0:
        raise ConfigError("a drop needs at least one file and a non-negative number of sessions")
    if not (0 <= start_hour < 24 and 1 <= hours <= 24 - start_hour):
        raise ConfigError(
            "the hours of a drop must lie in one day: 0 <= start_hour < start_hour + hours <= 24"
        )
    if id_style not in ID_STYLES:
        raise ConfigError(f"unknown id style {id_style!r}: use one of {', '.join(ID_STYLES)}")
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    windows = [
        day_start + timedelta(minutes=15 * w)
        for w in range(start_hour * WINDOWS_PER_HOUR, (start_hour + hours) * WINDOWS_PER_HOUR)
    ][:window_count]
    if not windows:
        raise ConfigError("a drop needs at least one window")
    drop = _Drop(seed, quirks, windows[0], id_style)
    per_window: dict[datetime, int] = defaultdict(int)
    for k in range(files):
        ws = windows[k * len(windows) // files]
        # Numbers grow within a window, so name order is write order (ties go to the later file).
        number = ms_of(ws) + WINDOW_MS + 1000 * per_window[ws] + drop.rng.randrange(1000)
        per_window[ws] += 1
        drop.plan.append((ws, number))

    counts = [sessions // files + (k < sessions % files) for k in range(files)]
    eligible = sum(counts[:-1])  # a session in the last file has no later file to reappear in
    n_reemit = min(eligible, round(reemit * sessions)) if reemit > 0 and eligible else 0
    drop.reemitted = set(drop.rng.sample(range(eligible), n_reemit))
    bad_by_file: dict[int, list[str]] = defaultdict(list)
    for b in range(bad_lines):
        bad_by_file[b % files].append(BAD_KINDS[b % len(BAD_KINDS)])

    folder = root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (ws, number) in enumerate(drop.plan):
        path = folder / file_name(ws, number)
        with open(path, "wb") as raw, gzip.GzipFile("", "wb", compresslevel, raw, mtime=0) as gz:
            out = []
            for line in drop.file_lines(k, counts[k], bad_by_file[k]):
                out.append(line)
                if len(out) >= 2000:
                    gz.write(b"\n".join(out) + b"\n")
                    out = []
            if out:
                gz.write(b"\n".join(out) + b"\n")
        paths.append(path)
    return paths


def ms_of(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


class _Drop:
    """The state that runs across files: random streams, the file plan, closed versions due."""

    def __init__(self, seed: int, quirks: bool, first_window: datetime, id_style: str):
        self.seed = seed
        self.id_style = id_style
        # The retailer's catalog is the seed's; the sessions are the seed's and the hours',
        # so drops of other days or hours never send the same session ids again.
        self.cat = _Catalog(random.Random(seed))
        self.rng = random.Random(f"{seed}/{first_window.isoformat()}")
        # Own streams: quirks and bad lines leave the sessions and their order alone.
        self.qr = random.Random(f"{seed}/quirks") if quirks else None
        self.br = random.Random(f"{seed}/bad")
        self.plan: list[tuple[datetime, int]] = []  # (window start, number) per file, name order
        self.reemitted: set[int] = set()
        self.pending: dict[int, list[bytes]] = defaultdict(list)  # closed versions due in file k
        self.index = 0  # global session index

    def file_lines(self, k: int, count: int, bad_kinds: list[str]):
        """The lines of file k: `count` new sessions, the closed versions due, the bad lines."""
        due = self.pending.pop(k, [])
        n_good = count + len(due)
        slots = random.Random(f"{self.seed}/slots/{k}")
        due_at = dict(zip(sorted(slots.sample(range(n_good), len(due))), due, strict=True))
        bad_pos = sorted(self.br.sample(range(n_good + len(bad_kinds)), len(bad_kinds)))
        bad_at = dict(zip(bad_pos, bad_kinds, strict=True))
        w0 = ms_of(self.plan[k][0])
        good = 0
        last: dict | None = None
        for pos in range(n_good + len(bad_kinds)):
            if pos in bad_at:
                if last is None:  # a bad line is built from a good one, for realism
                    stub = _new_session(self.br, self.cat, w0, w0 + 1, busy=False, bounce=True)
                    last = _render(stub, w0 + 1, True, None)
                yield _bad_line(bad_at[pos], f"{k}-{pos}", last)
                continue
            if good in due_at:
                yield due_at[good]
            else:
                last = self._session(k, w0)
                yield orjson.dumps(last)
                self.index += 1
            good += 1

    def _make_id(self, bits: int, window_ms: int) -> str:
        return session_id(self.id_style, bits, window_ms, self.index)

    def _session(self, k: int, w0: int) -> dict:
        """The next new session for file k; a re-emitted one also queues its closed version."""
        rng, r, index = self.rng, self.rng.random, self.index
        busy = index % QUIRK_EVERY == QUIRK_PHASE  # rng use must not depend on `quirks`
        qr = self.qr if busy else None
        if index not in self.reemitted:
            bounce = not busy and r() < BOUNCE_SHARE
            start = w0 + int(r() * 0.9 * WINDOW_MS)
            end = start if bounce else start + int(rng.expovariate(1 / 240_000))
            end = min(end, w0 + WINDOW_MS - 1)
            s = _new_session(
                rng, self.cat, start, end, busy=busy, bounce=bounce, make_id=self._make_id
            )
            return _render(s, end, True, qr)
        # Open in file k (ending in the first half of its window), closed in a later file j.
        j = min(len(self.plan) - 1, k + 1 + (r() < 0.3))
        start = w0 + int(r() * 0.4 * WINDOW_MS)
        cut = start + 1 + int(r() * 0.1 * WINDOW_MS)
        wj = ms_of(self.plan[j][0])
        lo = max(cut + 2, wj)
        end = lo + int(r() * (wj + WINDOW_MS - 1 - lo))
        s = _new_session(rng, self.cat, start, cut, busy=busy, bounce=False, make_id=self._make_id)
        _reemit(rng, self.cat, s, cut, end)
        self.pending[j].append(orjson.dumps(_render(s, end, True, qr)))
        return _render(s, cut, False, qr)


def write_hour(root: Path, hour: datetime, **kwargs) -> list[Path]:
    """A drop of one hour (the DAG's interval): write_drop for the hour starting at `hour` (UTC)."""
    kwargs.setdefault("sessions", 200)
    kwargs.setdefault("files", 4)
    return write_drop(root, hour.date(), start_hour=hour.hour, hours=1, **kwargs)


def truncate_file(path: Path, keep_bytes: int | None = None) -> Path:
    """Cut a file short (default: to half its size), like an interrupted transfer."""
    size = path.stat().st_size
    keep = size // 2 if keep_bytes is None else keep_bytes
    if not 0 <= keep < size:
        raise ValueError(f"keep_bytes must be below the file size {size}, got {keep}")
    with open(path, "r+b") as f:
        f.truncate(keep)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="root of the drop tree to write")
    parser.add_argument(
        "--day",
        type=date.fromisoformat,
        default=date(2024, 5, 1),
        help="UTC day of the drop, YYYY-MM-DD (default 2024-05-01)",
    )
    parser.add_argument(
        "--sessions", type=int, default=80_000, help="distinct sessions (default 80000)"
    )
    parser.add_argument(
        "--files", type=int, default=16, help="files, spread over the day's windows (default 16)"
    )
    parser.add_argument(
        "--start-hour", type=int, default=0, help="first UTC hour with files (default 0)"
    )
    parser.add_argument(
        "--hours", type=int, default=None, help="hours with files (default: to the end of the day)"
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--no-quirks", action="store_true", help="plain data only, no input quirks")
    parser.add_argument(
        "--bad-lines", type=int, default=0, help="lines a loader must reject (default 0)"
    )
    parser.add_argument(
        "--truncate", type=int, default=0, help="cut this many of the newest files short"
    )
    parser.add_argument(
        "--id-style",
        choices=tuple(ID_STYLES),
        default=DEFAULT_ID_STYLE,
        help="how session ids look: "
        + "; ".join(f"{k}: {v}" for k, v in ID_STYLES.items())
        + f" (default {DEFAULT_ID_STYLE})",
    )


def run(args: argparse.Namespace) -> int:
    hours = args.hours if args.hours is not None else 24 - args.start_hour
    try:
        paths = write_drop(
            args.out,
            args.day,
            sessions=args.sessions,
            files=args.files,
            start_hour=args.start_hour,
            hours=hours,
            seed=args.seed,
            quirks=not args.no_quirks,
            bad_lines=args.bad_lines,
            id_style=args.id_style,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot write the drop under {args.out}: {exc.strerror or exc}"
        ) from None
    for path in paths[max(0, len(paths) - args.truncate) :] if args.truncate > 0 else ():
        truncate_file(path)
    size = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files ({size / 1e6:.1f} MB gzip) under {args.out}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m session_stream.drop.sample") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a realistic, deterministic Monetate Session Stream drop tree (root/YYYY/MM/DD/*.json.gz).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SessionStreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
