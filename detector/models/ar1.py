"""How much less a run of minutes says when what strays in one minute lingers into the next.

Two models learn the lag-1 correlation ρ of their minutes' strays (the
level-shift test, of its minute means; the seasonal rate, of its residual
wandering) and weigh a run of minutes by the same AR(1) variance
inflation, with ρ held to [0, ``RHO_CAP``]: a negative ρ would make a run
say more than independent minutes, and one near 1 would make it say
nothing at all.
"""

from __future__ import annotations

from typing import Final

RHO_CAP: Final = 0.9


def run_inflation(rho: float) -> float:
    """The variance inflation (1 + ρ) / (1 − ρ) of a run of minutes, at lag-1 correlation ``rho`` held to [0, 0.9].

    >>> run_inflation(0.5), run_inflation(-0.5), run_inflation(0.99)
    (3.0, 1.0, 19.000000000000004)
    """
    rho = 0.0 if 0.0 > rho else rho  # (bounds by comparisons, not min() and max(): no calls, every minute)
    rho = RHO_CAP if RHO_CAP < rho else rho
    return (1 + rho) / (1 - rho)
