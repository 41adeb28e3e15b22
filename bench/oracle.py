"""The yardstick for prompt-length detection: a CUSUM that knows the true before and after distributions.

The simulator draws a feature's prompt sizes lognormally, ``log x ~ N(μ, σ)``
with ``μ = log(input_median)``, and a doubling adds ``log 2`` to μ. A
one-sided CUSUM of the exact log-likelihood ratio of "after" against
"before", started at zero at the onset, is the fastest detector there is
for that change at its false-alarm rate (Lorden, Moustakides); spendwatch's
model has to learn both distributions and guard against wandering, so it
can only come close. The number of requests the oracle needs is the figure
spendwatch's requests-to-detect is compared with.
"""

from __future__ import annotations

import math

import numpy as np

from detector.simulate import World


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


def true_prompt_distribution(target: dict[str, str], world: World | None = None) -> tuple[float, float]:
    """``(μ, σ)`` of log prompt size of the feature the target names, as the simulator draws it.

    >>> mu, sigma = true_prompt_distribution({"team": "search", "feature": "answer"})
    >>> round(math.exp(mu)), sigma
    (4000, 0.7)
    """
    world = world or World.default()
    for feature in world.features:
        if feature.team == target.get("team") and feature.feature == target.get("feature"):
            return math.log(feature.input_median), feature.input_sigma
    raise ValueError(f"no feature of the world matches target {target}; expected team= and feature= of one")
