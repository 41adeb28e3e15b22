"""A sequential test for a sustained change in a share: retries, errors, tier mix.

A share is hits out of trials: retries among requests, failures among
requests, premium-tier calls among a feature's calls. The evidence is
binomial, so what a minute says depends on how many trials it holds: one
retry in three requests is weak evidence, eight in twenty is strong, and a
series of a few requests an hour needs hours to say what a busy one says in
a minute.

Hits are not independent, though: one failing upstream makes several
requests of the same minute retry, so the share wanders from minute to
minute more than a binomial allows. The model learns that overdispersion as
the beta-binomial intra-minute correlation ρ (a minute of n trials carries
the variance of n·φ binomial ones, φ = 1 + (n − 1)ρ) and weighs each minute
by the beta-binomial likelihood at that ρ, under which one lopsided minute
can only say so much however busy the series: a bursty series needs more
minutes of evidence.

Baseline share p0 and ρ come from five exponentially weighted sums over
minutes (hits, trials, hits², hits·trials, trials²): the moment estimator of
ρ at any p is a closed form in them. They are kept by hand rather than with
river.stats.EWMean/EWVar because the state must be a flat, versioned dict
and ρ needs cross-moments those do not keep.

The evidence is the log-likelihood ratio of p1 against p0, summed per minute
by a CUSUM, with p1 = max(p0·ratio_above, p0 + min_delta) upwards and
min(p0·ratio_below, p0 − min_delta) downwards, the ratio taken on the odds
(the same while the share is small; near 1 it shrinks the complement, since
a share of 0.97 cannot triple). Upwards a second CUSUM looks for a change
``BIG`` times that size: a test tuned to ×5 gathers only about half the
evidence a ×15 spike brings, too little before an hour-long spike on a
series of a request a minute ends. Crossing ``h`` is an alarm once the effect
is material: the share since the onset, taken at its confidence bound,
differs from p0 by ``min_delta`` and by a factor ``min_ratio`` (of the share
or of its complement). With the defaults a storm from 2 % to 40 % at 20
requests a minute fires after two or three minutes (three or four when
retries already come in clumps), at 3 a minute after about ten, and a
series of one request every two minutes stays quiet on a lone retry.

Phases as in :mod:`detector.models.level_shift`: ``learning`` →
``watching`` → ``shifted`` (baseline frozen, a reverse test waits for the
return) → ``watching``.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any, Final

from detector.models.binomial import bb_llr, llr, odds_times, overdispersion, wilson
from detector.models.share_state import (
    HS,
    M_FIRST,
    M_K,
    M_N,
    MINUTE,
    MINUTES,
    NS,
    NUMBERS,
    S_BACK,
    S_BIG,
    S_DN,
    S_UP,
    SHIFT_DIR,
    SHIFT_K,
    SHIFT_N,
    SHIFT_ONSET,
    SHIFTED_AT,
    SK,
    SKK,
    SKN,
    SN,
    SNN,
    STATE_VERSION,
    TRIALS,
    ShareConfig,
)
from detector.models.state import (
    LEARNING,
    SHIFTED,
    WATCHING,
    Watched,
    grow_run,
    packed_state,
    restore_packed,
    saved_run,
    shared,
)

RUN_MINUTES: Final = 8  # active minutes a run keeps apart; older ones merge into its first entry
TRACK_DECAY: Final = 0.9  # per active minute: how fast the shifted share follows the data
CLIP: Final = 4.0  # standard deviations at which a minute's hits are winsorised before they are learned
BIG: Final = 3.0  # the second upward test looks for a change this many times larger (ratio and delta)
BELOW_ALARM: Final = 0.999  # score() ceiling outside an alarm: suspicion is not an alarm
BIG_CALM: Final = 0.25
"""The baseline stops learning once the second upward test passes this share of ``h``.

