"""A sequential test for a sustained shift in a log-scale distribution.

Token counts per request are heavy-tailed: one 100k-token request among
2k-token ones is normal life, a prompt that doubled for everyone is an
incident. So the model works on ``log(1 + x)``, learns a robust location and
scale online, and winsorises each request before it counts as evidence, so
one outlier can only add so much.

Real traffic is not independent request to request: the level wanders from
minute to minute as tenants and sessions come and go (the Azure and Kimi
traces show a ×2 swing of the minute's geometric mean within an hour). A test
that treats every request as independent pages on that wandering. So evidence
is gathered per minute of event time, and each minute's mean is judged
against a variance with two parts, ``σ²/n`` for the requests in it and ``τ²``
for the wandering between minutes, both learned online. A busy, steady series
(τ ≈ 0) is then judged almost per request and a doubling fires in a couple of
minutes; a series that wanders needs proportionally more evidence.

The evidence is the log-likelihood ratio of "shifted by ±δ" against "at
baseline", accumulated by a two-sided CUSUM; crossing ``h`` is an alarm once
the effect is also large enough to matter (its lower confidence bound beyond
``min_ratio``). Why not river's drift detectors: ADWIN and Page-Hinkley track
a raw mean with no robust scale, no between-minute variance, cannot freeze
their baseline while a shift is suspected and report neither onset nor effect
size, all of which an alert needs.

Phases: ``learning`` (warm-up, never alerts) → ``watching`` → ``shifted``
(baseline frozen, a reverse test waits for the return) → ``watching``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detector.models.state import restore_slots, slots_state

LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"
STATE_VERSION = 3
TAU2_FLOOR = 0.05**2
_log1p = math.log1p
SHIFT_MEMORY = 500  # requests that the level of an ongoing shift is averaged over
HALF_LIFE_MINUTES = 24 * 60  # the baseline forgets by event time too, so slow series follow slow drift
MIN_HALF_LIFE_MINUTES = 120  # ... but never faster than this, so a busy series cannot absorb a shift in minutes
HOLD_S = 3600.0  # longest an undecided shift waits at the threshold for more evidence  # minute-to-minute wandering assumed even when none is seen


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


class LogLevelShift:
    """Online detector of sustained level shifts of a positive, heavy-tailed quantity.

    A stationary lognormal stream stays quiet; doubling it fires within minutes
    and reports the onset and the ratio of medians:

    >>> import random
    >>> rng = random.Random(1)
    >>> m = LogLevelShift(warmup=100)
    >>> for i in range(6000):                      # ten a minute for ten hours
    ...     m.update(rng.lognormvariate(7, 0.6), ts=i * 6.0)
    >>> m.phase
    'watching'
    >>> for i in range(6000, 6100):
    ...     m.update(2 * rng.lognormvariate(7, 0.6), ts=i * 6.0)
    >>> m.phase, 1.7 < m.shift().ratio < 2.3, abs(m.shift().onset_ts - 36000) <= 60
    ('shifted', True, True)
    """

    __slots__ = (
        "warmup", "warmup_minutes", "delta", "h", "clip", "alpha", "min_ratio", "min_run",
        "phase", "n", "minutes", "mean", "var", "tau2", "zz", "zlag", "z_prev", "prev_minute",
        "lim", "last_close", "minute", "m_first", "m_n", "m_sum", "m_sq", "m_raw",
        "s_up", "s_dn", "up", "dn", "held_since",
        "shift_dir", "shift_onset", "shift_n", "shift_mean", "s_back", "shifted_at",
    )

    def __init__(
        self,
        *,
        warmup: int = 200,
        warmup_minutes: int = 30,
        delta: float = math.log(1.6),
        h: float = 14.0,
        clip: float = 3.0,
        half_life: float = 5000.0,
        min_ratio: float = 1.3,
        min_run: int = 10,
    ) -> None:
        self.warmup, self.warmup_minutes = warmup, warmup_minutes
        self.delta, self.h, self.clip = delta, h, clip
        self.alpha = 1.0 - 0.5 ** (1.0 / half_life)
        self.min_ratio, self.min_run = min_ratio, min_run
        self.phase = LEARNING
        self.n = self.minutes = 0
        self.mean = self.var = 0.0  # var holds the Welford sum of squares during warm-up
        self.tau2 = TAU2_FLOOR
        # Persistence of the wandering: minute z-scores' lag-1 products and squares (EW).
        self.zz, self.zlag, self.z_prev, self.prev_minute = 1.0, 0.0, 0.0, -2
        self.lim = 0.0  # winsorising bound, clip × sd, fixed within a minute
        self.last_close = 0  # the minute last closed, for forgetting by event time
        self.minute, self.m_first, self.m_n, self.m_sum, self.m_sq, self.m_raw = -1, 0.0, 0, 0.0, 0.0, 0.0
        self.s_up = self.s_dn = 0.0
        self.up: list[float] = []  # the CUSUM runs: (first ts, requests, sum of logs, minutes) per minute
        self.dn: list[float] = []
        self.held_since = 0.0  # event time an undecided shift started waiting at the threshold
        self.shift_dir, self.shift_onset, self.shift_n = 0, 0.0, 0
        self.shift_mean, self.s_back, self.shifted_at = 0.0, 0.0, 0.0

    # -- the one command ---------------------------------------------------
    def update(self, value: float, ts: float) -> None:
        """Learn from one observation (raw units, ≥ 0) at event time ``ts``.

        Per request only the minute's sums grow; the baseline learns and the
        evidence is weighed when the minute closes.
        """
        x = _log1p(value)
        minute = int(ts // 60)
        if minute != self.minute:
            if self.m_n:
                self._close_minute(ts)
            self.minute, self.m_first, self.m_n, self.m_sum, self.m_sq, self.m_raw = minute, ts, 0, 0.0, 0.0, 0.0
        self.n += 1
        if self.phase == LEARNING:
            self._learn(x)
            return
        # Winsorised around the level being tested: the baseline while watching,
        # the shifted level while in a shift, so one failed request's empty
        # answer cannot argue a whole minute back to normal.
        r = x - (self.shift_mean if self.phase == SHIFTED else self.mean)
        lim = self.lim
        rc = lim if r > lim else (-lim if r < -lim else r)
        self.m_n += 1
        self.m_sum += rc
        self.m_sq += rc * rc
        self.m_raw += x

    def update_many(self, values: Sequence[float], ts: float) -> None:
        """:meth:`update` for each of ``values``, all at event time ``ts``, in one call.

        The engine buffers a series' requests and hands the model a minute at
        a time: the same sums, a fraction of the Python calls.

        >>> a, b = LogLevelShift(warmup=10), LogLevelShift(warmup=10)
        >>> for minute in range(30):
        ...     values = [100.0 + i + minute % 3 for i in range(5)]
        ...     a.update_many(values, minute * 60.0)
        ...     for v in values:
        ...         b.update(v, minute * 60.0)
        >>> a.to_state() == b.to_state()
        True
        """
        if not values:
            return
        minute = int(ts // 60)
        if minute != self.minute:
            if self.m_n:
                self._close_minute(ts)
            self.minute, self.m_first, self.m_n, self.m_sum, self.m_sq, self.m_raw = minute, ts, 0, 0.0, 0.0, 0.0
        if self.phase == LEARNING:
            for value in values:
                self.n += 1
                self._learn(_log1p(value))
            return
        center = self.shift_mean if self.phase == SHIFTED else self.mean
        lim, nlim = self.lim, -self.lim
        total = squares = raw = 0.0
        for value in values:
            x = _log1p(value)
            r = x - center
            rc = lim if r > lim else (max(r, nlim))
            total += rc
            squares += rc * rc
            raw += x
        count = len(values)
        self.n += count
        self.m_n += count
        self.m_sum += total
        self.m_sq += squares
        self.m_raw += raw

    def close(self, ts: float) -> None:
        """Judge the open minute now (the caller knows no more of it will come); ``ts`` is now."""
        if self.m_n:
            self._close_minute(ts)
            self.m_n, self.m_sum, self.m_sq, self.m_raw = 0, 0.0, 0.0, 0.0

    def _learn(self, x: float) -> None:
        delta = x - self.mean
        self.mean += delta / self.n
        self.var += delta * (x - self.mean)
        self.m_n += 1
        self.m_raw += x

    def _close_minute(self, ts: float) -> None:
        """Judge the minute that just ended as one piece of evidence; ``ts`` is now."""
        self.minutes += 1
        n = self.m_n
        if self.phase == LEARNING:
            self._learn_minute()
            return
        dev = self.m_sum / n
        v = self.var / n + self.tau2 * self.persistence()
        if self.phase == SHIFTED:
            self._track_shift(self.shift_mean + dev, v)
            return
        d = self.delta
        self.s_up = max(0.0, self.s_up + d / v * (dev - d / 2))
        self.s_dn = max(0.0, self.s_dn + d / v * (-dev - d / 2))
        _extend(self.up, self.s_up, self.m_first, n, self.m_raw)
        _extend(self.dn, self.s_dn, self.m_first, n, self.m_raw)
        calm = self.s_up < self.h / 2 and self.s_dn < self.h / 2
        if calm:
            excess = dev * dev - self.var / n
            self.tau2 = max(TAU2_FLOOR, self.tau2 + 0.01 * (excess - self.tau2))
            self._learn_persistence(dev / math.sqrt(self.var / n + self.tau2), 0.02)
        # Forget n requests' worth (but no more than two hours' worth), or the
        # time since the last minute if that is more (half-lives: `half_life`
        # requests bounded below by two hours, a day); ten times slower while a
        # shift is suspected, so the baseline neither swallows an incident nor
        # stays frozen for hours on a slow series whose evidence dawdles.
        gap = self.minute - self.last_close if self.last_close else 1
        self.last_close = self.minute
        by_requests = max((1.0 - self.alpha) ** n, 0.5 ** (gap / MIN_HALF_LIFE_MINUTES))
        keep = min(by_requests, 0.5 ** (gap / HALF_LIFE_MINUTES))
        a = (1.0 - keep) * (1.0 if calm else 0.1)
        self.mean += a * dev
        self.var += a * (self.m_sq / n - self.var)
        self.lim = self.clip * math.sqrt(self.var)
        if self.s_up >= self.h and sum(self.up[1::4]) >= self.min_run:
            self._maybe_shift(+1, self.up, ts)
        elif self.s_dn >= self.h and sum(self.dn[1::4]) >= self.min_run:
            self._maybe_shift(-1, self.dn, ts)

    def _learn_minute(self) -> None:
        """During warm-up, learn τ² from how far each minute's mean strays."""
        mean_so_far = self.mean
        dev = self.m_raw / self.m_n - mean_so_far
        var = self.var / max(self.n - 1, 1)
        if self.minutes > 1:
            excess = dev * dev - var / self.m_n
            self.tau2 = max(TAU2_FLOOR, self.tau2 + (excess - self.tau2) / self.minutes)
            self._learn_persistence(dev / math.sqrt(var / self.m_n + self.tau2), 1 / self.minutes)
        if self.n >= self.warmup and self.minutes >= self.warmup_minutes:
            self.var = max(var, 1e-4)
            self.lim = self.clip * math.sqrt(self.var)
            self.phase = WATCHING

    def _onset(self, direction: int, run: list[float]) -> tuple[float, int, float, float]:
        """Where in the run the shift most likely began: (onset ts, requests, sum of logs, minutes).

        The CUSUM's run often starts a minute or two early, on baseline
        minutes that happened to lean the same way; counting them would
        understate the change. The split that maximises the evidence for a
        shift of the run's direction is the maximum-likelihood change point.
        """
        inflation = self.tau2 * self.persistence()
        best, best_score = 0, -math.inf
        sum_we = sum_w = 0.0
        for i in range(len(run) - 4, -4, -4):
            n, raw, minutes = run[i + 1], run[i + 2], run[i + 3]
            w = 1.0 / (self.var / n + inflation / minutes)
            sum_we += w * direction * (raw / n - self.mean)
            sum_w += w
            score = sum_we * abs(sum_we) / sum_w
            if score > best_score:
                best, best_score = i, score
        tail = run[best:]
        return tail[0], int(sum(tail[1::4])), sum(tail[2::4]), sum(tail[3::4])

    def _learn_persistence(self, z: float, rate: float) -> None:
        """Learn how much one minute's deviation carries into the next (lag-1 correlation)."""
        if self.minute == self.prev_minute + 1:
            self.zlag += rate * (z * self.z_prev - self.zlag)
            self.zz += rate * (z * z - self.zz)
        self.z_prev, self.prev_minute = z, self.minute

    def persistence(self) -> float:
        """Variance inflation of a run of minutes when the wandering persists (AR(1): (1+ρ)/(1-ρ))."""
        rho = min(max(self.zlag / self.zz, 0.0), 0.9) if self.zz > 0 else 0.0
        return (1 + rho) / (1 - rho)

    def _maybe_shift(self, direction: int, run: list[float], ts: float) -> None:
        onset, n, total, minutes = self._onset(direction, run)
        effect = total / n - self.mean
        # The run that crossed the threshold overstates the effect (the test
        # stopped when evidence peaked), so judge its size by a confidence band.
        margin = 2.0 * math.sqrt(self.var / n + self.tau2 * self.persistence() / max(minutes, 1.0))
        size, worth = direction * effect, math.log(self.min_ratio)
        if size - margin >= worth:
            self.phase = SHIFTED
            self.shift_dir, self.shift_onset, self.shift_n = direction, onset, n
            self.shift_mean, self.s_back, self.shifted_at = self.mean + effect, 0.0, ts
        elif size + margin < worth:
            # Real but surely too small to matter: the baseline takes it.
            self.mean += effect
            self._reset_cusum()
        elif not self.held_since or ts - self.held_since < HOLD_S:
            # Too early to tell whether it matters: hold at the threshold and
            # judge again next minute, with more requests behind the estimate.
            self.held_since = self.held_since or ts
            if direction > 0:
                self.s_up = self.h
            else:
                self.s_dn = self.h
        else:
            # Still undecided after an hour: start over, and let the baseline
            # learn again, rather than test the same run forever.
            self._reset_cusum()

    def _track_shift(self, level: float, v: float) -> None:
        """Follow the shifted level; return to watching once the evidence says it is gone."""
        n = self.m_n
        self.shift_n += n
        # A running mean at first, then an exponential one over the last
        # ~SHIFT_MEMORY requests: steady at low rates, quick at high ones.
        self.shift_mean += min(n / min(self.shift_n, SHIFT_MEMORY), 1.0) * (level - self.shift_mean)
        back = self.mean - self.shift_mean  # the move that would undo the shift
        if abs(back) < math.log(self.min_ratio) / 2:
            self._end_shift()
            return
        # LLR of "back at baseline" against "still at the shifted level".
        self.s_back = max(0.0, self.s_back + back / v * (level - self.shift_mean - back / 2))
        if self.s_back >= self.h:
            self._end_shift()

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        self.s_up = self.s_dn = 0.0
        self.up, self.dn = [], []
        self.held_since = 0.0

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted level as the new normal (a change that is here to stay)."""
        if self.phase == SHIFTED:
            self.mean = self.shift_mean
            self._end_shift()

    # -- queries -------------------------------------------------------------
    def score(self) -> float:
        """Evidence of a shift, as a fraction of the alarm threshold (≥ 1 means alarm)."""
        if self.phase == SHIFTED:
            return max(1.0, (self.h - self.s_back) / self.h)
        return max(self.s_up, self.s_dn) / self.h

    @property
    def baseline_median(self) -> float:
        return math.expm1(self.mean)

    @property
    def baseline_mean(self) -> float:
        var = self.var if self.phase != LEARNING else 0.0
        return math.exp(self.mean + var / 2) - 1

    def shift(self) -> Shift | None:
        """The current shift, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        return Shift(
            direction=self.shift_dir,
            onset_ts=self.shift_onset,
            observed_median=math.expm1(self.shift_mean),
            baseline_median=self.baseline_median,
            observed_mean=math.exp(self.shift_mean + self.var / 2) - 1,
            baseline_mean=self.baseline_mean,
            requests=self.shift_n,
        )

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return slots_state(self, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LogLevelShift:
        return restore_slots(cls, state, STATE_VERSION)


RUN_MINUTES = 8  # minutes a run keeps apart; older ones are merged into its first entry


def _extend(run: list[float], s: float, first_ts: float, n: int, raw_sum: float) -> None:
    """Grow the run while its CUSUM is positive; start over when it falls to zero."""
    if s <= 0.0:
        run.clear()
        return
    run += (first_ts, n, raw_sum, 1)
    if len(run) > 4 * RUN_MINUTES:
        run[1], run[2], run[3] = run[1] + run[5], run[2] + run[6], run[3] + run[7]
        del run[4:8]
