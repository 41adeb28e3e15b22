"""A sequential test for a sustained change in a rate that follows the clock.

Requests and dollars per minute rise at 9 am, fall at night and at weekends
and grow a few percent a week; a runaway loop at 3 am or a surge at noon is
a change *against that rhythm*, so each minute's total is judged against
what this time of the week normally holds.

Baseline: 48 buckets, hour of day × weekday/weekend, each an exponentially
weighted mean amount per minute, times one level that follows slow growth
multiplicatively (multiplicative Holt-Winters); why 48, and how a bucket
earns trust, in :mod:`detector.models.rate_profile`.

Noise: a minute's total has variance D(μ)·μ, D(μ) = a + b·μ·P: counting
noise, the wandering of the rate itself, and how long that wandering
persists, learned online (:mod:`detector.models.rate_noise`).

Evidence: a CUSUM of the quasi-Poisson log-likelihood ratio of
×``ratio_above`` (and, if set, ×``ratio_below``) per minute, divided by D.
Silent minutes are zeros: a new minute closes the skipped ones (at most
``max_gap_minutes``) and ``advance(ts)`` closes them with no event at all.
What an open run holds, and how it is read, in :mod:`detector.models.rate_run`.

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

A window of 12 minutes holds a dozen requests on a series of one a minute:
too few to show a lasting doubling at ×``min_ratio`` at its bound, and the
window's noise would end the run before the evidence is in. So, where the
hour's bucket is known well enough (``LONG_SEEN``): an excess of
``LONG_MINUTES`` (an hour) since its latest onset is also judged on that
whole span (:meth:`SeasonalRate._long_excess`); a window too thin to tell
does not reset a run the span still carries
(:meth:`SeasonalRate._too_thin_to_tell`); and the baseline stops learning
at a quarter of the threshold rather than half (``WARY_KNOWN``), since a
doubling on such a series takes an hour to get there and would otherwise
be learned as normal on the way. A doubling on such a series pages after
an hour or so instead of never; of the three, only the earlier pause
reaches a busy series. The shift is then followed over enough minutes to
hold a few dozen requests (:func:`~detector.models.rate_shift.tracking_keep`),
so that their noise does not end it.

Phases as in :mod:`detector.models.level_shift`: ``learning`` →
``watching`` → ``shifted`` (baseline frozen, a reverse test waits for the
return, :mod:`detector.models.rate_shift`) → ``watching``. The parameters
and the layout of the numbers are in :mod:`detector.models.rate_state`.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Final

from detector.models import rate_noise, rate_profile, rate_run
from detector.models.rate_noise import learn_noise, noise_fit
from detector.models.rate_profile import (
    BOTH,
    ESTABLISHED,
    bucket,
    learn_bucket,
    own_bucket,
    profile_at,
)
from detector.models.rate_run import extend, factor, llr
from detector.models.rate_shift import RateShift, shift_of, start_shift, track_shift
from detector.models.rate_state import (
    BUCKETS,
    FIRST_MINUTE,
    GM,
    GX,
    M_X,
    MINUTE,
    N1,
    NUMBERS,
    PROF,
    RM,
    RX,
    S_BACK,
    S_DN,
    S_UP,
    SHIFTED_AT,
    RateConfig,
    saved_counts,
)
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

__all__ = ["LEARNING", "SHIFTED", "STATE_VERSION", "WATCHING", "RateConfig", "RateShift", "SeasonalRate", "noise_fit"]

STATE_VERSION: Final = 2
LEVEL_PRIOR_MINUTES: Final = 60  # the level starts from an hour of "as the profile says"
ONSET_SLACK: Final = 4.0  # nats: how far the latest plausible onset may fall short of the likeliest
STEADY_NATS: Final = 3.0  # evidence for the window's level each third of it must carry
LAST_MINUTES: Final = 2  # ... and its latest two minutes carry LAST_NATS: the excess is still on
LAST_NATS: Final = 3.0
LONG_MINUTES: Final = 60  # an excess this long since its latest onset is no burst: judged on all of it ...
LONG_SEEN: Final = 120  # ... where the hour's bucket has learned two hours (a first weekend's has not)
THIN_WINDOW: Final = 20.0  # requests (as Poisson counts) below which a window cannot say an excess ended
WARY_KNOWN: Final = 0.25  # share of h above which the baseline stops learning, in an hour it knows ...
WARY_NEW: Final = 0.5  # ... and in one it does not
FLOOR_SHARE: Final = 0.01  # expectation floor, as a share of the series' mean rate
BELOW_ALARM: Final = 0.999  # score() ceiling outside an alarm: suspicion is not an alarm


class SeasonalRate(Watched):
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
        Watched.__init__(self)
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
        v, learns, tests = profile_at(a, self.counts, c, t)
        mu = 0.0
        if learns or tests:
            mu, floor = self.level * v, self._floor()
            mu = floor if floor > mu else mu  # (bounds by comparisons rather than max(): no call)
        if self.phase == SHIFTED:
            if tests and track_shift(a, c, x, mu, self.dispersion):
                self._end_shift()
            return
        # Decided before judging: the baseline learns while nothing is suspected, the noise only
        # while no run is open at all, so that a burst never teaches it what noise looks like.
        # Where the hour is known well, a quarter of the threshold is suspicion enough: on a slow
        # series a doubling takes an hour to reach half of it, and would be learned by then.
        s_up, s_dn = a[S_UP], a[S_DN]
        wary = c.h * (WARY_KNOWN if self._known_hour(t) else WARY_NEW)
        calm = s_up < wary and s_dn < wary
        quiet = s_up <= 0 and s_dn <= 0
        if self.phase == WATCHING and tests and a[N1] >= ESTABLISHED:
            own = own_bucket(a, self.counts, c, t)
            hour = mu if own is None else max(self.level * own, self._floor())
            self._judge(t, x, max(mu, hour), min(mu, hour), tests)
        if calm and self.phase != SHIFTED:
            self._learn(t, x, v, mu if learns else 0.0, quiet)

    def _judge(self, t: int, x: float, mu_up: float, mu_dn: float, tests: int) -> None:
        """Judge minute ``t``: the upward test against ``mu_up``, the downward one against ``mu_dn``.

        Within an hour the profile slides towards the next hour's bucket, as
        people's traffic ramps; a batch job keeps its rate to the hour and
        stops. Where the two hours are a step apart
        (:func:`~detector.models.rate_profile.own_bucket`), each test takes
        whichever of the slide and the hour's own bucket is the harder to
        pass, so the end of a nightly job does not read as a runaway in its
        last half hour (nor its start as a drop).
        """
        a, c = self.a, self.config
        s_up, s_dn = a[S_UP], a[S_DN]
        if c.ratio_above is not None:
            s_up += llr(x, mu_up, c.ratio_above) / self.dispersion(mu_up)
            a[S_UP] = s_up = s_up if s_up > 0.0 else 0.0
        if c.ratio_below is not None and tests == BOTH:
            s_dn += llr(x, mu_dn, c.ratio_below) / self.dispersion(mu_dn)
            a[S_DN] = s_dn = s_dn if s_dn > 0.0 else 0.0
        if s_up <= 0 and s_dn <= 0:
            self.run = None
            return
        self.run = extend(self.run, t, x, mu_up if s_up >= s_dn else mu_dn)
        if s_up >= c.h:
            self._maybe_shift(+1, t)
        elif s_dn >= c.h:
            self._maybe_shift(-1, t)

    def _learn(self, t: int, x: float, v: float, mu: float, quiet: bool) -> None:
        """Teach the bucket; and the level (and, if ``quiet``, the noise) when the bucket could predict."""
        a = self.a
        learn_bucket(a, self.counts, self.config, t, x, self.level)
        if mu <= 0:
            return
        gx, gm = a[GX], a[GM]
        if gm <= 0:
            gx = gm = LEVEL_PRIOR_MINUTES * v
        k = self.config.level_keep
        a[GX], a[GM] = k * gx + x, k * gm + v
        if quiet:
            learn_noise(a, self.config.noise_keep, t, x - mu, mu)

    # -- the alarm and the shift ---------------------------------------------
    def _maybe_shift(self, direction: int, t: int) -> None:
        run = self.run
        assert run is not None, "a shift is only judged on a run"
        onset = rate_run.onset(run, direction, self.dispersion)
        latest = rate_run.onset(run, direction, self.dispersion, ONSET_SLACK)
        a, c = self.a, self.config
        if onset is None or latest is None or latest[3] < c.min_minutes:
            return
        # The effect is judged on the latest min_minutes alone, at its confidence bound: what
        # matters is whether the excess is still there, not how large a burst inside the run was.
        k = c.min_minutes
        x, m = rate_run.recent(run, k)
        r = x / m
        bound = self._bound(x, m, k, direction)
        weakest = rate_run.weakest_third(run, r, k, self.dispersion)
        long = self._long_excess(run, latest, x, m, direction, t)
        if factor(r, direction) < c.min_ratio and not long:
            if self._too_thin_to_tell(latest, m, k, direction, t):
                return  # a window of a few requests cannot say the excess is over: the span will
            # Too small to matter now, whatever the run once held: start afresh, and if the
            # window is of one piece let the level absorb what is sure of it.
            if weakest >= 0:
                self._scale_level(max(bound, 1.0) if direction > 0 else min(bound, 1.0))
            self._reset_cusum()
            return
        lx, lm = rate_run.recent(run, LAST_MINUTES)
        last = llr(lx, lm, r) / self.dispersion(lm / LAST_MINUTES)
        if weakest >= STEADY_NATS and last >= LAST_NATS and factor(bound, direction) >= c.min_ratio:
            self.phase = SHIFTED
            start_shift(a, direction, t, onset, x, m)
        elif long:  # the window alone is too short to tell, the span since the onset is not
            self.phase = SHIFTED
            start_shift(a, direction, t, onset, latest[1], latest[2])
        # otherwise a burst inside the window, an excess that is fading, or not yet sure: wait

    def _bound(self, x: float, m: float, minutes: int, direction: int) -> float:
        """The ratio ``x / m`` over ``minutes`` at its confidence bound, on the side a sceptic takes."""
        spread = max(x, m)
        se = math.sqrt(self.dispersion(spread / minutes) * spread) / m
        r, z = x / m, self.config.z
        return r - z * se if direction > 0 else r + z * se

    def _known_hour(self, t: int) -> bool:
        """Whether minute ``t``'s bucket has learned ``LONG_SEEN`` minutes (a first weekend's has not)."""
        return self.counts[bucket(t, self.config.utc_offset_minutes)] >= LONG_SEEN

    def _long_excess(self, run: array[float], latest: rate_run.Tail, x: float, m: float, direction: int,
                     t: int) -> bool:
        """Whether the span since the latest onset proves, on its own, an excess the window cannot.

        On a series of a request or two a minute, ``min_minutes`` hold a
        dozen requests: too few to show ×``min_ratio`` at the confidence
        bound, or even to keep the window's own ratio above it, however long
        a doubling has lasted. A span of ``LONG_MINUTES`` or more since the
        latest plausible onset decides instead when it is ×``min_ratio`` at
        its bound, when the minutes before the window and each third of the
        window favour its ratio over the baseline (one excess throughout, not
        two bursts), and when this hour's bucket has seen ``LONG_SEEN``
        minutes (a span this long is judged only against a profile worth it).
        """
        _, lx, lm, minutes = latest
        if minutes < LONG_MINUTES or not self._known_hour(t):
            return False
        r, c = lx / lm, self.config
        if factor(self._bound(lx, lm, minutes, direction), direction) < c.min_ratio or llr(lx - x, lm - m, r) < 0:
            return False
        return rate_run.weakest_third(run, r, c.min_minutes, self.dispersion) >= 0

    def _too_thin_to_tell(self, latest: rate_run.Tail, m: float, k: int, direction: int, t: int) -> bool:
        """Whether the window holds too few requests to call the excess over, while the span still shows one.

        Then the run is kept for :meth:`_long_excess` to judge, instead of
        being reset on a dozen requests' word; elsewhere (a busy series, an
        hour not yet known) nothing changes.
        """
        if m / self.dispersion(m / k) >= THIN_WINDOW or not self._known_hour(t):
            return False
        return factor(latest[1] / latest[2], direction) >= self.config.min_ratio

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
    def weekend_factor(self) -> float:
        """Weekend over weekday amount, over the hours both have seen (1 before any)."""
        return rate_profile.weekend_factor(self.a, self.counts)

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

    @property
    def minute(self) -> int:
        """The open minute (−1 before any)."""
        return int(self.a[MINUTE])

    @property
    def m_x(self) -> float:
        """The amount so far in the open minute."""
        return self.a[M_X]

    @property
    def shifted_at(self) -> float:
        """Event time the current shift was declared."""
        return self.a[SHIFTED_AT]

    def expected(self, ts: float) -> float | None:
        """The baseline amount for the minute of ``ts``, or None while that time is unknown."""
        v, learns, tests = profile_at(self.a, self.counts, self.config, int(ts // 60))
        return max(self.level * v, self._floor()) if learns or tests else None

    def dispersion(self, mu: float) -> float:
        """Variance over mean of a run's minutes at expected amount ``mu`` (1 for Poisson counts)."""
        return rate_noise.dispersion(self.a, mu)

    def noise(self) -> tuple[float, float]:
        """The learned (a, b) of D(μ) = a + b·μ·P: counting noise, and the wandering of the rate."""
        return rate_noise.noise(self.a)

    def persistence(self) -> float:
        """Variance inflation of a run of minutes when the wandering persists (AR(1): (1+ρ)/(1-ρ))."""
        return rate_noise.persistence(self.a, self.noise()[1])

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
        return shift_of(self.a, self.expected(self.a[MINUTE] * 60.0))

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return packed_state(self, NUMBERS, STATE_VERSION, seen=self.counts.tolist(), run=list(self.run or ()))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeasonalRate:
        model = restore_packed(cls, RateConfig, NUMBERS, state, STATE_VERSION)
        model.counts = saved_counts(state["seen"])
        model.run = saved_run(state["run"])
        return model

