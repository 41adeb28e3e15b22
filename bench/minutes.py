"""Per-series, per-minute sums of a stream of events: the raw material of the 3-sigma baseline
and of the dollars an incident leaked.

LLM series are (team, feature, model), GPU series are (cluster, node); for
each minute of a fixed span the sums below are kept in numpy arrays, filled a
chunk of events at a time so a week of two million events costs seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.events import Event, GpuSample, LlmRequest
from detector.pricing import PriceTable

LLM_FIELDS: tuple[str, ...] = ("requests", "input_tokens", "output_tokens", "cached_tokens",
                               "retries", "errors", "cost_usd")
GPU_FIELDS: tuple[str, ...] = ("samples", "utilization", "idle_usd")


@dataclass(frozen=True, slots=True)
class GpuNodeInfo:
    """What pricing a node's idle time needs: its GPUs and what one costs per hour."""

    gpus: frozenset[str]
    hourly_usd: float


class MinuteSums:
    """Sums per series and minute over ``[start_s, start_s + minutes * 60)``; events outside are ignored.

    >>> sums = MinuteSums(PriceTable.packaged(), start_s=0.0, minutes=10)
    >>> ev = LlmRequest(ts=61.0, model="gpt-4o", input_tokens=1000, output_tokens=100, team="a", attempt=2)
    >>> sums.add([ev, LlmRequest(ts=62.0, model="gpt-4o", input_tokens=500, output_tokens=50, team="a")])
    >>> key = ("a", None, "gpt-4o")
    >>> sums.llm(key, "requests")[:3].tolist(), float(sums.llm(key, "retries")[1]), float(sums.llm(key, "input_tokens")[1])
    ([0.0, 2.0, 0.0], 1.0, 1500.0)
    """

    def __init__(self, prices: PriceTable, start_s: float, minutes: int) -> None:
        if minutes <= 0:
            raise ValueError(f"minutes must be positive, got {minutes}")
        self.prices, self.start_s, self.minutes = prices, start_s, minutes
        self._llm: dict[tuple[str | None, ...], np.ndarray] = {}  # key → (fields, minutes)
        self._gpu: dict[tuple[str | None, str], np.ndarray] = {}
        self.gpu_nodes: dict[tuple[str | None, str], GpuNodeInfo] = {}
        self.unpriced = 0

    @property
    def llm_keys(self) -> list[tuple[str | None, ...]]:
        return list(self._llm)

    @property
    def gpu_keys(self) -> list[tuple[str | None, str]]:
        return list(self._gpu)

    def llm(self, key: tuple[str | None, ...], name: str) -> np.ndarray:
        return self._llm[key][LLM_FIELDS.index(name)]

    def gpu(self, key: tuple[str | None, str], name: str) -> np.ndarray:
        return self._gpu[key][GPU_FIELDS.index(name)]

    def add(self, events: Sequence[Event]) -> None:
        """Book a chunk of events."""
        llm = [e for e in events if type(e) is LlmRequest]
        gpu = [e for e in events if type(e) is GpuSample]
        if llm:
            self._add_llm(llm)
        if gpu:
            self._add_gpu(gpu)

    def _minute(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
        minute = ((np.fromiter((e.ts for e in events), float, len(events)) - self.start_s) // 60).astype(np.int64)
        inside = (minute >= 0) & (minute < self.minutes)
        return minute, inside

    def _add_llm(self, events: list[LlmRequest]) -> None:
        minute, inside = self._minute(events)
        keys = [(e.team, e.feature, e.model) for e in events]
        cost_of = self.prices.cost
        costs = [cost_of(e) for e in events]
        self.unpriced += sum(c is None for c in costs)
        columns = np.array([
            np.ones(len(events)),
            [e.input_tokens for e in events],
            [e.output_tokens for e in events],
            [e.cached_input_tokens for e in events],
            [e.attempt > 1 for e in events],
            [e.status != "ok" for e in events],
            [0.0 if c is None else c for c in costs],
        ], dtype=float)
        self._book(self._llm, len(LLM_FIELDS), keys, minute, inside, columns)

    def _add_gpu(self, events: list[GpuSample]) -> None:
        minute, inside = self._minute(events)
        keys = [(e.cluster, e.node) for e in events]
        hourly = []
        for e, key in zip(events, keys, strict=True):
            info = self.gpu_nodes.get(key)
            if info is None or e.gpu not in info.gpus:
                price = e.hourly_cost_usd or (self.prices.gpu_hourly(e.gpu_model) if e.gpu_model else None) or 0.0
                gpus = frozenset() if info is None else info.gpus
                info = self.gpu_nodes[key] = GpuNodeInfo(gpus | {e.gpu}, price)
            hourly.append(info.hourly_usd)
        util = np.array([e.utilization for e in events], dtype=float)
        columns = np.array([np.ones(len(events)), util, np.array(hourly) * (1.0 - util) / 60.0])
        self._book(self._gpu, len(GPU_FIELDS), keys, minute, inside, columns)

    def _book(self, table: dict, width: int, keys: list, minute: np.ndarray, inside: np.ndarray,
              columns: np.ndarray) -> None:
        """Add ``columns`` (fields × events) into ``table`` by series key and minute."""
        if not inside.any():
            return
        ids: dict[object, int] = {}
        sid = np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)[inside]
        minute = minute[inside]
        lo, span = int(minute.min()), int(minute.max() - minute.min()) + 1  # a chunk covers a few minutes
        flat = sid * span + (minute - lo)
        for key in ids:
            if key not in table:
                table[key] = np.zeros((width, self.minutes))
        for f in range(width):
            summed = np.bincount(flat, weights=columns[f][inside], minlength=len(ids) * span)
            summed = summed.reshape(len(ids), span)
            for key, i in ids.items():
                table[key][f, lo : lo + span] += summed[i]
