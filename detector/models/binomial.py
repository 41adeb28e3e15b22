"""Likelihoods of hits among trials: binomial, and beta-binomial where hits come in clumps.

The share test (:mod:`detector.models.proportion`) weighs each minute's hits
by these. They are plain functions of counts and shares, apart from the
model, so they can be checked against their closed forms on their own.
"""

from __future__ import annotations

import math
from typing import Final

RHO_MAX: Final = 0.95
"""The highest intra-minute correlation believed: above it one minute would say almost nothing."""


def overdispersion(sk: float, sn: float, skk: float, skn: float, snn: float) -> float:
    """Beta-binomial ρ by moments from sums over minutes of k, n, k², k·n, n².

    Var(k | n) = n·p(1 − p)·(1 + (n − 1)ρ), so with p = Σk / Σn,
    ρ = (Σ(k − np)² − p(1 − p)Σn) / (p(1 − p)·Σn(n − 1)), clamped to [0, 1].

    >>> overdispersion(10, 100, 10, 100, 1000)   # ten minutes of 1 hit in 10: too regular
    0.0
    >>> overdispersion(10, 100, 100, 100, 1000)  # one minute of 10 in 10, nine of none: capped
    0.95
    """
    if sn <= 0 or snn <= sn:
        return 0.0
    p = sk / sn
    pq = p * (1 - p)
    if pq <= 0:
        return 0.0
    excess = skk - 2 * p * skn + p * p * snn - pq * sn
    rho = excess / (pq * (snn - sn))
    rho = 0.0 if 0.0 > rho else rho  # (clamped by comparisons, not min() and max(): the same value, no calls)
    return RHO_MAX if RHO_MAX < rho else rho


def llr(k: float, n: float, p1: float, p0: float) -> float:
    """Binomial log-likelihood ratio of share p1 against p0 for k hits in n trials."""
    hit = k * math.log(p1 / p0) if k > 0 else 0.0
    return hit + ((n - k) * math.log((1 - p1) / (1 - p0)) if n > k else 0.0)


def bb_llr(k: float, n: float, p1: float, p0: float, rho: float) -> float:
    """Beta-binomial log-likelihood ratio of share p1 against p0, at intra-minute correlation ρ.

    Where hits come in clumps a lopsided minute is less surprising under
    either share, so one minute can only say so much however busy it is.
    """
    if rho < 1e-9:
        return llr(k, n, p1, p0)
    c = (1.0 - rho) / rho
    return log_bb(k, n, p1 * c, (1 - p1) * c) - log_bb(k, n, p0 * c, (1 - p0) * c)


def log_bb(k: float, n: float, a: float, b: float) -> float:
    """log P(k | n) under a beta-binomial with Beta(a, b), without the binomial coefficient."""
    lg = math.lgamma
    return lg(k + a) + lg(n - k + b) - lg(n + a + b) - lg(a) - lg(b) + lg(a + b)


def odds_times(p: float, r: float) -> float:
    """Share ``p`` with its odds multiplied by ``r``: the same as ``p·r`` while small, below 1 near it.

    >>> round(odds_times(0.02, 5.0), 4), round(odds_times(0.9, 5.0), 4)
    (0.0926, 0.9783)
    """
    odds = r * p / (1.0 - p)
    return odds / (1.0 + odds)


def wilson(k: float, n: float, z: float) -> float:
    """Wilson score bound for a share: lower for z < 0, upper for z > 0."""
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre + z * half
