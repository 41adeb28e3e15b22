"""Memory per active series: what one (team, feature, model) costs the engine, all its models together.

Feeds a few hundred warm series (three models per feature, as in most
deployments) through the engine and prints the bytes Python holds per
series (tracemalloc, so the interpreter's own objects count) and what each
further series adds (the same traffic on half as many series: the
difference leaves out what the engine holds however many series it has,
such as its per-team ledger lines and caches), the size of
a series' exported state (what the stream worker keeps in its changelog),
each kind of model's own share (packed into its series: its numbers and
flags in the series' array, its entries in the series' list and the arrays
they hold; the layout it shares with every series under the same rules is
not counted), the bytes by the module that allocated them
(``packed_monitors.py`` builds each series' array with its models' numbers,
``models/state.py`` the CUSUM runs), and, for comparison in the same run,
a series carrying only the prompt-length model the engine started with,
kept as an object; what each further GPU series and usage-line series
costs (one model each, kept as an object); and what a stream worker's ``memory://``
table holds per series after a restart, until each key is written again
(each group's saved state as recovered from the changelog, as JSON bytes;
a value the worker writes goes to the changelog only).

    python bench/memory.py [--series 600] [--minutes 300]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tracemalloc
from array import array
from collections import defaultdict
from collections.abc import Sequence

from detector.config import Settings
from detector.engine import Engine
from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.models.level_shift import LogLevelShift
from detector.packed_monitors import PackedMonitor
from detector.pricing import PriceTable

MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5")
ARRAYS = ("a", "up", "dn", "run", "counts")
"""Where the models keep their arrays (named, not read from ``__slots__``: a compiled model has none)."""


def traffic(series: int, minutes: int, seed: int = 1) -> list[LlmRequest]:
    rng = random.Random(seed)
    events = []
    for minute in range(minutes):
        for i in range(series):
            events.append(LlmRequest(
                ts=1.8e9 + minute * 60 + i * 0.05, model=MODELS[i % len(MODELS)],
                input_tokens=int(rng.lognormvariate(7, 0.5)), output_tokens=int(rng.lognormvariate(5, 0.5)),
                cached_input_tokens=0, team=f"team{(i // len(MODELS)) % 20}", feature=f"feature{i // len(MODELS)}",
                attempt=2 if rng.random() < 0.02 else 1, status="error" if rng.random() < 0.01 else "ok"))
    return events


def sample_traffic(kind: str, series: int, samples: int, seed: int = 1) -> list[GpuSample | UsageSample]:
    """``samples`` per series: a GPU's utilisation each minute (``gpu``), or a usage line's dollars each hour."""
    rng = random.Random(seed)
    events: list[GpuSample | UsageSample] = []
    for k in range(samples):
        for i in range(series):
            if kind == "gpu":
                events.append(GpuSample(ts=1.8e9 + k * 60 + i * 0.05, node=f"node{i // 8}", gpu=str(i % 8),
                                        utilization=min(max(rng.gauss(0.6, 0.05), 0.0), 1.0),
                                        gpu_model="H100-SXM-80GB", team=f"team{i % 20}"))
            else:
                events.append(UsageSample(ts=1.8e9 + k * 3600 + i * 0.05, metric=f"line{i}", unit="usd",
                                          value=rng.lognormvariate(1, 0.1), category="embedding",
                                          team=f"team{i % 20}"))
    return events


def engine_bytes(events: Sequence[Event], by_module: dict[str, int] | None = None) -> int:
    """Bytes an engine holds after ``events``; the price table and settings, shared by all series, not counted.

    With ``by_module``, also fills it with the bytes by the module that allocated them.
    """
    prices, settings = PriceTable.packaged(), Settings(warmup_requests=50)
    tracemalloc.start()
    start = tracemalloc.take_snapshot() if by_module is not None else None  # before ``before``: not counted
    before = tracemalloc.get_traced_memory()[0]
    engine = Engine(prices, settings)
    engine.process_many(events)
    gc.collect()  # a full collection empties the interpreter's free lists: spare tuples and floats, not the engine's
    held = tracemalloc.get_traced_memory()[0] - before
    if start is not None and by_module is not None:
        for stat in tracemalloc.take_snapshot().compare_to(start, "filename"):
            name = stat.traceback[0].filename
            name = name[name.rfind("detector/"):] if "detector/" in name else "elsewhere"
            by_module[name] = by_module.get(name, 0) + stat.size_diff
    tracemalloc.stop()
    engine.process_many([])  # keep the engine alive until measured
    return held


def baseline_bytes(series: int, values: int) -> int:
    """The same number of series, each with one prompt-length model only."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    models = [LogLevelShift(warmup=50) for _ in range(series)]
    rng = random.Random(2)
    for i in range(values):
        models[i % series].update(rng.lognormvariate(7, 0.5), 1.8e9 + i * 0.05)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held


