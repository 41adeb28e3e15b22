"""Field rules shared by the event contract and the fast decoder.

Both paths call these same functions, so a timestamp, a category or a status
is read one way only: the fast decoder cannot drift from the contract on
the rules most likely to change. Every rule raises :class:`InvalidEvent`
with a short code (for counting) and a reason (for the person fixing the
producer); reasons leave out the field name, which the caller prefixes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from detector.events import CATEGORIES, STATUSES, InvalidEvent

TS_MIN = datetime(2000, 1, 1, tzinfo=UTC).timestamp()  # event times outside [TS_MIN, TS_MAX) are absurd
TS_MAX = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
MS_FROM = 1e11  # numbers this large are epoch milliseconds (1e11 s is the year 5138)
TS_EXPECTED = "RFC 3339 like 2026-11-16T14:05:00Z or epoch seconds/milliseconds"

EXPECTED: dict[str, str] = {
    "ts": TS_EXPECTED,
    "model": "a non-empty string, e.g. gpt-4o-mini",
    "input_tokens": "an integer ≥ 0",
    "output_tokens": "an integer ≥ 0",
    "cached_input_tokens": "an integer ≥ 0",
    "memory_used_bytes": "an integer ≥ 0",
    "attempt": "an integer ≥ 1",
    "latency_ms": "a number ≥ 0",
    "cost_usd": "a number ≥ 0",
    "hourly_cost_usd": "a number ≥ 0",
    "utilization": "a fraction 0–1, or utilization_pct 0–100",
    "utilization_pct": "a percentage 0–100",
    "value": "a finite number",
    "tags": "an object of string → string",
    "node": "a non-empty string",
    "gpu": "a non-empty string",
    "metric": "a non-empty string, e.g. vector_db_usd",
    "unit": "a non-empty string, e.g. usd",
}
"""What each field holds, in the words used by reject reasons (default: a string)."""

_SHOWN_CHARS = 60
_fromisoformat = datetime.fromisoformat


def expected(field: str) -> str:
    """What ``field`` should hold, for messages.

    >>> expected("team")
    'a string'
    """
    return EXPECTED.get(field, "a string")


def show(value: object) -> str:
    """A value as the producer wrote it in JSON, short enough for a reason.

    >>> show("hosted"), show(True), show(None), show(12.5), show([1])
    ("'hosted'", 'true', 'null', '12.5', 'a list')
    """
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 4] + "…'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def parse_ts(value: object) -> float:
    """Event time as epoch seconds (UTC): RFC 3339 text, or epoch seconds or milliseconds.

    Text must carry its time zone: a clock reading without one is an hour
    or more wrong somewhere, and event time drives every alert.

    >>> parse_ts("2026-11-16T14:05:00.250Z"), parse_ts(1794837900250)
    (1794837900.25, 1794837900.25)
    >>> parse_ts("2026-11-16T14:05:00")
    Traceback (most recent call last):
    ...
    detector.events.InvalidEvent: '2026-11-16T14:05:00' has no time zone; add Z or +00:00
    """
    if type(value) is str:
        try:
            moment = _fromisoformat(value)
        except ValueError:
            moment = _from_unusual_text(value)
        if moment.tzinfo is None:
            raise InvalidEvent("bad_timestamp", f"{show(value)} has no time zone; add Z or +00:00")
        seconds = moment.timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = _seconds_from_number(value)
    elif value is None:
        raise InvalidEvent("missing_field", f"null (expected {TS_EXPECTED})")
    else:
        raise InvalidEvent("bad_timestamp", f"expected {TS_EXPECTED}, got {show(value)}")
    if TS_MIN <= seconds < TS_MAX:
        return seconds
    reason = f"{show(value)} is {_day(seconds)}, outside 2000-01-01 … 2100-01-01; absurd for an event time"
    raise InvalidEvent("absurd_value", reason)


def _day(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "beyond the calendar"


def _from_unusual_text(text: str) -> datetime:
    # RFC 3339 allows a lower-case z, which fromisoformat does not.
    try:
        if text[-1:] == "z":
            return _fromisoformat(text[:-1] + "Z")
        return _fromisoformat(text)
    except ValueError as exc:
        raise _bad_text(text, exc) from None


def _bad_text(text: str, exc: ValueError) -> InvalidEvent:
    detail = str(exc)
    why = "" if detail.startswith("Invalid isoformat") else f" ({detail})"
    return InvalidEvent("bad_timestamp", f"{show(text)} is not a time{why}; expected {TS_EXPECTED}")


def _seconds_from_number(number: int | float) -> float:
    if not math.isfinite(number):
        raise InvalidEvent("bad_timestamp", f"expected {TS_EXPECTED}, got {show(number)}")
    if not -1e15 < number < 1e15:  # beyond any epoch in s or ms; also keeps float() safe
        raise InvalidEvent("absurd_value", f"{show(number)} is no epoch time in seconds or milliseconds")
    return number / 1000 if number >= MS_FROM else float(number)


def check_category(value: object) -> str:
    """One of the six cost categories.

    >>> check_category("hosted")
    Traceback (most recent call last):
    ...
    detector.events.InvalidEvent: unknown 'hosted' (expected one of hosted_inference, \
self_hosted_inference, training, embedding, labelling, evaluation)
    """
    if isinstance(value, str) and value in CATEGORIES:
        return value
    raise InvalidEvent("unknown_category", f"unknown {show(value)} (expected one of {', '.join(CATEGORIES)})")


def check_status(value: object) -> str:
    """One of the request outcomes.

    >>> check_status("ok")
    'ok'
    """
    if isinstance(value, str) and value in STATUSES:
        return value
    raise InvalidEvent("unknown_status", f"unknown {show(value)} (expected one of {', '.join(STATUSES)})")


def required_text(value: object, field: str) -> str:
    """A non-empty string (a model name, a node, a metric).

    >>> required_text("", "model")
    Traceback (most recent call last):
    ...
    detector.events.InvalidEvent: expected a non-empty string, e.g. gpt-4o-mini, got ''
    """
    if value is None:
        raise InvalidEvent("missing_field", f"null (expected {expected(field)})")
    if isinstance(value, str) and value:
        return value
    raise InvalidEvent("invalid_value", f"expected {expected(field)}, got {show(value)}")


def optional_text(value: object, field: str) -> str:
    """A string, for labels and ids.

    >>> optional_text(5, "team")
    Traceback (most recent call last):
    ...
    detector.events.InvalidEvent: expected a string, got 5
    """
    if isinstance(value, str):
        return value
    raise InvalidEvent("invalid_value", f"expected {expected(field)}, got {show(value)}")
