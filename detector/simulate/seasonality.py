"""How busy a feature is, minute by minute, before anything goes wrong.

Real request volume is a product of slow and fast rhythms: the working day,
the week, a few percent of growth, day-to-day wobble, and short bursts (a
marketing email, a batch someone kicked off by hand). Detectors must learn to
live with all of these, so the simulator gives them all.
"""

from __future__ import annotations

import numpy as np

from detector.simulate.timeline import Timeline
from detector.simulate.world import Feature

# Share of the daily peak by UTC hour: quiet night, ramp from 08:00, plateau 10–16, evening decline.
_KNOTS_H = np.array([0, 3, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24], dtype=float)
_LEVEL = np.array([0.12, 0.08, 0.10, 0.35, 0.90, 1.0, 1.0, 0.90, 0.60, 0.40, 0.22, 0.12])

BUSY_PER_MIN = 5.0  # features at least this busy at peak get benign bursts
BURSTS_PER_DAY = 3.0
DAILY_WOBBLE = 0.06  # sigma of the day-to-day lognormal volume factor


def diurnal(hours: np.ndarray) -> np.ndarray:
    """Share of the daily peak at each UTC hour of day.

    >>> diurnal(np.array([3.0, 12.0, 21.0])).round(2).tolist()
    [0.08, 1.0, 0.31]
    """
    return np.interp(hours % 24.0, _KNOTS_H, _LEVEL)


def request_rate(feature: Feature, timeline: Timeline, rng: np.random.Generator) -> np.ndarray:
    """Expected requests in each minute of the timeline.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> f = Feature("t", "f", "gpt-4o-mini", 10, 500, 0.5, 50)
    >>> rate = request_rate(f, Timeline(DEFAULT_START, 1), np.random.default_rng(0))
    >>> bool(rate[13 * 60] > 5 * rate[3 * 60])
    True
    """
    hours = timeline.hour_of_day()
    if feature.batch_hours is None:
        shape = diurnal(hours)
        weekend = np.where(timeline.weekday() >= 5, feature.weekend_level, 1.0)
    else:
        first, last = feature.batch_hours
        shape = ((hours >= first) & (hours < last)).astype(float)
        weekend = np.ones(timeline.minutes)
    days = np.arange(timeline.minutes) / 1440.0
    growth = (1.0 + feature.weekly_growth) ** (days / 7.0)
    wobble = np.repeat(rng.lognormal(0.0, DAILY_WOBBLE, timeline.days), 1440)
    rate = feature.peak_rate_per_min * shape * weekend * growth * wobble
    if feature.batch_hours is None and feature.peak_rate_per_min >= BUSY_PER_MIN:
        rate *= bursts(timeline.minutes, rng)
    return rate


def bursts(minutes: int, rng: np.random.Generator) -> np.ndarray:
    """A volume multiplier with a few short benign bursts per day: 2–10 minutes at ×2–×4.

    >>> m = bursts(1440 * 7, np.random.default_rng(1))
    >>> bool(m.min() == 1.0 and 2.0 <= m.max() <= 4.0), int((m > 1).sum()) < 400
    (True, True)
    """
    multiplier = np.ones(minutes)
    count = rng.poisson(BURSTS_PER_DAY * minutes / 1440.0)
    starts = rng.integers(0, minutes, count)
    lengths = rng.integers(2, 11, count)
    factors = rng.uniform(2.0, 4.0, count)
    for start, length, factor in zip(starts.tolist(), lengths.tolist(), factors.tolist(), strict=True):
        multiplier[start : start + length] = factor
    return multiplier

