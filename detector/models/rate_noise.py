"""The noise of a seasonal rate: how much a minute's total strays from its expectation.

A minute's total has variance D(μ)·μ, D(μ) = a + b·μ·P. ``a`` is the
counting noise (1 for Poisson counts; E[c²]/E[c] for dollars, a compound
Poisson), ``b`` the wandering of the rate itself, P the inflation of a run
of minutes when that wandering persists (AR(1)). ``a`` and ``b`` are a
least-squares fit of r²/μ on μ from exponentially weighted sums, kept by
hand rather than with river.stats because the state must be one flat,
versioned dict: the sums are fields of the model's array of numbers
(:mod:`detector.models.rate_state`), which these functions read and teach.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

from detector.models.ar1 import run_inflation
from detector.models.rate_profile import ESTABLISHED
from detector.models.rate_state import (
    LAG_MM,
    LAG_RR,
    MU_PREV,
    N1,
    NM,
    NMM,
    NY,
    NYM,
    PREV_MINUTE,
    R_PREV,
)

CLIP_Z2: Final = 9.0  # a minute's residual is winsorised at 3 standard deviations before it is learned


def noise_fit(n1: float, nm: float, nmm: float, ny: float, nym: float) -> tuple[float, float]:
    """Least squares of y = r²/μ on μ from weighted sums of 1, μ, μ², y, y·μ: (a, b), both ≥ 0.

    >>> noise_fit(3, 6, 14, 6, 14)      # y = μ exactly: no counting noise, all wandering
    (0.0, 1.0)
    >>> noise_fit(3, 6, 14, 3, 6)       # y = 1 at every μ: Poisson
    (1.0, 0.0)
    """
    if n1 <= 0:
        return 1.0, 0.0
    mean_m, mean_y = nm / n1, ny / n1
    var_m = nmm / n1 - mean_m * mean_m
    b = max((nym / n1 - mean_m * mean_y) / var_m, 0.0) if var_m > 1e-9 * mean_m * mean_m else 0.0
    a = mean_y - b * mean_m
    return (a, b) if a >= 0 else (0.0, nym / nmm)


def noise(s: array[float]) -> tuple[float, float]:
    """The learned (a, b) of D(μ) = a + b·μ·P in a model's numbers ``s``."""
    return noise_fit(s[N1], s[NM], s[NMM], s[NY], s[NYM])


def dispersion(s: array[float], mu: float) -> float:
    """D(μ): variance over mean of a run's minutes at expected amount ``mu``, from a model's numbers ``s``."""
    a, b = noise(s)
    d = a + b * mu * persistence(s, b)
    return 1e-9 if 1e-9 > d else d


def persistence(s: array[float], b: float) -> float:
    """P: variance inflation of a run of minutes when wandering ``b`` persists (:func:`~detector.models.ar1.run_inflation`)."""
    lag_mm = s[LAG_MM]
    if b <= 0 or lag_mm <= 0:
        return 1.0
    return run_inflation(s[LAG_RR] / lag_mm / b)


def learn_noise(a: array[float], k: float, t: int, r: float, mu: float) -> None:
    """Learn a, b of D(μ) from minute ``t``'s residual ``r``, and the persistence of the wandering.

    ``k`` is the per-minute keep of the sums. Counting noise is independent
    minute to minute, so the lag-1 covariance of residuals belongs to the
    wandering alone: ρ·b·μₜ·μₜ₋₁.
    """
    n1, nm, nmm, ny, nym = a[N1], a[NM], a[NMM], a[NY], a[NYM]  # each read once: this runs every minute
    if n1 >= ESTABLISHED:
        fa, fb = noise_fit(n1, nm, nmm, ny, nym)
        d = fa + fb * mu
        reach = math.sqrt(CLIP_Z2 * (1e-9 if 1e-9 > d else d) * mu)  # one minute's spread, not a run's
        r = -reach if -reach > r else r
        r = reach if reach < r else r
        if t == a[PREV_MINUTE] + 1:
            a[LAG_RR] = k * a[LAG_RR] + r * a[R_PREV]
            a[LAG_MM] = k * a[LAG_MM] + mu * a[MU_PREV]
        a[R_PREV], a[MU_PREV], a[PREV_MINUTE] = r, mu, t
    y = r * r / mu
    a[N1], a[NM], a[NMM] = k * n1 + 1, k * nm + mu, k * nmm + mu * mu
    a[NY], a[NYM] = k * ny + y, k * nym + y * mu
