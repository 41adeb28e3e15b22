"""The yardsticks: CUSUMs that know the true before and after distributions of the target series.

The simulator draws a feature's prompt sizes lognormally, ``log x ~ N(μ, σ)``
with ``μ = log(input_median)``, and a doubling adds ``log 2`` to μ. A
one-sided CUSUM of the exact log-likelihood ratio of "after" against
"before", started at zero at the onset, is the fastest detector there is
for that change at its false-alarm rate (Lorden, Moustakides); spendwatch's
model has to learn both distributions and guard against wandering, so it
can only come close. The number of requests the oracle needs is the figure
spendwatch's requests-to-detect is compared with.

The same holds for the shares of failed and of retried requests: the
simulator fails or retries each request independently with known
probabilities, so a binomial CUSUM of the true shares before and after is
the best test there is. It tells an incident missed by spendwatch from one
whose requests carry no evidence of it (an hour-long error spike on a
series of a request a minute may fail no more requests than usual).
"""

from __future__ import annotations

import math

import numpy as np

from detector.simulate import World
from detector.simulate.world import Feature


def requests_to_detect(tokens: np.ndarray, mu0: float, mu1: float, sigma: float, h: float) -> int | None:
    """Requests from the first of ``tokens`` until the CUSUM of the log-likelihood ratio reaches ``h``.

    None when it never does.

    >>> rng = np.random.default_rng(3)
    >>> after = np.exp(math.log(2000) + math.log(2) + 0.6 * rng.standard_normal(500))
    >>> n = requests_to_detect(after, math.log(2000), math.log(4000), 0.6, h=14.0)
    >>> 10 < n < 40
    True
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    y = np.log(np.maximum(tokens, 1.0))
    llr = (mu1 - mu0) * (y - (mu0 + mu1) / 2.0) / (sigma * sigma)
    s = 0.0
    for i, step in enumerate(llr.tolist(), start=1):
        s = max(0.0, s + step)
        if s >= h:
            return i
    return None


def share_requests_to_detect(hits: np.ndarray, p0: float, p1: float, h: float) -> int | None:
    """Requests until the CUSUM of the binomial log-likelihood ratio of share ``p1`` against ``p0`` reaches ``h``.

    >>> share_requests_to_detect(np.array([0, 1, 1, 0, 1, 1, 1]), 0.02, 0.4, h=9.0)  # 3.0, 6.0, 5.5, 8.5, 11.5
    6
    >>> share_requests_to_detect(np.zeros(1000, dtype=bool), 0.02, 0.4, h=9.0) is None
    True
    """
    if not 0 < p0 < 1 or not 0 < p1 < 1:
        raise ValueError(f"shares must lie strictly between 0 and 1, got {p0} and {p1}")
    hit, miss = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    s = 0.0
    for i, flag in enumerate(np.asarray(hits, dtype=bool).tolist(), start=1):
        s = max(0.0, s + (hit if flag else miss))
        if s >= h:
            return i
    return None


def true_shares(kind: str, magnitude: float, target: dict[str, str], world: World | None = None) -> tuple[float, float]:
    """(before, during) share of the target's requests that an error spike fails or a retry storm retries.

    The simulator retries a first attempt with the feature's retry rate
    (once; the retried attempt counts as failed), fails a first attempt
    that was not retried with its error rate, and an incident replaces one
    of the two with its magnitude. Per ``1 + r`` requests (``r`` retries
    per first attempt), ``r + (1 − r)·e`` fail and ``r`` are retries.

    >>> [round(p, 4) for p in true_shares("error_spike", 0.2, {"team": "search", "feature": "rerank-embed"})]
    [0.0177, 0.2089]
    >>> [round(p, 4) for p in true_shares("retry_storm", 0.4, {"team": "search", "feature": "query-rewrite"})]
    [0.0099, 0.2857]
    """
    feature = _feature(target, world)
    r, e = feature.retry_rate, feature.error_rate
    if kind == "error_spike":
        return (r + (1 - r) * e) / (1 + r), (r + (1 - r) * magnitude) / (1 + r)
    if kind == "retry_storm":
        return r / (1 + r), magnitude / (1 + magnitude)
    raise ValueError(f"no share oracle for {kind!r}; expected error_spike or retry_storm")


def true_prompt_distribution(target: dict[str, str], world: World | None = None) -> tuple[float, float]:
    """``(μ, σ)`` of log prompt size of the feature the target names, as the simulator draws it.

    >>> mu, sigma = true_prompt_distribution({"team": "search", "feature": "answer"})
    >>> round(math.exp(mu)), sigma
    (4000, 0.7)
    """
    feature = _feature(target, world)
    return math.log(feature.input_median), feature.input_sigma


def _feature(target: dict[str, str], world: World | None) -> Feature:
    for feature in (world or World.default()).features:
        if feature.team == target.get("team") and feature.feature == target.get("feature"):
            return feature
    raise ValueError(f"no feature of the world matches target {target}; expected team= and feature= of one")
