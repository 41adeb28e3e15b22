"""Run one simulated week of the suite: simulate, replay through spendwatch, run the 3-sigma baseline,
and keep only what scoring needs (so a worker process hands back little).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.baseline3sigma import three_sigma_alerts
from bench.minutes import MinuteSums
from bench.observation import observe
from bench.scenarios import DAYS, Planned, Week
from bench.scoring import GRACE_S, Alert, Window
from detector.config import Settings
from detector.simulate import DEFAULT_START, simulate
from detector.simulate.timeline import to_ms


@dataclass(frozen=True, slots=True)
class Meta:
    """What the tables group an incident by."""

    kind: str
    size: str
    magnitude: float
    peak_rate: float | None
    week: str


@dataclass
class WeekResult:
    """One week, ready to score: firings of both detectors and each window's evidence."""

    name: str
    seed: int
    clean: bool
    windows: list[Window]
    meta: dict[str, Meta]
    spendwatch: list[Alert]
    baseline: list[Alert]
    requests: dict[str, tuple[np.ndarray, np.ndarray]]  # window key → (ts, input tokens), sorted by ts
    spend: dict[str, np.ndarray]  # window key → $ per minute on its target, from onset to end + grace
    series: int
    events: int
    rejected: int
    seconds: float


def window_of(week: Week, planned: Planned) -> Window:
    """The scorer's view of a planned incident; its key names week, kind, size and target.

    An open-ended incident (a slow creep) ends with the simulated week.
    """
    inc = planned.incident
    end_ms = to_ms(DEFAULT_START) + DAYS * 86_400_000 if inc.end is None else to_ms(inc.end)
    where = ",".join(f"{k}={v}" for k, v in inc.target.items())
    key = f"s{week.seed}w{week.index}:{inc.kind}:{planned.size}:{where}"
    return Window(key, inc.kind, inc.metric, inc.magnitude, dict(inc.target), to_ms(inc.start) / 1000.0,
                  end_ms / 1000.0)


def run_week(week: Week, counterfactual_for: Sequence[Window] = (), settings: Settings | None = None) -> WeekResult:
    """Simulate ``week``, detect with both detectors, and keep what scoring needs.

    A clean week also prices ``counterfactual_for``, the windows of its seed's
    incident weeks: the simulator draws the same numbers with and without an
    incident, so the clean week is exactly what those weeks would have cost.
    """
    started = time.perf_counter()
    settings = settings or Settings()
    sim = simulate(days=DAYS, seed=week.seed, incidents=week.incidents())
    windows = [window_of(week, p) for p in week.planned]
    meta = {w.key: Meta(p.incident.kind, p.size, p.incident.magnitude, p.peak_rate, week.name)
            for w, p in zip(windows, week.planned, strict=True)}
    start_s = sim.timeline.start_ms / 1000.0
    seen = observe(sim.lines(), windows, start_s, DAYS * 1440, settings)
    priced = windows if week.planned else counterfactual_for
    spend = {w.key: target_spend(seen.sums, w) for w in priced}
    series = len(seen.sums.llm_keys) + len(seen.sums.gpu_keys) + len(sim.world.usage_lines)
    return WeekResult(
        name=week.name, seed=week.seed, clean=not week.planned, windows=windows, meta=meta,
        spendwatch=seen.firings, baseline=three_sigma_alerts(seen.sums, settings),
        requests={k: t.arrays() for k, t in seen.targets.items()}, spend=spend, series=series,
        events=seen.events, rejected=seen.rejected, seconds=time.perf_counter() - started,
    )


def target_spend(sums: MinuteSums, window: Window) -> np.ndarray:
    """$ per minute on the window's target from its onset minute to the end of its grace.

    LLM targets count what their requests cost; GPU targets count what their
    idle GPUs cost (paid for, doing nothing).
    """
    lo = int((window.start_s - sums.start_s) // 60)
    hi = min(sums.minutes, int((window.end_s + GRACE_S - sums.start_s) // 60) + 1)
    total = np.zeros(max(0, hi - lo))
    target = window.target
    if "node" in target:
        for key in sums.gpu_keys:
            if _agrees({"cluster": key[0], "node": key[1]}, target):
                total += sums.gpu(key, "idle_usd")[lo:hi]
        return total
    for key in sums.llm_keys:
        if _agrees(dict(zip(("team", "feature", "model"), key, strict=True)), target):
            total += sums.llm(key, "cost_usd")[lo:hi]
    return total


def _agrees(labels: Mapping[str, str | None], target: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in target.items())
