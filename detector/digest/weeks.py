"""ISO weeks as the digest names them (``2026-W47``): parsing, bounds, the previous one."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from detector.errors import ConfigError

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


def parse_week(text: str) -> tuple[float, float]:
    """[start, end) of an ISO week in epoch seconds, Monday 00:00 UTC to the next Monday.

    >>> start, end = parse_week("2026-W47")
    >>> datetime.fromtimestamp(start, UTC).isoformat(), (end - start) / 86400
    ('2026-11-16T00:00:00+00:00', 7.0)
    >>> parse_week("2026-47")
    Traceback (most recent call last):
    ...
    detector.errors.ConfigError: week: expected an ISO week like 2026-W47, got '2026-47'
    """
    found = _WEEK.fullmatch(text.strip())
    if found is None:
        raise ConfigError(f"week: expected an ISO week like 2026-W47, got {text!r}")
    year, week = int(found[1]), int(found[2])
    try:
        monday = datetime.fromisocalendar(year, week, 1).replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"week: {year} has no ISO week {week} (expected 01 to 52 or 53), got {text!r}") from None
    return monday.timestamp(), (monday + timedelta(days=7)).timestamp()


def week_of(ts: float) -> str:
    """The ISO week holding an instant.

    >>> week_of(parse_week("2026-W01")[0]), week_of(parse_week("2026-W47")[1] - 1)
    ('2026-W01', '2026-W47')
    """
    year, week, _ = datetime.fromtimestamp(ts, UTC).isocalendar()
    return f"{year}-W{week:02d}"


def last_complete_week(now: float) -> str:
    """The most recent week that has ended by ``now``: what a Monday-morning digest reports.

    >>> last_complete_week(parse_week("2026-W48")[0] + 9 * 3600)
    '2026-W47'
    """
    return week_of(now - 7 * 86400)


def day_label(ts: float) -> str:
    """``Mon 16`` for a day's start.

    >>> day_label(parse_week("2026-W47")[0])
    'Mon 16'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%a %d")
