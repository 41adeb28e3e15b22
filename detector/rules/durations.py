"""Durations in Prometheus units: ``30s``, ``5m``, ``1h30m``, ``7d``, ``1w``.

The same grammar as Prometheus ``model.ParseDuration`` (units largest first,
each at most once, integers only, ``0`` alone allowed) so ops engineers write
what they already write in alerting rules. A near miss (``5 minutes``,
``1.5h``, ``300``) is refused with the spelling that would have worked.
"""

from __future__ import annotations

import re

from detector.rules.diagnostics import quote

DAY_MS = 86400_000
UNITS: dict[str, int] = {  # milliseconds per unit
    "y": 365 * DAY_MS, "w": 7 * DAY_MS, "d": DAY_MS, "h": 3600_000, "m": 60_000, "s": 1000, "ms": 1,
}
_GRAMMAR = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
_WORDS = {
    "ms": "ms", "msec": "ms", "millisecond": "ms", "milliseconds": "ms",
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d", "w": "w", "week": "w", "weeks": "w",
    "y": "y", "year": "y", "years": "y",
}
_LOOSE_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
MAX_MS = 10 * UNITS["y"]
EXPECTED = "a Prometheus duration like 30s, 5m, 1h30m or 7d"


class DurationError(ValueError):
    """A text is not a duration; ``suggestion`` is the spelling that would be, if any."""

    def __init__(self, message: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.suggestion = suggestion


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration.

    >>> parse_duration("1h30m"), parse_duration("0"), parse_duration("250ms")
    (5400.0, 0.0, 0.25)
    >>> parse_duration("5 minutes")
    Traceback (most recent call last):
    ...
    detector.rules.durations.DurationError: not a duration: "5 minutes"
    """
    if text == "0":
        return 0.0
    match = _GRAMMAR.fullmatch(text)
    if match is None or not any(match.groups()):
        raise DurationError(f"not a duration: {quote(text)}", _suggest(text))
    total = sum(int(n) * UNITS[unit] for n, unit in zip(match.groups(), _ORDER, strict=True) if n)
    if total > MAX_MS:
        raise DurationError(f"duration {quote(text)} is longer than 10 years")
    return total / 1000


def format_duration(seconds: float) -> str:
    """The canonical Prometheus spelling of a number of seconds.

    >>> format_duration(5400), format_duration(0), format_duration(90.5)
    ('1h30m', '0s', '1m30s500ms')
    """
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit in _ORDER:
        count, ms = divmod(ms, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _suggest(text: str) -> str | None:
    """What the author most likely meant, when the words or numbers make it clear."""
    loose = text.strip().lower()
    if not loose or "M" in text:  # "5M" may mean months: better no guess than a wrong one
        return None
    if re.fullmatch(r"\d+(\.\d+)?", loose):
        return format_duration(float(loose))
    total, pos = 0.0, 0
    for part in _LOOSE_PART.finditer(loose):
        if loose[pos : part.start()].strip(" ,") or part.group(2) not in _WORDS:
            return None
        total += float(part.group(1)) * UNITS[_WORDS[part.group(2)]] / 1000
        pos = part.end()
    if pos == 0 or loose[pos:].strip() or total * 1000 > MAX_MS:
        return None
    return format_duration(total)