def model_bytes(engine: Engine) -> dict[str, tuple[int, float]]:
    """Per kind of model: how many there are, and the bytes each holds on average.

    A model kept as an object: the object, its arrays and lists. A monitor
    packed into its series (``detector.packed_monitors``): its numbers and
    flags in the series' array, its entries in the series' list, and the
    arrays they hold.
    """
    sizes: dict[str, list[int]] = defaultdict(list)
    for f in engine.features.values():
        monitors = [*f.rates, *(m for ms in f.tier_mix.values() for m in ms)]
        monitors += [m for s in f.members.values() for m in s.monitors()]
        for mon in monitors:
            if isinstance(mon, PackedMonitor):
                sizes[f"{mon.kind.__name__} (packed)"].append(packed_bytes(mon))
                continue
            model = mon.model
            held = sys.getsizeof(model)
            for name in ARRAYS:
                value = getattr(model, name, None)
                if isinstance(value, array | list):
                    held += sys.getsizeof(value)
            sizes[type(model).__name__].append(held)
    return {name: (len(v), sum(v) / len(v)) for name, v in sorted(sizes.items())}


def packed_bytes(mon: PackedMonitor) -> int:
    spec, x = mon.spec, mon.owner.x
    entries = [x[spec.shift_at]] if spec.shift_at >= 0 else []
    entries += x[spec.runs_at : spec.runs_at + len(spec.runs)]
    return spec.width * 8 + 8 * len(entries) + sum(sys.getsizeof(e) for e in entries if e is not None)


def table_bytes(engine: Engine) -> tuple[int, int]:
    """Bytes a worker's ``memory://`` table holds for the engine's groups after a restart: as JSON bytes, and as dicts.

    Recovery fills faust's store with each group's saved state from the
    changelog, and a value stays there until its key is written again (the
    worker's own writes go to the changelog only, ``streams.tables``). It is
    held as the JSON bytes (``streams.tables.encode_state``); as the Python
    dicts faust would otherwise have kept, the same states take the second
    figure.
    """
    from streams.groups import STATE_VERSION
    from streams.tables import encode_state

    values = {key: {"v": STATE_VERSION, "state": engine.export_group(key), "applied": {"0": [0, 0]}}
              for key in sorted(engine.take_touched())}
    held = []
    for make in (encode_state, lambda value: value):
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(json.loads(json.dumps(value))) for value in values.values()]  # as recovered from a changelog
        held.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        del kept
    return held[0], held[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=600)
    parser.add_argument("--minutes", type=int, default=300)
    args = parser.parse_args()
    events = traffic(args.series, args.minutes)
    by_module: dict[str, int] = {}
    held = engine_bytes(events, by_module)
    half = engine_bytes(traffic(args.series // 2, args.minutes))
    engine = Engine(PriceTable.packaged(), Settings(warmup_requests=50))
    engine.process_many(events)
    state = sum(len(json.dumps(engine.export_group(f"llm:team{t}"))) for t in range(20))
    base = baseline_bytes(args.series, len(events))
    print(f"series: {engine.series_count} (in {len(engine.features)} features), {len(events):,} requests")
    print(f"engine memory per series, all models:   {held / engine.series_count:8,.0f} bytes")
    print(f"  of which each further series adds:     {(held - half) / (engine.series_count - args.series // 2):8,.0f} "
          f"bytes ({args.series // 2} against {engine.series_count} series: the engine's own fixed cost apart)")
    print(f"exported state per series (JSON):       {state / engine.series_count:8,.0f} bytes")
    print(f"baseline: one prompt-length model only: {base / args.series:8,.0f} bytes per series")
    per_model = model_bytes(engine)
    print("per model (packed: numbers, its arrays): "
          + ", ".join(f"{name} {size:,.0f} B × {n / engine.series_count:.2f}"
                      for name, (n, size) in per_model.items()))
    print("by the module that allocated them:       "
          + ", ".join(f"{name} {size / engine.series_count:,.0f} B" for name, size
                      in sorted(by_module.items(), key=lambda kv: -kv[1]) if size >= 0.01 * held))
    n = args.series // 2
    for kind, name in (("gpu", "GPU"), ("usage", "usage line")):
        further = engine_bytes(sample_traffic(kind, n, args.minutes))
        further -= engine_bytes(sample_traffic(kind, n // 2, args.minutes))
        print(f"each further {name} series ({args.minutes} samples): {further / (n - n // 2):6,.0f} bytes "
              f"({n // 2} against {n} series)")
    as_bytes, as_dicts = table_bytes(engine)
    print(f"a worker's table (memory://) holds after a restart, until each key is written again: "
          f"{as_bytes / engine.series_count:,.0f} bytes per series "
          f"(saved state as JSON bytes; as dicts, {as_dicts / engine.series_count:,.0f})")
    print("target (issue): <= 4,096 bytes per active series")


if __name__ == "__main__":
    main()
