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
from array import array
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
NO_TEST, UP_ONLY, BOTH = 0, 1, 2  # which tests a minute's expectation may feed
STATE_VERSION = 2
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


@dataclass(frozen=True, slots=True)
class RateConfig:
    """A seasonal rate test's parameters: one instance shared by every series with the same ones."""

    ratio_above: float | None = 2.0
    ratio_below: float | None = None
    min_ratio: float = 1.5
    h: float = 25.0
    z: float = 2.0
    min_minutes: int = 12
    warmup_minutes: int = 1440
    min_bucket_minutes: int = 120
    bucket_half_life: float = 180.0  # in minutes of that bucket
    level_half_life: float = 1440.0
    noise_half_life: float = 2880.0
    max_gap_minutes: int = 720
    utc_offset_minutes: int = 0
    # Derived once, the same numbers the methods would compute each minute:
    level_keep: float = field(init=False)  # per minute, from level_half_life
    level_rate: float = field(init=False)  # 1 − level_keep
    bucket_rate: float = field(init=False)  # per minute of a bucket, from bucket_half_life
    noise_keep: float = field(init=False)  # per minute, from noise_half_life

    def __post_init__(self) -> None:
        if self.ratio_above is not None and self.ratio_above <= 1:
            raise ValueError(f"SeasonalRate ratio_above: expected > 1 or None, got {self.ratio_above!r}")
        if self.ratio_below is not None and not 0 < self.ratio_below < 1:
            raise ValueError(f"SeasonalRate ratio_below: expected in (0, 1) or None, got {self.ratio_below!r}")
        if not 3 <= self.min_minutes <= RUN_MINUTES:
            raise ValueError(f"SeasonalRate min_minutes: expected 3 to {RUN_MINUTES}, got {self.min_minutes!r}")
        object.__setattr__(self, "level_keep", 0.5 ** (1.0 / self.level_half_life))
        object.__setattr__(self, "level_rate", 1.0 - 0.5 ** (1.0 / self.level_half_life))
        object.__setattr__(self, "bucket_rate", 1.0 - 0.5 ** (1.0 / self.bucket_half_life))
        object.__setattr__(self, "noise_keep", 0.5 ** (1.0 / self.noise_half_life))


