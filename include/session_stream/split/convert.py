"""Converters: one JSON value to one staged field, per column kind of tables.py, or a Reject.

Every value is checked against its column so that MySQL never truncates, rounds or warns:
what does not fit exactly is a Reject, whose message is the reject reason (`<where>.<column>:
...`). Each converter tries the common, valid case first and formats the reason only for a
reject: they run for every value of every line.

Numbers are judged exactly, never through a binary float: splitter.py's decoder hands a JSON number
with a fraction or an exponent over as its text (JsonNumber) and an integer as an int of any
size, so `3.0000000000000001` is not the integer 3 and `-9223372036854775809` is not BIGINT's
minimum; what the column would store changed is rejected.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation

import orjson

from session_stream import tables
from session_stream.split.layout import NULL, escape, needs_escape

_INT_STRING = re.compile(r"\s*[-+]?\d+\s*", re.ASCII).fullmatch
_MONEY_PLAIN = re.compile(
    rf"-?\d{{1,{tables.MONEY_DIGITS - tables.MONEY_SCALE}}}(?:\.\d{{1,{tables.MONEY_SCALE}}})?",
    re.ASCII,
).fullmatch
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII).fullmatch
_MONEY_QUANTUM = Decimal(1).scaleb(-tables.MONEY_SCALE)
# Enough digits for any value DECIMAL(16,4) holds, so quantize and normalize never round one.
_MONEY_CONTEXT = Context(prec=tables.MONEY_DIGITS + 2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATETIME_MIN = datetime(1000, 1, 1, tzinfo=UTC)
# An integer string longer than this may be past int()'s digit limit: Decimal reads it instead.
_INT_DIGITS = 20


class Reject(ValueError):
    """A value that cannot be stored exactly; the message is the reject reason."""


class JsonNumber(str):
    """A JSON number with a fraction or an exponent, as the exact text the line wrote (splitter.py's
    decoder makes one per such literal): converters read its value exactly, as they read a numeric
    string, and a text column stores the text itself."""

    __slots__ = ()
    __repr__ = str.__str__  # reject reasons show the number as written, without quotes


def _fragment(value):
    if type(value) is JsonNumber:
        return orjson.Fragment(value)
    raise TypeError


def _json_text(value) -> str:
    """JSON text for a nested value holding an integer beyond 64 bits, which orjson cannot write."""
    t = type(value)
    if t is dict:
        return "{" + ",".join(f"{_json_text(k)}:{_json_text(v)}" for k, v in value.items()) + "}"
    if t is list:
        return "[" + ",".join(map(_json_text, value)) + "]"
    if t is int or t is JsonNumber:
        return str(value)
    return orjson.dumps(value).decode()


def _to_text(value) -> str:
    t = type(value)
    if t is str:
        return value
    # Numbers, booleans and nested values keep their JSON text: nothing is lost.
    if t is JsonNumber or t is int:
        return str(value)
    try:
        return orjson.dumps(
            value, default=_fragment, option=orjson.OPT_PASSTHROUGH_SUBCLASS
        ).decode()
    except orjson.JSONEncodeError:
        return _json_text(value)


def _decimal(text: str) -> Decimal | None:
    """The exact value of a number's text; None past Decimal's exponent limits."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


_SHOWN = reprlib.Repr()  # Python 3.11 takes no keywords here
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxlist = 2, 4, 4
_SHOWN.maxstring = _SHOWN.maxlong = _SHOWN.maxother = 40


def shown(value) -> str:
    """A value for a reject reason: its repr, or the head of it. A value of 5,000 digits or of
    megabytes would crowd out the reason, and a long string or a nested value is not written out
    whole before it is cut."""
    t = type(value)
    if t is str and len(value) > 60:
        return f"{value[:40]!r}... ({len(value):,} characters)"
    text = _SHOWN.repr(value) if t is dict or t is list else repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _changed(where: str, value, hi: int, *, integral: bool = True) -> Reject:
    sql = "INT" if hi == tables.INT_RANGE[1] else "BIGINT"
    if not integral:
        return Reject(
            f"{where}: {shown(value)} is not an integer, so it cannot be stored in {sql} without change"
        )
    return Reject(
        f"{where}: {shown(value)} does not fit {sql}, so it cannot be stored without change"
    )


def _integer(value, where: str, lo: int, hi: int) -> int:
    t = type(value)
    if t is int:
        n = value
    elif t is str and len(value) <= _INT_DIGITS and _INT_STRING(value):
        n = int(value)
    elif t is JsonNumber or t is str and _INT_STRING(value):
        # The exact value of the text, at any length: 3.0 and 1e3 are integers,
        # 3.0000000000000001 is not.
        d = _decimal(value)
        if d is None or not lo <= d <= hi:
            raise _changed(where, value, hi)
        if d != d.to_integral_value():
            raise _changed(where, value, hi, integral=False)
        n = int(d)
    elif t is float and value.is_integer():
        n = int(value)
    else:
        raise Reject(f"{where}: {shown(value)} is not an integer")
    if not lo <= n <= hi:
        raise _changed(where, n, hi)
    return n


def _money(value, where: str) -> str:
    t = type(value)
    if t is int:
        text = str(value)
    elif t is str or t is JsonNumber:
        text = value.strip()
    elif t is float:
        text = repr(value)
    else:
        raise Reject(f"{where}: {shown(value)} is not a number")
    if _MONEY_PLAIN(text):
        return text
    # Exponents, a leading '+', trailing zeros past the scale, more digits than a float holds:
    # let Decimal judge exactly (no context precision applies until the value is known to fit).
    # Only a number's text reaches Decimal, which also reads '1_000', 'NaN' and 'Infinity'.
    if not _NUMBER(text):
        raise Reject(f"{where}: {shown(value)} is not a number")
    d = _decimal(text)
    if d is None:  # a number past Decimal's exponent range
        raise _unfit_money(where, value)
    if d.is_zero():
        return "0"
    if d.adjusted() < tables.MONEY_DIGITS - tables.MONEY_SCALE:
        fitted = d.quantize(_MONEY_QUANTUM, context=_MONEY_CONTEXT)
        if fitted == d:
            return format(fitted.normalize(_MONEY_CONTEXT), "f")
    raise _unfit_money(where, value)


