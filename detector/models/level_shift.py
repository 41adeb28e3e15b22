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
for the wandering between minutes, both learned online (τ² only from minutes
where neither test leans, so that a shift cannot pass itself off as
wandering). A busy, steady series (τ ≈ 0) is then judged almost per request
and a doubling fires in a couple of minutes; a series that wanders needs
proportionally more evidence.

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
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from detector.models.state import (
    Packed,
    grow_run,
    number,
    packed_state,
    restore_packed,
    saved_run,
    shared,
)

LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"
STATE_VERSION = 5
TAU2_FLOOR = 0.05**2  # minute-to-minute wandering assumed even when none is seen
TAU2_N = 8.0  # a minute of this many requests teaches the wandering at half the full rate: a minute of
# one or two requests says little about it (its mean's spread is mostly their own), so it moves the estimate less
_log1p = math.log1p
SHIFT_MEMORY = 500  # requests that the level of an ongoing shift is averaged over
HALF_LIFE_MINUTES = 24 * 60  # the baseline forgets by event time too, so slow series follow slow drift
MIN_HALF_LIFE_MINUTES = 120  # ... but never faster than this, so a busy series cannot absorb a shift in minutes
_FLOOR_1, _KEEP_1 = 0.5 ** (1 / MIN_HALF_LIFE_MINUTES), 0.5 ** (1 / HALF_LIFE_MINUTES)  # what a minute forgets
TRACK_STEP = 1 - 0.5 ** (1 / 60)  # a shifted level follows the data with a half-life of an hour at most
EFFECT_Z = 1.5  # the effect must matter at its lower bound of about 87 % confidence
HOLD_S = 3600.0  # longest an undecided shift waits at the threshold for more evidence
WANDER_BELOW = 0.25  # share of the threshold either CUSUM must stay under for a minute to teach the wander


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


@dataclass(frozen=True, slots=True)
class LevelConfig:
    """A level-shift test's parameters: one instance shared by every series with the same ones."""

    warmup: int = 200
    warmup_minutes: int = 30
    delta: float = math.log(1.6)
    h: float = 14.0
    clip: float = 3.0
    half_life: float = 5000.0
    min_ratio: float = 1.3
    min_run: int = 10
    alpha: float = field(init=False)  # per request, from half_life
    worth: float = field(init=False)  # log(min_ratio): the smallest effect that matters, in log units

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", 1.0 - 0.5 ** (1.0 / self.half_life))
        object.__setattr__(self, "worth", math.log(self.min_ratio))


