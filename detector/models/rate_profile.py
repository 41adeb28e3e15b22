"""The seasonal profile of a rate: what each hour of the week normally holds.

48 buckets, hour of day × weekday/weekend, each an exponentially weighted
mean amount per minute in units of the model's level (which follows slow
growth multiplicatively: multiplicative Holt-Winters). 48 rather than 168
hour-of-week buckets because Monday to Friday share a shape in most traffic,
so a weekday bucket is seen five times a week and can judge on day three
instead of in week three, and 48 means keep the state near 1 KB. Within an
hour the expectation is interpolated between neighbouring hours, so the
9 am ramp is a slope, not a staircase; where two hours are a step apart (a
nightly job starting or stopping), the tests also weigh the hour's own
bucket (:func:`own_bucket`). A bucket judges once it holds
``min_bucket_minutes`` (two visits); an unseen weekend hour borrows the
weekday hour times the learned weekend factor, for the upward test only.

The profile lives in the model's array of numbers from ``PROF`` on, and
the minutes each bucket has learned in its own array of counts
(:mod:`detector.models.rate_state`); these functions read and teach it.
"""

from __future__ import annotations

from array import array
from typing import Final

from detector.models.rate_state import BUCKETS, PROF, SEEN_CAP, RateConfig, six_digits

# which tests a minute's expectation may feed
NO_TEST: Final = 0
UP_ONLY: Final = 1
BOTH: Final = 2
ESTABLISHED: Final = 60  # minutes a bucket needs before it predicts (one visit)


def bucket(t: int, utc_offset_minutes: int) -> int:
    """The bucket of minute ``t``: hour of day, plus 24 at weekends.

    >>> bucket(0, 0), bucket(2 * 1440 + 9 * 60, 0)   # 1970-01-01 00:00, a Thursday; Saturday 09:00
    (0, 33)
    """
    local = t + utc_offset_minutes
    weekend = (local // 1440 + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    return (local // 60) % 24 + 24 * weekend


def profile_at(a: array[float], seen: array[int], c: RateConfig, t: int) -> tuple[float, bool, int]:
    """Profile amount for minute ``t`` (in units of the level), and how far to trust it.

    Returns (amount, whether the minute teaches the level and the noise,
    which tests it may feed: NO_TEST, UP_ONLY or BOTH).
    """
    b = bucket(t, c.utc_offset_minutes)
    other = (b + 24) % BUCKETS
    mature = seen[other] >= c.min_bucket_minutes
    if seen[b] >= ESTABLISHED:
        pos = ((t + c.utc_offset_minutes) % 60 + 0.5) / 60 - 0.5
        nb = bucket(t + (60 if pos >= 0 else -60), c.utc_offset_minutes)
        v = a[PROF + b]
        if seen[nb] >= ESTABLISHED:
            v += abs(pos) * (a[PROF + nb] - v)
        if seen[b] >= c.min_bucket_minutes:
            return v, True, BOTH
        return v, True, UP_ONLY if mature else NO_TEST  # a day type's second visit
    if mature:
        factor = weekend_factor(a, seen)
        return a[PROF + other] * (factor if b >= 24 else 1.0 / factor), False, UP_ONLY
    return 0.0, False, NO_TEST


STEP: Final = 2.0  # neighbouring hours this many times apart are a step (a job starting or stopping), not a ramp


def own_bucket(a: array[float], seen: array[int], c: RateConfig, t: int) -> float | None:
    """Minute ``t``'s own hour where the next one differs by a step (``STEP`` times); else None.

    :func:`profile_at` slides towards the neighbouring hour, as people's
    traffic ramps; a nightly job instead keeps its rate to the hour and
    stops. Where the two hours are a step apart, the caller also weighs the
    hour's own level.

    >>> from detector.models.rate_state import NUMBERS, BUCKETS
    >>> a, seen = NUMBERS.new(), array("H", [60] * BUCKETS)
    >>> a[PROF + 3], a[PROF + 4], a[PROF + 5] = 19.0, 0.1, 0.12
    >>> c = RateConfig()
    >>> own_bucket(a, seen, c, 3 * 60 + 50), own_bucket(a, seen, c, 4 * 60 + 50)  # a job's last minutes; a quiet hour
    (19.0, None)
    """
    offset = c.utc_offset_minutes
    b = bucket(t, offset)
    if seen[b] < ESTABLISHED:
        return None
    pos = ((t + offset) % 60 + 0.5) / 60 - 0.5
    nb = bucket(t + (60 if pos >= 0 else -60), offset)
    if seen[nb] < ESTABLISHED:
        return None
    own, other = a[PROF + b], a[PROF + nb]
    return own if other * STEP < own or own * STEP < other else None


def weekend_factor(a: array[float], seen: array[int]) -> float:
    """Weekend over weekday amount, over the hours both have seen (1 before any)."""
    both = [h for h in range(24) if min(seen[h], seen[h + 24]) >= ESTABLISHED]
    wd = sum(a[PROF + h] for h in both)
    we = sum(a[PROF + h + 24] for h in both)
    return we / wd if wd > 0 and we > 0 else 1.0


def learn_bucket(a: array[float], seen: array[int], c: RateConfig, t: int, x: float, level: float) -> None:
    """Teach minute ``t``'s bucket that it held ``x`` at ``level``: its mean, at least as fast as its half-life."""
    b = bucket(t, c.utc_offset_minutes)
    # (Bounds by comparisons, not min() and max(): the same values, no calls; this runs every minute.)
    n = seen[b] + 1
    seen[b] = n = SEEN_CAP if SEEN_CAP < n else n
    rate, least = 1.0 / n, c.bucket_rate
    rate = least if least > rate else rate
    prof = a[PROF + b]
    p = prof + rate * (x / (1e-6 if 1e-6 > level else level) - prof)
    a[PROF + b] = six_digits(p)  # six digits are plenty and keep the state small