When only the moderate tests stopped it (at half of ``h``), an hour-long
error spike on a series of a request a minute taught the baseline its
failures (1.9 % → 2.5 % over the hour, costing the second test ~2 nats):
the moderate test, tuned to a smaller change, stays under half for most of
it. Stopped also while the second test is past a quarter, the baseline
stays frozen through such a spike. On steady traffic it pauses only for the minutes after a cluster
of hits, which are a sample like any other while hits are independent;
where failures come in bursts over several minutes the pause skips the
burst's tail and learns the share a little low. Measured: the same false
alarms on the clean simulated weeks, all severities.
"""


@dataclass(frozen=True, slots=True)
class ShareShift:
    """What the model concluded: direction, onset, and the shares either side."""

    direction: int  # +1 up, -1 down
    onset_ts: float
    observed_share: float
    baseline_share: float
    trials: int  # since the onset
    hits: int

    @property
    def ratio(self) -> float:
        return self.observed_share / self.baseline_share if self.baseline_share > 0 else math.inf


# the open minute's m_k, m_n, emptied
_COUNTS_END: Final = M_N + 1
_NO_COUNTS: Final = array("d", (0.0, 0.0))


class ProportionShift(Watched):
    """Online detector of a sustained change in the share of hits among trials.

    ``update(hits, ts, trials=1)``: one request is ``update(is_retry, ts)``;
    a pre-aggregated count is ``update(3, ts, trials=20)``. Two retries in a
    hundred a minute stay quiet; a storm to 40 % fires within minutes:

    >>> import random
    >>> rng = random.Random(1)
    >>> m = ProportionShift()
    >>> for i in range(20 * 600):                 # 20 requests a minute for ten hours
    ...     m.update(rng.random() < 0.02, ts=i * 3.0)
    >>> m.phase
    'watching'
    >>> for i in range(20 * 600, 20 * 605):
    ...     m.update(rng.random() < 0.4, ts=i * 3.0)
    >>> m.phase, m.shift().direction, 0.3 < m.shift().observed_share < 0.5
    ('shifted', 1, True)

    The numbers live in one array of doubles (``a``) and the parameters in
    a :class:`ShareConfig` shared with every series built alike.
    """

    __slots__ = ("a", "config", "phase", "run")

    def __init__(
        self,
        *,
        ratio_above: float | None = 5.0,
        ratio_below: float | None = None,
        min_delta: float = 0.05,
        min_ratio: float = 2.0,
        h: float = 12.0,
        z: float = 2.0,
        warmup: int = 200,
        warmup_minutes: int = 30,
        half_life: float = 1000.0,
    ) -> None:
        Watched.__init__(self)
        self.config = shared(ShareConfig(ratio_above, ratio_below, min_delta, min_ratio, h, z, warmup,
                                         warmup_minutes, half_life))
        self.phase = LEARNING
        self.a = NUMBERS.new(minute=-1)
        # (first ts, trials, hits, minutes) per active minute of a CUSUM run; none while both are at zero.
        self.run: array[float] | None = None

    # -- the one command ---------------------------------------------------
    def update(self, hits: bool | int, ts: float, trials: int = 1) -> None:
        """Count ``hits`` out of ``trials`` (0 ≤ hits ≤ trials) at event time ``ts``."""
        hits = int(hits)
        if not 0 <= hits <= trials:
            raise ValueError(f"ProportionShift.update: expected 0 ≤ hits ≤ trials, got {hits} of {trials}")
        a = self.a
        minute = int(ts // 60)
        if minute > a[MINUTE]:  # a late event counts in the open minute
            if a[M_N]:
                self._close_minute(ts)
                a = self.a  # a shift that began or ended there changed the array
            a[MINUTE], a[M_FIRST], a[M_K], a[M_N] = minute, ts, hits, trials
        else:
            a[M_K] += hits
            a[M_N] += trials
        a[TRIALS] += trials

    def close(self, ts: float) -> None:
        """Judge the open minute now, when the caller knows it is complete (it fed a minute's total)."""
        if self.a[M_N]:
            self._close_minute(ts)
            self.a[M_K:_COUNTS_END] = _NO_COUNTS  # (the array of after the close: a shift changes it)

    def _close_minute(self, ts: float) -> None:
        """Judge the minute that just ended as one piece of evidence; ``ts`` is now."""
        a, c = self.a, self.config
        k, n = a[M_K], a[M_N]
        a[MINUTES] += 1
        if self.phase == LEARNING:
            self._learn(k, n, 1.0)
            if a[TRIALS] >= c.warmup and a[MINUTES] >= c.warmup_minutes:
                self.phase = WATCHING
            return
        p0 = self.baseline_share
        if self.phase == SHIFTED:
            self._track_shift(k, n, p0)
            return
        rho, h = self.rho, c.h
        s_up, s_dn = a[S_UP], a[S_DN]
        s_big = a[S_BIG]
        # As the minute began: the baseline learns only while no test leans (see BIG_CALM).
        calm = s_up < h / 2 and s_dn < h / 2 and s_big < h * BIG_CALM
        if k == 0.0 and s_up == 0.0 and s_big == 0.0 and c.ratio_below is None:
            # The usual minute of a retry or error share: no hit, and the upward tests at zero stay
            # there (a minute without hits is evidence against a higher share), so neither is computed.
            up = down = None
        else:
            up, down = self.targets()
        # (Comparisons written out rather than max(): the same values, a call less each.)
        if up is not None:
            s_up += bb_llr(k, n, up, p0, rho)
            a[S_UP] = s_up = s_up if s_up > 0.0 else 0.0
            s_big += bb_llr(k, n, self._big(p0, up), p0, rho)
            a[S_BIG] = s_big = s_big if s_big > 0.0 else 0.0
            s_up = s_big if s_big > s_up else s_up  # the bank of two: either may raise the alarm
        if down is not None:
            s_dn += bb_llr(k, n, down, p0, rho)
            a[S_DN] = s_dn = s_dn if s_dn > 0.0 else 0.0
        if s_up > 0 or s_dn > 0:
            self._extend(n, k)
        else:
            self.run = None
        if calm:
            # Winsorised, so that the first minute of a storm teaches the baseline little.
            spread = n * p0 * (1 - p0) * (1.0 + (n - 1) * rho)
            reach = CLIP * math.sqrt(1.0 if 1.0 > spread else spread)
            lo, hi = n * p0 - reach, n * p0 + reach
            clipped = lo if lo > k else k
            self._learn(hi if hi < clipped else clipped, n, 1.0 - c.alpha)
        if s_up >= h:
            self._maybe_shift(+1, ts)
        elif s_dn >= h:
            self._maybe_shift(-1, ts)

    def _learn(self, k: float, n: float, keep: float) -> None:
        a = self.a
        a[SK] = keep * a[SK] + k
        a[SN] = keep * a[SN] + n
        a[SKK] = keep * a[SKK] + k * k
        a[SKN] = keep * a[SKN] + k * n
        a[SNN] = keep * a[SNN] + n * n

    def _extend(self, n: float, k: float) -> None:
        self.run = grow_run(self.run, (self.a[M_FIRST], n, k, 1.0), RUN_MINUTES)

    def targets(self) -> tuple[float | None, float | None]:
        """The shares the upward and downward tests look for (None: that direction is off).

        p1 = max(p0 · ratio_above, p0 + min_delta) upwards and
        min(p0 · ratio_below, p0 − min_delta) downwards, the ratio taken on
        the odds: the same as on the share while it is small, and near 1 it
        scales the complement instead (a share of 0.9 cannot triple).
        """
        c = self.config
        p0, d = self.baseline_share, c.min_delta
        up = down = None
        if c.ratio_above is not None:
            up, least = odds_times(p0, c.ratio_above), p0 + d  # (bounds by comparisons: no calls)
            up = least if least > up else up
            up = 1.0 - 1e-6 if 1.0 - 1e-6 < up else up
        if c.ratio_below is not None:
            down = min(odds_times(p0, c.ratio_below), p0 - d)
            down = down if down > 0 else None
        return up, down

    def _big(self, p0: float, up: float) -> float:
        """The second upward test's share: BIG times further than ``up`` (on the odds and in delta).

        One CUSUM is most sensitive to the change it is tuned for. Tuned to a
        ×5 it gathers about half the evidence a ×15 brings, and on a slow
        series an error spike that short ends before the evidence is in; a
        bank of two (Lorden's rule for an unknown size of change) catches the
        large ones at their own pace and still the moderate ones at theirs.
        """
        c = self.config
        big = odds_times(p0, (c.ratio_above or 1.0) * BIG)
        least = p0 + BIG * c.min_delta
        big = least if least > big else big
        big = 1.0 - 1e-6 if 1.0 - 1e-6 < big else big
        return big if big > up else up

    def _onset(self, direction: int) -> tuple[float, int, int, int]:
        """Where in the run the change most likely began: (onset ts, trials, hits, minutes).

        The maximum-likelihood change point: the suffix of the run whose own
        share explains it best against p0, in the run's direction.
        """
        p0, rho, run = self.baseline_share, self.rho, self.run
        assert run is not None, "a shift is only judged on a run"
        best: tuple[float, int, int, int] = (run[-4], int(run[-3]), int(run[-2]), int(run[-1]))
        best_score = -math.inf
        n = k = m = 0
        for i in range(len(run) - 4, -4, -4):
            n, k, m = n + int(run[i + 1]), k + int(run[i + 2]), m + int(run[i + 3])
            if direction * (k / n - p0) <= 0:
                continue
            score = llr(k, n, k / n, p0) / (1.0 + (n / m - 1.0) * rho)
            if score > best_score:
                best, best_score = (run[i], n, k, m), score
        return best

    def _maybe_shift(self, direction: int, ts: float) -> None:
        a = self.a
        onset, n, k, minutes = self._onset(direction)
        p0 = self.baseline_share
        phi = 1.0 + (n / minutes - 1.0) * self.rho
        # The run that crossed h overstates the effect, so judge it at its confidence bound.
        bound = wilson(k / phi, n / phi, -direction * self.config.z)
        if self._material(direction, k / n, p0, 1.0) and not self._material(direction, bound, p0, 1.0):
            return  # large enough, not yet sure enough: the next minutes will tell
        if self._material(direction, bound, p0, 1.0):
            self.phase = SHIFTED
            a = self.a = NUMBERS.widen(a)  # the shift's numbers are held while it lasts
            a[SHIFT_DIR], a[SHIFT_ONSET], a[SHIFT_N], a[SHIFT_K] = direction, onset, n, k
            a[HS], a[NS], a[S_BACK], a[SHIFTED_AT] = float(k), float(n), 0.0, ts
        else:
            # Significant but too small to matter: let the baseline absorb it.
            self._set_baseline((a[SK] + k) / (a[SN] + n))
            self._reset_cusum()

    def _material(self, direction: int, share: float, p0: float, power: float) -> bool:
        """Is ``share`` far enough from p0, by min_delta and by min_ratio (both raised to ``power``)?"""
        if direction > 0:
            delta, factor = share - p0, max(share / p0, (1 - p0) / max(1 - share, 1e-12))
        else:
            delta, factor = p0 - share, max(p0 / max(share, 1e-12), (1 - share) / (1 - p0))
        c = self.config
        return delta >= c.min_delta * power and factor >= c.min_ratio**power

    def _track_shift(self, k: float, n: float, p0: float) -> None:
        """Follow the shifted share; return to watching once the evidence says it is gone."""
        a = self.a
        a[SHIFT_N] += n
        a[SHIFT_K] += k
        a[HS] = TRACK_DECAY * a[HS] + k
        a[NS] = TRACK_DECAY * a[NS] + n
        direction = int(a[SHIFT_DIR])
        if not self._material(direction, self._recent_bound(direction), p0, 0.5):
            self._end_shift()
            return
        # LLR of "back at baseline" against "still at the shift's share since its onset" (a fixed
        # alternative: one that followed the data would chase the return instead of seeing it).
        since = min(max(a[SHIFT_K] / a[SHIFT_N], 1e-9), 1 - 1e-9)
        a[S_BACK] = max(0.0, a[S_BACK] + bb_llr(k, n, p0, since, self.rho))
        if a[S_BACK] >= self.config.h:
            self._end_shift()

    def _recent_bound(self, direction: int) -> float:
        """The recent minutes' share at its confidence bound on the shift's side.

        Those minutes are a dozen requests on a slow series, and a dozen
        requests at a 25 % share are all misses about once in thirty: judged
        on its point value, the share would end a shift that is still on
        (and fire it again minutes later). At its bound it ends a shift only
        where the minutes hold enough requests to say so; elsewhere the
        back-to-normal CUSUM decides.
        """
        a = self.a
        phi = 1.0 + (a[NS] * (1.0 - TRACK_DECAY) - 1.0) * self.rho  # requests a minute, as _maybe_shift
        phi = phi if phi > 1.0 else 1.0
        share = wilson(a[HS] / phi, a[NS] / phi, direction * self.config.z)
        return min(max(share, 1e-9), 1 - 1e-9)

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self.a = NUMBERS.narrow(self.a)
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        self.a[S_UP] = self.a[S_DN] = self.a[S_BIG] = 0.0
        self.run = None

    def _set_baseline(self, p: float) -> None:
        """Move p0 to ``p`` keeping the sums' weight and the learned ρ."""
        a = self.a
        rho, sn, snn = self.rho, a[SN], a[SNN]
        a[SK], a[SKN] = p * sn, p * snn
        a[SKK] = p * p * snn + p * (1 - p) * (sn + rho * (snn - sn))

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted share as the new normal (a change that is here to stay)."""
        if self.phase == SHIFTED:
            self._set_baseline(self.a[HS] / self.a[NS])
            self._end_shift()

    # -- queries -------------------------------------------------------------
    @property
    def baseline_share(self) -> float:
        """p0, kept off 0 and 1 by half a trial so that a likelihood ratio is always finite."""
        a = self.a
        sn = a[SN]
        if sn <= 1:
            return 0.5
        sk, top = a[SK], sn - 0.5  # (clamped by comparisons, not min() and max(): the same value, no calls)
        sk = 0.5 if 0.5 > sk else sk
        return (top if top < sk else sk) / sn

    @property
    def rho(self) -> float:
        """Learned intra-minute correlation of hits (0: binomial; → 1: whole minutes hit together)."""
        a = self.a
        return overdispersion(a[SK], a[SN], a[SKK], a[SKN], a[SNN])

    @property
    def trials(self) -> int:
        """Trials seen."""
        return int(self.a[TRIALS])

    @property
    def warmup_minutes(self) -> int:
        return self.config.warmup_minutes

    @property
    def shifted_at(self) -> float:
        """Event time the current shift was declared."""
        return self.a[SHIFTED_AT]

    def score(self) -> float:
        """Evidence of a change as a fraction of the threshold; ≥ 1 only in an alarm."""
        a, h = self.a, self.config.h
        if self.phase == SHIFTED:
            return max(1.0, (h - a[S_BACK]) / h)
        return min(max(a[S_UP], a[S_DN], a[S_BIG]) / h, BELOW_ALARM)

    def shift(self) -> ShareShift | None:
        """The current shift, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        a = self.a
        return ShareShift(
            direction=int(a[SHIFT_DIR]),
            onset_ts=a[SHIFT_ONSET],
            observed_share=a[HS] / a[NS],
            baseline_share=self.baseline_share,
            trials=int(a[SHIFT_N]),
            hits=int(a[SHIFT_K]),
        )

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return packed_state(self, NUMBERS, STATE_VERSION, run=list(self.run or ()))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ProportionShift:
        model = restore_packed(cls, ShareConfig, NUMBERS, state, STATE_VERSION)
        model.run = saved_run(state["run"])
        return model
