"""The baseline: the level a :class:`~detector.models.level_shift.LogLevelShift` tests against.

During warm-up it is the exact mean and variance of ``log(1 + x)`` so far
(Welford), with the wandering learned beside it; afterwards it follows the
data one closed minute at a time and forgets by requests and by event time,
so that a busy series and a slow one both follow slow drift, but slowly
enough that neither absorbs a shift, and slower still while one is
suspected. The numbers live in the model's packed array
(:mod:`~detector.models.level_state`); these functions update them in place.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

from detector.models.level_state import (
    LAST_CLOSE,
    LIM,
    M_N,
    M_RAW,
    M_SQ,
    MEAN,
    MINUTE,
    MINUTES,
    VAR,
    LevelConfig,
    N,
)
from detector.models.level_wander import learn_wander_warmup

HALF_LIFE_MINUTES: Final = 24 * 60  # the baseline forgets by event time too, so slow series follow slow drift
MIN_HALF_LIFE_MINUTES: Final = 120  # ... but never faster than this, so a busy series cannot absorb a shift in minutes
# what a minute forgets
_FLOOR_1: Final = 0.5 ** (1 / MIN_HALF_LIFE_MINUTES)
_KEEP_1: Final = 0.5 ** (1 / HALF_LIFE_MINUTES)


def learn_request(a: array[float], x: float) -> None:
    """During warm-up, add one request's ``x = log(1 + value)`` (already counted in ``n``) to the baseline."""
    delta = x - a[MEAN]
    a[MEAN] += delta / a[N]
    a[VAR] += delta * (x - a[MEAN])
    a[M_N] += 1
    a[M_RAW] += x


def close_warmup_minute(a: array[float], c: LevelConfig) -> bool:
    """During warm-up, learn τ² from how far the closed minute's mean strays; True once warm-up is over.

    At the end of warm-up the Welford sum of squares becomes the variance,
    and the winsorising bound is set from it.
    """
    mean_so_far = a[MEAN]
    dev = a[M_RAW] / a[M_N] - mean_so_far
    var = a[VAR] / max(a[N] - 1, 1)
    minutes = a[MINUTES]
    if minutes > 1:
        learn_wander_warmup(a, dev, var, minutes)
    if a[N] >= c.warmup and minutes >= c.warmup_minutes:
        a[VAR] = max(var, 1e-4)
        a[LIM] = c.clip * math.sqrt(a[VAR])
        return True
    return False


def follow_baseline(a: array[float], c: LevelConfig, dev: float, var: float, n: float, calm: bool) -> None:
    """Move the baseline towards a closed minute of ``n`` requests (mean deviation ``dev``; ``var`` is ``a[VAR]``).

    Forget n requests' worth (but no more than two hours' worth), or the
    time since the last minute if that is more (half-lives: `half_life`
    requests bounded below by two hours, a day); ten times slower while a
    shift is suspected (not ``calm``), so the baseline neither swallows an
    incident nor stays frozen for hours on a slow series whose evidence dawdles.
    """
    minute, last = a[MINUTE], a[LAST_CLOSE]
    gap = minute - last if last else 1
    a[LAST_CLOSE] = minute
    floor, by_time = (_FLOOR_1, _KEEP_1) if gap == 1 else (0.5 ** (gap / MIN_HALF_LIFE_MINUTES),
                                                           0.5 ** (gap / HALF_LIFE_MINUTES))
    by_requests = (1.0 - c.alpha) ** n
    by_requests = floor if floor > by_requests else by_requests
    keep = by_time if by_time < by_requests else by_requests
    w = (1.0 - keep) * (1.0 if calm else 0.1)
    a[MEAN] += w * dev
    a[VAR] = var = var + w * (a[M_SQ] / n - var)
    a[LIM] = c.clip * math.sqrt(var)
