"""The scenario suite: every incident kind at two magnitudes on series from ~0.5 to ~60 requests/min,
packed into simulated weeks.

Targets come from the default world (detector/simulate/world.py); the number
after each is the series' peak requests per minute. Onsets fall on weekday
and Saturday working hours (09:00–17:00 UTC, after a day of warm-up), where a
series runs near its peak rate, shifted by a few minutes per seed so that no
two seeds share an onset minute.

Several incidents share one week when they cannot be confused: two
incidents of the same feature (or GPU node) never overlap in time (their windows plus the
grace and two hours of calm after), and a slow creep, which lasts to the end
of the week, only keeps others off its own series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from detector.simulate import DEFAULT_START, Incident
from detector.simulate.incidents import KINDS

DAYS = 7
ONSET_DAYS = (1, 2, 3, 4, 5)  # Tuesday to Saturday of the simulated week
ONSET_HOURS = (9, 11, 13, 15, 17)
CALM_AFTER = timedelta(hours=2)
GRACE = timedelta(minutes=30)


def _s(team: str, feature: str, model: str | None = None) -> dict[str, str]:
    target = {"team": team, "feature": feature}
    if model is not None:
        target["model"] = model
    return target


# kind → (larger magnitude, smaller magnitude), the larger one first.
MAGNITUDES: dict[str, tuple[float, float]] = {
    "prompt_doubling": (2.0, 1.5),
    "output_explosion": (4.0, 2.0),
    "tier_shift": (0.5, 0.25),
    "retry_storm": (0.4, 0.2),
    "error_spike": (0.2, 0.1),
    "cache_break": (1.0, 0.5),
    "traffic_runaway": (5.0, 2.0),
    "gpu_idle": (0.03, 0.15),  # utilisation the GPUs fall to: lower is the larger incident
    "slow_creep": (0.05, 0.03),
}

# kind → [(target, peak requests/min of the target; None for GPUs)], from the slowest to the busiest.
TARGETS: dict[str, list[tuple[dict[str, str], float | None]]] = {
    "prompt_doubling": [(_s("growth", "seo-audit", "mistral-large-latest"), 0.5),
                        (_s("support", "reply-draft", "gpt-4.1"), 5.0),
                        (_s("search", "answer", "claude-sonnet-4-5"), 12.0),
                        (_s("search", "query-rewrite", "gpt-4.1-mini"), 60.0)],
    "output_explosion": [(_s("research", "agent-planner", "o3"), 1.5),
                         (_s("growth", "email-copy", "gemini-2.5-flash"), 5.8),
                         (_s("search", "summarize", "gpt-4o-mini"), 38.8)],
    "tier_shift": [(_s("platform", "code-review"), 2.0),
                   (_s("growth", "email-copy"), 6.0),
                   (_s("search", "summarize"), 40.0)],
    "retry_storm": [(_s("growth", "ad-variants", "deepseek-chat"), 3.0),
                    (_s("support", "ticket-triage", "gpt-4o-mini"), 8.0),
                    (_s("search", "query-rewrite", "gpt-4.1-mini"), 60.0)],
    "error_spike": [(_s("research", "paper-qa", "gemini-2.5-pro"), 1.0),
                    (_s("support", "kb-embed", "text-embedding-3-small"), 6.0),
                    (_s("search", "rerank-embed", "text-embedding-3-small"), 55.0)],
    "cache_break": [(_s("platform", "sql-assist", "gpt-4.1"), 3.0),
                    (_s("search", "answer", "claude-sonnet-4-5"), 12.0),
                    (_s("search", "summarize", "gpt-4o-mini"), 38.8)],
    "traffic_runaway": [(_s("research", "agent-planner", "o3"), 1.5),
                        (_s("support", "ticket-triage", "gpt-4o-mini"), 8.0),
                        (_s("search", "rerank-embed", "text-embedding-3-small"), 55.0)],
    "gpu_idle": [({"cluster": "inference", "node": "inf-h100-2"}, None),
                 ({"cluster": "training", "node": "train-a100-1"}, None)],
    "slow_creep": [(_s("growth", "product-desc", "gpt-4o-mini"), 3.9),
                   (_s("support", "chat", "claude-haiku-4-5"), 23.8)],
}
_TEAM_OF_NODE = {"inf-h100-2": "platform", "train-a100-1": "research"}
QUICK_TARGETS = {kind: [targets[0], targets[-1]] for kind, targets in TARGETS.items()}  # the slowest and the busiest


@dataclass(frozen=True, slots=True)
class Planned:
    """One incident of the suite, with what the tables group it by."""

    incident: Incident
    size: str  # "larger" or "smaller"
    peak_rate: float | None

    @property
    def place(self) -> tuple[str, str]:
        """The (team, feature) it disturbs; a GPU node counts as a feature of its team."""
        target = self.incident.target
        if "node" in target:
            return _TEAM_OF_NODE[target["node"]], target["node"]
        return target["team"], target["feature"]

    @property
    def series(self) -> tuple[str, ...]:
        return tuple(sorted(f"{k}={v}" for k, v in self.incident.target.items()))


@dataclass
class Week:
    """One simulated week: a seed and the incidents injected into it (none: a clean week)."""

    seed: int
    index: int
    planned: list[Planned] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"seed {self.seed} " + ("clean" if not self.planned else f"week {self.index}")

    def incidents(self) -> list[Incident]:
        return [p.incident for p in self.planned]


Wanted = tuple[str, str, dict[str, str], float | None, float]  # kind, size, target, peak rate, magnitude


def suite(seeds: Sequence[int], targets: Mapping[str, list[tuple[dict[str, str], float | None]]] = TARGETS,
          both_sizes: bool = True, start: datetime = DEFAULT_START) -> list[Week]:
    """Per seed: a clean week, then as few incident weeks as hold every (kind, magnitude, target).

    A slow creep lasts to the end of its week, so each of its targets takes
    one of the two magnitudes per seed, in turn; with ``both_sizes`` off
    every kind is run that way (a quicker, thinner suite).

    >>> weeks = suite([1], {"error_spike": [({"team": "a", "feature": "f"}, 1.0)]})
    >>> [(w.name, len(w.planned)) for w in weeks]
    [('seed 1 clean', 0), ('seed 1 week 1', 2)]
    >>> [p.incident.start.isoformat() for p in weeks[1].planned]
    ['2026-11-17T09:18:00+00:00', '2026-11-17T15:18:00+00:00']
    """
    weeks: list[Week] = []
    for seed in seeds:
        weeks.append(Week(seed, 0))
        weeks.extend(_pack(seed, _wanted(targets, seed, both_sizes), start))
    return weeks


def _wanted(targets: Mapping[str, list[tuple[dict[str, str], float | None]]], seed: int,
            both_sizes: bool) -> list[Wanted]:
    wanted: list[Wanted] = []
    for kind, options in targets.items():
        sizes = list(zip(("larger", "smaller"), MAGNITUDES[kind], strict=True))
        for i, (target, rate) in enumerate(options):
            taken = sizes if both_sizes and KINDS[kind].duration is not None else [sizes[(i + seed) % 2]]
            wanted.extend((kind, size, target, rate, magnitude) for size, magnitude in taken)
    # longest first, so short incidents fill the gaps
    return sorted(wanted, key=lambda w: -(KINDS[w[0]].duration or timedelta(days=DAYS)).total_seconds())


def _pack(seed: int, wanted: list, start: datetime) -> list[Week]:
    weeks: list[Week] = []
    jitter = timedelta(minutes=1 + (seed * 17) % 50)
    onsets = [start + timedelta(days=d, hours=h) + jitter for d in ONSET_DAYS for h in ONSET_HOURS]
    for kind, size, target, rate, magnitude in wanted:
        duration = KINDS[kind].duration
        for week in [*weeks, None]:
            if week is None:
                week = Week(seed, len(weeks) + 1)
                weeks.append(week)
            placed = _place(week, kind, size, target, rate, magnitude, duration, onsets, start)
            if placed:
                break
    return weeks


def _place(week: Week, kind: str, size: str, target: dict, rate: float | None, magnitude: float,
           duration: timedelta | None, onsets: list[datetime], start: datetime) -> bool:
    week_end = start + timedelta(days=DAYS)
    for onset in onsets:
        end = None if duration is None else onset + duration
        if end is not None and end + GRACE > week_end:
            continue
        candidate = Planned(Incident(kind, onset, end, magnitude, target), size, rate)
        if not any(_conflict(candidate, other, week_end) for other in week.planned):
            week.planned.append(candidate)
            return True
    return False


def _conflict(a: Planned, b: Planned, week_end: datetime) -> bool:
    open_ended = a.incident.end is None or b.incident.end is None
    if open_ended:
        return a.series == b.series
    if a.place != b.place:
        return False
    return _busy(a, week_end)[0] < _busy(b, week_end)[1] and _busy(b, week_end)[0] < _busy(a, week_end)[1]


def _busy(p: Planned, week_end: datetime) -> tuple[datetime, datetime]:
    end = p.incident.end or week_end
    return p.incident.start - CALM_AFTER, end + GRACE + CALM_AFTER
