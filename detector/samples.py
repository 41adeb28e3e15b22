"""The engine's GPU and usage-line series, kept by partition key.

Samples need none of what an LLM request's series has (no feature above
them, no per-minute sums), so the engine hands them here: each is priced
into the ledger, fed to its series' model and judged (a GPU with the rest of
its node, which pages together). They are kept by partition key because the
stream worker saves and restores state one key at a time, and a key's save
should read only its own series.
"""

from __future__ import annotations

from typing import Any

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine_state import group_key
from detector.events import GpuSample, UsageSample
from detector.ledger import SpendLedger
from detector.models.gpu_utilization import GpuUtilization
from detector.pricing import PriceTable
from detector.rules.ruleset import RuleSet
from detector.sample_watch import (
    USAGE_LABELS,
    SampleSeries,
    gpu_series,
    judge,
    judge_node,
    usage_series,
)


class SampleBook:
    """Every GPU and usage line seen, by partition key then name; a node's GPUs listed together.

    >>> from detector.events import GpuSample
    >>> book, ledger = SampleBook(PriceTable.packaged()), SpendLedger()
    >>> ev = GpuSample(ts=1.8e9, cluster="c", node="n1", gpu="0", utilization=0.9, gpu_model="h100")
    >>> key, series = book.observe(ev, ledger, None)
    >>> key, book.judge(key, series, ev.ts, Settings())
    ('gpu:c/n1', None)
    >>> sorted(book.export("gpu:c/n1"))
    ['0']
    """

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self.by_key: dict[str, dict[str, SampleSeries]] = {}
        self.nodes: dict[str, list[SampleSeries]] = {}  # a node's GPUs, which page together

    def __contains__(self, key: str) -> bool:
        return key in self.by_key

    def observe(self, ev: GpuSample | UsageSample, ledger: SpendLedger,
                rules: RuleSet | None) -> tuple[str, SampleSeries]:
        """Price a sample into ``ledger`` and feed it to its series: the partition key, and the series."""
        if type(ev) is GpuSample:
            hourly = ev.hourly_cost_usd
            if hourly is None and ev.gpu_model:
                hourly = self.prices.gpu_hourly(ev.gpu_model)
            ledger.add_gpu(ev, hourly)
            key = group_key(ev)
            group = self.by_key.setdefault(key, {})
            s = group.get(ev.gpu)
            if s is None:
                labels = {k: v for k, v in (("cluster", ev.cluster), ("node", ev.node), ("gpu", ev.gpu),
                                            ("gpu_model", ev.gpu_model), ("team", ev.team)) if v}
                s = group[ev.gpu] = gpu_series(labels, hourly, rules)
                self.nodes.setdefault(key, []).append(s)
            s.model.update(ev.utilization, ev.ts, hourly_cost_usd=hourly)
            return key, s
        ledger.add_usage(ev)
        key = group_key(ev)
        labels = {k: v for k in USAGE_LABELS if (v := getattr(ev, k))}
        name = "\x1f".join(f"{k}={v}" for k, v in labels.items())
        group = self.by_key.setdefault(key, {})
        s = group.get(name)
        if s is None:
            s = group[name] = usage_series(labels, ev.metric, ev.unit)
        s.model.update(ev.value, ev.ts)
        return key, s

    def judge(self, key: str, s: SampleSeries, ts: float, settings: Settings) -> Anomaly | None:
        """The record a series' latest sample caused, if any: a GPU is judged with the rest of its node."""
        if type(s.model) is GpuUtilization:
            return judge_node(self.nodes[key], s, ts, settings)
        return judge(s, ts, settings)

    def export(self, key: str) -> dict[str, Any]:
        """JSON-safe state of a partition key's sample series, by name."""
        return {name: s.to_state() for name, s in self.by_key.get(key, {}).items()}

    def restore(self, key: str, saved: dict[str, Any]) -> None:
        """Take a partition key's sample series from :meth:`export`'s dict, beside any it holds."""
        for name, state in saved.items():
            s = self.by_key.setdefault(key, {})[name] = SampleSeries.from_state(state)
            if type(s.model) is GpuUtilization:
                self.nodes.setdefault(key, []).append(s)

    def drop(self, key: str) -> None:
        """Forget a partition key's sample series."""
        self.by_key.pop(key, None)
        self.nodes.pop(key, None)
