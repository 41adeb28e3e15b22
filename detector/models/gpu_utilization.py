"""Sustained idle or saturated paid GPUs, priced as idle dollars per hour.

A paid GPU that does nothing costs the same as a busy one, so an idle GPU is
waste in dollars: ``hourly cost × (1 − utilisation)``. The question is when
idleness is news. Inference nodes follow their traffic and sit at a tenth of
their capacity every night and lower at weekends; paging every night for
that trains people to ignore pages, and the weekly digest is where chronic
waste is ranked by dollars. So the page is for a *change*: utilisation below
an absolute ``floor`` and below ``idle_ratio`` of what this GPU normally does
at this hour of the week, sustained for ``sustain_minutes``. Paid idle is
still waste whatever the hour: a GPU whose whole learned day is below the
floor (never busy at all) is judged against the floor alone, and
:meth:`GpuUtilization.idle_usd_per_hour` prices idleness at any time.

Baseline: 48 buckets, hour of day × weekday/weekend, each an exponentially
weighted mean utilisation per minute (as in
:mod:`detector.models.seasonal_rate`). An hour of the week not yet seen has
no idle test, except that a weekend hour borrows the weekday hour times
``idle_ratio`` (weekend nights are quieter than weekday ones, so borrowing it
as it is would page on the first quiet Saturday). Stored in ten-thousandths,
so the state stays under a kilobyte.

Evidence: samples are averaged per minute of event time (exporters scrape
every few seconds to every few minutes). A one-sided CUSUM of
``threshold − utilisation`` per minute opens a run at the first minute below
the threshold and keeps it open while the run's mean stays below; the alarm
fires once the run has lasted ``sustain_minutes`` of event time, and its
first minute is the onset. A minute's noise (±0.02 here) cannot hold a run
open for half an hour at the normal night level, a GPU stuck at 3 % can.
Saturation is the mirror test above ``saturation`` (0.98): the simulator's
benign bursts saturate nodes for up to a quarter of an hour, an overloaded
node for longer. The alarm ends after ``recover_minutes`` minutes in a row
back on the right side of the threshold.

Why not river: its EW statistics and drift detectors keep their state in
compiled objects with no plain-data form, and none knows the hour of the
week; this model's state must be a flat, versioned dict.

Phases as in :mod:`detector.models.level_shift`: ``learning`` (the first
``warmup_minutes``) → ``watching`` → ``shifted`` → ``watching``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from detector.models.state import (
    LEARNING,
    SHIFTED,
    WATCHING,
    restore_slots,
    slots_state,
)

IDLE: Final = "idle"
SATURATED: Final = "saturated"
STATE_VERSION: Final = 1
BUCKETS: Final = 48  # hour of day × (weekday, weekend)
ESTABLISHED: Final = 12  # minutes with samples a bucket needs before it predicts (an hour of 5-minute scrapes)
SEEN_CAP: Final = 99
UNIT: Final = 10_000.0  # the profile is kept in ten-thousandths
BELOW_ALARM: Final = 0.999  # score() ceiling outside an alarm


@dataclass(frozen=True, slots=True)
class GpuShift:
    """What the model concluded: idle or saturated, since when, and what it costs."""

    kind: str  # "idle" or "saturated"
    direction: int  # -1 idle, +1 saturated
    onset_ts: float
    observed_utilization: float  # mean since the onset
    baseline_utilization: float  # what this GPU normally does over the same minutes
    minutes: int  # minutes with samples since the onset
    idle_usd_per_hour: float  # hourly cost × (1 − observed utilisation)
    baseline_idle_usd_per_hour: float  # the same at the baseline utilisation

    @property
    def ratio(self) -> float:
        b = self.baseline_utilization
        return self.observed_utilization / b if b > 0 else math.inf

    @property
    def excess_usd_per_hour(self) -> float:
        """Idle dollars above what this GPU normally wastes at these hours."""
        return max(self.idle_usd_per_hour - self.baseline_idle_usd_per_hour, 0.0)


FIELDS: Final = (
    "floor", "idle_ratio", "saturation", "sustain", "recover", "warmup_minutes", "half_life", "max_gap",
    "offset", "cost", "phase", "first_minute", "minute", "m_sum", "m_n", "prof", "seen",
    "lo_s", "lo_ts", "lo_n", "lo_u", "lo_b", "hi_s", "hi_ts", "hi_n", "hi_u", "hi_b",
    "kind", "back", "shifted_at",
)  # fmt: skip
"""Every attribute of a model, all of it saved state (a compiled class has no ``__slots__`` to read them from)."""


class GpuUtilization:
    """Online detector of sustained idleness or saturation of one paid GPU (or node).

    ``update(utilization, ts, hourly_cost_usd=None)`` with utilisation in 0–1.
    A day of a GPU busy by day and at 12 % by night, then stuck at 3 %:

    >>> import random
    >>> rng = random.Random(4)
    >>> m = GpuUtilization(hourly_cost_usd=4.0)
    >>> monday = 4 * 1440                                   # 1970-01-05, in minutes
    >>> def level(minute): return 0.7 if 8 <= minute // 60 % 24 < 20 else 0.12
    >>> for minute in range(monday, monday + 2 * 1440):
    ...     m.update(level(minute) + rng.gauss(0, 0.02), ts=minute * 60.0)
    >>> m.phase
    'watching'
    >>> for minute in range(monday + 2 * 1440, monday + 2 * 1440 + 40):   # midnight: normally 12 %
    ...     m.update(0.03 + rng.gauss(0, 0.005), ts=minute * 60.0)
    >>> s = m.shift()
    >>> s.kind, s.onset_ts == (monday + 2 * 1440) * 60, round(s.idle_usd_per_hour, 1), round(s.baseline_utilization, 2)
    ('idle', True, 3.9, 0.12)
    """

    __slots__ = FIELDS

    def __init__(
        self,
        *,
        hourly_cost_usd: float = 0.0,
        floor: float = 0.10,
        idle_ratio: float = 0.5,
        saturation: float = 0.98,
        sustain_minutes: int = 30,
        recover_minutes: int = 5,
        warmup_minutes: int = 1440,
        bucket_half_life: float = 180.0,
        max_gap_minutes: int = 30,
        utc_offset_minutes: int = 0,
    ) -> None:
        if not 0.0 < floor < 1.0 or not 0.0 < idle_ratio < 1.0:
            raise ValueError(f"GpuUtilization floor and idle_ratio: expected in (0, 1), got {floor!r}, {idle_ratio!r}")
        if not floor < saturation <= 1.0:
            raise ValueError(f"GpuUtilization saturation: expected in (floor, 1], got {saturation!r}")
        if sustain_minutes < 1 or recover_minutes < 1:
            raise ValueError(f"GpuUtilization sustain/recover minutes: expected ≥ 1, got {sustain_minutes!r}, "
                             f"{recover_minutes!r}")
        self.floor, self.idle_ratio, self.saturation = floor, idle_ratio, saturation
        self.sustain, self.recover, self.warmup_minutes = sustain_minutes, recover_minutes, warmup_minutes
        self.half_life, self.max_gap, self.offset = bucket_half_life, max_gap_minutes, utc_offset_minutes
        self.cost = hourly_cost_usd
        self.phase = LEARNING
        self.first_minute = self.minute = -1
        self.m_sum, self.m_n = 0.0, 0
        self.prof = [0] * BUCKETS  # EW mean utilisation per bucket, in ten-thousandths
        self.seen = [0] * BUCKETS  # minutes learned per bucket (capped)
        # The low and high runs: CUSUM, first minute's ts, minutes, Σ utilisation, Σ baseline.
        self.lo_s = self.lo_ts = self.lo_u = self.lo_b = 0.0
        self.hi_s = self.hi_ts = self.hi_u = self.hi_b = 0.0
        self.lo_n = self.hi_n = 0
        self.kind, self.back, self.shifted_at = "", 0, 0.0

    # -- the one command -----------------------------------------------------
    def update(self, utilization: float, ts: float, hourly_cost_usd: float | None = None) -> None:
        """Count one sample (0–1) at event time ``ts``; a late sample counts in the open minute."""
        if not 0.0 <= utilization <= 1.0:
            raise ValueError(f"GpuUtilization.update: expected utilization in [0, 1], got {utilization!r}")
        if hourly_cost_usd is not None:
            self.cost = hourly_cost_usd
        minute = int(ts // 60)
        if minute > self.minute:
            if self.m_n:
                self._close(self.minute, self.m_sum / self.m_n, minute - self.minute - 1)
            if self.first_minute < 0:
                self.first_minute = minute
            self.minute, self.m_sum, self.m_n = minute, 0.0, 0
        self.m_sum += utilization
        self.m_n += 1

    def _close(self, t: int, u: float, gap: int) -> None:
        """Judge minute ``t`` of mean utilisation ``u``; ``gap`` minutes without samples follow it."""
        if self.phase == LEARNING and t - self.first_minute >= self.warmup_minutes:
            self.phase = WATCHING
        base = self.expected_at(t)
        if self.phase == SHIFTED:
            self._track(u, base)
        elif self.phase == WATCHING:
            self._judge(t, u, base)
        if self.phase != SHIFTED and self.lo_s <= 0 and self.hi_s <= 0:
            self._learn(t, u)
        if gap > self.max_gap:
            self._reset_runs()  # evidence does not span time nobody saw

    def _judge(self, t: int, u: float, base: float | None) -> None:
        if base is not None:  # an hour not yet seen has no idle test, only the saturation one
            self.lo_s = max(0.0, self.lo_s + self.idle_threshold(base) - u)
        if self.lo_s > 0 and base is not None:
            if self.lo_n == 0:
                self.lo_ts, self.lo_u, self.lo_b = t * 60.0, 0.0, 0.0
            self.lo_n, self.lo_u, self.lo_b = self.lo_n + 1, self.lo_u + u, self.lo_b + base
        else:
            self.lo_s, self.lo_n = 0.0, 0
        self.hi_s = max(0.0, self.hi_s + u - self.saturation)
        if self.hi_s > 0:
            if self.hi_n == 0:
                self.hi_ts, self.hi_u, self.hi_b = t * 60.0, 0.0, 0.0
            self.hi_n, self.hi_u, self.hi_b = self.hi_n + 1, self.hi_u + u, self.hi_b + (u if base is None else base)
        else:
            self.hi_n = 0
        end = (t + 1) * 60.0
        if self.lo_n and end - self.lo_ts >= self.sustain * 60:
            self._fire(IDLE, end)
        elif self.hi_n and end - self.hi_ts >= self.sustain * 60:
            self._fire(SATURATED, end)

    def _fire(self, kind: str, ts: float) -> None:
        self.phase, self.kind, self.back, self.shifted_at = SHIFTED, kind, 0, ts

    def _track(self, u: float, base: float | None) -> None:
        """Follow the alarm's run; end it after ``recover`` minutes in a row back to normal."""
        b = u if base is None else base
        if self.kind == IDLE:
            self.lo_n, self.lo_u, self.lo_b = self.lo_n + 1, self.lo_u + u, self.lo_b + b
            normal = u >= self.idle_threshold(b)
        else:
            self.hi_n, self.hi_u, self.hi_b = self.hi_n + 1, self.hi_u + u, self.hi_b + b
            normal = u < self.saturation
        self.back = self.back + 1 if normal else 0
        if self.back >= self.recover:
            self._end()

    def _learn(self, t: int, u: float) -> None:
        b = self._bucket(t)
        self.seen[b] = n = min(self.seen[b] + 1, SEEN_CAP)
        rate = max(1.0 / n, 1.0 - 0.5 ** (1.0 / self.half_life))
        self.prof[b] = round(self.prof[b] + rate * (u * UNIT - self.prof[b]))

    def _end(self) -> None:
        self.phase, self.kind, self.back = WATCHING, "", 0
        self._reset_runs()

    def _reset_runs(self) -> None:
        self.lo_s = self.hi_s = 0.0
        self.lo_n = self.hi_n = 0

    def rebaseline(self, ts: float) -> None:
        """Accept the current state as known (a GPU parked on purpose): end the alarm, keep learning."""
        if self.phase == SHIFTED:
            self._end()

    # -- the profile -----------------------------------------------------------
    def _bucket(self, t: int) -> int:
        local = t + self.offset
        weekend = (local // 1440 + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        return (local // 60) % 24 + 24 * weekend

    def expected_at(self, t: int) -> float | None:
        """The usual utilisation at minute ``t`` of event time, or None while that hour is unknown."""
        b = self._bucket(t)
        if self.seen[b] >= ESTABLISHED:
            return self.prof[b] / UNIT
        if b >= 24 and self.seen[b - 24] >= ESTABLISHED:
            return self.idle_ratio * self.prof[b - 24] / UNIT  # weekends are quieter: a stricter test
        return None

    def idle_threshold(self, base: float) -> float:
        """Utilisation below which a minute counts as idle, given the usual level ``base``.

        The floor, or ``idle_ratio`` of a usual level low enough to put it
        below the floor, unless the GPU is idle all day anyway (asked only
        then: it looks at every bucket, and this runs each minute of each GPU).
        """
        scaled = self.idle_ratio * base
        if scaled >= self.floor or self.chronic():
            return self.floor
        return scaled

    def chronic(self) -> bool:
        """Is this GPU idle all day by its own history (every learned hour below the floor)?"""
        known = [p for p, n in zip(self.prof, self.seen, strict=True) if n >= ESTABLISHED]
        return bool(known) and max(known) < self.floor * UNIT

    # -- queries ---------------------------------------------------------------
    def idle_usd_per_hour(self, utilization: float) -> float:
        """Dollars an hour paid for idle capacity at ``utilization``."""
        return self.cost * (1.0 - utilization)

    def score(self) -> float:
        """Share of the sustain time a run has lasted; ≥ 1 only in an alarm."""
        if self.phase == SHIFTED:
            return 1.0
        n = max(self.lo_n, self.hi_n)
        return min(n / self.sustain, BELOW_ALARM)

    def shift(self) -> GpuShift | None:
        """The current alarm, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        idle = self.kind == IDLE
        n, total, base = (self.lo_n, self.lo_u, self.lo_b) if idle else (self.hi_n, self.hi_u, self.hi_b)
        observed, baseline = total / max(n, 1), base / max(n, 1)
        return GpuShift(
            kind=self.kind,
            direction=-1 if idle else 1,
            onset_ts=self.lo_ts if idle else self.hi_ts,
            observed_utilization=observed,
            baseline_utilization=baseline,
            minutes=n,
            idle_usd_per_hour=self.idle_usd_per_hour(observed),
            baseline_idle_usd_per_hour=self.idle_usd_per_hour(baseline),
        )

    # -- state -----------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return slots_state(self, FIELDS, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GpuUtilization:
        return restore_slots(cls, FIELDS, state, STATE_VERSION)
