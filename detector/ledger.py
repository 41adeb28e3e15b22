"""Where the money went: spend totals by cost category and team.

Kept beside detection because the same pass over the events prices them;
the replay summary and the demo print it, and the digest will read the
same numbers from the history store.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from detector.events import GpuSample, LlmRequest, UsageSample

GPU_GAP_CAP_S = 300.0  # a silent GPU is not billed past five minutes of silence


@dataclass(slots=True)
class Line:
    """One ledger line: what a (category, team) spent."""

    requests: int = 0
    cost_usd: float = 0.0
    gpu_hours: float = 0.0
    unpriced_requests: int = 0


@dataclass
class SpendLedger:
    """Spend by (category, team), with unpriced requests counted, never $0.

    >>> ledger = SpendLedger()
    >>> ledger.add_request(LlmRequest(ts=0, model="m", input_tokens=1, output_tokens=1, team="a"), 0.25)
    >>> ledger.add_request(LlmRequest(ts=1, model="x", input_tokens=1, output_tokens=1, team="a"), None)
    >>> ledger.lines[("hosted_inference", "a")].cost_usd, ledger.unpriced["x"]
    (0.25, 1)
    """

    lines: dict[tuple[str, str], Line] = field(default_factory=dict)
    unpriced: Counter[str] = field(default_factory=Counter)
    _gpu_last: dict[tuple[str | None, str, str], float] = field(default_factory=dict)

    def _line(self, category: str, team: str | None) -> Line:
        key = (category, team or "(untagged)")
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = Line()
        return line

    def add_request(self, ev: LlmRequest, cost: float | None) -> None:
        self.add_requests(ev.category, ev.team, ev.model, 1, cost or 0.0, 0 if cost is not None else 1)

    def add_requests(
        self, category: str, team: str | None, model: str, requests: int, cost: float, unpriced: int
    ) -> None:
        """Book several requests of one model at once (``unpriced`` of them had no price)."""
        line = self._line(category, team)
        line.requests += requests
        line.cost_usd += cost
        if unpriced:
            line.unpriced_requests += unpriced
            self.unpriced[model] += unpriced

    def add_gpu(self, ev: GpuSample, hourly_usd: float | None) -> None:
        """Bill the GPU for the time since its previous sample (capped)."""
        key = (ev.cluster, ev.node, ev.gpu)
        last = self._gpu_last.get(key)
        self._gpu_last[key] = ev.ts if last is None else max(last, ev.ts)
        if last is None or ev.ts <= last:
            return
        hours = min(ev.ts - last, GPU_GAP_CAP_S) / 3600.0
        line = self._line(ev.category, ev.team)
        line.gpu_hours += hours
        if hourly_usd is None:
            self.unpriced[f"gpu/{ev.gpu_model}"] += 1
        else:
            line.cost_usd += hours * hourly_usd

    def add_usage(self, ev: UsageSample) -> None:
        if ev.unit.lower() == "usd":
            self._line(ev.category, ev.team).cost_usd += ev.value

    def total(self) -> float:
        return sum(line.cost_usd for line in self.lines.values())

    def by_category(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (category, _), line in self.lines.items():
            out[category] = out.get(category, 0.0) + line.cost_usd
        return out

    def by_team(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (_, team), line in self.lines.items():
            out[team] = out.get(team, 0.0) + line.cost_usd
        return out
