"""A sequential test for a sustained change in a rate that follows the clock.

Requests and dollars per minute rise at 9 am, fall at night and at weekends
and grow a few percent a week; a runaway loop at 3 am or a surge at noon is
a change *against that rhythm*, so each minute's total is judged against
what this time of the week normally holds.

Baseline: 48 buckets, hour of day × weekday/weekend, each an exponentially
weighted mean amount per minute, times one level that follows slow growth
multiplicatively (multiplicative Holt-Winters). 48 rather than 168
hour-of-week buckets because Monday to Friday share a shape in most traffic,
so a weekday bucket is seen five times a week and can judge on day three
instead of in week three, and 48 means keep the state near 1 KB. Within an
hour the expectation is interpolated between neighbouring hours, so the
9 am ramp is a slope, not a staircase. A bucket judges once it holds
``min_bucket_minutes`` (two visits); an unseen weekend hour borrows the
weekday hour times the learned weekend factor, for the upward test only.

Noise: a minute's total has variance D(μ)·μ, D(μ) = a + b·μ·P. ``a`` is the
counting noise (1 for Poisson counts; E[c²]/E[c] for dollars, a compound
Poisson), ``b`` the wandering of the rate itself, P the inflation of a run
of minutes when that wandering persists (AR(1)). ``a`` and ``b`` are a
least-squares fit of r²/μ on μ from exponentially weighted sums, kept by
hand rather than with river.stats because the state must be one flat,
versioned dict.

Evidence: a CUSUM of the quasi-Poisson log-likelihood ratio of
×``ratio_above`` (and, if set, ×``ratio_below``) per minute, divided by D.
Silent minutes are zeros: a new minute closes the skipped ones (at most
``max_gap_minutes``) and ``advance(ts)`` closes them with no event at all.

Bursts of 2–10 minutes at ×2–×4 are normal and look exactly like the start
of a runaway; only their end tells them apart. So an alarm needs the excess
to have lasted ``min_minutes`` from its latest plausible onset, to hold in
every third of that window and in its last two minutes, and to be at least
×``min_ratio`` at its confidence bound over the window. Once the window
falls below ×``min_ratio`` the run ends (a finished burst leaves no
evidence; a small lasting change is absorbed into the level). The
trade-off is one number: tolerating bursts of B minutes costs a detection
delay of about B + 2 minutes. The default of 12 tolerates the simulator's
10-minute bursts; on simulated traffic a ×5 runaway at 3 am (6 requests a
minute) and a ×3 surge at noon fire after 12 minutes, while a series of
under one request a minute at night takes 15–45.

Phases as in :mod:`detector.models.level_shift`: ``learning`` →
``watching`` → ``shifted`` (baseline frozen, a reverse test waits for the
return) → ``watching``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detector.models.state import restore_slots, slots_state

LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"
NO_TEST, UP_ONLY, BOTH = 0, 1, 2  # which tests a minute's expectation may feed
STATE_VERSION = 1
BUCKETS = 48  # hour of day × (weekday, weekend)
ESTABLISHED = 60  # minutes a bucket needs before it predicts (one visit)
SEEN_CAP = 999
LEVEL_PRIOR_MINUTES = 60  # the level starts from an hour of "as the profile says"
RUN_MINUTES = 16  # minutes a run keeps apart (at least min_minutes); older ones merge into its first entry
ONSET_SLACK = 4.0  # nats: how far the latest plausible onset may fall short of the likeliest
STEADY_NATS = 3.0  # evidence for the window's level each third of it must carry
LAST_MINUTES, LAST_NATS = 2, 3.0  # ... and its latest two minutes: the excess is still on
TRACK_DECAY = 0.8  # per minute: how fast the shifted ratio follows the data
CLIP_Z2 = 9.0  # a minute's residual is winsorised at 3 standard deviations before it is learned
FLOOR_SHARE = 0.01  # expectation floor, as a share of the series' mean rate
BELOW_ALARM = 0.999  # score() ceiling outside an alarm: suspicion is not an alarm


@dataclass(frozen=True, slots=True)
class RateShift:
    """What the model concluded: direction, onset, and the rates either side (per minute)."""

    direction: int  # +1 up, -1 down
    onset_ts: float
    observed_per_minute: float
    expected_per_minute: float  # the baseline for the current minute
    minutes: int  # since the onset
    excess: float  # amount above (below, if negative) the baseline since the onset

    @property
    def ratio(self) -> float:
        e = self.expected_per_minute
        return self.observed_per_minute / e if e > 0 else math.inf


class SeasonalRate:
    """Online detector of sustained changes in a per-minute amount with a weekly rhythm.

    ``update(amount, ts)`` adds to the minute of ``ts`` (1 per request, or
    dollars). Three days of about 10 requests a minute, then a ×5 runaway:

    >>> import random
    >>> rng = random.Random(2)
    >>> m = SeasonalRate()
    >>> monday = 4 * 1440                          # 1970-01-05, in minutes
    >>> for minute in range(monday, monday + 3 * 1440):
    ...     m.update(sum(rng.random() < 0.5 for _ in range(20)), ts=minute * 60.0)
    >>> m.phase
    'watching'
    >>> for minute in range(monday + 3 * 1440, monday + 3 * 1440 + 15):
    ...     m.update(sum(rng.random() < 0.5 for _ in range(100)), ts=minute * 60.0)
    >>> m.phase, 4 < m.shift().ratio < 6, m.shift().onset_ts == (monday + 3 * 1440) * 60
    ('shifted', True, True)
    """

    __slots__ = (
        "ratio_above", "ratio_below", "min_ratio", "h", "z", "min_minutes", "warmup_minutes",
        "min_bucket_minutes", "bucket_half_life", "level_half_life", "noise_half_life", "max_gap", "offset",
        "phase", "first_minute", "minute", "m_x", "prof", "seen", "gx", "gm",
        "n1", "nm", "nmm", "ny", "nym", "lag_rr", "lag_mm", "r_prev", "mu_prev", "prev_minute",
        "s_up", "s_dn", "run", "shift_dir", "shift_onset", "shift_minutes", "rx", "rm", "shift_x", "shift_m",
        "s_back", "shifted_at",
    )  # fmt: skip

    def __init__(
        self,
        *,
        ratio_above: float | None = 2.0,
        ratio_below: float | None = None,
        min_ratio: float = 1.5,
        h: float = 25.0,
        z: float = 2.0,
        min_minutes: int = 12,
        warmup_minutes: int = 1440,
        min_bucket_minutes: int = 120,
        bucket_half_life: float = 180.0,
        level_half_life: float = 1440.0,
        noise_half_life: float = 2880.0,
        max_gap_minutes: int = 720,
        utc_offset_minutes: int = 0,
    ) -> None:
        if ratio_above is not None and ratio_above <= 1:
            raise ValueError(f"SeasonalRate ratio_above: expected > 1 or None, got {ratio_above!r}")
        if ratio_below is not None and not 0 < ratio_below < 1:
            raise ValueError(f"SeasonalRate ratio_below: expected in (0, 1) or None, got {ratio_below!r}")
        if not 3 <= min_minutes <= RUN_MINUTES:
            raise ValueError(f"SeasonalRate min_minutes: expected 3 to {RUN_MINUTES}, got {min_minutes!r}")
        self.ratio_above, self.ratio_below, self.min_ratio = ratio_above, ratio_below, min_ratio
        self.h, self.z, self.min_minutes = h, z, min_minutes
        self.warmup_minutes, self.min_bucket_minutes = warmup_minutes, min_bucket_minutes
        self.bucket_half_life = bucket_half_life  # in minutes of that bucket
        self.level_half_life, self.noise_half_life = level_half_life, noise_half_life
        self.max_gap, self.offset = max_gap_minutes, utc_offset_minutes
        self.phase = LEARNING
        self.first_minute = self.minute = -1
        self.m_x = 0.0
        self.prof = [0.0] * BUCKETS  # EW mean amount per minute, in units of the level
        self.seen = [0] * BUCKETS  # minutes learned per bucket (capped)
        self.gx = self.gm = 0.0  # level = gx / gm: EW sums of observed and profile amounts
        # r²/μ ≈ a + b·μ: EW sums of 1, μ, μ², y, y·μ; and lag-1 sums of residuals and of expectations.
        self.n1 = self.nm = self.nmm = self.ny = self.nym = 0.0
        self.lag_rr = self.lag_mm = self.r_prev = self.mu_prev = 0.0
        self.prev_minute = -2
        self.s_up = self.s_dn = 0.0
        self.run: list[float] = []  # (minute, amount, expected) per minute of a CUSUM run
        self.shift_dir, self.shift_onset, self.shift_minutes = 0, 0.0, 0
        self.rx = self.rm = self.shift_x = self.shift_m = self.s_back = self.shifted_at = 0.0

    # -- commands ------------------------------------------------------------
    def update(self, amount: float, ts: float) -> None:
        """Add ``amount`` (≥ 0) to the minute of event time ``ts``; a late event counts in the open minute."""
        minute = int(ts // 60)
        if minute > self.minute:
            self._advance_to(minute)
        self.m_x += amount

    def advance(self, ts: float) -> None:
        """Close every minute before ``ts``: how a series that went silent is heard (call on a timer)."""
        minute = int(ts // 60)
        if 0 <= self.minute < minute:
            self._advance_to(minute)

    def _advance_to(self, minute: int) -> None:
        if self.minute < 0:
            self.first_minute = self.minute = minute
            return
        self._close(self.minute, self.m_x)
        gap = minute - self.minute - 1
        for t in range(self.minute + 1, self.minute + 1 + min(gap, self.max_gap)):
            self._close(t, 0.0)
        if gap > self.max_gap:
            self._reset_cusum()  # evidence does not span time nobody saw
        self.minute, self.m_x = minute, 0.0

    def _close(self, t: int, x: float) -> None:
        """Judge minute ``t`` holding ``x``, then learn from it if it looks normal."""
        if self.phase == LEARNING and t - self.first_minute >= self.warmup_minutes:
            self.phase = WATCHING
        v, learns, tests = self._profile_at(t)
        mu = max(self.level * v, self._floor()) if learns or tests else 0.0
        if self.phase == SHIFTED:
            if tests:
                self._track_shift(x, mu)
            return
        # Decided before judging: the baseline learns while nothing is suspected, the noise only
        # while no run is open at all, so that a burst never teaches it what noise looks like.
        calm = self.s_up < self.h / 2 and self.s_dn < self.h / 2
        quiet = self.s_up <= 0 and self.s_dn <= 0
        if self.phase == WATCHING and tests and self.n1 >= ESTABLISHED:
            self._judge(t, x, mu, tests)
        if calm and self.phase != SHIFTED:
            self._learn(t, x, v, mu if learns else 0.0, quiet)

    def _judge(self, t: int, x: float, mu: float, tests: int) -> None:
        d = self.dispersion(mu)
        if self.ratio_above is not None:
            self.s_up = max(0.0, self.s_up + _llr(x, mu, self.ratio_above) / d)
        if self.ratio_below is not None and tests == BOTH:
            self.s_dn = max(0.0, self.s_dn + _llr(x, mu, self.ratio_below) / d)
        if self.s_up <= 0 and self.s_dn <= 0:
            self.run.clear()
            return
        self._extend(t, x, mu)
        if self.s_up >= self.h:
            self._maybe_shift(+1, t)
        elif self.s_dn >= self.h:
            self._maybe_shift(-1, t)

    def _learn(self, t: int, x: float, v: float, mu: float, quiet: bool) -> None:
        """Teach the bucket; and the level (and, if ``quiet``, the noise) when the bucket could predict."""
        b = self._bucket(t)
        self.seen[b] = n = min(self.seen[b] + 1, SEEN_CAP)
        rate = max(1.0 / n, 1.0 - 0.5 ** (1.0 / self.bucket_half_life))
        p = self.prof[b] + rate * (x / max(self.level, 1e-6) - self.prof[b])
        self.prof[b] = _round(p)  # six digits are plenty and keep the state small
        if mu <= 0:
            return
        if self.gm <= 0:
            self.gx = self.gm = LEVEL_PRIOR_MINUTES * v
        k = 0.5 ** (1.0 / self.level_half_life)
        self.gx, self.gm = k * self.gx + x, k * self.gm + v
        if quiet:
            self._learn_noise(t, x - mu, mu)

    def _learn_noise(self, t: int, r: float, mu: float) -> None:
        """Learn a, b of D(μ) from the residual ``r``, and the persistence of the wandering.

        Counting noise is independent minute to minute, so the lag-1
        covariance of residuals belongs to the wandering alone: ρ·b·μₜ·μₜ₋₁.
        """
        k = 0.5 ** (1.0 / self.noise_half_life)
        if self.n1 >= ESTABLISHED:
            a, b = noise_fit(self.n1, self.nm, self.nmm, self.ny, self.nym)
            reach = math.sqrt(CLIP_Z2 * max(a + b * mu, 1e-9) * mu)  # one minute's spread, not a run's
            r = min(max(r, -reach), reach)
            if t == self.prev_minute + 1:
                self.lag_rr = k * self.lag_rr + r * self.r_prev
                self.lag_mm = k * self.lag_mm + mu * self.mu_prev
            self.r_prev, self.mu_prev, self.prev_minute = r, mu, t
        y = r * r / mu
        self.n1, self.nm, self.nmm = k * self.n1 + 1, k * self.nm + mu, k * self.nmm + mu * mu
        self.ny, self.nym = k * self.ny + y, k * self.nym + y * mu

    def _extend(self, t: int, x: float, mu: float) -> None:
        run = self.run
        run += (t, _round(x), _round(mu))
        if len(run) > 3 * RUN_MINUTES:
            run[1], run[2] = run[1] + run[4], run[2] + run[5]
            del run[3:6]

    # -- the run: onset, end, alarm ------------------------------------------
    def _tails(self) -> list[tuple[int, float, float, int]]:
        """Every suffix of the run as (first minute, amount, expected, minutes), shortest first."""
        run, out, x, m = self.run, [], 0.0, 0.0
        end = int(run[-3]) + 1
        for i in range(len(run) - 3, -3, -3):
            x, m = x + run[i + 1], m + run[i + 2]
            out.append((int(run[i]), x, m, end - int(run[i])))
        return out

    def _onset(self, direction: int, slack: float = 0.0) -> tuple[int, float, float, int] | None:
        """Where the run's change began: (first minute, amount, expected, minutes) since then.

        With no slack, the maximum-likelihood change point. With slack, the
        latest onset whose evidence is within ``slack`` nats of it: the one
        a sceptic accepts, since minutes that lean the same way by chance
        just before a burst would make it look longer than it is.
        """
        scored = [
            (_llr(x, m, x / m) / self.dispersion(m / minutes), (first, x, m, minutes))
            for first, x, m, minutes in self._tails()
            if m > 0 and direction * (x - m) > 0
        ]
        if not scored:
            return None
        best = max(score for score, _ in scored)
        return next(tail for score, tail in scored if score >= best - slack)

    def _maybe_shift(self, direction: int, t: int) -> None:
        onset = self._onset(direction)
        latest = self._onset(direction, ONSET_SLACK)
        if onset is None or latest is None or latest[3] < self.min_minutes:
            return
        # The effect is judged on the latest min_minutes alone, at its confidence bound: what
        # matters is whether the excess is still there, not how large a burst inside the run was.
        k = self.min_minutes
        x, m = self._recent(k)
        r = x / m
        se = math.sqrt(self.dispersion(max(x, m) / k) * max(x, m)) / m
        bound = r - self.z * se if direction > 0 else r + self.z * se
        weakest = self._weakest_third(r, k)
        if _factor(r, direction) < self.min_ratio:
            # Too small to matter now, whatever the run once held: start afresh, and if the
            # window is of one piece let the level absorb what is sure of it.
            if weakest >= 0:
                self._scale_level(max(bound, 1.0) if direction > 0 else min(bound, 1.0))
            self._reset_cusum()
            return
        lx, lm = self._recent(LAST_MINUTES)
        last = _llr(lx, lm, r) / self.dispersion(lm / LAST_MINUTES)
        if weakest < STEADY_NATS or last < LAST_NATS or _factor(bound, direction) < self.min_ratio:
            return  # a burst inside the window, an excess that is fading, or not yet sure: wait
        start, total_x, total_m, minutes = onset
        self.phase = SHIFTED
        self.shift_dir, self.shift_onset, self.shift_minutes = direction, start * 60.0, minutes
        self.rx, self.rm, self.shift_x, self.shift_m = x, m, total_x, total_m
        self.s_back, self.shifted_at = 0.0, (t + 1) * 60.0

    def _weakest_third(self, r: float, k: int) -> float:
        """The least evidence for ratio ``r`` against baseline in any third of the latest ``k`` minutes.

        One burst inside the window, or a burst followed by minutes that
        are merely a little high, leaves a third without that evidence.
        """
        end, weakest = len(self.run), math.inf
        for size in (k - 2 * k // 3, 2 * k // 3 - k // 3, k // 3):
            part = self.run[end - 3 * size : end]
            x, m = sum(part[1::3]), sum(part[2::3])
            weakest = min(weakest, _llr(x, m, r) / self.dispersion(m / size))
            end -= 3 * size
        return weakest

    def _recent(self, minutes: int) -> tuple[float, float]:
        """Amount and expected amount over the run's latest ``minutes`` (kept apart, never merged)."""
        tail = self.run[-3 * minutes :]
        return sum(tail[1::3]), sum(tail[2::3])

    def _track_shift(self, x: float, mu: float) -> None:
        """Follow the shifted ratio; return to watching once the evidence says it is gone."""
        self.shift_minutes += 1
        self.shift_x += x
        self.shift_m += mu
        self.rx = TRACK_DECAY * self.rx + x
        self.rm = TRACK_DECAY * self.rm + mu
        r = max(self.rx / self.rm, 1e-9)
        if _factor(r, self.shift_dir) < math.sqrt(self.min_ratio):
            self._end_shift()
            return
        # LLR of "back at baseline" against "still at the shift's ratio since its onset" (a fixed
        # alternative: one that followed the data would chase the return instead of seeing it).
        ratio = max(self.shift_x / self.shift_m, 1e-9)
        self.s_back = max(0.0, self.s_back - _llr(x, mu, ratio) / self.dispersion(mu))
        if self.s_back >= self.h:
            self._end_shift()

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        self.s_up = self.s_dn = 0.0
        self.run = []

    def _scale_level(self, r: float) -> None:
        if self.gm > 0:
            self.gx *= r
        else:
            self.gx, self.gm = r, 1.0

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted rate as the new normal: the whole profile scales by the ratio."""
        if self.phase == SHIFTED:
            self._scale_level(self.rx / self.rm)
            self._end_shift()

    # -- the profile ----------------------------------------------------------
    def _bucket(self, t: int) -> int:
        local = t + self.offset
        weekend = (local // 1440 + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        return (local // 60) % 24 + 24 * weekend

    def _profile_at(self, t: int) -> tuple[float, bool, int]:
        """Profile amount for minute ``t`` (in units of the level), and how far to trust it.

        Returns (amount, whether the minute teaches the level and the noise,
        which tests it may feed: NO_TEST, UP_ONLY or BOTH).
        """
        b = self._bucket(t)
        seen, prof = self.seen, self.prof
        other = (b + 24) % BUCKETS
        mature = seen[other] >= self.min_bucket_minutes
        if seen[b] >= ESTABLISHED:
            pos = ((t + self.offset) % 60 + 0.5) / 60 - 0.5
            nb = self._bucket(t + (60 if pos >= 0 else -60))
            v = prof[b]
            if seen[nb] >= ESTABLISHED:
                v += abs(pos) * (prof[nb] - v)
            if seen[b] >= self.min_bucket_minutes:
                return v, True, BOTH
            return v, True, UP_ONLY if mature else NO_TEST  # a day type's second visit
        if mature:
            factor = self.weekend_factor()
            return prof[other] * (factor if b >= 24 else 1.0 / factor), False, UP_ONLY
        return 0.0, False, NO_TEST

    def weekend_factor(self) -> float:
        """Weekend over weekday amount, over the hours both have seen (1 before any)."""
        wd = sum(self.prof[h] for h in range(24) if min(self.seen[h], self.seen[h + 24]) >= ESTABLISHED)
        we = sum(self.prof[h + 24] for h in range(24) if min(self.seen[h], self.seen[h + 24]) >= ESTABLISHED)
        return we / wd if wd > 0 and we > 0 else 1.0

    def _floor(self) -> float:
        return FLOOR_SHARE * self.gx * (1.0 - 0.5 ** (1.0 / self.level_half_life)) + 1e-12

    # -- queries ---------------------------------------------------------------
    @property
    def level(self) -> float:
        """The global level: recent amounts over what the profile alone expects."""
        return self.gx / self.gm if self.gm > 0 else 1.0

    def expected(self, ts: float) -> float | None:
        """The baseline amount for the minute of ``ts``, or None while that time is unknown."""
        v, learns, tests = self._profile_at(int(ts // 60))
        return max(self.level * v, self._floor()) if learns or tests else None

    def dispersion(self, mu: float) -> float:
        """Variance over mean of a run's minutes at expected amount ``mu`` (1 for Poisson counts)."""
        a, b = noise_fit(self.n1, self.nm, self.nmm, self.ny, self.nym)
        return max(a + b * mu * self._persistence(b), 1e-9)

    def persistence(self) -> float:
        """Variance inflation of a run of minutes when the wandering persists (AR(1): (1+ρ)/(1-ρ))."""
        return self._persistence(noise_fit(self.n1, self.nm, self.nmm, self.ny, self.nym)[1])

    def _persistence(self, b: float) -> float:
        if b <= 0 or self.lag_mm <= 0:
            return 1.0
        rho = min(max(self.lag_rr / self.lag_mm / b, 0.0), 0.9)
        return (1 + rho) / (1 - rho)

    def score(self) -> float:
        """Evidence of a change as a fraction of the threshold; ≥ 1 only in an alarm."""
        if self.phase == SHIFTED:
            return max(1.0, (self.h - self.s_back) / self.h)
        return min(max(self.s_up, self.s_dn) / self.h, BELOW_ALARM)

    def shift(self) -> RateShift | None:
        """The current shift, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        expected = self.expected(self.minute * 60.0) or self.rm * (1 - TRACK_DECAY)
        return RateShift(
            direction=self.shift_dir,
            onset_ts=self.shift_onset,
            observed_per_minute=expected * self.rx / self.rm,
            expected_per_minute=expected,
            minutes=self.shift_minutes,
            excess=self.shift_x - self.shift_m,
        )

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return slots_state(self, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeasonalRate:
        return restore_slots(cls, state, STATE_VERSION)


def noise_fit(n1: float, nm: float, nmm: float, ny: float, nym: float) -> tuple[float, float]:
    """Least squares of y = r²/μ on μ from weighted sums of 1, μ, μ², y, y·μ: (a, b), both ≥ 0.

    >>> noise_fit(3, 6, 14, 6, 14)      # y = μ exactly: no counting noise, all wandering
    (0.0, 1.0)
    >>> noise_fit(3, 6, 14, 3, 6)       # y = 1 at every μ: Poisson
    (1.0, 0.0)
    """
    if n1 <= 0:
        return 1.0, 0.0
    mean_m, mean_y = nm / n1, ny / n1
    var_m = nmm / n1 - mean_m * mean_m
    b = max((nym / n1 - mean_m * mean_y) / var_m, 0.0) if var_m > 1e-9 * mean_m * mean_m else 0.0
    a = mean_y - b * mean_m
    return (a, b) if a >= 0 else (0.0, nym / nmm)


def _llr(x: float, m: float, r: float) -> float:
    """Poisson log-likelihood ratio of ratio ``r`` against 1, for ``x`` where ``m`` was expected."""
    return (x * math.log(r) if x > 0 else 0.0) - m * (r - 1)


def _factor(r: float, direction: int) -> float:
    """The size of a ratio in the test's direction: r upwards, 1 / r downwards."""
    return r if direction > 0 else 1.0 / max(r, 1e-12)


def _round(v: float) -> float:
    return float(f"{v:.6g}")
