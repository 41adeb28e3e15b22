"""Injectable incidents: what each kind is, its defaults, and the ``KIND@START…`` syntax.

Each kind is one of the failures spendwatch exists to catch, and moves one
canonical metric (DESIGN.md, Contract 2) on the series it targets, inside its
window only; the ground truth records that metric so a scorer can match
alerts to incidents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from detector.simulate.timeline import rfc3339, to_ms


@dataclass(frozen=True, slots=True)
class Kind:
    """What an incident kind moves, and what it does when the spec says nothing more.

    >>> KINDS["retry_storm"].metric, KINDS["retry_storm"].admits(1.5), KINDS["gpu_idle"].bounds()
    ('retry_rate', False, '>= 0 and <= 1')
    """

    metric: str
    magnitude: float
    duration: timedelta | None  # None: lasts to the end of the simulation
    target: Mapping[str, str]
    meaning: str  # what the magnitude is, for error messages
    low: float  # magnitude must be > low (>= low when low_closed) …
    high: float | None = None  # … and <= high
    low_closed: bool = False

    def admits(self, magnitude: float) -> bool:
        above = magnitude >= self.low if self.low_closed else magnitude > self.low
        return above and (self.high is None or magnitude <= self.high)

    def bounds(self) -> str:
        low = f"{'>=' if self.low_closed else '>'} {self.low:g}"
        return low if self.high is None else f"{low} and <= {self.high:g}"


def _hours(n: float) -> timedelta:
    return timedelta(hours=n)


_SUMMARIZE = {"team": "search", "feature": "summarize", "model": "gpt-4o-mini"}
KINDS: dict[str, Kind] = {
    "prompt_doubling": Kind("input_tokens_per_request", 2.0, _hours(6), _SUMMARIZE,
                            "factor on input tokens", 0.0),
    "output_explosion": Kind("output_tokens_per_request", 4.0, _hours(3),
                             {"team": "support", "feature": "reply-draft", "model": "gpt-4.1"},
                             "factor on output tokens", 0.0),
    "tier_shift": Kind("tier_mix", 0.5, _hours(12), {"team": "search", "feature": "summarize"},
                       "share of the feature's traffic sent to its premium model", 0.0, 1.0),
    "retry_storm": Kind("retry_rate", 0.4, _hours(2),
                        {"team": "search", "feature": "query-rewrite", "model": "gpt-4.1-mini"},
                        "share of requests retried", 0.0, 1.0),
    "error_spike": Kind("error_rate", 0.2, _hours(1),
                        {"team": "search", "feature": "rerank-embed", "model": "text-embedding-3-small"},
                        "share of requests that fail", 0.0, 1.0),
    "cache_break": Kind("cache_hit_rate", 1.0, _hours(12),
                        {"team": "search", "feature": "answer", "model": "claude-sonnet-4-5"},
                        "share of cached prompt tokens lost", 0.0, 1.0),
    "traffic_runaway": Kind("request_rate", 5.0, _hours(2),
                            {"team": "research", "feature": "agent-planner", "model": "o3"},
                            "factor on request volume", 1.0),
    "gpu_idle": Kind("gpu_utilization", 0.03, _hours(8), {"cluster": "inference", "node": "inf-h100-2"},
                     "utilisation the GPUs fall to", 0.0, 1.0, low_closed=True),
    "slow_creep": Kind("input_tokens_per_request", 0.05, None,
                       {"team": "support", "feature": "chat", "model": "claude-haiku-4-5"},
                       "daily growth of input tokens", 0.0, 1.0),
}
INCIDENT_KINDS: tuple[str, ...] = tuple(sorted(KINDS))
TARGET_KEYS: tuple[str, ...] = ("team", "feature", "model", "product", "category", "provider",
                                "cluster", "node", "gpu", "gpu_model")

SYNTAX = "KIND@START[~DURATION][xMAGNITUDE][:key=value,...]"
EXAMPLE = "prompt_doubling@2d14h~3hx2.5:team=search,feature=summarize"
_SPAN = r"(?:\d+d)?(?:\d+h)?(?:\d+m)?"
_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})"
_SPEC = re.compile(
    rf"(?P<kind>[a-z_]+)@(?P<start>{_TIME}|{_SPAN})(?:~(?P<duration>{_SPAN}))?"
    r"(?:x(?P<magnitude>\d+(?:\.\d*)?|\.\d+))?(?::(?P<target>.*))?"
)
_SPAN_PARTS = re.compile(r"(\d+)([dhm])")
_UNIT = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class Incident:
    """One injected failure: ``kind`` on the series matching ``target``, from ``start`` to ``end``.

    ``end`` None lasts to the end of the simulation.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> inc = Incident("error_spike", DEFAULT_START, None, 0.3, {"team": "search"})
    >>> inc.metric, inc.matches({"team": "search", "feature": "answer"}), inc.matches({"team": "growth"})
    ('error_rate', True, False)
    """

    kind: str
    start: datetime
    end: datetime | None
    magnitude: float
    target: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = KINDS.get(self.kind)
        if spec is None:
            raise ValueError(f"unknown incident kind {self.kind!r}; valid kinds: {', '.join(INCIDENT_KINDS)}")
        to_ms(self.start)
        if self.end is not None and to_ms(self.end) <= to_ms(self.start):
            raise ValueError(f"{self.kind}: end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        if not spec.admits(self.magnitude):
            raise ValueError(
                f"{self.kind}: magnitude is the {spec.meaning} and must be {spec.bounds()}, got {self.magnitude}"
            )
        unknown = sorted(set(self.target) - set(TARGET_KEYS))
        if unknown:
            expected = ", ".join(TARGET_KEYS)
            raise ValueError(f"{self.kind}: unknown target label(s) {unknown}; expected some of {expected}")
        object.__setattr__(self, "target", dict(self.target))

    @property
    def metric(self) -> str:
        """The Contract 2 metric this incident primarily moves."""
        return KINDS[self.kind].metric

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.target.items() <= labels.items()

    def window_ms(self, sim_end_ms: int) -> tuple[int, int]:
        """[start, end) in epoch ms, an open end closed at the simulation's end."""
        end = sim_end_ms if self.end is None else min(to_ms(self.end), sim_end_ms)
        return to_ms(self.start), end

    def truth(self, sim_end_ms: int) -> dict[str, object]:
        start, end = self.window_ms(sim_end_ms)
        return {"kind": self.kind, "metric": self.metric, "labels": dict(self.target),
                "start": rfc3339(start), "end": rfc3339(end), "magnitude": self.magnitude}


