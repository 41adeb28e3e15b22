"""The simulated span as a grid of minutes, and the one way its times are written.

Everything inside the simulator counts time in integer epoch milliseconds, so
that sorting, windows and formatting are exact and vectorised; datetimes
appear only at the edges (arguments, the ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

DEFAULT_START = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday, so a 7-day run is one whole week
MINUTE_MS = 60_000
DAY_MS = 86_400_000


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware time (e.g. 2026-11-16T00:00:00Z), got naive {moment.isoformat()}")
    return round(moment.timestamp() * 1000)


def rfc3339(moment: datetime | int) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, the form every event and the truth use.

    >>> rfc3339(datetime(2026, 11, 16, 14, 5, tzinfo=UTC))
    '2026-11-16T14:05:00.000Z'
    """
    ms = moment if isinstance(moment, int) else to_ms(moment)
    return format_ms(np.array([ms], dtype=np.int64))[0]


def format_ms(ts_ms: np.ndarray) -> list[str]:
    """Vectorised :func:`rfc3339` over epoch milliseconds.

    Written digit by digit into a fixed-width character array: numpy's own
    datetime formatting costs more than the rest of an event's rendering.

    >>> format_ms(np.array([0, 1_795_097_700_123]))
    ['1970-01-01T00:00:00.000Z', '2026-11-19T14:15:00.123Z']
    """
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    days, ms = np.divmod(ts_ms, DAY_MS)
    unique_days, which = np.unique(days, return_inverse=True)
    dates = np.datetime_as_string(unique_days.astype("datetime64[D]"))
    if any(len(date) != 10 for date in dates.tolist()):  # a year outside 0000–9999 does not fit the layout
        return [t + "Z" for t in np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms").tolist()]
    dates = dates.astype("<U10")
    text = np.empty((len(ts_ms), 24), dtype=np.uint32)
    text[:, :10] = dates.view(np.uint32).reshape(-1, 10)[which]
    fields = (ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60)
    for col, (value, sep) in zip((11, 14, 17), zip(fields, "T::", strict=True), strict=True):
        text[:, col - 1] = ord(sep)
        text[:, col] = 48 + value // 10
        text[:, col + 1] = 48 + value % 10
    text[:, 19] = ord(".")
    text[:, 20], text[:, 21], text[:, 22] = 48 + ms % 1000 // 100, 48 + ms % 100 // 10, 48 + ms % 10
    text[:, 23] = ord("Z")
    return text.view("<U24").ravel().tolist()


@dataclass(frozen=True, slots=True)
class Timeline:
    """``days`` whole days from ``start``, one slot per minute.

    >>> tl = Timeline(DEFAULT_START, 2)
    >>> tl.minutes, float(tl.hour_of_day()[600]), int(tl.weekday()[-1])
    (2880, 10.0, 1)
    """

    start: datetime
    days: int

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if to_ms(self.start) % MINUTE_MS:
            raise ValueError(f"start must fall on a whole minute, got {self.start.isoformat()}")

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS

    @property
    def minutes(self) -> int:
        return self.days * 1440

    def minute_ms(self) -> np.ndarray:
        """Epoch ms at the start of each minute."""
        return self.start_ms + MINUTE_MS * np.arange(self.minutes, dtype=np.int64)

    def hour_of_day(self) -> np.ndarray:
        """UTC hour of day (fractional) at the start of each minute."""
        return (self.minute_ms() % DAY_MS) / 3_600_000.0

    def weekday(self) -> np.ndarray:
        """0 = Monday … 6 = Sunday, for each minute (1970-01-01 was a Thursday)."""
        return (self.minute_ms() // DAY_MS + 3) % 7

    def elapsed_days(self, ts_ms: np.ndarray) -> np.ndarray:
        return (ts_ms - self.start_ms) / DAY_MS