# The numbers of a SeasonalRate, one double each (see detector.models.state), then prof: the EW mean
# amount per minute of each bucket, in units of the level. The minutes each bucket has learned (capped
# at 999) are counts of their own, two bytes each: SeasonalRate.counts.
NUMBERS = Packed(
    (
        "first_minute", "minute", "m_x", "gx", "gm", "n1", "nm", "nmm", "ny", "nym",
        "lag_rr", "lag_mm", "r_prev", "mu_prev", "prev_minute", "s_up", "s_dn",
        "shift_dir", "shift_onset", "shift_minutes", "rx", "rm", "shift_x", "shift_m", "s_back", "shifted_at",
    ),
    ints=("first_minute", "minute", "prev_minute", "shift_dir", "shift_minutes"),
    vectors={"prof": BUCKETS},
)  # fmt: skip
(
    FIRST_MINUTE, MINUTE, M_X, GX, GM, N1, NM, NMM, NY, NYM,
    LAG_RR, LAG_MM, R_PREV, MU_PREV, PREV_MINUTE, S_UP, S_DN,
    SHIFT_DIR, SHIFT_ONSET, SHIFT_MINUTES, RX, RM, SHIFT_X, SHIFT_M, S_BACK, SHIFTED_AT,
) = range(len(NUMBERS))  # fmt: skip
NUMBERS.check(globals())
PROF = NUMBERS.offset("prof")


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

    The numbers and the profile live in one array of doubles (``a``) and
    the parameters in a :class:`RateConfig` shared with every series built
    alike.
    """

    __slots__ = ("a", "config", "counts", "phase", "run")

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
        self.config = shared(RateConfig(ratio_above, ratio_below, min_ratio, h, z, min_minutes, warmup_minutes,
                                        min_bucket_minutes, bucket_half_life, level_half_life, noise_half_life,
                                        max_gap_minutes, utc_offset_minutes))
        self.phase = LEARNING
        # level = gx / gm: EW sums of observed and profile amounts. r²/μ ≈ a + b·μ: EW sums n1 … nym
        # of 1, μ, μ², y, y·μ; and lag-1 sums of residuals and of expectations (lag_rr, lag_mm).
        self.a = NUMBERS.new(first_minute=-1, minute=-1, prev_minute=-2)
        self.counts = array("H", bytes(2 * BUCKETS))  # minutes learned per bucket (capped)
        self.run: array[float] | None = None  # (minute, amount, expected) per minute of a CUSUM run, if one is open

    # -- commands ------------------------------------------------------------
    def update(self, amount: float, ts: float) -> None:
        """Add ``amount`` (≥ 0) to the minute of event time ``ts``; a late event counts in the open minute."""
        minute = int(ts // 60)
        if minute > self.a[MINUTE]:
            self._advance_to(minute)
        self.a[M_X] += amount

    def advance(self, ts: float) -> None:
        """Close every minute before ``ts``: how a series that went silent is heard (call on a timer)."""
        minute = int(ts // 60)
        if 0 <= self.a[MINUTE] < minute:
            self._advance_to(minute)

    def _advance_to(self, minute: int) -> None:
        a, max_gap = self.a, self.config.max_gap_minutes
        if a[MINUTE] < 0:
            a[FIRST_MINUTE] = a[MINUTE] = minute
            return
        last = int(a[MINUTE])
        self._close(last, a[M_X])
        gap = minute - last - 1
        for t in range(last + 1, last + 1 + min(gap, max_gap)):
            self._close(t, 0.0)
        if gap > max_gap:
            self._reset_cusum()  # evidence does not span time nobody saw
        a[MINUTE], a[M_X] = minute, 0.0

    def _close(self, t: int, x: float) -> None:
        """Judge minute ``t`` holding ``x``, then learn from it if it looks normal."""
        a, c = self.a, self.config
        if self.phase == LEARNING and t - a[FIRST_MINUTE] >= c.warmup_minutes:
            self.phase = WATCHING
        v, learns, tests = self._profile_at(t)
        mu = 0.0
        if learns or tests:
            mu, floor = self.level * v, self._floor()
            mu = floor if floor > mu else mu  # (bounds by comparisons rather than max(): no call)
        if self.phase == SHIFTED:
            if tests:
                self._track_shift(x, mu)
            return
        # Decided before judging: the baseline learns while nothing is suspected, the noise only
        # while no run is open at all, so that a burst never teaches it what noise looks like.
        s_up, s_dn = a[S_UP], a[S_DN]
        calm = s_up < c.h / 2 and s_dn < c.h / 2
        quiet = s_up <= 0 and s_dn <= 0
        if self.phase == WATCHING and tests and a[N1] >= ESTABLISHED:
            self._judge(t, x, mu, tests)
        if calm and self.phase != SHIFTED:
            self._learn(t, x, v, mu if learns else 0.0, quiet)

    def _judge(self, t: int, x: float, mu: float, tests: int) -> None:
        a, c = self.a, self.config
        d = self.dispersion(mu)
        s_up, s_dn = a[S_UP], a[S_DN]
        if c.ratio_above is not None:
            s_up += _llr(x, mu, c.ratio_above) / d
            a[S_UP] = s_up = s_up if s_up > 0.0 else 0.0
        if c.ratio_below is not None and tests == BOTH:
            s_dn += _llr(x, mu, c.ratio_below) / d
            a[S_DN] = s_dn = s_dn if s_dn > 0.0 else 0.0
        if s_up <= 0 and s_dn <= 0:
            self.run = None
            return
        self._extend(t, x, mu)
        if s_up >= c.h:
            self._maybe_shift(+1, t)
        elif s_dn >= c.h:
            self._maybe_shift(-1, t)

    def _learn(self, t: int, x: float, v: float, mu: float, quiet: bool) -> None:
        """Teach the bucket; and the level (and, if ``quiet``, the noise) when the bucket could predict."""
        a = self.a
        b = self._bucket(t)
        seen = self.counts
        # (Bounds by comparisons, not min() and max(): the same values, no calls; this runs every minute.)
        n = seen[b] + 1
        seen[b] = n = SEEN_CAP if SEEN_CAP < n else n
        rate, least = 1.0 / n, self.config.bucket_rate
        rate = least if least > rate else rate
        level = self.level
        prof = a[PROF + b]
        p = prof + rate * (x / (1e-6 if 1e-6 > level else level) - prof)
        a[PROF + b] = _round(p)  # six digits are plenty and keep the state small
        if mu <= 0:
            return
        gx, gm = a[GX], a[GM]
        if gm <= 0:
            gx = gm = LEVEL_PRIOR_MINUTES * v
        k = self.config.level_keep
        a[GX], a[GM] = k * gx + x, k * gm + v
        if quiet:
            self._learn_noise(t, x - mu, mu)

    def _learn_noise(self, t: int, r: float, mu: float) -> None:
        """Learn a, b of D(μ) from the residual ``r``, and the persistence of the wandering.

        Counting noise is independent minute to minute, so the lag-1
        covariance of residuals belongs to the wandering alone: ρ·b·μₜ·μₜ₋₁.
        """
        a = self.a
        k = self.config.noise_keep
        n1, nm, nmm, ny, nym = a[N1], a[NM], a[NMM], a[NY], a[NYM]  # each read once: this runs every minute
        if n1 >= ESTABLISHED:
            fa, fb = noise_fit(n1, nm, nmm, ny, nym)
            d = fa + fb * mu
            reach = math.sqrt(CLIP_Z2 * (1e-9 if 1e-9 > d else d) * mu)  # one minute's spread, not a run's
            r = -reach if -reach > r else r
            r = reach if reach < r else r
            if t == a[PREV_MINUTE] + 1:
                a[LAG_RR] = k * a[LAG_RR] + r * a[R_PREV]
                a[LAG_MM] = k * a[LAG_MM] + mu * a[MU_PREV]
            a[R_PREV], a[MU_PREV], a[PREV_MINUTE] = r, mu, t
        y = r * r / mu
        a[N1], a[NM], a[NMM] = k * n1 + 1, k * nm + mu, k * nmm + mu * mu
        a[NY], a[NYM] = k * ny + y, k * nym + y * mu

    def _extend(self, t: int, x: float, mu: float) -> None:
        self.run = grow_run(self.run, (t, _round(x), _round(mu)), RUN_MINUTES)

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
        a, c = self.a, self.config
        if onset is None or latest is None or latest[3] < c.min_minutes:
            return
        # The effect is judged on the latest min_minutes alone, at its confidence bound: what
        # matters is whether the excess is still there, not how large a burst inside the run was.
        k = c.min_minutes
        x, m = self._recent(k)
        r = x / m
        se = math.sqrt(self.dispersion(max(x, m) / k) * max(x, m)) / m
        bound = r - c.z * se if direction > 0 else r + c.z * se
        weakest = self._weakest_third(r, k)
        if _factor(r, direction) < c.min_ratio:
            # Too small to matter now, whatever the run once held: start afresh, and if the
            # window is of one piece let the level absorb what is sure of it.
            if weakest >= 0:
                self._scale_level(max(bound, 1.0) if direction > 0 else min(bound, 1.0))
            self._reset_cusum()
            return
        lx, lm = self._recent(LAST_MINUTES)
        last = _llr(lx, lm, r) / self.dispersion(lm / LAST_MINUTES)
        if weakest < STEADY_NATS or last < LAST_NATS or _factor(bound, direction) < c.min_ratio:
            return  # a burst inside the window, an excess that is fading, or not yet sure: wait
        start, total_x, total_m, minutes = onset
        self.phase = SHIFTED
        a[SHIFT_DIR], a[SHIFT_ONSET], a[SHIFT_MINUTES] = direction, start * 60.0, minutes
        a[RX], a[RM], a[SHIFT_X], a[SHIFT_M] = x, m, total_x, total_m
        a[S_BACK], a[SHIFTED_AT] = 0.0, (t + 1) * 60.0

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
        a, c = self.a, self.config
        a[SHIFT_MINUTES] += 1
        a[SHIFT_X] += x
        a[SHIFT_M] += mu
        a[RX] = TRACK_DECAY * a[RX] + x
        a[RM] = TRACK_DECAY * a[RM] + mu
        r = max(a[RX] / a[RM], 1e-9)
        if _factor(r, int(a[SHIFT_DIR])) < math.sqrt(c.min_ratio):
            self._end_shift()
            return
        # LLR of "back at baseline" against "still at the shift's ratio since its onset" (a fixed
        # alternative: one that followed the data would chase the return instead of seeing it).
        ratio = max(a[SHIFT_X] / a[SHIFT_M], 1e-9)
        a[S_BACK] = max(0.0, a[S_BACK] - _llr(x, mu, ratio) / self.dispersion(mu))
        if a[S_BACK] >= c.h:
            self._end_shift()

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        self.a[S_UP] = self.a[S_DN] = 0.0
        self.run = None

    def _scale_level(self, r: float) -> None:
        a = self.a
        if a[GM] > 0:
            a[GX] *= r
        else:
            a[GX], a[GM] = r, 1.0

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted rate as the new normal: the whole profile scales by the ratio."""
        if self.phase == SHIFTED:
            self._scale_level(self.a[RX] / self.a[RM])
            self._end_shift()

    # -- the profile ----------------------------------------------------------
    def _bucket(self, t: int) -> int:
        local = t + self.config.utc_offset_minutes
        weekend = (local // 1440 + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        return (local // 60) % 24 + 24 * weekend

    def _profile_at(self, t: int) -> tuple[float, bool, int]:
        """Profile amount for minute ``t`` (in units of the level), and how far to trust it.

        Returns (amount, whether the minute teaches the level and the noise,
        which tests it may feed: NO_TEST, UP_ONLY or BOTH).
        """
        a, c, seen = self.a, self.config, self.counts
        b = self._bucket(t)
        other = (b + 24) % BUCKETS
        mature = seen[other] >= c.min_bucket_minutes
        if seen[b] >= ESTABLISHED:
            pos = ((t + c.utc_offset_minutes) % 60 + 0.5) / 60 - 0.5
            nb = self._bucket(t + (60 if pos >= 0 else -60))
            v = a[PROF + b]
            if seen[nb] >= ESTABLISHED:
                v += abs(pos) * (a[PROF + nb] - v)
            if seen[b] >= c.min_bucket_minutes:
                return v, True, BOTH
            return v, True, UP_ONLY if mature else NO_TEST  # a day type's second visit
        if mature:
            factor = self.weekend_factor()
            return a[PROF + other] * (factor if b >= 24 else 1.0 / factor), False, UP_ONLY
        return 0.0, False, NO_TEST

    def weekend_factor(self) -> float:
        """Weekend over weekday amount, over the hours both have seen (1 before any)."""
        a = self.a
        seen = self.counts
        both = [h for h in range(24) if min(seen[h], seen[h + 24]) >= ESTABLISHED]
        wd = sum(a[PROF + h] for h in both)
        we = sum(a[PROF + h + 24] for h in both)
        return we / wd if wd > 0 and we > 0 else 1.0

    def _floor(self) -> float:
        return FLOOR_SHARE * self.a[GX] * self.config.level_rate + 1e-12

    # -- queries ---------------------------------------------------------------
    @property
    def level(self) -> float:
        """The global level: recent amounts over what the profile alone expects."""
        gm = self.a[GM]
        return self.a[GX] / gm if gm > 0 else 1.0

    @property
    def prof(self) -> list[float]:
        """Per bucket (hour of day × weekday/weekend), the EW mean amount per minute in units of the level."""
        return self.a[PROF : PROF + BUCKETS].tolist()

    @property
    def seen(self) -> list[int]:
        """Per bucket, the minutes it has learned (capped)."""
        return self.counts.tolist()

    minute = number(MINUTE, "The open minute (−1 before any).", int)
    m_x = number(M_X, "The amount so far in the open minute.")
    shifted_at = number(SHIFTED_AT, "Event time the current shift was declared.")

    def expected(self, ts: float) -> float | None:
        """The baseline amount for the minute of ``ts``, or None while that time is unknown."""
        v, learns, tests = self._profile_at(int(ts // 60))
        return max(self.level * v, self._floor()) if learns or tests else None

    def dispersion(self, mu: float) -> float:
        """Variance over mean of a run's minutes at expected amount ``mu`` (1 for Poisson counts)."""
        a, b = self.noise()
        d = a + b * mu * self._persistence(b)
        return 1e-9 if 1e-9 > d else d

    def noise(self) -> tuple[float, float]:
        """The learned (a, b) of D(μ) = a + b·μ·P: counting noise, and the wandering of the rate."""
        s = self.a
        return noise_fit(s[N1], s[NM], s[NMM], s[NY], s[NYM])

    def persistence(self) -> float:
        """Variance inflation of a run of minutes when the wandering persists (AR(1): (1+ρ)/(1-ρ))."""
        return self._persistence(self.noise()[1])

    def _persistence(self, b: float) -> float:
        lag_mm = self.a[LAG_MM]
        if b <= 0 or lag_mm <= 0:
            return 1.0
        rho = self.a[LAG_RR] / lag_mm / b
        rho = 0.0 if 0.0 > rho else rho
        rho = 0.9 if 0.9 < rho else rho
        return (1 + rho) / (1 - rho)

    def score(self) -> float:
        """Evidence of a change as a fraction of the threshold; ≥ 1 only in an alarm."""
        a, h = self.a, self.config.h
        if self.phase == SHIFTED:
            return max(1.0, (h - a[S_BACK]) / h)
        return min(max(a[S_UP], a[S_DN]) / h, BELOW_ALARM)

    def shift(self) -> RateShift | None:
        """The current shift, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        a = self.a
        expected = self.expected(a[MINUTE] * 60.0) or a[RM] * (1 - TRACK_DECAY)
        return RateShift(
            direction=int(a[SHIFT_DIR]),
            onset_ts=a[SHIFT_ONSET],
            observed_per_minute=expected * a[RX] / a[RM],
            expected_per_minute=expected,
            minutes=int(a[SHIFT_MINUTES]),
            excess=a[SHIFT_X] - a[SHIFT_M],
        )

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return packed_state(self, NUMBERS, STATE_VERSION, seen=self.counts.tolist(), run=list(self.run or ()))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeasonalRate:
        model = restore_packed(cls, RateConfig, NUMBERS, state, STATE_VERSION)
        if len(state["seen"]) != BUCKETS or not all(0 <= n <= SEEN_CAP for n in state["seen"]):
            raise ValueError(f"SeasonalRate state seen: expected {BUCKETS} counts of 0 to {SEEN_CAP}, "
                             f"got {state['seen']!r}")
        model.counts = array("H", state["seen"])
        model.run = saved_run(state["run"])
        return model


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
