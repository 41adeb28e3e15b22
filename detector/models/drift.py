"""Slow creep: a distribution that grows a few percent a day, day after day.

:class:`~detector.models.level_shift.LogLevelShift` lets its baseline follow
the level over about a day, so that a series that wanders slowly does not
page; that also means it never sees prompts that grow 5 % a day for a week.
This test runs beside it on the same values and compares the recent level
with a long baseline instead.

Each request adds ``log(1 + x)`` to the open hour of event time (clipped to
the baseline's ±``clip`` standard deviations once there is one, so one huge
request moves nothing); when the hour closes its mean, weighted by its
request count, enters two exponentially weighted means by event time: the
*recent* level (half-life ``recent_half_life_h``, 6 h) and the *baseline*
(``baseline_half_life_h``, 7 days), which stops learning as soon as the gap
between them passes half the alarm threshold, so that the creep it should
catch is not absorbed into it; a gap that stays there for three days without
reaching the threshold is a small lasting change, and the baseline learns
it.

The gap ``d = recent − baseline`` strays even on a stationary series, for
two reasons: the recent level rests on few requests on a quiet series or at
night (its sampling variance is σ²·Σw²/(Σw)², known from the weights), and
real levels wander with the daily rhythm of the mix of tenants (learned: an
exponentially weighted mean, half-life a week, over the second day of
warm-up and the calm hours after it, of the squared
distance of d from its own day-long mean, less the sampling variance;
measured from that mean, so that a creep, which holds d on one side for
days, is not learned as wandering). Their sum, floored at ``min_sd``, is
the spread. An hour is *over* when |d| exceeds both ``z`` times that spread
and ``log(min_ratio)``; ``sustain_hours`` over hours in a row in
one direction are an alarm. Per request this costs three additions;
per hour a few multiplications. With the defaults a +5 %/day creep fires
after 1.6–2 days on simulated traffic (25 requests a minute at peak), and
simulated weeks stay quiet. A daily swing of the size of requests up to
about ±10 % is learned as wandering; a stronger one (±15 %) can page, as it
would take a baseline per hour of day to tell it from a creep.

Why not river's ADWIN, Page-Hinkley or KSWIN: ADWIN and KSWIN keep windows
of raw values in compiled objects with no plain-data form (checked:
``drift.ADWIN`` wraps a Rust object), Page-Hinkley's state holds ``inf`` and
a bound method (not JSON), and all three test a raw mean against a
cumulative one, with no notion of event time, of how far a level normally
wanders, or of freezing the reference while a change is suspected.

Phases as in :mod:`detector.models.level_shift`: ``learning`` (the first
``warmup_hours`` and ``warmup`` requests) → ``watching`` → ``shifted``
(baseline frozen until the gap closes to half the threshold, or
:meth:`SlowCreep.rebaseline`) → ``watching``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from detector.models.state import (
    LEARNING,
    SHIFTED,
    WATCHING,
    Packed,
    Watched,
    packed_state,
    restore_packed,
    shared,
)

STATE_VERSION: Final = 2
HOUR_S: Final = 3600.0
SPREAD_HALF_LIFE_H: Final = 168.0  # hours over which the normal wandering of d is learned
DAY_H: Final = 24.0
HOLD_H: Final = 72  # hours the baseline waits, held still, for a suspected creep to cross the threshold
MAX_GAP_H: Final = 48  # hours without requests after which the run of over hours starts afresh
BELOW_ALARM: Final = 0.999
_log1p: Final = math.log1p


@dataclass(frozen=True, slots=True)
class Creep:
    """What the model concluded: direction, when the level started to leave, and how far it went."""

    direction: int  # +1 up, -1 down
    onset_ts: float  # the last hour before the gap stayed on this side
    observed_median: float  # the recent level (raw units, geometric)
    baseline_median: float
    hours: float  # since the onset

    @property
    def ratio(self) -> float:
        return self.observed_median / self.baseline_median if self.baseline_median > 0 else math.inf

    @property
    def per_day(self) -> float:
        """Average growth factor per day since the onset (1.05 is +5 %/day)."""
        days = max(self.hours / 24.0, 1.0 / 24.0)
        return self.ratio ** (1.0 / days) if self.ratio < math.inf else math.inf


@dataclass(frozen=True, slots=True)
class CreepConfig:
    """A slow-creep test's parameters: one instance shared by every series with the same ones."""

    warmup: int = 500
    warmup_hours: int = 48
    z: float = 4.0
    min_ratio: float = 1.06
    min_sd: float = 0.01
    clip: float = 4.0
    sustain_hours: int = 3
    recent_half_life_h: float = 6.0
    baseline_half_life_h: float = 168.0
    worth: float = field(init=False)  # log(min_ratio): the smallest gap that matters

    def __post_init__(self) -> None:
        if self.min_ratio <= 1:
            raise ValueError(f"SlowCreep min_ratio: expected > 1, got {self.min_ratio!r}")
        if not 0 < self.recent_half_life_h < self.baseline_half_life_h:
            raise ValueError(f"SlowCreep half-lives: expected 0 < recent < baseline, got "
                             f"{self.recent_half_life_h!r}, {self.baseline_half_life_h!r}")
        object.__setattr__(self, "worth", math.log(self.min_ratio))


