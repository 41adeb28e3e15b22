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
a share of 0.97 cannot triple). Crossing ``h`` is an alarm once the effect
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
from dataclasses import dataclass
from typing import Any

from detector.models.state import restore_slots, slots_state

LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"
STATE_VERSION = 1
RUN_MINUTES = 8  # active minutes a run keeps apart; older ones merge into its first entry
TRACK_DECAY = 0.9  # per active minute: how fast the shifted share follows the data
CLIP = 4.0  # standard deviations at which a minute's hits are winsorised before they are learned
RHO_MAX = 0.95
BELOW_ALARM = 0.999  # score() ceiling outside an alarm: suspicion is not an alarm


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


class ProportionShift:
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
    """

    __slots__ = (
        "ratio_above", "ratio_below", "min_delta", "min_ratio", "h", "z", "warmup", "warmup_minutes",
        "alpha", "phase", "trials", "minutes", "sk", "sn", "skk", "skn", "snn",
        "minute", "m_first", "m_k", "m_n", "s_up", "s_dn", "run",
        "shift_dir", "shift_onset", "shift_n", "shift_k", "hs", "ns", "s_back", "shifted_at",
    )

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
        if ratio_above is not None and ratio_above <= 1:
            raise ValueError(f"ProportionShift ratio_above: expected > 1 or None, got {ratio_above!r}")
        if ratio_below is not None and not 0 < ratio_below < 1:
            raise ValueError(f"ProportionShift ratio_below: expected in (0, 1) or None, got {ratio_below!r}")
        self.ratio_above, self.ratio_below = ratio_above, ratio_below
        self.min_delta, self.min_ratio, self.h, self.z = min_delta, min_ratio, h, z
        self.warmup, self.warmup_minutes = warmup, warmup_minutes
        self.alpha = 1.0 - 0.5 ** (1.0 / half_life)  # per minute with trials
        self.phase = LEARNING
        self.trials = self.minutes = 0
        # Sums over minutes of k, n, k², k·n, n²: plain in warm-up, then exponentially weighted.
        self.sk = self.sn = self.skk = self.skn = self.snn = 0.0
        self.minute, self.m_first, self.m_k, self.m_n = -1, 0.0, 0, 0
        self.s_up = self.s_dn = 0.0
        self.run: list[float] = []  # (first ts, trials, hits, minutes) per active minute of a CUSUM run
        self.shift_dir, self.shift_onset, self.shift_n, self.shift_k = 0, 0.0, 0, 0
        self.hs = self.ns = self.s_back = self.shifted_at = 0.0

    # -- the one command ---------------------------------------------------
    def update(self, hits: bool | int, ts: float, trials: int = 1) -> None:
        """Count ``hits`` out of ``trials`` (0 ≤ hits ≤ trials) at event time ``ts``."""
        hits = int(hits)
        if not 0 <= hits <= trials:
            raise ValueError(f"ProportionShift.update: expected 0 ≤ hits ≤ trials, got {hits} of {trials}")
        minute = int(ts // 60)
        if minute > self.minute:  # a late event counts in the open minute
            if self.m_n:
                self._close_minute(ts)
            self.minute, self.m_first, self.m_k, self.m_n = minute, ts, 0, 0
        self.m_k += hits
        self.m_n += trials
        self.trials += trials

    def close(self, ts: float) -> None:
        """Judge the open minute now, when the caller knows it is complete (it fed a minute's total)."""
        if self.m_n:
            self._close_minute(ts)
            self.m_k = self.m_n = 0

    def _close_minute(self, ts: float) -> None:
        """Judge the minute that just ended as one piece of evidence; ``ts`` is now."""
        k, n = self.m_k, self.m_n
        self.minutes += 1
        if self.phase == LEARNING:
            self._learn(k, n, 1.0)
            if self.trials >= self.warmup and self.minutes >= self.warmup_minutes:
                self.phase = WATCHING
            return
        p0 = self.baseline_share
        if self.phase == SHIFTED:
            self._track_shift(k, n, p0)
            return
        rho = self.rho
        calm = self.s_up < self.h / 2 and self.s_dn < self.h / 2  # as the minute began
        up, down = self.targets()
        if up is not None:
            self.s_up = max(0.0, self.s_up + _bb_llr(k, n, up, p0, rho))
        if down is not None:
            self.s_dn = max(0.0, self.s_dn + _bb_llr(k, n, down, p0, rho))
        if self.s_up > 0 or self.s_dn > 0:
            self._extend(n, k)
        else:
            self.run.clear()
        if calm:
            # Winsorised, so that the first minute of a storm teaches the baseline little.
            reach = CLIP * math.sqrt(max(n * p0 * (1 - p0) * (1.0 + (n - 1) * rho), 1.0))
            self._learn(min(max(k, n * p0 - reach), n * p0 + reach), n, 1.0 - self.alpha)
        if self.s_up >= self.h:
            self._maybe_shift(+1, ts)
        elif self.s_dn >= self.h:
            self._maybe_shift(-1, ts)

    def _learn(self, k: float, n: int, keep: float) -> None:
        self.sk = keep * self.sk + k
        self.sn = keep * self.sn + n
        self.skk = keep * self.skk + k * k
        self.skn = keep * self.skn + k * n
        self.snn = keep * self.snn + n * n

    def _extend(self, n: int, k: int) -> None:
        run = self.run
        run += (self.m_first, n, k, 1)
        if len(run) > 4 * RUN_MINUTES:
            run[1], run[2], run[3] = run[1] + run[5], run[2] + run[6], run[3] + run[7]
            del run[4:8]

    def targets(self) -> tuple[float | None, float | None]:
        """The shares the upward and downward tests look for (None: that direction is off).

        p1 = max(p0 · ratio_above, p0 + min_delta) upwards and
        min(p0 · ratio_below, p0 − min_delta) downwards, the ratio taken on
        the odds: the same as on the share while it is small, and near 1 it
        scales the complement instead (a share of 0.9 cannot triple).
        """
        p0, d = self.baseline_share, self.min_delta
        up = down = None
        if self.ratio_above is not None:
            up = min(max(_odds_times(p0, self.ratio_above), p0 + d), 1.0 - 1e-6)
        if self.ratio_below is not None:
            down = min(_odds_times(p0, self.ratio_below), p0 - d)
            down = down if down > 0 else None
        return up, down

    def _onset(self, direction: int) -> tuple[float, int, int, int]:
        """Where in the run the change most likely began: (onset ts, trials, hits, minutes).

        The maximum-likelihood change point: the suffix of the run whose own
        share explains it best against p0, in the run's direction.
        """
        p0, rho, run = self.baseline_share, self.rho, self.run
        best: tuple[float, int, int, int] = (run[-4], int(run[-3]), int(run[-2]), int(run[-1]))
        best_score = -math.inf
        n = k = m = 0
        for i in range(len(run) - 4, -4, -4):
            n, k, m = n + int(run[i + 1]), k + int(run[i + 2]), m + int(run[i + 3])
            if direction * (k / n - p0) <= 0:
                continue
            score = _llr(k, n, k / n, p0) / (1.0 + (n / m - 1.0) * rho)
            if score > best_score:
                best, best_score = (run[i], n, k, m), score
        return best

    def _maybe_shift(self, direction: int, ts: float) -> None:
        onset, n, k, minutes = self._onset(direction)
        p0 = self.baseline_share
        phi = 1.0 + (n / minutes - 1.0) * self.rho
        # The run that crossed h overstates the effect, so judge it at its confidence bound.
        bound = _wilson(k / phi, n / phi, -direction * self.z)
        if self._material(direction, k / n, p0, 1.0) and not self._material(direction, bound, p0, 1.0):
            return  # large enough, not yet sure enough: the next minutes will tell
        if self._material(direction, bound, p0, 1.0):
            self.phase = SHIFTED
            self.shift_dir, self.shift_onset, self.shift_n, self.shift_k = direction, onset, n, k
            self.hs, self.ns, self.s_back, self.shifted_at = float(k), float(n), 0.0, ts
        else:
            # Significant but too small to matter: let the baseline absorb it.
            self._set_baseline((self.sk + k) / (self.sn + n))
            self._reset_cusum()

    def _material(self, direction: int, share: float, p0: float, power: float) -> bool:
        """Is ``share`` far enough from p0, by min_delta and by min_ratio (both raised to ``power``)?"""
        if direction > 0:
            delta, factor = share - p0, max(share / p0, (1 - p0) / max(1 - share, 1e-12))
        else:
            delta, factor = p0 - share, max(p0 / max(share, 1e-12), (1 - share) / (1 - p0))
        return delta >= self.min_delta * power and factor >= self.min_ratio**power

    def _track_shift(self, k: int, n: int, p0: float) -> None:
        """Follow the shifted share; return to watching once the evidence says it is gone."""
        self.shift_n += n
        self.shift_k += k
        self.hs = TRACK_DECAY * self.hs + k
        self.ns = TRACK_DECAY * self.ns + n
        share = min(max(self.hs / self.ns, 1e-9), 1 - 1e-9)
        if not self._material(self.shift_dir, share, p0, 0.5):
            self._end_shift()
            return
        # LLR of "back at baseline" against "still at the shift's share since its onset" (a fixed
        # alternative: one that followed the data would chase the return instead of seeing it).
        since = min(max(self.shift_k / self.shift_n, 1e-9), 1 - 1e-9)
        self.s_back = max(0.0, self.s_back + _bb_llr(k, n, p0, since, self.rho))
        if self.s_back >= self.h:
            self._end_shift()

    def _end_shift(self) -> None:
        self.phase = WATCHING
        self._reset_cusum()

    def _reset_cusum(self) -> None:
        self.s_up = self.s_dn = 0.0
        self.run = []

    def _set_baseline(self, p: float) -> None:
        """Move p0 to ``p`` keeping the sums' weight and the learned ρ."""
        rho, sn, snn = self.rho, self.sn, self.snn
        self.sk, self.skn = p * sn, p * snn
        self.skk = p * p * snn + p * (1 - p) * (sn + rho * (snn - sn))

    def rebaseline(self, ts: float) -> None:
        """Accept the shifted share as the new normal (a change that is here to stay)."""
        if self.phase == SHIFTED:
            self._set_baseline(self.hs / self.ns)
            self._end_shift()

    # -- queries -------------------------------------------------------------
    @property
    def baseline_share(self) -> float:
        """p0, kept off 0 and 1 by half a trial so that a likelihood ratio is always finite."""
        if self.sn <= 1:
            return 0.5
        return min(max(self.sk, 0.5), self.sn - 0.5) / self.sn

    @property
    def rho(self) -> float:
        """Learned intra-minute correlation of hits (0: binomial; → 1: whole minutes hit together)."""
        return overdispersion(self.sk, self.sn, self.skk, self.skn, self.snn)

    def score(self) -> float:
        """Evidence of a change as a fraction of the threshold; ≥ 1 only in an alarm."""
        if self.phase == SHIFTED:
            return max(1.0, (self.h - self.s_back) / self.h)
        return min(max(self.s_up, self.s_dn) / self.h, BELOW_ALARM)

    def shift(self) -> ShareShift | None:
        """The current shift, if the model is in one."""
        if self.phase != SHIFTED:
            return None
        return ShareShift(
            direction=self.shift_dir,
            onset_ts=self.shift_onset,
            observed_share=self.hs / self.ns,
            baseline_share=self.baseline_share,
            trials=self.shift_n,
            hits=self.shift_k,
        )

    # -- state ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain, versioned state: safe to keep in a changelog, never pickled."""
        return slots_state(self, STATE_VERSION)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ProportionShift:
        return restore_slots(cls, state, STATE_VERSION)


def overdispersion(sk: float, sn: float, skk: float, skn: float, snn: float) -> float:
    """Beta-binomial ρ by moments from sums over minutes of k, n, k², k·n, n².

    Var(k | n) = n·p(1 − p)·(1 + (n − 1)ρ), so with p = Σk / Σn,
    ρ = (Σ(k − np)² − p(1 − p)Σn) / (p(1 − p)·Σn(n − 1)), clamped to [0, 1].

    >>> overdispersion(10, 100, 10, 100, 1000)   # ten minutes of 1 hit in 10: too regular
    0.0
    >>> overdispersion(10, 100, 100, 100, 1000)  # one minute of 10 in 10, nine of none: capped
    0.95
    """
    if sn <= 0 or snn <= sn:
        return 0.0
    p = sk / sn
    pq = p * (1 - p)
    if pq <= 0:
        return 0.0
    excess = skk - 2 * p * skn + p * p * snn - pq * sn
    return min(max(excess / (pq * (snn - sn)), 0.0), RHO_MAX)


def _llr(k: float, n: float, p1: float, p0: float) -> float:
    """Binomial log-likelihood ratio of share p1 against p0 for k hits in n trials."""
    hit = k * math.log(p1 / p0) if k > 0 else 0.0
    return hit + ((n - k) * math.log((1 - p1) / (1 - p0)) if n > k else 0.0)


def _bb_llr(k: float, n: float, p1: float, p0: float, rho: float) -> float:
    """Beta-binomial log-likelihood ratio of share p1 against p0, at intra-minute correlation ρ.

    Where hits come in clumps a lopsided minute is less surprising under
    either share, so one minute can only say so much however busy it is.
    """
    if rho < 1e-9:
        return _llr(k, n, p1, p0)
    c = (1.0 - rho) / rho
    return _log_bb(k, n, p1 * c, (1 - p1) * c) - _log_bb(k, n, p0 * c, (1 - p0) * c)


def _log_bb(k: float, n: float, a: float, b: float) -> float:
    """log P(k | n) under a beta-binomial with Beta(a, b), without the binomial coefficient."""
    lg = math.lgamma
    return lg(k + a) + lg(n - k + b) - lg(n + a + b) - lg(a) - lg(b) + lg(a + b)


def _odds_times(p: float, r: float) -> float:
    odds = r * p / (1.0 - p)
    return odds / (1.0 + odds)


def _wilson(k: float, n: float, z: float) -> float:
    """Wilson score bound for a share: lower for z < 0, upper for z > 0."""
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre + z * half
