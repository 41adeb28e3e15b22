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
from typing import Any, Final

from detector.models.level_baseline import (
    close_warmup_minute,
    follow_baseline,
    learn_request,
)
from detector.models.level_run import extend_run
from detector.models.level_state import (
    HELD_SINCE,
    LIM,
    M_FIRST,
    M_N,
    M_RAW,
    M_SQ,
    M_SUM,
    MEAN,
    MINUTE,
    MINUTES,
    NUMBERS,
    S_BACK,
    S_DN,
    S_UP,
    SHIFT_DIR,
    SHIFT_MEAN,
    SHIFT_N,
    SHIFT_ONSET,
    SHIFTED_AT,
    STATE_VERSION,
    VAR,
    LevelConfig,
    N,
)
from detector.models.level_verdict import START_OVER, Shift, follow, judge
from detector.models.level_wander import (
    TAU2_FLOOR,
    WANDER_BELOW,
    floored_tau2,
    learn_wander,
    wander_inflation,
)
from detector.models.level_wander import persistence as wander_persistence
from detector.models.state import (
    LEARNING,
    SHIFTED,
    WATCHING,
    Watched,
    packed_state,
    restore_packed,
    saved_run,
    shared,
)

_log1p: Final = math.log1p
# the open minute's sums, m_n … m_raw, emptied
_M_END: Final = M_RAW + 1
_NO_SUMS: Final = array("d", (0.0, 0.0, 0.0, 0.0))


class LogLevelShift(Watched):
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
    constants of :mod:`~detector.models.level_state`) and the parameters in
    a :class:`LevelConfig` shared with every series built alike: the engine
    keeps three of these per series. The baseline, the wander, the CUSUM
    runs and the verdict on a shift each have a module of their own
    (``level_baseline``, ``level_wander``, ``level_run``, ``level_verdict``);
    this class holds the open minute, the two CUSUMs and the phase.
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
        Watched.__init__(self)
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
                a = self.a  # a shift that began or ended there changed the array
            a[MINUTE], a[M_FIRST], a[M_N], a[M_SUM], a[M_SQ], a[M_RAW] = minute, ts, 0, 0.0, 0.0, 0.0
        a[N] += 1
        if self.phase == LEARNING:
            learn_request(a, x)
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
                a = self.a  # a shift that began or ended there changed the array
            a[MINUTE], a[M_FIRST] = minute, ts
        if self.phase == LEARNING:
            if fresh:
                a[M_N], a[M_SUM], a[M_SQ], a[M_RAW] = 0, 0.0, 0.0, 0.0
            for value in values:
                a[N] += 1
                learn_request(a, _log1p(value))
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
        if self.a[M_N]:
            self._close_minute(ts)
            self.a[M_N:_M_END] = _NO_SUMS  # (the array of after the close: a shift changes it)

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
        return a[M_SUM] / n, a[VAR] / n + wander_inflation(a)

    def _cusums(self, dev: float, v: float) -> tuple[float, float]:
        """Both CUSUMs with a minute of mean deviation ``dev`` and variance ``v`` added (not yet floored at 0)."""
        a, d = self.a, self.config.delta
        return a[S_UP] + d / v * (dev - d / 2), a[S_DN] + d / v * (-dev - d / 2)

    def _close_minute(self, ts: float) -> None:
        """Judge the minute that just ended as one piece of evidence; ``ts`` is now."""
        # Each number is read into a local once and written back once: an array
        # index costs more than a slot, and this runs every minute of every series.
        a, c = self.a, self.config
        a[MINUTES] += 1
        n = a[M_N]
        if self.phase == LEARNING:
            if close_warmup_minute(a, c):
                self.phase = WATCHING
            return
        var = a[VAR]
        dev, v = self._evidence(n)
        if self.phase == SHIFTED:
            if follow(a, c, a[SHIFT_MEAN] + dev, v):
                self._end_shift()
            return
        h = c.h
        s_up, s_dn = self._cusums(dev, v)
        # (Comparisons written out rather than max() and min(): the same values, a call less each.)
        a[S_UP] = s_up = s_up if s_up > 0.0 else 0.0
        a[S_DN] = s_dn = s_dn if s_dn > 0.0 else 0.0
        first, raw = a[M_FIRST], a[M_RAW]
        up = self.up = extend_run(self.up, s_up, first, n, raw)
        dn = self.dn = extend_run(self.dn, s_dn, first, n, raw)
        calm = s_up < h / 2 and s_dn < h / 2
        if s_up < h * WANDER_BELOW and s_dn < h * WANDER_BELOW:
            # The wander is learned only while neither test leans: a shift still building its
            # evidence would otherwise teach the model that minutes stray that far, and the test
            # would grow blunter the longer the shift lasts.
            learn_wander(a, dev, var, n)
        follow_baseline(a, c, dev, var, n, calm)  # (ten times slower unless calm)
        if s_up >= h and up is not None and sum(up[1::4]) >= c.min_run:
            self._maybe_shift(+1, up, ts)
        elif s_dn >= h and dn is not None and sum(dn[1::4]) >= c.min_run:
            self._maybe_shift(-1, dn, ts)

    def persistence(self) -> float:
        """Variance inflation of a run of minutes when the wandering persists (AR(1): (1+ρ)/(1-ρ))."""
        return wander_persistence(self.a)

    def _maybe_shift(self, direction: int, run: array[float], ts: float) -> None:
        """Judge a run that crossed the threshold (see :func:`~detector.models.level_verdict.judge`)."""
        a = self.a = NUMBERS.widen(self.a)  # room for the shift's numbers, should it be one
        verdict = judge(a, self.config, direction, run, ts)
        if verdict == SHIFTED:
            self.phase = SHIFTED
            return
        self.a = NUMBERS.narrow(a)
        if verdict == START_OVER:
            self._reset_cusum()

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self.a = NUMBERS.narrow(self.a)
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

    @property
    def n(self) -> int:
        """Requests seen."""
        return int(self.a[N])

    @property
    def mean(self) -> float:
        """Baseline location, in log(1 + x)."""
        return self.a[MEAN]

    @property
    def var(self) -> float:
        """Baseline variance of one request's log (during warm-up: Welford's sum of squares)."""
        return self.a[VAR]

    @property
    def tau2(self) -> float:
        """Learned variance of the minute-to-minute wandering of the level (at least ``TAU2_FLOOR``)."""
        return floored_tau2(self.a)

    @property
    def shifted_at(self) -> float:
        """Event time the current shift was declared."""
        return self.a[SHIFTED_AT]

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