def _unfit_money(where: str, value) -> Reject:
    return Reject(
        f"{where}: {shown(value)} does not fit DECIMAL({tables.MONEY_DIGITS},{tables.MONEY_SCALE})"
        " without rounding, so it cannot be stored without change"
    )


# The feed's usual form: UTC to the millisecond, every time field in range, year 1000 or later.
_ISO_UTC_MS = re.compile(
    r"[1-9]\d{3}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z", re.ASCII
).fullmatch
_REAL_DAYS: set[str] = set()  # 'YYYY-MM-DD' texts already found to be real dates


def _real_day(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    if len(_REAL_DAYS) < 100_000:
        _REAL_DAYS.add(day)
    return True


def _utc_datetime(value, where: str, name: str) -> str:
    # `where` and `name` are joined only for a reject: most values take the first branch.
    t = type(value)
    if t is str and _ISO_UTC_MS(value):
        # The feed's usual form: once its date is known to be real (a day of the month past
        # the month's end is the only thing left to check), the answer is the string itself,
        # re-punctuated. Anything else in ISO form takes the general branch below.
        day = value[:10]
        if day in _REAL_DAYS or _real_day(day):
            return f"{day} {value[11:23]}"
        raise Reject(
            f"{where}.{name}: {shown(value)} is not an ISO-8601 time or epoch milliseconds"
        )
    if t is str and not _INT_STRING(value):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise Reject(
                f"{where}.{name}: {shown(value)} is not an ISO-8601 time or epoch milliseconds"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)  # no offset given: the feed's times are UTC
        if dt.microsecond % 1000:
            raise Reject(
                f"{where}.{name}: {shown(value)} has sub-millisecond precision that DATETIME(3) would drop"
            )
        try:
            dt = dt.astimezone(UTC)
        except OverflowError:
            raise Reject(f"{where}.{name}: {shown(value)} is out of range") from None
    else:
        ms = _integer(value, f"{where}.{name}", tables.BIGINT_RANGE[0], tables.BIGINT_RANGE[1])
        try:
            dt = _EPOCH + timedelta(milliseconds=ms)
        except OverflowError:
            raise Reject(f"{where}.{name}: {shown(value)} is out of range") from None
    if dt < _DATETIME_MIN:
        raise Reject(f"{where}.{name}: {shown(value)} is before the year 1000")
    return dt.isoformat(sep=" ", timespec="milliseconds")[:23]


FLAGS = {"t": "1", "f": "0", True: "1", False: "0"}


def converter(column: tables.Column, *, clean: bool = False) -> Callable[[object, str], str]:
    """The function turning a JSON value of `column` into its TSV field. clean=True: for values
    of a line known to hold no string that needs escaping (splitter.py), so a string that fits
    its column is taken as it is, without a look at its characters."""
    kind, name = column.kind, column.name
    if kind == tables.STR and clean:
        limit, general = column.length, converter(column)

        def conv(v, where):
            if type(v) is str and len(v) <= limit:
                return v
            return general(v, where)

    elif kind == tables.STR:
        limit, required = column.length, column.not_null

        def conv(v, where):
            if type(v) is str and len(v) <= limit and not needs_escape(v):
                return v  # the common case, first
            if v is None:
                if required:
                    raise Reject(f"{where}.{name}: missing")
                return NULL
            s = v if type(v) is str else _to_text(v)
            if len(s) > limit:
                raise Reject(f"{where}.{name}: {len(s)} characters do not fit VARCHAR({limit})")
            return escape(s)

    elif kind in (tables.INT, tables.BIGINT):
        lo, hi = tables.INT_RANGE if kind == tables.INT else tables.BIGINT_RANGE

        def conv(v, where):
            if v is None:
                return NULL
            if type(v) is int and lo <= v <= hi:
                return str(v)
            return str(_integer(v, f"{where}.{name}", lo, hi))

    elif kind == tables.MONEY:

        def conv(v, where):
            t = type(v)
            if t is str or t is JsonNumber:
                if _MONEY_PLAIN(v):
                    return v
            elif t is float:
                text = repr(v)  # the shortest text that reads back as v
                if _MONEY_PLAIN(text):
                    return text
            return NULL if v is None else _money(v, f"{where}.{name}")

    elif kind == tables.FLAG:

        def conv(v, where):
            if v is None:
                return NULL
            try:
                return FLAGS[v]
            except (KeyError, TypeError):
                if type(v) is JsonNumber and (d := _decimal(v)) in (0, 1):
                    return FLAGS[d == 1]  # 1.0 and 0.0 count, as 1 and 0 do
                raise Reject(f"{where}.{name}: {shown(v)} is not a 't'/'f' flag") from None

    elif kind == tables.DATETIME:

        def conv(v, where):
            return NULL if v is None else _utc_datetime(v, where, name)

    else:
        raise ValueError(f"no converter for {kind}")
    return conv


# What the split's fast path (fastsplit.py) inlines instead of calling a converter: the
# plainest money and time texts, the days already found real, and the time converter itself.
is_plain_money = _MONEY_PLAIN
is_iso_utc_ms = _ISO_UTC_MS
known_real_days = _REAL_DAYS
utc_datetime = _utc_datetime