def parse_incident(spec: str, sim_start: datetime) -> Incident:
    """An :class:`Incident` from the command-line form ``KIND@START[~DURATION][xMAGNITUDE][:k=v,…]``.

    START is an offset from ``sim_start`` (``2d14h``, ``36h``, ``3d9h30m``) or an
    RFC 3339 time; the rest falls back to the kind's defaults.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> inc = parse_incident("retry_storm@1d10h~90mx0.5:team=support,feature=chat", DEFAULT_START)
    >>> inc.start.isoformat(), inc.end.isoformat(), inc.magnitude, inc.target
    ('2026-11-17T10:00:00+00:00', '2026-11-17T11:30:00+00:00', 0.5, {'team': 'support', 'feature': 'chat'})
    >>> parse_incident("slow_creep@3d", DEFAULT_START).end is None
    True
    """
    found = _SPEC.fullmatch(spec.strip())
    if found is None:
        raise ValueError(f"bad incident {spec!r}: expected {SYNTAX}, e.g. {EXAMPLE}")
    kind = found["kind"]
    if kind not in KINDS:
        raise ValueError(f"bad incident {spec!r}: unknown kind {kind!r}; valid kinds: {', '.join(INCIDENT_KINDS)}")
    defaults = KINDS[kind]
    start = _start(found["start"], sim_start, spec)
    duration = defaults.duration if found["duration"] is None else _span(found["duration"], spec)
    magnitude = defaults.magnitude if found["magnitude"] is None else float(found["magnitude"])
    target = dict(defaults.target) if found["target"] is None else _target(found["target"], spec)
    try:
        return Incident(kind, start, None if duration is None else start + duration, magnitude, target)
    except ValueError as exc:
        raise ValueError(f"bad incident {spec!r}: {exc}") from exc


def _start(text: str, sim_start: datetime, spec: str) -> datetime:
    if "T" not in text:
        to_ms(sim_start)
        return sim_start + _span(text, spec)
    return datetime.fromisoformat(text)


def _span(text: str, spec: str) -> timedelta:
    parts = _SPAN_PARTS.findall(text)
    if not parts:
        raise ValueError(f"bad incident {spec!r}: empty time span; expected e.g. 2d14h, 36h or 90m ({SYNTAX})")
    return timedelta(**{_UNIT[unit]: int(n) for n, unit in parts})


def _target(text: str, spec: str) -> dict[str, str]:
    target: dict[str, str] = {}
    for pair in text.split(","):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"bad incident {spec!r}: target {pair!r} is not key=value ({SYNTAX}, e.g. {EXAMPLE})")
        target[key.strip()] = value.strip()
    return target
