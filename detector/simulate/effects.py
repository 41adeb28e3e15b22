"""What each incident does to the requests it touches, as per-request factors, shares and masks.

An incident never draws random numbers of its own here: it rescales or
re-thresholds numbers already drawn for every request, which is what keeps a
run with an incident identical to one without it outside the window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detector.simulate.catalog import Catalog
from detector.simulate.incidents import Incident
from detector.simulate.timeline import DAY_MS, Timeline
from detector.simulate.world import Feature

_ELSEWHERE = ("tier_shift", "traffic_runaway", "gpu_idle")  # routing, extra traffic and GPUs handle these


def shifts(inc: Incident, feature: Feature) -> bool:
    """Does a tier_shift apply to ``feature``? Its ``model`` label names where traffic goes, not a filter.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> f = Feature("search", "summarize", "gpt-4o-mini", 40, 3000, 0.6, 250, fallback="gpt-4o")
    >>> shifts(Incident("tier_shift", DEFAULT_START, None, 0.5, {"feature": "summarize", "model": "o3"}), f)
    True
    """
    where = {k: v for k, v in inc.target.items() if k != "model"}
    return where.items() <= feature.labels(feature.model).items()


class Effects:
    """The incidents active on each request of one stream of a feature.

    >>> from datetime import timedelta
    >>> from detector.simulate.timeline import DEFAULT_START
    >>> f, cat, day = Feature("t", "f", "gpt-4o-mini", 10, 500, 0.5, 50), Catalog(), Timeline(DEFAULT_START, 1)
    >>> series = np.array([cat.series_id(f, "gpt-4o-mini")] * 2)
    >>> ts = np.array([day.start_ms, day.start_ms + 7_200_000])  # midnight and 02:00
    >>> inc = Incident("prompt_doubling", DEFAULT_START + timedelta(hours=1), None, 2.0, {"feature": "f"})
    >>> Effects(day, [inc], cat, ts, series).input_factor().tolist()
    [1.0, 2.0]
    """

    def __init__(self, timeline: Timeline, incidents: Sequence[Incident], catalog: Catalog,
                 ts_ms: np.ndarray, series: np.ndarray) -> None:
        self._end_ms, self._ts = timeline.end_ms, ts_ms
        self._active: list[tuple[Incident, np.ndarray]] = []
        for inc in incidents:
            if inc.kind in _ELSEWHERE:
                continue
            start, end = inc.window_ms(timeline.end_ms)
            mask = catalog.matching(inc.target)[series] & (ts_ms >= start) & (ts_ms < end)
            if mask.any():
                self._active.append((inc, mask))

    def window(self, kind: str) -> np.ndarray:
        """Requests inside any window of ``kind``."""
        inside = np.zeros(len(self._ts), dtype=bool)
        for _, mask in self._of(kind):
            inside |= mask
        return inside

    def input_factor(self) -> np.ndarray:
        """Prompt growth: a doubling at once, a creep compounding daily from its onset."""
        factor = self.factor("prompt_doubling")
        for inc, mask in self._of("slow_creep"):
            days = (self._ts[mask] - inc.window_ms(self._end_ms)[0]) / DAY_MS
            factor[mask] *= (1.0 + inc.magnitude) ** days
        return factor

    def factor(self, kind: str) -> np.ndarray:
        """The product of the magnitudes of ``kind`` over each request (1 outside)."""
        factor = np.ones(len(self._ts))
        for inc, mask in self._of(kind):
            factor[mask] *= inc.magnitude
        return factor

    def remaining(self, kind: str) -> np.ndarray:
        """What is left after losing a ``magnitude`` share in each window of ``kind``."""
        left = np.ones(len(self._ts))
        for inc, mask in self._of(kind):
            left[mask] *= 1.0 - inc.magnitude
        return left

    def share(self, kind: str, baseline: float) -> np.ndarray:
        """A probability per request: the incident's magnitude inside its window, else ``baseline``."""
        share = np.full(len(self._ts), baseline)
        for inc, mask in self._of(kind):
            share[mask] = inc.magnitude
        return share

    def _of(self, kind: str) -> list[tuple[Incident, np.ndarray]]:
        return [(inc, mask) for inc, mask in self._active if inc.kind == kind]
