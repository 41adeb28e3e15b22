"""The wander: how far a level strays from minute to minute, and how long a stray lasts.

A minute's mean deviation has two sources of variance, ``σ²/n`` from its
own requests and ``τ²`` from the level wandering between minutes (tenants
and sessions coming and going). :class:`~detector.models.level_shift.LogLevelShift`
learns ``τ²`` here, and how much a minute's stray carries into the next
(the lag-1 correlation of minute z-scores), because a run of minutes that
lean together is weaker evidence than the same number of independent ones.
The numbers live in the model's packed array (:mod:`~detector.models.level_state`);
these functions read and write them in place.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

from detector.models.ar1 import run_inflation
from detector.models.level_state import M_N, MINUTE, PREV_MINUTE, TAU2, Z_PREV, ZLAG, ZZ

TAU2_FLOOR: Final = 0.05**2  # minute-to-minute wandering assumed even when none is seen
TAU2_N: Final = 8.0  # a minute of this many requests teaches the wandering at half the full rate: a minute of
# one or two requests says little about it (its mean's spread is mostly their own), so it moves the estimate less
WANDER_BELOW: Final = 0.25  # share of the threshold either CUSUM must stay under for a minute to teach the wander


def floored_tau2(a: array[float]) -> float:
    """The learned ``τ²``, at least ``TAU2_FLOOR``.

    Floored where it is used but not where it is kept: floored at every step
    the estimate would take each upward step and refuse the downward ones.
    """
    tau2 = a[TAU2]
    return tau2 if tau2 > TAU2_FLOOR else TAU2_FLOOR


def persistence(a: array[float]) -> float:
    """Variance inflation of a run of minutes when the wandering persists (:func:`~detector.models.ar1.run_inflation`).

    >>> from detector.models.level_state import NUMBERS
    >>> persistence(NUMBERS.new(zz=1.0, zlag=0.5)), persistence(NUMBERS.new(zz=1.0, zlag=-0.5))
    (3.0, 1.0)
    """
    zz = a[ZZ]
    return run_inflation(a[ZLAG] / zz) if zz > 0 else 1.0


def wander_inflation(a: array[float]) -> float:
    """The variance the wandering adds to a minute's mean: ``τ²`` (floored) times its persistence."""
    return floored_tau2(a) * persistence(a)


def learn_persistence(a: array[float], z: float, rate: float) -> None:
    """Learn how much one minute's deviation carries into the next (lag-1 correlation)."""
    minute = a[MINUTE]
    if minute == a[PREV_MINUTE] + 1:
        zlag, zz = a[ZLAG], a[ZZ]
        a[ZLAG] = zlag + rate * (z * a[Z_PREV] - zlag)
        a[ZZ] = zz + rate * (z * z - zz)
    a[Z_PREV], a[PREV_MINUTE] = z, minute


def learn_wander_warmup(a: array[float], dev: float, var: float, minutes: float) -> None:
    """During warm-up, average the excess of each minute's squared stray over its sampling variance.

    A plain running mean: every warm-up minute counts alike, since there is
    no baseline yet for a shift to hide behind.
    """
    excess = dev * dev - var / a[M_N]
    a[TAU2] += (excess - a[TAU2]) / minutes
    learn_persistence(a, dev / math.sqrt(var / a[M_N] + floored_tau2(a)), 1 / minutes)


def learn_wander(a: array[float], dev: float, var: float, n: float) -> None:
    """While watching, let a calm minute of ``n`` requests move ``τ²`` exponentially, more if it is busy.

    Called only for minutes where neither test leans (see ``WANDER_BELOW``),
    so that a shift cannot pass itself off as wandering.
    """
    tau2 = a[TAU2]
    excess = dev * dev - var / n
    a[TAU2] = tau2 + 0.01 * n / (n + TAU2_N) * (excess - tau2)
    learn_persistence(a, dev / math.sqrt(var / n + floored_tau2(a)), 0.02)
