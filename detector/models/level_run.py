"""The CUSUM run: the minutes behind a test's evidence, and where in them a shift began.

While either CUSUM of :class:`~detector.models.level_shift.LogLevelShift` is
above zero it keeps a *run*: per minute, ``(first ts, requests, sum of
logs, minutes)``, four doubles in one array. When the CUSUM crosses its
threshold the run says when the shift started and how large it is, which
the sum itself cannot: the CUSUM only knows that evidence accumulated.
"""

from __future__ import annotations

import math
from array import array
from typing import Final

from detector.models.state import grow_run

RUN_MINUTES: Final = 8  # minutes a run keeps apart; older ones are merged into its first entry


def extend_run(run: array[float] | None, s: float, first_ts: float, n: float, raw_sum: float) -> array[float] | None:
    """The run grown by a minute while its CUSUM is positive; none once it falls to zero.

    A run that ends is dropped rather than emptied: most of the time most
    runs are at zero, and an empty array still costs its header.
    """
    if s <= 0.0:
        return None
    return grow_run(run, (first_ts, n, raw_sum, 1.0), RUN_MINUTES)


def onset(
    run: array[float], direction: int, mean: float, var: float, inflation: float
) -> tuple[float, int, float, float]:
    """Where in the run the shift most likely began: (onset ts, requests, sum of logs, minutes).

    The CUSUM's run often starts a minute or two early, on baseline
    minutes that happened to lean the same way; counting them would
    understate the change. The split that maximises the evidence for a
    shift of the run's direction is the maximum-likelihood change point.
    ``mean`` and ``var`` are the baseline's, ``inflation`` the variance the
    wandering adds to a minute (``τ²`` times its persistence).

    >>> run = array("d", [0.0, 10, 1.0, 1, 60.0, 10, 7.0, 1, 120.0, 10, 7.0, 1])
    >>> onset(run, +1, mean=0.0, var=1.0, inflation=0.01)
    (60.0, 20, 14.0, 2.0)
    """
    best, best_score = 0, -math.inf
    sum_we = sum_w = 0.0
    for i in range(len(run) - 4, -4, -4):
        n, raw, minutes = run[i + 1], run[i + 2], run[i + 3]
        w = 1.0 / (var / n + inflation / minutes)
        sum_we += w * direction * (raw / n - mean)
        sum_w += w
        score = sum_we * abs(sum_we) / sum_w
        if score > best_score:
            best, best_score = i, score
    tail = run[best:]
    return tail[0], int(sum(tail[1::4])), sum(tail[2::4]), sum(tail[3::4])
