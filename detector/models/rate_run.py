"""The run of a seasonal rate's CUSUM: what the minutes since it left zero held, and what that says.

A burst and the start of a runaway look the same minute by minute; only
the shape of the run tells them apart. So while either CUSUM is above zero
the model keeps, per minute, (minute, amount, expected) in one array of
doubles: the latest ``RUN_MINUTES`` apart, older ones merged into the first
entry (:func:`detector.models.state.grow_run`), so a run costs a few hundred
bytes however long it lasts. The functions here read it: where the change
began (the likeliest onset, and the latest one a sceptic accepts), the
evidence in each third of the latest minutes, their totals. They are plain
functions of the run and the model's dispersion, apart from the model, so
the alarm's reasoning can be read in one place.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable

from detector.models.rate_state import RUN_MINUTES, six_digits
from detector.models.state import grow_run

Tail = tuple[int, float, float, int]  # (first minute, amount, expected, minutes)


def extend(run: array[float] | None, t: int, x: float, mu: float) -> array[float]:
    """The run with minute ``t`` holding ``x`` where ``mu`` was expected."""
    return grow_run(run, (t, six_digits(x), six_digits(mu)), RUN_MINUTES)


def tails(run: array[float]) -> list[Tail]:
    """Every suffix of the run as (first minute, amount, expected, minutes), shortest first."""
    out, x, m = [], 0.0, 0.0
    end = int(run[-3]) + 1
    for i in range(len(run) - 3, -3, -3):
        x, m = x + run[i + 1], m + run[i + 2]
        out.append((int(run[i]), x, m, end - int(run[i])))
    return out


def onset(run: array[float], direction: int, dispersion: Callable[[float], float], slack: float = 0.0) -> Tail | None:
    """Where the run's change began: (first minute, amount, expected, minutes) since then.

    With no slack, the maximum-likelihood change point. With slack, the
    latest onset whose evidence is within ``slack`` nats of it: the one
    a sceptic accepts, since minutes that lean the same way by chance
    just before a burst would make it look longer than it is.
    """
    scored = [
        (llr(x, m, x / m) / dispersion(m / minutes), (first, x, m, minutes))
        for first, x, m, minutes in tails(run)
        if m > 0 and direction * (x - m) > 0
    ]
    if not scored:
        return None
    best = max(score for score, _ in scored)
    return next(tail for score, tail in scored if score >= best - slack)


def weakest_third(run: array[float], r: float, k: int, dispersion: Callable[[float], float]) -> float:
    """The least evidence for ratio ``r`` against baseline in any third of the latest ``k`` minutes.

    One burst inside the window, or a burst followed by minutes that
    are merely a little high, leaves a third without that evidence.
    """
    end, weakest = len(run), math.inf
    for size in (k - 2 * k // 3, 2 * k // 3 - k // 3, k // 3):
        part = run[end - 3 * size : end]
        x, m = sum(part[1::3]), sum(part[2::3])
        weakest = min(weakest, llr(x, m, r) / dispersion(m / size))
        end -= 3 * size
    return weakest


def recent(run: array[float], minutes: int) -> tuple[float, float]:
    """Amount and expected amount over the run's latest ``minutes`` (kept apart, never merged)."""
    tail = run[-3 * minutes :]
    return sum(tail[1::3]), sum(tail[2::3])


def llr(x: float, m: float, r: float) -> float:
    """Poisson log-likelihood ratio of ratio ``r`` against 1, for ``x`` where ``m`` was expected.

    >>> llr(0.0, 2.0, 1.5)              # nothing where 2 were expected: evidence against ×1.5
    -1.0
    """
    return (x * math.log(r) if x > 0 else 0.0) - m * (r - 1)


def factor(r: float, direction: int) -> float:
    """The size of a ratio in the test's direction: r upwards, 1 / r downwards.

    >>> factor(0.5, -1)
    2.0
    """
    return r if direction > 0 else 1.0 / max(r, 1e-12)
