"""The shift: whether a run that crossed the threshold is one, how it is followed, and what is reported.

Crossing ``h`` says that the level moved, not that it moved enough to page
anyone: :func:`judge` weighs the run's effect by a confidence band against
``min_ratio`` and declares a shift, lets the baseline take a change too small
to matter, or holds for more evidence. Once declared, :func:`follow` tracks
the shifted level and tests for its return. Both work in place on the
packed numbers of :class:`~detector.models.level_shift.LogLevelShift`
(:mod:`~detector.models.level_state`); the model owns its phase and runs
and acts on what they return.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Final

from detector.models.level_run import onset
from detector.models.level_state import (
    HELD_SINCE,
    M_N,
    MEAN,
    S_BACK,
    S_DN,
    S_UP,
    SHIFT_DIR,
    SHIFT_MEAN,
    SHIFT_N,
    SHIFT_ONSET,
    SHIFTED_AT,
    VAR,
    LevelConfig,
)
from detector.models.level_wander import wander_inflation
from detector.models.state import SHIFTED

SHIFT_MEMORY: Final = 500  # requests that the level of an ongoing shift is averaged over
TRACK_STEP: Final = 1 - 0.5 ** (1 / 60)  # a shifted level follows the data with a half-life of an hour at most
EFFECT_Z: Final = 1.5  # the effect must matter at its lower bound of about 87 % confidence
HOLD_S: Final = 3600.0  # longest an undecided shift waits at the threshold for more evidence
# what judge() may say besides SHIFTED
HOLD: Final = "hold"
START_OVER: Final = "start over"


@dataclass(frozen=True, slots=True)
class Shift:
    """What the model concluded: direction, onset, and effect in raw units."""

    direction: int  # +1 up, -1 down
    onset_ts: float
    observed_median: float
    baseline_median: float
    observed_mean: float
    baseline_mean: float
    requests: int

    @property
    def ratio(self) -> float:
        return self.observed_median / self.baseline_median if self.baseline_median > 0 else math.inf


def judge(a: array[float], c: LevelConfig, direction: int, run: array[float], ts: float) -> str:
    """Judge a run whose CUSUM crossed the threshold: ``SHIFTED``, ``HOLD`` or ``START_OVER``.

    ``SHIFTED`` has written the shift's numbers; ``START_OVER`` asks the model
    to reset its tests (the baseline may have taken the effect); ``HOLD`` has
    pinned the CUSUM at the threshold to judge again next minute.
    """
    inflation = wander_inflation(a)
    onset_ts, n, total, minutes = onset(run, direction, a[MEAN], a[VAR], inflation)
    effect = total / n - a[MEAN]
    # The run that crossed the threshold overstates the effect (the test
    # stopped when evidence peaked), so judge its size by a confidence band.
    margin = EFFECT_Z * math.sqrt(a[VAR] / n + inflation / max(minutes, 1.0))
    size, worth = direction * effect, c.worth
    if size - margin >= worth:
        a[SHIFT_DIR], a[SHIFT_ONSET], a[SHIFT_N] = direction, onset_ts, n
        a[SHIFT_MEAN], a[S_BACK], a[SHIFTED_AT] = a[MEAN] + effect, 0.0, ts
        return SHIFTED
    if size + margin < worth:
        # Real but surely too small to matter: the baseline takes it.
        a[MEAN] += effect
        return START_OVER
    if not a[HELD_SINCE] or ts - a[HELD_SINCE] < HOLD_S:
        # Too early to tell whether it matters: hold at the threshold and
        # judge again next minute, with more requests behind the estimate.
        a[HELD_SINCE] = a[HELD_SINCE] or ts
        if direction > 0:
            a[S_UP] = c.h
        else:
            a[S_DN] = c.h
        return HOLD
    # Still undecided after an hour: start over, and let the baseline
    # learn again, rather than test the same run forever.
    return START_OVER


def follow(a: array[float], c: LevelConfig, level: float, v: float) -> bool:
    """Follow the shifted level with a minute at ``level`` (variance ``v``); True once the evidence says it is gone."""
    n = a[M_N]
    a[SHIFT_N] += n
    # A running mean at first, then an exponential one over the last
    # ~SHIFT_MEMORY requests: steady at low rates, quick at high ones; but
    # never slower than an hour's half-life, or a slow series would keep
    # an incident open for half a day after it ended, hiding the next one.
    step = min(n / min(a[SHIFT_N], SHIFT_MEMORY), 1.0)
    a[SHIFT_MEAN] += (step if step > TRACK_STEP else TRACK_STEP) * (level - a[SHIFT_MEAN])
    back = a[MEAN] - a[SHIFT_MEAN]  # the move that would undo the shift
    if abs(back) < c.worth / 2:
        return True
    # LLR of "back at baseline" against "still at the shifted level".
    a[S_BACK] = max(0.0, a[S_BACK] + back / v * (level - a[SHIFT_MEAN] - back / 2))
    return a[S_BACK] >= c.h
