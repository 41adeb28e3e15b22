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
from dataclasses import dataclass
from typing import Any

from detector.models.state import restore_slots, slots_state

LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"
STATE_VERSION = 1
HOUR_S = 3600.0
SPREAD_HALF_LIFE_H = 168.0  # hours over which the normal wandering of d is learned
DAY_H = 24.0
HOLD_H = 72  # hours the baseline waits, held still, for a suspected creep to cross the threshold
MAX_GAP_H = 48  # hours without requests after which the run of over hours starts afresh
BELOW_ALARM = 0.999
_log1p = math.log1p


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


class SlowCreep:
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
    """

    __slots__ = (
        "warmup", "warmup_hours", "z", "min_ratio", "min_sd", "clip", "sustain", "recent_hl", "base_hl",
        "phase", "n", "first_hour", "hour", "h_n", "h_sum", "h_sq", "lo", "hi", "rw", "rw2", "rx", "bw", "bx", "bq",
        "dm", "dv", "dw", "held", "over", "up_since", "dn_since", "last_hour", "shift_dir", "shift_onset",
    )  # fmt: skip

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
        if min_ratio <= 1:
            raise ValueError(f"SlowCreep min_ratio: expected > 1, got {min_ratio!r}")
        if not 0 < recent_half_life_h < baseline_half_life_h:
            raise ValueError(f"SlowCreep half-lives: expected 0 < recent < baseline, got {recent_half_life_h!r}, "
                             f"{baseline_half_life_h!r}")
        self.warmup, self.warmup_hours, self.z, self.min_ratio = warmup, warmup_hours, z, min_ratio
        self.min_sd, self.clip, self.sustain = min_sd, clip, sustain_hours
        self.recent_hl, self.base_hl = recent_half_life_h, baseline_half_life_h
        self.phase = LEARNING
        self.n = 0
        self.first_hour = self.hour = self.last_hour = -1
        self.h_n, self.h_sum, self.h_sq = 0, 0.0, 0.0
        self.lo = self.hi = 0.0  # clipping bounds, fixed within an hour (equal: none yet; JSON has no infinity)
        self.rw = self.rw2 = self.rx = 0.0  # recent: EW Σ requests, Σ squared weights, Σ logs
        self.bw = self.bx = self.bq = 0.0  # baseline: EW Σ requests, Σ logs, Σ logs²
        self.dm = 0.0  # EW mean of d over a day: where a persistent creep shows, and wandering does not
        self.dv = self.dw = 0.0  # EW Σ ((d − dm)² − sampling variance) and Σ 1 over the hours it learns from
        self.held = 0  # hours in a row the baseline has been held still, short of an alarm
        self.over = 0  # hours over the threshold in a row, signed by side
        self.up_since = self.dn_since = 0.0  # end of the last hour with d ≤ 0 (resp. ≥ 0): a creep's onset
        self.shift_dir, self.shift_onset = 0, 0.0

    # -- the one command -------------------------------------------------------
    def update(self, value: float, ts: float) -> None:
        """Learn from one observation (raw units, ≥ 0) at event time ``ts``; a late one counts in the open hour."""
        x = _log1p(value)
        if self.hi > self.lo:
            x = self.lo if x < self.lo else (self.hi if x > self.hi else x)
        hour = int(ts // HOUR_S)
        if hour > self.hour:
            if self.h_n:
                self._close(self.hour)
            if self.first_hour < 0:
                self.first_hour = hour
            self.hour, self.h_n, self.h_sum, self.h_sq = hour, 0, 0.0, 0.0
        self.n += 1
        self.h_n += 1
        self.h_sum += x
        self.h_sq += x * x

    def update_many(self, values: Sequence[float], ts: float) -> None:
        """:meth:`update` for each of ``values`` at ``ts`` (the engine hands over a minute at a time)."""
        for value in values:
            self.update(value, ts)

    def close(self, ts: float) -> None:
        """Nothing to do at a minute's end: an hour closes on the next hour's first value."""

    def _close(self, hour: int) -> None:
        """Fold the hour that just ended into both levels, then judge the gap between them."""
        n, m = self.h_n, self.h_sum / self.h_n
        gap = hour - self.last_hour if self.last_hour >= 0 else 1
        self.last_hour = hour
        kr, kb = 0.5 ** (gap / self.recent_hl), 0.5 ** (gap / self.base_hl)
        self.rw, self.rw2, self.rx = kr * self.rw + n, kr * kr * self.rw2 + n, kr * self.rx + n * m
        calm = self.d_calm()
        self.held = 0 if calm or self.phase != WATCHING else self.held + 1
        if self.phase == LEARNING or (self.phase == WATCHING and (calm or self.held > HOLD_H)):
            self.bw, self.bx, self.bq = kb * self.bw + n, kb * self.bx + n * m, kb * self.bq + self.h_sq
        if gap > MAX_GAP_H:
            self.over = 0
        d, end = self.gap, (hour + 1) * HOUR_S
        if d <= 0:
            self.up_since = end
        if d >= 0:
            self.dn_since = end
        if self.phase == LEARNING:
            if hour - self.first_hour >= DAY_H:  # the second day's rhythm teaches the wandering, whatever it is
                self._learn_wander(d)
            if self.n >= self.warmup and hour - self.first_hour >= self.warmup_hours:
                self.phase = WATCHING
            self._set_clip()
            return
        self._judge(hour, calm)
        self._set_clip()

    def _judge(self, hour: int, calm: bool) -> None:
        d = self.gap
        if self.phase == SHIFTED:
            if d * self.shift_dir < self.threshold / 2:
                self._end()
            return
        if calm:
            self._learn_wander(d)
        side = 1 if d > 0 else -1
        if abs(d) >= self.threshold:
            self.over = self.over + side if self.over * side > 0 else side
        else:
            self.over = 0
        if abs(self.over) >= self.sustain:
            self.phase, self.shift_dir = SHIFTED, side
            self.shift_onset = self.up_since if side > 0 else self.dn_since

    def _learn_wander(self, d: float) -> None:
        self.dm += (1.0 - 0.5 ** (1.0 / DAY_H)) * (d - self.dm)
        k, dev = 0.5 ** (1.0 / SPREAD_HALF_LIFE_H), d - self.dm
        self.dv, self.dw = k * self.dv + dev * dev - self.sampling_var(), k * self.dw + 1.0

    def _set_clip(self) -> None:
        if self.bw > 0:
            mean = self.bx / self.bw
            sd = math.sqrt(max(self.bq / self.bw - mean * mean, 0.0))  # of single requests' logs
            self.lo, self.hi = mean - self.clip * sd, mean + self.clip * sd

    def _end(self) -> None:
        self.phase, self.over, self.shift_dir = WATCHING, 0, 0

    def rebaseline(self, ts: float) -> None:
        """Accept the recent level as the new normal (growth that is here to stay)."""
        if self.phase == SHIFTED:
            shift = self.recent - self.baseline
            self.bq += (2 * self.baseline * shift + shift * shift) * self.bw  # the same spread, moved
            self.bx += shift * self.bw
            self._end()

    # -- queries -----------------------------------------------------------------
    @property
    def recent(self) -> float:
        return self.rx / self.rw if self.rw > 0 else 0.0

    @property
    def baseline(self) -> float:
        return self.bx / self.bw if self.bw > 0 else 0.0

    @property
    def gap(self) -> float:
        """recent − baseline, in log units."""
        return self.recent - self.baseline if self.bw > 0 else 0.0

    def sampling_var(self) -> float:
        """Variance of the recent level from the requests alone: σ² · Σw² / (Σw)²."""
        if self.bw <= 0 or self.rw <= 0:
            return 0.0
        mean = self.bx / self.bw
        return max(self.bq / self.bw - mean * mean, 0.0) * self.rw2 / (self.rw * self.rw)

    @property
    def spread(self) -> float:
        """How far the gap strays now: the sampling noise of the recent level plus the learned wandering."""
        wander = max(self.dv / self.dw, 0.0) if self.dw > 0 else 0.0
        return max(math.sqrt(self.sampling_var() + wander), self.min_sd)

    @property
    def threshold(self) -> float:
        return max(self.z * self.spread, math.log(self.min_ratio))

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
        return Creep(
            direction=self.shift_dir,
            onset_ts=self.shift_onset,
            observed_median=math.expm1(self.recent),
            baseline_median=math.expm1(self.baseline),
            hours=max((self.hour + 1) * HOUR_S - self.shift_onset, 0.0) / HOUR_S,
        )

    # -- state -------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return slots_state(self, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SlowCreep:
        return restore_slots(cls, state, STATE_VERSION)
