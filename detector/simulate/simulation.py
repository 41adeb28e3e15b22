"""Run the world over a span, merge every kind of event into one time-ordered stream.

The result stays columnar until it is read: :meth:`Simulation.events` and
:meth:`Simulation.lines` render events chunk by chunk, so a week of two
million events never exists as two million dicts at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from detector.events import STATUSES
from detector.pricing import PriceTable
from detector.simulate.catalog import Catalog
from detector.simulate.effects import shifts
from detector.simulate.fleet import GpuSamples, UsageSamples, gpu_samples, usage_samples
from detector.simulate.incidents import Incident
from detector.simulate.timeline import DEFAULT_START, MINUTE_MS, Timeline, format_ms, rfc3339, to_ms
from detector.simulate.traffic import Requests, feature_requests
from detector.simulate.world import World

CHUNK = 65_536
LLM, GPU, USAGE = 0, 1, 2


def simulate(
    days: int = 7,
    seed: int = 7,
    start: datetime | None = None,
    incidents: Sequence[Incident] = (),
    world: World | None = None,
) -> Simulation:
    """Generate ``days`` of the world's traffic from ``start`` (default Monday 2026-11-16 UTC).

    The same arguments give the same events, byte for byte.

    >>> sim = simulate(days=1, world=World.default().only(team="growth"))
    >>> sim.counts["llm_request"] > 1000, next(sim.events())["ts"][:10]
    (True, '2026-11-16')
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    timeline = Timeline(start or DEFAULT_START, days)
    world = world or World.default()
    incidents = tuple(incidents)
    for inc in incidents:
        _check(inc, world, timeline)
    catalog = Catalog()
    for feature, model in world.series():
        catalog.series_id(feature, model)
    requests = Requests.concat([feature_requests(f, timeline, seed, incidents, catalog) for f in world.features])
    gpus, gpu_labels = gpu_samples(world, timeline, seed, incidents, model_load(requests, catalog, timeline))
    usage = usage_samples(world, timeline, seed)
    return Simulation(seed, timeline, world, incidents, catalog, requests, gpus, gpu_labels, usage)


def model_load(requests: Requests, catalog: Catalog, timeline: Timeline) -> dict[str, np.ndarray]:
    """Requests per minute by model name, attempts and failures included (they all use the GPU)."""
    minute = (requests.ts_ms - timeline.start_ms) // MINUTE_MS
    per_series = np.bincount(requests.series * timeline.minutes + minute,
                             minlength=len(catalog.series) * timeline.minutes)
    per_series = per_series.reshape(len(catalog.series), timeline.minutes).astype(float)
    load: dict[str, np.ndarray] = {}
    for sid, (_, model) in enumerate(catalog.series):
        load[model] = load.get(model, 0.0) + per_series[sid]
    return load


def _check(inc: Incident, world: World, timeline: Timeline) -> None:
    """Refuse an incident that would silently do nothing: outside the span or on no series."""
    where = f"incident {inc.kind}@{rfc3339(inc.start)} {inc.target}"
    if not timeline.start_ms <= to_ms(inc.start) < timeline.end_ms:
        raise ValueError(f"{where}: starts outside the simulated span {rfc3339(timeline.start)} – "
                         f"{rfc3339(timeline.end)}")
    if inc.kind == "gpu_idle":
        hit = any(inc.matches(n.gpu_labels(g)) for n in world.gpu_nodes for g in range(n.gpus))
        known = sorted({f"cluster={n.cluster},node={n.node}" for n in world.gpu_nodes})
    elif inc.kind == "tier_shift":
        hit = any(shifts(inc, f) and (f.fallback or inc.target.get("model")) for f in world.features)
        known = sorted(f"team={f.team},feature={f.feature}" for f in world.features if f.fallback)
    else:
        hit = any(inc.matches(f.labels(m)) for f, m in world.series())
        known = sorted({f"team={f.team},feature={f.feature},model={m}" for f, m in world.series()})
    if not hit:
        raise ValueError(f"{where}: the target matches nothing in the world; candidates: {'; '.join(known)}")


