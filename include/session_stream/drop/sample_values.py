"""The values a generated session draws from: browsers and devices, places, custom target values,
and the ids a retailer reuses across sessions (its Catalog)."""

from __future__ import annotations

import random

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


class Catalog:
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
