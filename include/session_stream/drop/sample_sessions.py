"""The sessions of a generated drop (sample.py writes them to files): their versions, the
reemitted ones, the contract's input quirks and the bad lines a loader must reject. Their ids
come from sample_ids.py, their values from sample_values.py, key names from tables.py; the same
seed gives the same sessions."""

from __future__ import annotations

import random
import time
import uuid
from types import SimpleNamespace

import orjson

from session_stream import tables
from session_stream.drop.sample_ids import ACCOUNT_ID, DEFAULT_ID_STYLE, session_id
from session_stream.drop.sample_values import (
    COLORS,
    CUSTOM_TARGET_VALUES,
    OFFSETS_MIN,
    SIZES,
    Catalog,
)

WINDOW_MS = 15 * 60 * 1000
WINDOWS_PER_HOUR = 4

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
    cat: Catalog,
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


def _reemit(rng: random.Random, cat: Catalog, s: _Session, cut: int, end: int) -> None:
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
