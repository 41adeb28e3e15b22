"""A seasonal rate's declared shift: what it reports, and how it is followed until it is over.

Once a shift is declared the baseline is frozen (a runaway must not become
the new normal), and two things follow the data instead: the ratio of
recent minutes to the frozen baseline, decaying by ``TRACK_DECAY`` a minute,
which is what an alert reports and which ends the shift once it falls
below √``min_ratio``; and a reverse CUSUM of "back at baseline" against
"still at the shift's ratio since its onset", which ends it on evidence.
The shift's numbers are fields of the model's array
(:mod:`detector.models.rate_state`), which these functions write and read.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from detector.models.rate_run import Tail, factor, llr
from detector.models.rate_state import (
    RM,
    RX,
    S_BACK,
    SHIFT_DIR,
    SHIFT_M,
    SHIFT_MINUTES,
    SHIFT_ONSET,
    SHIFT_X,
    SHIFTED_AT,
    RateConfig,
)

TRACK_DECAY: Final = 0.8  # per minute: how fast the shifted ratio follows the data ...
TRACK_MINUTES: Final = 5.0  # ... remembering about five minutes (1 / (1 - 0.8)) ...
TRACK_REQUESTS: Final = 25.0  # ... or as many as hold 25 requests ...
TRACK_MAX_MINUTES: Final = 25.0  # ... up to 25 minutes


@dataclass(frozen=True, slots=True)
class RateShift:
    """What the model concluded: direction, onset, and the rates either side (per minute)."""

    direction: int  # +1 up, -1 down
    onset_ts: float
    observed_per_minute: float
    expected_per_minute: float  # the baseline for the current minute
    minutes: int  # since the onset
    excess: float  # amount above (below, if negative) the baseline since the onset

    @property
    def ratio(self) -> float:
        e = self.expected_per_minute
        return self.observed_per_minute / e if e > 0 else math.inf


def start_shift(a: array[float], direction: int, t: int, onset: Tail, x: float, m: float) -> None:
    """Record a shift declared at minute ``t``, from its ``onset``; ``x`` over ``m`` in the window that decided it."""
    start, total_x, total_m, minutes = onset
    a[SHIFT_DIR], a[SHIFT_ONSET], a[SHIFT_MINUTES] = direction, start * 60.0, minutes
    a[RX], a[RM], a[SHIFT_X], a[SHIFT_M] = x, m, total_x, total_m
    a[S_BACK], a[SHIFTED_AT] = 0.0, (t + 1) * 60.0


def track_shift(a: array[float], c: RateConfig, x: float, mu: float, dispersion: Callable[[float], float]) -> bool:
    """Follow the shifted ratio with a minute of ``x`` where ``mu`` was expected; True once it is gone."""
    a[SHIFT_MINUTES] += 1
    a[SHIFT_X] += x
    a[SHIFT_M] += mu
    keep = tracking_keep(mu, dispersion(mu))
    a[RX] = keep * a[RX] + x
    a[RM] = keep * a[RM] + mu
    r = max(a[RX] / a[RM], 1e-9)
    if factor(r, int(a[SHIFT_DIR])) < math.sqrt(c.min_ratio):
        return True
    # LLR of "back at baseline" against "still at the shift's ratio since its onset" (a fixed
    # alternative: one that followed the data would chase the return instead of seeing it).
    ratio = max(a[SHIFT_X] / a[SHIFT_M], 1e-9)
    a[S_BACK] = max(0.0, a[S_BACK] - llr(x, mu, ratio) / dispersion(mu))
    return a[S_BACK] >= c.h


def tracking_keep(mu: float, d: float) -> float:
    """How much of the shifted ratio's sums a minute keeps: ``TRACK_DECAY``, or more on a slow series.

    ``TRACK_DECAY`` remembers about five minutes, enough requests on a busy
    series; on one of a request a minute, five minutes hold five, and their
    noise alone would end a lasting doubling. So the memory stretches to
    hold ``TRACK_REQUESTS`` (as Poisson counts), up to ``TRACK_MAX_MINUTES``.

    >>> tracking_keep(40.0, 1.5) == TRACK_DECAY, round(tracking_keep(1.0, 1.0), 3)
    (True, 0.956)
    """
    minutes = TRACK_REQUESTS * d / mu if mu > 0 else TRACK_MAX_MINUTES
    if minutes <= TRACK_MINUTES:
        return TRACK_DECAY
    return TRACK_DECAY ** (TRACK_MINUTES / min(minutes, TRACK_MAX_MINUTES))


def shift_of(a: array[float], expected: float | None) -> RateShift:
    """The shift recorded in ``a``, against the baseline ``expected`` for the open minute (if it is known)."""
    e = expected or a[RM] * (1 - TRACK_DECAY)
    return RateShift(
        direction=int(a[SHIFT_DIR]),
        onset_ts=a[SHIFT_ONSET],
        observed_per_minute=e * a[RX] / a[RM],
        expected_per_minute=e,
        minutes=int(a[SHIFT_MINUTES]),
        excess=a[SHIFT_X] - a[SHIFT_M],
    )