# The numbers of a SlowCreep, one double each (see detector.models.state).
NUMBERS: Final = Packed(
    (
        "n", "first_hour", "hour", "h_n", "h_sum", "h_sq", "lo", "hi", "rw", "rw2", "rx", "bw", "bx", "bq",
        "dm", "dv", "dw", "held", "over", "up_since", "dn_since", "last_hour", "shift_dir", "shift_onset",
    ),
    ints=("n", "first_hour", "hour", "h_n", "held", "over", "last_hour", "shift_dir"),
)  # fmt: skip
N: Final = 0
FIRST_HOUR: Final = 1
HOUR: Final = 2
H_N: Final = 3
H_SUM: Final = 4
H_SQ: Final = 5
LO: Final = 6
HI: Final = 7
RW: Final = 8
RW2: Final = 9
RX: Final = 10
BW: Final = 11
BX: Final = 12
BQ: Final = 13
DM: Final = 14
DV: Final = 15
DW: Final = 16
HELD: Final = 17
OVER: Final = 18
UP_SINCE: Final = 19
DN_SINCE: Final = 20
LAST_HOUR: Final = 21
SHIFT_DIR: Final = 22
SHIFT_ONSET: Final = 23
NUMBERS.check(globals())


class SlowCreep(Watched):
    """Online test of a slow, sustained drift of a positive, heavy-tailed quantity against a long baseline.

    Three days of steady prompts, then +5 % a day: the alarm comes on the
    second day of the creep.

    >>> import random
    >>> rng = random.Random(6)
    >>> m = SlowCreep()
    >>> creep = fired = None
    >>> for i in range(6 * 24 * 60 * 4):                 # four requests a minute for six days
    ...     ts = i * 15.0
    ...     growth = 1.05 ** max(ts / 86400 - 3, 0)
    ...     m.update(growth * rng.lognormvariate(7, 0.7), ts=ts)
    ...     if creep is None and m.phase == "shifted":
    ...         creep, fired = m.shift(), ts
    >>> round(fired / 86400 - 3, 1), creep.direction, 1.05 < creep.ratio < 1.15   # days after the creep began
    (1.8, 1, True)

    The numbers live in one array of doubles (``a``) and the parameters in
    a :class:`CreepConfig` shared with every series built alike.
    """

    __slots__ = ("a", "config", "phase")

    def __init__(
        self,
        *,
        warmup: int = 500,
        warmup_hours: int = 48,
        z: float = 4.0,
        min_ratio: float = 1.06,
        min_sd: float = 0.01,
        clip: float = 4.0,
        sustain_hours: int = 3,
        recent_half_life_h: float = 6.0,
        baseline_half_life_h: float = 168.0,
    ) -> None:
        Watched.__init__(self)
        self.config = shared(CreepConfig(warmup, warmup_hours, z, min_ratio, min_sd, clip, sustain_hours,
                                         recent_half_life_h, baseline_half_life_h))
        self.phase = LEARNING
        # lo, hi: clipping bounds, fixed within an hour (equal: none yet; JSON has no infinity).
        # rw, rw2, rx: recent level, EW Σ requests, Σ squared weights, Σ logs; bw, bx, bq: baseline,
        # EW Σ requests, Σ logs, Σ logs². dm: EW mean of d over a day (where a persistent creep shows,
        # and wandering does not); dv, dw: EW Σ ((d − dm)² − sampling variance) and Σ 1 over the hours
        # it learns from. held: hours in a row the baseline has been held still, short of an alarm.
        # over: hours over the threshold in a row, signed by side. up_since, dn_since: end of the last
        # hour with d ≤ 0 (resp. ≥ 0), a creep's onset.
        self.a = NUMBERS.new(first_hour=-1, hour=-1, last_hour=-1)

    # -- the one command -------------------------------------------------------
    def update(self, value: float, ts: float) -> None:
        """Learn from one observation (raw units, ≥ 0) at event time ``ts``; a late one counts in the open hour."""
        a = self.a
        x = _log1p(value)
        lo, hi = a[LO], a[HI]
        if hi > lo:
            x = lo if x < lo else (hi if x > hi else x)
        hour = int(ts // HOUR_S)
        if hour > a[HOUR]:
            self._next_hour(hour)
        a[N] += 1
        a[H_N] += 1
        a[H_SUM] += x
        a[H_SQ] += x * x

    def update_many(self, values: Sequence[float], ts: float) -> None:
        """:meth:`update` for each of ``values`` at ``ts`` (the engine hands over a minute at a time).

        >>> a, b = SlowCreep(warmup=10, warmup_hours=2), SlowCreep(warmup=10, warmup_hours=2)
        >>> for minute in range(600):
        ...     values = [5000.0 if minute % 60 == 0 else 90.0] + [100.0 + i + minute % 7 for i in range(3)]
        ...     a.update_many(values, minute * 60.0)
        ...     for v in values:
        ...         b.update(v, minute * 60.0)
        >>> a.to_state() == b.to_state()
        True
        """
        if not values:
            return
        a = self.a
        if int(ts // HOUR_S) > a[HOUR]:
            self.update(values[0], ts)  # clipped by the bounds of the hour it closes, as one by one
            values = values[1:]
        lo, hi = a[LO], a[HI]
        clip = hi > lo
        total, squares = a[H_SUM], a[H_SQ]
        for value in values:
            x = _log1p(value)
            if clip:
                x = lo if x < lo else (hi if x > hi else x)
            total += x
            squares += x * x
        count = len(values)
        a[N] += count
        a[H_N] += count
        a[H_SUM], a[H_SQ] = total, squares

    def close(self, ts: float) -> None:
        """Nothing to do at a minute's end: an hour closes on the next hour's first value."""

    def peek(self, ts: float) -> bool:
        """Never in a hurry: a creep over days gains nothing from judging part of a minute early."""
        return False

    def _next_hour(self, hour: int) -> None:
        """Close the open hour, if it holds anything, and open ``hour``."""
        a = self.a
        if a[H_N]:
            self._close(int(a[HOUR]))
        if a[FIRST_HOUR] < 0:
            a[FIRST_HOUR] = hour
        a[HOUR], a[H_N], a[H_SUM], a[H_SQ] = hour, 0, 0.0, 0.0

    def _close(self, hour: int) -> None:
        """Fold the hour that just ended into both levels, then judge the gap between them."""
        a, c = self.a, self.config
        n, m = a[H_N], a[H_SUM] / a[H_N]
        gap = hour - a[LAST_HOUR] if a[LAST_HOUR] >= 0 else 1
        a[LAST_HOUR] = hour
        kr, kb = 0.5 ** (gap / c.recent_half_life_h), 0.5 ** (gap / c.baseline_half_life_h)
        a[RW], a[RW2], a[RX] = kr * a[RW] + n, kr * kr * a[RW2] + n, kr * a[RX] + n * m
        calm = self.d_calm()
        a[HELD] = 0 if calm or self.phase != WATCHING else a[HELD] + 1
        if self.phase == LEARNING or (self.phase == WATCHING and (calm or a[HELD] > HOLD_H)):
            a[BW], a[BX], a[BQ] = kb * a[BW] + n, kb * a[BX] + n * m, kb * a[BQ] + a[H_SQ]
        if gap > MAX_GAP_H:
            a[OVER] = 0
        d, end = self.gap, (hour + 1) * HOUR_S
        if d <= 0:
            a[UP_SINCE] = end
        if d >= 0:
            a[DN_SINCE] = end
        if self.phase == LEARNING:
            if hour - a[FIRST_HOUR] >= DAY_H:  # the second day's rhythm teaches the wandering, whatever it is
                self._learn_wander(d)
            if a[N] >= c.warmup and hour - a[FIRST_HOUR] >= c.warmup_hours:
                self.phase = WATCHING
            self._set_clip()
            return
        self._judge(hour, calm)
        self._set_clip()

    def _judge(self, hour: int, calm: bool) -> None:
        a = self.a
        d = self.gap
        if self.phase == SHIFTED:
            if d * a[SHIFT_DIR] < self.threshold / 2:
                self._end()
            return
        if calm:
            self._learn_wander(d)
        side = 1 if d > 0 else -1
        over = int(a[OVER])
        if abs(d) >= self.threshold:
            over = over + side if over * side > 0 else side
        else:
            over = 0
        a[OVER] = over
        if abs(over) >= self.config.sustain_hours:
            self.phase, a[SHIFT_DIR] = SHIFTED, side
            a[SHIFT_ONSET] = a[UP_SINCE] if side > 0 else a[DN_SINCE]

    def _learn_wander(self, d: float) -> None:
        a = self.a
        a[DM] += (1.0 - 0.5 ** (1.0 / DAY_H)) * (d - a[DM])
        k, dev = 0.5 ** (1.0 / SPREAD_HALF_LIFE_H), d - a[DM]
        a[DV], a[DW] = k * a[DV] + dev * dev - self.sampling_var(), k * a[DW] + 1.0

    def _set_clip(self) -> None:
        a = self.a
        if a[BW] > 0:
            mean = a[BX] / a[BW]
            sd = math.sqrt(max(a[BQ] / a[BW] - mean * mean, 0.0))  # of single requests' logs
            clip = self.config.clip
            a[LO], a[HI] = mean - clip * sd, mean + clip * sd

    def _end(self) -> None:
        self.phase, self.a[OVER], self.a[SHIFT_DIR] = WATCHING, 0, 0

    def rebaseline(self, ts: float) -> None:
        """Accept the recent level as the new normal (growth that is here to stay)."""
        if self.phase == SHIFTED:
            a = self.a
            shift = self.recent - self.baseline
            a[BQ] += (2 * self.baseline * shift + shift * shift) * a[BW]  # the same spread, moved
            a[BX] += shift * a[BW]
            self._end()

    # -- queries -----------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.a[N])

    @property
    def bw(self) -> float:
        """Baseline: EW Σ requests."""
        return self.a[BW]

    @property
    def bx(self) -> float:
        """Baseline: EW Σ logs."""
        return self.a[BX]

    @property
    def bq(self) -> float:
        """Baseline: EW Σ squared logs."""
        return self.a[BQ]

    @property
    def lo(self) -> float:
        """Lower clipping bound of a request's log, this hour."""
        return self.a[LO]

    @property
    def hi(self) -> float:
        """Upper clipping bound of a request's log, this hour."""
        return self.a[HI]

    @property
    def held(self) -> int:
        """Hours in a row the baseline has been held still, short of an alarm."""
        return int(self.a[HELD])

    @property
    def recent(self) -> float:
        a = self.a
        return a[RX] / a[RW] if a[RW] > 0 else 0.0

    @property
    def baseline(self) -> float:
        a = self.a
        return a[BX] / a[BW] if a[BW] > 0 else 0.0

    @property
    def gap(self) -> float:
        """recent − baseline, in log units."""
        return self.recent - self.baseline if self.a[BW] > 0 else 0.0

    def sampling_var(self) -> float:
        """Variance of the recent level from the requests alone: σ² · Σw² / (Σw)²."""
        a = self.a
        bw, rw = a[BW], a[RW]
        if bw <= 0 or rw <= 0:
            return 0.0
        mean = a[BX] / bw
        return max(a[BQ] / bw - mean * mean, 0.0) * a[RW2] / (rw * rw)

    @property
    def spread(self) -> float:
        """How far the gap strays now: the sampling noise of the recent level plus the learned wandering."""
        a = self.a
        wander = max(a[DV] / a[DW], 0.0) if a[DW] > 0 else 0.0
        return max(math.sqrt(self.sampling_var() + wander), self.config.min_sd)

    @property
    def threshold(self) -> float:
        return max(self.config.z * self.spread, self.config.worth)

    def d_calm(self) -> bool:
        """Is the gap small enough for the baseline to keep learning?"""
        return abs(self.gap) < self.threshold / 2

    def score(self) -> float:
        """How far the gap is toward the threshold; ≥ 1 only in an alarm."""
        if self.phase == SHIFTED:
            return max(1.0, abs(self.gap) / self.threshold)
        if self.phase == LEARNING:
            return 0.0
        return min(abs(self.gap) / self.threshold, BELOW_ALARM)

    def shift(self) -> Creep | None:
        """The current creep, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        a = self.a
        return Creep(
            direction=int(a[SHIFT_DIR]),
            onset_ts=a[SHIFT_ONSET],
            observed_median=math.expm1(self.recent),
            baseline_median=math.expm1(self.baseline),
            hours=max((a[HOUR] + 1) * HOUR_S - a[SHIFT_ONSET], 0.0) / HOUR_S,
        )

    # -- state -------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return packed_state(self, NUMBERS, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SlowCreep:
        return restore_packed(cls, CreepConfig, NUMBERS, state, STATE_VERSION)
