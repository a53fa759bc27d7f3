"""UTC moments: every time this package compares or stores is a plain UTC datetime.

Monetate's file names and Airflow's data intervals are UTC, so a naive datetime is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from session_stream.errors import ConfigError


def to_utc(moment: datetime) -> datetime:
    """`moment` in UTC (naive means UTC already), as a plain datetime: not Airflow's pendulum
    subclass, whose arithmetic can drop the zone."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return datetime(*moment.timetuple()[:6], moment.microsecond, tzinfo=UTC)


def parse_utc(value: Any, what: str) -> datetime | None:
    """A user-given moment (ISO-8601 text or a datetime) in UTC; None for None or ''.

    `what` names the setting in the ConfigError a bad value raises.
    """
    if value in (None, ""):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(
                text.replace("Z", "+00:00") if text.endswith("Z") else text
            )
        except ValueError:
            raise ConfigError(
                f"{what} must be an ISO-8601 date or time such as 2026-11-01 or 2026-11-01T05:00:00Z, got {text!r}"
            ) from None
    if not isinstance(value, datetime):
        raise ConfigError(f"{what} must be a date-time, got {value!r}")
    return to_utc(value)
