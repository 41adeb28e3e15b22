"""GPU utilisation samples and non-request spend lines, as numpy columns.

Inference nodes are as busy as the self-hosted traffic they serve (the
requests the simulator generated, minute by minute), so a traffic incident
shows on the GPUs too; training nodes are busy around the clock with short
dips at checkpoints. A ``gpu_idle`` incident holds the targeted GPUs near its
magnitude: paid for, loaded, and doing nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detector.simulate.incidents import Incident
from detector.simulate.seasonality import diurnal
from detector.simulate.timeline import Timeline
from detector.simulate.world import GpuNode, World, rng_for, tag_of

IDLE_FLOOR = 0.05  # utilisation of a serving node with no requests (health checks, batching loop)
HEADROOM = 1.3  # nodes are provisioned for this multiple of their peak load
SMOOTHING_MIN = 5  # continuous batching smooths per-minute arrivals over a few minutes
CHECKPOINT_EVERY_MIN, CHECKPOINT_MIN = 120, 4


@dataclass(slots=True)
class GpuSamples:
    """One row per GPU per minute; ``gpu`` indexes the list of GPU labels.

    >>> one = GpuSamples(np.array([60_000, 0]), np.array([0, 0]), np.array([0.5, 0.9]), np.array([1, 2]))
    >>> one.take(np.array([1])).utilization.tolist()
    [0.9]
    """

    ts_ms: np.ndarray
    gpu: np.ndarray
    utilization: np.ndarray
    memory_used_bytes: np.ndarray

    def take(self, rows: np.ndarray) -> GpuSamples:
        return GpuSamples(self.ts_ms[rows], self.gpu[rows], self.utilization[rows], self.memory_used_bytes[rows])


@dataclass(slots=True)
class UsageSamples:
    """One row per bill; ``line`` indexes the world's usage lines.

    >>> UsageSamples(np.array([0, 60_000]), np.array([0, 0]), np.array([3.2, 3.4])).take(np.array([1])).value.tolist()
    [3.4]
    """

    ts_ms: np.ndarray
    line: np.ndarray
    value: np.ndarray

    def take(self, rows: np.ndarray) -> UsageSamples:
        return UsageSamples(self.ts_ms[rows], self.line[rows], self.value[rows])


def gpu_samples(world: World, timeline: Timeline, seed: int, incidents: Sequence[Incident],
                load: dict[str, np.ndarray]) -> tuple[GpuSamples, list[dict[str, str]]]:
    """Samples of every GPU of the world, and the labels of each GPU in id order.

    ``load`` is requests per minute by model name.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> node = GpuNode("training", "t-1", "A100-SXM-80GB", "research")
    >>> samples, gpus = gpu_samples(World((), (node,)), Timeline(DEFAULT_START, 1), 7, (), {})
    >>> len(samples.ts_ms), len(gpus), 0.85 < float(np.median(samples.utilization)) < 0.99
    (11520, 8, True)
    """
    peaks = _peak_by_model(world)
    serving = {m: sum(m in n.serves for n in world.gpu_nodes) for m in peaks}
    labels: list[dict[str, str]] = []
    ts, ids, util, memory = [], [], [], []
    for node in world.gpu_nodes:
        rng = rng_for(seed, node.node, 0)
        noise = rng.standard_normal((3, node.gpus, timeline.minutes))
        if node.serves:
            share = sum(load.get(m, np.zeros(timeline.minutes)) / serving[m] for m in node.serves)
            capacity = HEADROOM * sum(peaks.get(m, 0.0) / serving[m] for m in node.serves)
            level = _serving_level(share, capacity) + 0.02 * noise[0]
        else:
            level = _training_level(timeline, rng) + 0.015 * noise[0]
        for inc in incidents:
            if inc.kind == "gpu_idle":
                level = _idle(inc, node, timeline, level, noise[1])
        level = np.clip(level, 0.0, 1.0).round(3)
        used = node.memory_bytes * np.clip(0.55 + 0.35 * level + 0.01 * noise[2], 0.0, 1.0)
        offset = int(tag_of(node.node), 16) % 60 * 1000  # each exporter scrapes at its own second
        for gpu in range(node.gpus):
            labels.append(node.gpu_labels(gpu))
            ts.append(timeline.minute_ms() + offset)
            ids.append(np.full(timeline.minutes, len(labels) - 1))
            util.append(level[gpu])
            memory.append(used[gpu].astype(np.int64))
    if not labels:
        empty = np.zeros(0, dtype=np.int64)
        return GpuSamples(empty, empty, np.zeros(0), empty), labels
    return GpuSamples(np.concatenate(ts), np.concatenate(ids), np.concatenate(util), np.concatenate(memory)), labels


def _peak_by_model(world: World) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for feature, model in world.series():
        peaks[model] = peaks.get(model, 0.0) + feature.peak_share(model)
    return peaks


def _serving_level(requests_per_min: np.ndarray, capacity: float) -> np.ndarray:
    if capacity <= 0:
        return np.full(len(requests_per_min), IDLE_FLOOR)
    smooth = np.convolve(requests_per_min, np.ones(SMOOTHING_MIN) / SMOOTHING_MIN)[: len(requests_per_min)]
    return IDLE_FLOOR + (1.0 - IDLE_FLOOR) * np.minimum(1.0, smooth / capacity)


def _training_level(timeline: Timeline, rng: np.random.Generator) -> np.ndarray:
    phase = int(rng.integers(0, CHECKPOINT_EVERY_MIN))
    checkpoint = (np.arange(timeline.minutes) + phase) % CHECKPOINT_EVERY_MIN < CHECKPOINT_MIN
    return np.where(checkpoint, 0.3, 0.93)


def _idle(inc: Incident, node: GpuNode, timeline: Timeline, level: np.ndarray, noise: np.ndarray) -> np.ndarray:
    start, end = inc.window_ms(timeline.end_ms)
    minute = timeline.minute_ms()
    inside = (minute >= start) & (minute < end)
    gpus = np.array([inc.matches(node.gpu_labels(g)) for g in range(node.gpus)])
    hit = gpus[:, None] & inside[None, :]
    return np.where(hit, inc.magnitude + 0.005 * noise, level)


def usage_samples(world: World, timeline: Timeline, seed: int) -> UsageSamples:
    """One bill per line per ``every_hours``, at the start of the billed period.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> from detector.simulate.world import UsageLine
    >>> line = UsageLine("vector_db_usd", "embedding", "search", level=3.2)
    >>> bills = usage_samples(World((), (), (line,)), Timeline(DEFAULT_START, 2), 7)
    >>> len(bills.ts_ms), bool(2.0 < bills.value.mean() < 5.0)
    (48, True)
    """
    ts, ids, values = [], [], []
    minute = timeline.minute_ms()
    weekend = timeline.weekday() >= 5
    hours = timeline.hour_of_day()
    for i, line in enumerate(world.usage_lines):
        rng = rng_for(seed, line.metric, 0)
        billed = np.arange(0, timeline.minutes, 60 * line.every_hours)
        shape = 0.85 + 0.3 * diurnal(hours[billed]) if line.every_hours < 24 else np.ones(len(billed))
        level = line.level * shape * np.where(weekend[billed], line.weekend_level, 1.0)
        ts.append(minute[billed])
        ids.append(np.full(len(billed), i))
        values.append((level * rng.lognormal(0.0, 0.05, len(billed))).round(2))
    if not ts:
        return UsageSamples(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
    return UsageSamples(np.concatenate(ts), np.concatenate(ids), np.concatenate(values))

