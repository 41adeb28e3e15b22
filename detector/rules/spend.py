"""The dollars of one alert's scope: spend per hour now, month to date, and the month-end projection.

Alerts price what they report: a threshold alert says what the breach costs
per hour, a budget alert what the month will come to. Both need the same two
running figures per scope, kept here in bounded memory (hourly buckets of the
last day, one month total).
"""

from __future__ import annotations

from detector.rules.records import month_bounds
from detector.rules.window_stats import WindowStats

HOUR = 3600.0
PROJECTION_WINDOW_S = 86400.0
"""The projection extrapolates the last day's rate: a whole daily cycle, so peak hours do not inflate it."""


class SpendTrack:
    """Dollars spent by one scope: the last hour, the last day and this month.

    >>> t = SpendTrack()
    >>> for minute in range(120):
    ...     t.add(1_789_999_980.0 + minute * 60, 0.5)
    >>> now = 1_789_999_980.0 + 120 * 60
    >>> round(t.per_hour(now), 2), round(t.month_to_date, 2)
    (30.0, 60.0)
    """

    __slots__ = ("hour", "day", "month", "month_end", "month_to_date", "first_ts", "seen")

    def __init__(self) -> None:
        self.hour = WindowStats(HOUR)
        self.day = WindowStats(PROJECTION_WINDOW_S)
        self.month = ""
        self.month_end = 0.0
        self.month_to_date = 0.0
        self.first_ts = 0.0
        self.seen = False

    def add(self, ts: float, dollars: float) -> None:
        if not self.seen:
            self.first_ts, self.seen = ts, True
        self.roll(ts)
        self.month_to_date += dollars
        self.hour.add(ts, dollars)
        self.day.add(ts, dollars)

    def roll(self, now: float) -> bool:
        """Start a new month total when ``now`` is past the month's end; True when it did."""
        if now < self.month_end:
            return False
        self.month, start, self.month_end = month_bounds(now)
        self.month_to_date = 0.0
        self.day = WindowStats(PROJECTION_WINDOW_S)  # last month's days say nothing of this month's total
        self.first_ts = max(self.first_ts, start)
        return True

    def per_hour(self, now: float) -> float:
        """$ per hour over the last hour (or over the time seen, when younger)."""
        covered = min(HOUR, max(self.hour.width, now - self.first_ts))
        return self.hour.total(now) / covered * HOUR

    def day_rate(self, now: float) -> float:
        """$ per hour over the last day (or over the time seen this month, when less)."""
        covered = min(PROJECTION_WINDOW_S, max(HOUR, now - self.first_ts))
        return self.day.total(now) / covered * HOUR

    def projected_month(self, now: float) -> float:
        """Month-end spend: spent so far, plus the last day's rate until the month ends."""
        self.roll(now)
        return self.month_to_date + self.day_rate(now) * max(0.0, self.month_end - now) / HOUR
