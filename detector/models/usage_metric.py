"""Spikes, level shifts and drift in a user's spend line that comes as samples.

A ``usage_sample`` series is a bill or a meter reading: the vector database
every hour, a labelling vendor every day, an evaluation run now and then.
Samples are few and irregular, so everything here counts in samples and
event time, never in minutes, and warm-up is a number of samples.

Values are judged on ``log(value + c)``, ``c`` a hundredth of the warm-up
median (so a zero bill is a large drop, not minus infinity), against
``level + hour[h] + weekend·w``: a level that follows slow change, an
offset per hour of day and one for weekends, all learned online
(additive Holt-Winters in log space). A vendor billing 30 % on weekends or
a database busier by day is the pattern, not news; the first weekend
sample and the first sample of an hour teach their offset and are not
judged. The spread σ is learned as an exponentially weighted mean absolute
residual (×1.2533, its ratio to σ for normal noise).

Three alarms, one at a time (the strongest wins):

* ``spike``: one sample beyond ``spike_z`` σ and ``min_ratio`` from its
  prediction. It ends at the next normal sample; if the next one is out too
  it becomes a level shift with the spike's onset.
* ``level``: a two-sided CUSUM of residuals in σ units, each clipped at
  ``clip`` so that one spike adds little, with allowance ``k``; crossing
  ``h`` is an alarm when the run's mean residual is at least ``min_ratio``,
  and a smaller one is absorbed into the level. Ends when ``h`` of reverse
  evidence against the shifted level accrues, or on :meth:`rebaseline`.
* ``drift``: the level (half-life ``level_half_life_s`` of event time) has
  moved by ``drift_ratio`` from a reference that follows it ten times more
  slowly; ends when it is back within half of that.

Why not river's ``anomaly`` and ``drift`` modules: their state lives in
compiled objects with no plain-data form (checked: ``stats.EWMean``,
``stats.Quantile`` and ``drift.ADWIN`` wrap Rust objects), and none knows
irregular sampling, hours of day or weekends.

Phases as in :mod:`detector.models.level_shift`: ``learning`` → ``watching``
→ ``shifted`` → ``watching``.
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

SPIKE: Final = "spike"
LEVEL: Final = "level"
DRIFT: Final = "drift"
STATE_VERSION: Final = 1
MAD_TO_SD: Final = 1.2533  # σ over the mean absolute deviation of normal noise
MEDIAN_TO_MEAN_AD: Final = 1.4826 / MAD_TO_SD  # median over mean absolute deviation of normal noise
SD_FLOOR: Final = 0.01  # 1 %: bills that repeat to the cent still get a finite z
SCALE_HALF_LIFE: Final = 100.0  # samples
DAY_S: Final = 86400.0
TRACK_DECAY: Final = 0.8  # per sample: how fast the level of an ongoing shift follows the data
BELOW_ALARM: Final = 0.999


@dataclass(frozen=True, slots=True)
class UsageShift:
    """What the model concluded: which alarm, direction, onset, and the values either side."""

    kind: str  # "spike", "level" or "drift"
    direction: int  # +1 up, -1 down
    onset_ts: float
    observed: float  # the spike's value, or the shift's recent level (raw units)
    baseline: float  # what was expected at the latest sample (raw units)
    samples: int  # since the onset

    @property
    def ratio(self) -> float:
        return self.observed / self.baseline if self.baseline > 0 else math.inf


FIELDS: Final = (
    "warmup", "spike_z", "k", "h", "clip", "min_ratio", "drift_ratio", "level_half_life", "season_rate",
    "offset", "phase", "n", "buf", "c", "level", "ref", "hour", "hour_n", "we", "we_n", "mad", "last_ts",
    "s_up", "s_dn", "run_ts", "run_n", "run_sum", "drift_ts",
    "kind", "shift_dir", "shift_onset", "shift_n", "shift_sum", "shift_ew", "shift_pred", "s_back",
)  # fmt: skip
"""Every attribute of a model, all of it saved state (a compiled class has no ``__slots__`` to read them from)."""


class UsageMetric:
    """Online detector of spikes, level shifts and drift in an irregularly sampled positive metric.

    An hourly bill of about $3.20 for four days, then one hour at $12:

    >>> import random
    >>> rng = random.Random(5)
    >>> m = UsageMetric()
    >>> for hour in range(96):
    ...     m.update(3.2 * rng.lognormvariate(0, 0.05), ts=hour * 3600.0)
    >>> m.phase
    'watching'
    >>> m.update(12.0, ts=96 * 3600.0)
    >>> s = m.shift()
    >>> s.kind, s.direction, 3.4 < s.ratio < 4.1
    ('spike', 1, True)
    >>> m.update(3.3, ts=97 * 3600.0)
    >>> m.phase
    'watching'
    """

    __slots__ = FIELDS

    def __init__(
        self,
        *,
        warmup: int = 14,
        spike_z: float = 6.0,
        k: float = 0.5,
        h: float = 8.0,
        clip: float = 3.0,
        min_ratio: float = 1.3,
        drift_ratio: float = 1.25,
        level_half_life_s: float = 3 * DAY_S,
        season_rate: float = 0.1,
        utc_offset_minutes: int = 0,
    ) -> None:
        if warmup < 3:
            raise ValueError(f"UsageMetric warmup: expected at least 3 samples, got {warmup!r}")
        if min_ratio <= 1 or drift_ratio <= 1:
            raise ValueError(f"UsageMetric min_ratio and drift_ratio: expected > 1, got {min_ratio!r}, {drift_ratio!r}")
        self.warmup, self.spike_z, self.k, self.h, self.clip = warmup, spike_z, k, h, clip
        self.min_ratio, self.drift_ratio = min_ratio, drift_ratio
        self.level_half_life, self.season_rate, self.offset = level_half_life_s, season_rate, utc_offset_minutes
        self.phase = LEARNING
        self.n = 0
        self.buf: list[float] = []  # warm-up samples as (ts, value) pairs, dropped once learned
        self.c = self.level = self.ref = self.we = self.mad = self.last_ts = 0.0
        self.hour = [0.0] * 24  # log offset per hour of day
        self.hour_n = [0] * 24
        self.we_n = 0
        self.s_up = self.s_dn = 0.0
        self.run_ts, self.run_n, self.run_sum = 0.0, 0, 0.0  # the open CUSUM run: first ts, samples, Σ residual
        self.drift_ts = 0.0  # last time the level was within half the drift threshold of the reference
        self.kind, self.shift_dir, self.shift_onset, self.shift_n = "", 0, 0.0, 0
        self.shift_sum = self.shift_ew = self.shift_pred = self.s_back = 0.0

    # -- the one command -------------------------------------------------------
    def update(self, value: float, ts: float) -> None:
        """Learn from one sample (≥ 0, raw units) at event time ``ts``."""
        if not value >= 0 or math.isinf(value):
            raise ValueError(f"UsageMetric.update: expected a finite value ≥ 0, got {value!r}")
        self.n += 1
        if self.phase == LEARNING:
            self.buf += (ts, value)
            if self.n >= self.warmup:
                self._start()
            return
        x = math.log(value + self.c)
        pred, known = self._predict(ts)
        r = x - pred
        if not known:  # a first weekend sample or hour: it teaches, it is not judged
            self._learn(ts, r, True)
            return
        sd = self.sd
        if self.phase == SHIFTED and self.kind != DRIFT:
            self._track(ts, r, pred, sd)
            return
        if abs(r) >= self.spike_z * sd and abs(r) >= math.log(self.min_ratio):
            self._fire(SPIKE, 1 if r > 0 else -1, ts, 1, r, pred)
            return
        self._judge(ts, r, pred, sd)

    def _start(self) -> None:
        """End warm-up: offset and level from the median, then replay the samples through learning."""
        values = sorted(self.buf[1::2])
        median = values[len(values) // 2]
        self.c = _round(max(0.01 * median, 1e-6))
        logs = sorted(math.log(v + self.c) for v in values)
        self.level = self.ref = logs[len(logs) // 2]
        # The median absolute deviation, as a mean absolute one: robust to the weekend samples among them.
        spread = sorted(abs(x - self.level) for x in logs)
        self.mad = max(MEDIAN_TO_MEAN_AD * spread[len(spread) // 2], SD_FLOOR)
        pairs, self.buf = self.buf, []
        for i in range(0, len(pairs), 2):
            ts, x = pairs[i], math.log(pairs[i + 1] + self.c)
            self._learn(ts, x - self._predict(ts)[0], True)
        self.drift_ts = self.last_ts
        self.phase = WATCHING

    def _judge(self, ts: float, r: float, pred: float, sd: float) -> None:
        z = max(-self.clip, min(self.clip, r / sd))
        was_open = self.s_up > 0 or self.s_dn > 0
        self.s_up = max(0.0, self.s_up + z - self.k)
        self.s_dn = max(0.0, self.s_dn - z - self.k)
        if self.s_up > 0 or self.s_dn > 0:
            if not was_open:
                self.run_ts, self.run_n, self.run_sum = ts, 0, 0.0
            self.run_n, self.run_sum = self.run_n + 1, self.run_sum + r
        calm = self.s_up < self.h / 2 and self.s_dn < self.h / 2
        if calm:
            self._learn(ts, max(-self.clip * sd, min(self.clip * sd, r)), False)
        if self.s_up >= self.h or self.s_dn >= self.h:
            effect = self.run_sum / self.run_n
            if abs(effect) >= math.log(self.min_ratio):
                self._fire(LEVEL, 1 if effect > 0 else -1, self.run_ts, self.run_n, self.run_sum, pred)
                return
            self.level += effect  # real but too small to matter: the baseline takes it
            self._reset_cusum()
        self._check_drift(ts, pred)

    def _learn(self, ts: float, r: float, replay: bool) -> None:
        """Share residual ``r`` between the level and the hour (weekday) or weekend offset.

        The offsets learn at 1/visits at first, so a first visit sets them
        outright; the level learns by event time. ``replay``: warm-up samples,
        which do not teach the spread (their residuals are zero by construction).
        """
        gap = max(ts - self.last_ts, 0.0) if self.last_ts else 0.0
        self.last_ts = max(self.last_ts, ts)
        a = 1.0 - 0.5 ** (gap / self.level_half_life)
        self.level = _round(self.level + a * r)
        self.ref = _round(self.ref + a / 10 * (self.level - self.ref))
        h, weekend = self._hour_of(ts)
        if weekend:
            self.we_n = min(self.we_n + 1, 99)
            self.we = _round(self.we + max(1.0 / self.we_n, self.season_rate) * (1.0 - a) * r)
        else:
            self.hour_n[h] = min(self.hour_n[h] + 1, 99)
            self.hour[h] = _round(self.hour[h] + max(1.0 / self.hour_n[h], self.season_rate) * (1.0 - a) * r, 4)
        if not replay:
            self.mad = _round(self.mad + (1.0 - 0.5 ** (1.0 / SCALE_HALF_LIFE)) * (abs(r) - self.mad))

    def _check_drift(self, ts: float, pred: float) -> None:
        gap, worth = self.level - self.ref, math.log(self.drift_ratio)
        if abs(gap) < worth / 2:
            self.drift_ts = ts
            if self.phase == SHIFTED:  # a drift alarm that has come back
                self._end()
        elif abs(gap) >= worth and self.phase == WATCHING:
            self._fire(DRIFT, 1 if gap > 0 else -1, self.drift_ts, 1, gap, pred - gap)

    def _fire(self, kind: str, direction: int, onset: float, n: int, total: float, pred: float) -> None:
        self.phase, self.kind, self.shift_dir, self.shift_onset = SHIFTED, kind, direction, onset
        self.shift_n, self.shift_sum, self.shift_pred, self.s_back = n, _round(total), _round(pred), 0.0
        self.shift_ew = _round(total / n)

    def _track(self, ts: float, r: float, pred: float, sd: float) -> None:
        """Follow a spike or a level shift; end it once the evidence says it is over."""
        self.shift_pred = _round(pred)
        if self.kind == SPIKE:
            if abs(r) < self.spike_z * sd / 2 or r * self.shift_dir < math.log(self.min_ratio):
                self._end()
                self._learn(ts, max(-self.clip * sd, min(self.clip * sd, r)), False)
                return
            self.kind = LEVEL
        self.shift_n, self.shift_sum = self.shift_n + 1, _round(self.shift_sum + r)
        self.shift_ew = _round(self.shift_ew + (1.0 - TRACK_DECAY) * (r - self.shift_ew))
        effect = self.shift_sum / self.shift_n
        # LLR (in σ² units) of "back at the prediction" against "still at the shift's mean residual".
        self.s_back = max(0.0, self.s_back + effect / sd * (effect / 2 - r) / sd)
        if self.s_back >= self.h:
            self._end()

    def _end(self) -> None:
        self.phase, self.kind = WATCHING, ""
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        self.s_up = self.s_dn = 0.0
        self.run_n, self.run_sum = 0, 0.0

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted level (or the drifted one) as the new normal."""
        if self.phase != SHIFTED:
            return
        if self.kind == LEVEL:
            self.level += self.shift_ew
        self.ref, self.drift_ts = self.level, ts
        self._end()

    # -- the prediction --------------------------------------------------------
    def _hour_of(self, ts: float) -> tuple[int, bool]:
        local = int(ts // 60) + self.offset
        return (local // 60) % 24, (local // 1440 + 3) % 7 >= 5  # 1970-01-01 was a Thursday

    def _predict(self, ts: float) -> tuple[float, bool]:
        """The expected log value at ``ts``, and whether its hour and day type have been seen."""
        h, weekend = self._hour_of(ts)
        pred = self.level + self.hour[h] + (self.we if weekend else 0.0)
        return pred, self.hour_n[h] > 0 and (self.we_n > 0 or not weekend)

    @property
    def sd(self) -> float:
        """The learned spread of one sample around its prediction, in log units."""
        return max(self.mad * MAD_TO_SD, SD_FLOOR)

    def expected(self, ts: float) -> float | None:
        """The baseline value for a sample at ``ts`` (raw units), or None before warm-up."""
        if self.phase == LEARNING:
            return None
        return max(math.exp(self._predict(ts)[0]) - self.c, 0.0)

    # -- queries ---------------------------------------------------------------
    def score(self) -> float:
        """Evidence of a change as a fraction of the threshold; ≥ 1 only in an alarm."""
        if self.phase == SHIFTED:
            return max(1.0, (self.h - self.s_back) / self.h)
        return min(max(self.s_up, self.s_dn) / self.h, BELOW_ALARM)

    def shift(self) -> UsageShift | None:
        """The current alarm, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        effect = self.shift_ew if self.kind == LEVEL else self.shift_sum / self.shift_n
        return UsageShift(
            kind=self.kind,
            direction=self.shift_dir,
            onset_ts=self.shift_onset,
            observed=max(math.exp(self.shift_pred + effect) - self.c, 0.0),
            baseline=max(math.exp(self.shift_pred) - self.c, 0.0),
            samples=self.shift_n,
        )

    # -- state -----------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return slots_state(self, FIELDS, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UsageMetric:
        return restore_slots(cls, FIELDS, state, STATE_VERSION)


def _round(v: float, digits: int = 6) -> float:
    """Six significant digits (four for the offsets) are plenty, and keep the state under a kilobyte."""
    return float(f"{v:.{digits}g}")