class Simulation:
    """Generated events in time order (ties in a fixed order), with their ground truth.

    >>> sim = simulate(days=1, world=World.default().only(feature="seo-audit"))
    >>> sim.truth()["series"][0]["model"], next(sim.lines())[:17]
    ('mistral-large-latest', b'{"ts":"2026-11-16')
    """

    def __init__(self, seed: int, timeline: Timeline, world: World, incidents: tuple[Incident, ...],
                 catalog: Catalog, requests: Requests, gpus: GpuSamples, gpu_labels: list[dict[str, str]],
                 usage: UsageSamples) -> None:
        self.seed, self.timeline, self.world, self.incidents = seed, timeline, world, incidents
        self._catalog, self._gpu_labels = catalog, gpu_labels
        self._requests = requests.take(np.argsort(requests.ts_ms, kind="stable"))
        self._gpus = gpus.take(np.argsort(gpus.ts_ms, kind="stable"))
        self._usage = usage.take(np.argsort(usage.ts_ms, kind="stable"))
        stamps = np.concatenate([self._requests.ts_ms, self._gpus.ts_ms, self._usage.ts_ms])
        kinds = np.repeat(np.array([LLM, GPU, USAGE], dtype=np.int8),
                          [len(self._requests), len(self._gpus.ts_ms), len(self._usage.ts_ms)])
        self._kinds = kinds[np.argsort(stamps, kind="stable")]
        self.counts = {"llm_request": len(self._requests), "gpu_sample": len(self._gpus.ts_ms),
                       "usage_sample": len(self._usage.ts_ms)}

    def __len__(self) -> int:
        return len(self._kinds)

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event as a Contract 1 dict, in time order."""
        sources = (self._llm_events(), self._gpu_events(), self._usage_events())
        for lo in range(0, len(self._kinds), CHUNK):
            for kind in self._kinds[lo : lo + CHUNK].tolist():
                yield next(sources[kind])

    def lines(self) -> Iterator[bytes]:
        """The JSONL form of :meth:`events`: one ``orjson`` line each, newline included."""
        dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        for event in self.events():
            yield dumps(event, option=option)

    def truth(self) -> dict[str, Any]:
        """What was simulated and what was injected, for scoring a detector's alerts."""
        prices = PriceTable.packaged()
        series = []
        for feature, model in self._catalog.series:
            entry: dict[str, Any] = {"team": feature.team, "feature": feature.feature, "model": model,
                                     "category": feature.category, "tier": prices.tier(model)}
            if feature.product is not None:
                entry["product"] = feature.product
            entry["peak_rate_per_min"] = round(feature.peak_share(model), 3)
            series.append(entry)
        end_ms = self.timeline.end_ms
        return {
            "seed": self.seed,
            "start": rfc3339(self.timeline.start),
            "end": rfc3339(self.timeline.end),
            "days": self.timeline.days,
            "counts": dict(self.counts),
            "series": series,
            "gpu_nodes": [{**n.labels(), "gpus": n.gpus} for n in self.world.gpu_nodes],
            "usage_lines": [{**u.labels(), "unit": u.unit, "every_hours": u.every_hours}
                            for u in self.world.usage_lines],
            "incidents": [inc.truth(end_ms) for inc in self.incidents],
        }

    def _llm_events(self) -> Iterator[dict[str, Any]]:
        r, catalog = self._requests, self._catalog
        heads = [{"ts": "", **catalog.head(s)} for s in range(len(catalog.series))]  # copying beats rebuilding
        prefixes = catalog.prefixes
        for lo in range(0, len(r), CHUNK):
            part = r.take(slice(lo, lo + CHUNK))
            rows = zip(format_ms(part.ts_ms), part.series.tolist(), part.input_tokens.tolist(),
                       part.output_tokens.tolist(), part.cached_input_tokens.tolist(), part.prefix.tolist(),
                       part.seq.tolist(), part.attempt.tolist(), part.status.tolist(), part.latency_ms.tolist(),
                       strict=True)
            for ts, sid, inp, out, cached, prefix, seq, attempt, status, latency in rows:
                event = heads[sid].copy()
                event["ts"] = ts
                event["input_tokens"] = inp
                event["output_tokens"] = out
                if cached:
                    event["cached_input_tokens"] = cached
                event["request_id"] = prefixes[prefix] + str(seq)
                event["attempt"] = attempt
                event["status"] = STATUSES[status]
                event["latency_ms"] = latency
                yield event

    def _gpu_events(self) -> Iterator[dict[str, Any]]:
        g, labels = self._gpus, self._gpu_labels
        for lo in range(0, len(g.ts_ms), CHUNK):
            sl = slice(lo, lo + CHUNK)
            rows = zip(format_ms(g.ts_ms[sl]), g.gpu[sl].tolist(), g.utilization[sl].tolist(),
                       g.memory_used_bytes[sl].tolist(), strict=True)
            for ts, gid, util, memory in rows:
                gpu = labels[gid]
                yield {"ts": ts, "type": "gpu_sample", "cluster": gpu["cluster"], "node": gpu["node"],
                       "gpu": gpu["gpu"], "gpu_model": gpu["gpu_model"], "utilization": util,
                       "memory_used_bytes": memory, "category": gpu["category"], "team": gpu["team"]}

    def _usage_events(self) -> Iterator[dict[str, Any]]:
        u, lines = self._usage, self.world.usage_lines
        rows = zip(format_ms(u.ts_ms), u.line.tolist(), u.value.tolist(), strict=True)
        for ts, lid, value in rows:
            line = lines[lid]
            yield {"ts": ts, "type": "usage_sample", "metric": line.metric, "value": value, "unit": line.unit,
                   "category": line.category, "team": line.team}