# The numbers of a LogLevelShift, one double each (see detector.models.state).
NUMBERS = Packed(
    (
        "n", "minutes", "mean", "var", "tau2", "zz", "zlag", "z_prev", "prev_minute", "lim", "last_close",
        "minute", "m_first", "m_n", "m_sum", "m_sq", "m_raw", "s_up", "s_dn", "held_since",
        "shift_dir", "shift_onset", "shift_n", "shift_mean", "s_back", "shifted_at",
    ),
    ints=("n", "minutes", "prev_minute", "last_close", "minute", "m_n", "shift_dir", "shift_n"),
)  # fmt: skip
(
    N, MINUTES, MEAN, VAR, TAU2, ZZ, ZLAG, Z_PREV, PREV_MINUTE, LIM, LAST_CLOSE,
    MINUTE, M_FIRST, M_N, M_SUM, M_SQ, M_RAW, S_UP, S_DN, HELD_SINCE,
    SHIFT_DIR, SHIFT_ONSET, SHIFT_N, SHIFT_MEAN, S_BACK, SHIFTED_AT,
) = range(len(NUMBERS))  # fmt: skip
NUMBERS.check(globals())
_M_END, _NO_SUMS = M_RAW + 1, array("d", (0.0, 0.0, 0.0, 0.0))  # the open minute's sums, m_n … m_raw, emptied


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

    The numbers live in one array of doubles (``a``, indexed by the
    constants above) and the parameters in a :class:`LevelConfig` shared
    with every series built alike: the engine keeps three of these per
    series.
    """

    __slots__ = ("a", "config", "dn", "phase", "up")

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
        self.config = shared(LevelConfig(warmup, warmup_minutes, delta, h, clip, half_life, min_ratio, min_run))
        self.phase = LEARNING
        # tau2 is the running estimate of the wandering's variance, floored where it is used but
        # not where it is kept: floored at every step it would take each upward step and refuse
        # the downward ones, and on a steady slow series settle at several times the truth.
        # var holds the Welford sum of squares during warm-up. zz, zlag, z_prev: persistence of the
        # wandering (minute z-scores' lag-1 products and squares, EW). lim: the winsorising bound,
        # clip × sd, fixed within a minute. last_close: the minute last closed, for forgetting by
        # event time. held_since: event time an undecided shift started waiting at the threshold.
        self.a = NUMBERS.new(tau2=TAU2_FLOOR, zz=1.0, prev_minute=-2, minute=-1)
        # The CUSUM runs, (first ts, requests, sum of logs, minutes) per minute; none while at zero.
        self.up: array[float] | None = None
        self.dn: array[float] | None = None

    # -- the one command ---------------------------------------------------
    def update(self, value: float, ts: float) -> None:
        """Learn from one observation (raw units, ≥ 0) at event time ``ts``.

        Per request only the minute's sums grow; the baseline learns and the
        evidence is weighed when the minute closes.
        """
        a = self.a
        x = _log1p(value)
        minute = int(ts // 60)
        if minute != a[MINUTE]:
            if a[M_N]:
                self._close_minute(ts)
            a[MINUTE], a[M_FIRST], a[M_N], a[M_SUM], a[M_SQ], a[M_RAW] = minute, ts, 0, 0.0, 0.0, 0.0
        a[N] += 1
        if self.phase == LEARNING:
            self._learn(x)
            return
        # Winsorised around the level being tested: the baseline while watching,
        # the shifted level while in a shift, so one failed request's empty
        # answer cannot argue a whole minute back to normal.
        r = x - (a[SHIFT_MEAN] if self.phase == SHIFTED else a[MEAN])
        lim = a[LIM]
        rc = lim if r > lim else (-lim if r < -lim else r)
        a[M_N] += 1
        a[M_SUM] += rc
        a[M_SQ] += rc * rc
        a[M_RAW] += x

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
        a = self.a
        minute = int(ts // 60)
        fresh = minute != a[MINUTE]
        if fresh:
            if a[M_N]:
                self._close_minute(ts)
            a[MINUTE], a[M_FIRST] = minute, ts
        if self.phase == LEARNING:
            if fresh:
                a[M_N], a[M_SUM], a[M_SQ], a[M_RAW] = 0, 0.0, 0.0, 0.0
            for value in values:
                a[N] += 1
                self._learn(_log1p(value))
            return
        center = a[SHIFT_MEAN] if self.phase == SHIFTED else a[MEAN]
        lim = a[LIM]
        nlim = -lim
        total = squares = raw = 0.0
        for value in values:
            x = _log1p(value)
            r = x - center
            rc = lim if r > lim else (nlim if nlim > r else r)
            total += rc
            squares += rc * rc
            raw += x
        count = len(values)
        a[N] += count
        if fresh:  # the minute's sums start from these (0.0 + x is x, so this is the same as adding)
            a[M_N], a[M_SUM], a[M_SQ], a[M_RAW] = count, total, squares, raw
        else:
            a[M_N] += count
            a[M_SUM] += total
            a[M_SQ] += squares
            a[M_RAW] += raw

    def close(self, ts: float) -> None:
        """Judge the open minute now (the caller knows no more of it will come); ``ts`` is now."""
        a = self.a
        if a[M_N]:
            self._close_minute(ts)
            a[M_N:_M_END] = _NO_SUMS

    def peek(self, ts: float) -> bool:
        """Judge the open minute early if its requests so far cross the threshold; True if that made a shift.

        A busy series' first minute of a doubling usually holds more than
        enough evidence; waiting for the minute to end would page a whole
        minute of requests later than the evidence allows. The part seen so
        far is then closed as a minute of its own, and the rest of the minute
        follows as another: each carries the wandering's variance, so
        splitting a minute only ever asks for more evidence, never less.

        >>> import random
        >>> rng, model = random.Random(1), LogLevelShift(warmup=50, warmup_minutes=5)
        >>> for minute in range(120):
        ...     model.update_many([rng.lognormvariate(7, 0.5) for _ in range(40)], minute * 60.0)
        >>> model.update_many([rng.lognormvariate(7 + 0.69, 0.5) for _ in range(5)], 7200.0)
        >>> model.peek(7201.0), model.phase
        (False, 'watching')
        >>> model.update_many([rng.lognormvariate(7 + 0.69, 0.5) for _ in range(20)], 7202.0)
        >>> model.peek(7203.0), model.phase
        (True, 'shifted')
        """
        a = self.a
        n = a[M_N]
        if self.phase != WATCHING or not n:
            return False
        s_up, s_dn = self._cusums(*self._evidence(n))
        h = self.config.h
        if s_up < h and s_dn < h:
            return False
        self.close(ts)
        return self.phase == SHIFTED

    def _evidence(self, n: float) -> tuple[float, float]:
        """The open minute's mean deviation, and its variance: its requests' own spread plus the wandering."""
        a = self.a
        return a[M_SUM] / n, a[VAR] / n + self.tau2 * self.persistence()

    def _cusums(self, dev: float, v: float) -> tuple[float, float]:
        """Both CUSUMs with a minute of mean deviation ``dev`` and variance ``v`` added (not yet floored at 0)."""
        a, d = self.a, self.config.delta
        return a[S_UP] + d / v * (dev - d / 2), a[S_DN] + d / v * (-dev - d / 2)

    def _learn(self, x: float) -> None:
        a = self.a
        delta = x - a[MEAN]
        a[MEAN] += delta / a[N]
        a[VAR] += delta * (x - a[MEAN])
        a[M_N] += 1
        a[M_RAW] += x

    def _close_minute(self, ts: float) -> None:
        """Judge the minute that just ended as one piece of evidence; ``ts`` is now."""
        # Each number is read into a local once and written back once: an array
        # index costs more than a slot, and this runs every minute of every series.
        a, c = self.a, self.config
        a[MINUTES] += 1
        n = a[M_N]
        if self.phase == LEARNING:
            self._learn_minute()
            return
        var, tau2 = a[VAR], a[TAU2]
        dev, v = self._evidence(n)
        if self.phase == SHIFTED:
            self._track_shift(a[SHIFT_MEAN] + dev, v)
            return
        h = c.h
        s_up, s_dn = self._cusums(dev, v)
        # (Comparisons written out rather than max() and min(): the same values, a call less each.)
        a[S_UP] = s_up = s_up if s_up > 0.0 else 0.0
        a[S_DN] = s_dn = s_dn if s_dn > 0.0 else 0.0
        first, raw = a[M_FIRST], a[M_RAW]
        up = self.up = _extend(self.up, s_up, first, n, raw)
        dn = self.dn = _extend(self.dn, s_dn, first, n, raw)
        calm = s_up < h / 2 and s_dn < h / 2
        if s_up < h * WANDER_BELOW and s_dn < h * WANDER_BELOW:
            # The wander is learned only while neither test leans: a shift still building its
            # evidence would otherwise teach the model that minutes stray that far, and the test
            # would grow blunter the longer the shift lasts.
            excess = dev * dev - var / n
            a[TAU2] = tau2 + 0.01 * n / (n + TAU2_N) * (excess - tau2)
            self._learn_persistence(dev / math.sqrt(var / n + self.tau2), 0.02)
        # Forget n requests' worth (but no more than two hours' worth), or the
        # time since the last minute if that is more (half-lives: `half_life`
        # requests bounded below by two hours, a day); ten times slower while a
        # shift is suspected, so the baseline neither swallows an incident nor
        # stays frozen for hours on a slow series whose evidence dawdles.
        minute, last = a[MINUTE], a[LAST_CLOSE]
        gap = minute - last if last else 1
        a[LAST_CLOSE] = minute
        floor, by_time = (_FLOOR_1, _KEEP_1) if gap == 1 else (0.5 ** (gap / MIN_HALF_LIFE_MINUTES),
                                                               0.5 ** (gap / HALF_LIFE_MINUTES))
        by_requests = (1.0 - c.alpha) ** n
        by_requests = floor if floor > by_requests else by_requests
        keep = by_time if by_time < by_requests else by_requests
        w = (1.0 - keep) * (1.0 if calm else 0.1)
        a[MEAN] += w * dev
        a[VAR] = var = var + w * (a[M_SQ] / n - var)
        a[LIM] = c.clip * math.sqrt(var)
        if s_up >= h and up is not None and sum(up[1::4]) >= c.min_run:
            self._maybe_shift(+1, up, ts)
        elif s_dn >= h and dn is not None and sum(dn[1::4]) >= c.min_run:
            self._maybe_shift(-1, dn, ts)

    def _learn_minute(self) -> None:
        """During warm-up, learn τ² from how far each minute's mean strays."""
        a, c = self.a, self.config
        mean_so_far = a[MEAN]
        dev = a[M_RAW] / a[M_N] - mean_so_far
        var = a[VAR] / max(a[N] - 1, 1)
        minutes = a[MINUTES]
        if minutes > 1:
            excess = dev * dev - var / a[M_N]
            a[TAU2] += (excess - a[TAU2]) / minutes
            self._learn_persistence(dev / math.sqrt(var / a[M_N] + self.tau2), 1 / minutes)
        if a[N] >= c.warmup and minutes >= c.warmup_minutes:
            a[VAR] = max(var, 1e-4)
            a[LIM] = c.clip * math.sqrt(a[VAR])
            self.phase = WATCHING

    def _onset(self, direction: int, run: array[float]) -> tuple[float, int, float, float]:
        """Where in the run the shift most likely began: (onset ts, requests, sum of logs, minutes).

        The CUSUM's run often starts a minute or two early, on baseline
        minutes that happened to lean the same way; counting them would
        understate the change. The split that maximises the evidence for a
        shift of the run's direction is the maximum-likelihood change point.
        """
        a = self.a
        var, mean = a[VAR], a[MEAN]
        inflation = self.tau2 * self.persistence()
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

    def _learn_persistence(self, z: float, rate: float) -> None:
        """Learn how much one minute's deviation carries into the next (lag-1 correlation)."""
        a = self.a
        minute = a[MINUTE]
        if minute == a[PREV_MINUTE] + 1:
            zlag, zz = a[ZLAG], a[ZZ]
            a[ZLAG] = zlag + rate * (z * a[Z_PREV] - zlag)
            a[ZZ] = zz + rate * (z * z - zz)
        a[Z_PREV], a[PREV_MINUTE] = z, minute

    def persistence(self) -> float:
        """Variance inflation of a run of minutes when the wandering persists (AR(1): (1+ρ)/(1-ρ))."""
        a = self.a
        zz = a[ZZ]
        if zz > 0:
            rho = a[ZLAG] / zz
            rho = 0.0 if 0.0 > rho else rho
            rho = 0.9 if 0.9 < rho else rho
        else:
            rho = 0.0
        return (1 + rho) / (1 - rho)

    def _maybe_shift(self, direction: int, run: array[float], ts: float) -> None:
        a, c = self.a, self.config
        onset, n, total, minutes = self._onset(direction, run)
        effect = total / n - a[MEAN]
        # The run that crossed the threshold overstates the effect (the test
        # stopped when evidence peaked), so judge its size by a confidence band.
        margin = EFFECT_Z * math.sqrt(a[VAR] / n + self.tau2 * self.persistence() / max(minutes, 1.0))
        size, worth = direction * effect, c.worth
        if size - margin >= worth:
            self.phase = SHIFTED
            a[SHIFT_DIR], a[SHIFT_ONSET], a[SHIFT_N] = direction, onset, n
            a[SHIFT_MEAN], a[S_BACK], a[SHIFTED_AT] = a[MEAN] + effect, 0.0, ts
        elif size + margin < worth:
            # Real but surely too small to matter: the baseline takes it.
            a[MEAN] += effect
            self._reset_cusum()
        elif not a[HELD_SINCE] or ts - a[HELD_SINCE] < HOLD_S:
            # Too early to tell whether it matters: hold at the threshold and
            # judge again next minute, with more requests behind the estimate.
            a[HELD_SINCE] = a[HELD_SINCE] or ts
            if direction > 0:
                a[S_UP] = c.h
            else:
                a[S_DN] = c.h
        else:
            # Still undecided after an hour: start over, and let the baseline
            # learn again, rather than test the same run forever.
            self._reset_cusum()

    def _track_shift(self, level: float, v: float) -> None:
        """Follow the shifted level; return to watching once the evidence says it is gone."""
        a, c = self.a, self.config
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
            self._end_shift()
            return
        # LLR of "back at baseline" against "still at the shifted level".
        a[S_BACK] = max(0.0, a[S_BACK] + back / v * (level - a[SHIFT_MEAN] - back / 2))
        if a[S_BACK] >= c.h:
            self._end_shift()

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        a = self.a
        a[S_UP] = a[S_DN] = 0.0
        self.up = self.dn = None
        a[HELD_SINCE] = 0.0

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted level as the new normal (a change that is here to stay)."""
        if self.phase == SHIFTED:
            self.a[MEAN] = self.a[SHIFT_MEAN]
            self._end_shift()

    # -- queries -------------------------------------------------------------
    def score(self) -> float:
        """Evidence of a shift, as a fraction of the alarm threshold (≥ 1 means alarm)."""
        a, h = self.a, self.config.h
        if self.phase == SHIFTED:
            return max(1.0, (h - a[S_BACK]) / h)
        return max(a[S_UP], a[S_DN]) / h

    n = number(N, "Requests seen.", int)
    mean = number(MEAN, "Baseline location, in log(1 + x).")
    var = number(VAR, "Baseline variance of one request's log (during warm-up: Welford's sum of squares).")

    @property
    def tau2(self) -> float:
        """Learned variance of the minute-to-minute wandering of the level (at least ``TAU2_FLOOR``)."""
        tau2 = self.a[TAU2]
        return tau2 if tau2 > TAU2_FLOOR else TAU2_FLOOR
    shifted_at = number(SHIFTED_AT, "Event time the current shift was declared.")

    @property
    def baseline_median(self) -> float:
        return math.expm1(self.a[MEAN])

    @property
    def baseline_mean(self) -> float:
        var = self.a[VAR] if self.phase != LEARNING else 0.0
        return math.exp(self.a[MEAN] + var / 2) - 1

    def shift(self) -> Shift | None:
        """The current shift, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        a = self.a
        return Shift(
            direction=int(a[SHIFT_DIR]),
            onset_ts=a[SHIFT_ONSET],
            observed_median=math.expm1(a[SHIFT_MEAN]),
            baseline_median=self.baseline_median,
            observed_mean=math.exp(a[SHIFT_MEAN] + a[VAR] / 2) - 1,
            baseline_mean=self.baseline_mean,
            requests=int(a[SHIFT_N]),
        )

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return packed_state(self, NUMBERS, STATE_VERSION, up=list(self.up or ()), dn=list(self.dn or ()))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LogLevelShift:
        model = restore_packed(cls, LevelConfig, NUMBERS, state, STATE_VERSION)
        model.up, model.dn = saved_run(state["up"]), saved_run(state["dn"])
        return model


RUN_MINUTES = 8  # minutes a run keeps apart; older ones are merged into its first entry


def _extend(run: array[float] | None, s: float, first_ts: float, n: float, raw_sum: float) -> array[float] | None:
    """The run grown by a minute while its CUSUM is positive; none once it falls to zero.

    A run that ends is dropped rather than emptied: most of the time most
    runs are at zero, and an empty array still costs its header.
    """
    if s <= 0.0:
        return None
    return grow_run(run, (first_ts, n, raw_sum, 1.0), RUN_MINUTES)


