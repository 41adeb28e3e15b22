"""The engine alone, on the stream benchmark's traffic: microseconds an event, pure and compiled.

`stream_throughput.py` judges the worker, whose rate moves ±10 % from run to
run with the broker and faust on the same two cores; `replay_throughput.py`
judges replay, where reading and decoding the file take half the time. To
see what a change to the engine costs the worker, this measures only what
the worker's detect step runs: ``Engine.process_many`` on batches of
decoded events, on the same simulated traffic as the stream benchmark (the
default world, seed 7, the first 600,000 events), timed in CPU seconds of a
process of its own per build (so that it imports the build it measures),
builds alternating, the best of ``--rounds`` counting. Decoding the same
events, timed in the same processes, is the baseline printed beside it.

    python bench/engine_throughput.py [--events 600000] [--rounds 3] [--pure]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a script: the checkout, for ``bench``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compiled import ROOT, compiled_copy, pythonpath, start_dir

BATCH = 5_000  # events a call, about what the worker's detect step takes at once on this traffic


def measure(path: Path) -> dict[str, float]:
    """Decode the file's events, then feed them to a fresh engine: CPU seconds of each, in this process."""
    from detector.config import Settings
    from detector.detection_run import engine_for
    from detector.events import Decoder
    from detector.pricing import PriceTable
    from detector.replay import tune_gc_for_streaming

    tune_gc_for_streaming()  # as the worker does
    lines = path.read_bytes().splitlines(keepends=True)
    decoder, events, rejected = Decoder(Settings()), [], 0
    started = time.process_time()
    for i in range(0, len(lines), BATCH):
        decoded, refused = decoder.decode_lines(lines[i : i + BATCH])
        events += decoded
        rejected += len(refused)
    decode_s = time.process_time() - started
    engine = engine_for(Settings(), PriceTable.packaged())
    records = 0
    gc.collect()
    started = time.process_time()
    for i in range(0, len(events), BATCH):
        records += len(engine.process_many(events[i : i + BATCH]))
    return {"events": len(events), "rejected": rejected, "decode_s": decode_s,
            "engine_s": time.process_time() - started, "records": records}


def measure_in_process(path: Path, build: str) -> dict[str, float]:
    """:func:`measure` in a process of its own, importing ``detector`` from ``build`` (a ``PYTHONPATH``)."""
    done = subprocess.run([sys.executable, "-m", "bench.engine_throughput", "--measure", str(path)],
                          env={**os.environ, "PYTHONPATH": build}, cwd=start_dir(build), capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=600_000, help="events of the stream benchmark's traffic")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each build")
    parser.add_argument("--pure", action="store_true", help="the pure-Python build only (no compiler needed)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # one measurement, in its own process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core (children too): a worker's share
    from bench.stream_throughput import simulated_lines  # (imports faust: here, not in the measuring children)

    with tempfile.TemporaryDirectory() as tmp:
        builds = {"pure Python": str(ROOT)}
        if not args.pure:
            t = time.perf_counter()
            builds["models compiled by mypyc"] = pythonpath(compiled_copy(Path(tmp) / "compiled"))
            print(f"compiled the models with mypyc in {time.perf_counter() - t:.0f} s", flush=True)
        path = Path(tmp) / "events.jsonl"
        path.write_bytes(b"".join(simulated_lines(args.events)))  # (each line ends in its newline)
        best: dict[str, dict[str, float]] = {}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for name, build in builds.items():
                m = measure_in_process(path, build)
                was = best.get(name, m)
                best[name] = {**m, "engine_s": min(m["engine_s"], was["engine_s"]),
                              "decode_s": min(m["decode_s"], was["decode_s"])}  # the best of each, apart

    print(f"best of {args.rounds} rounds each, CPU seconds of one core, batches of {BATCH:,} events")
    print(f"{'build':26} {'engine µs/event':>16} {'engine events/s':>16} {'decode µs/event':>16} {'records':>8}")
    for name, m in best.items():
        n = m["events"]
        print(f"{name:26} {m['engine_s'] / n * 1e6:16.2f} {n / m['engine_s']:16,.0f} "
              f"{m['decode_s'] / n * 1e6:16.2f} {int(m['records']):8}")
    print(f"{int(next(iter(best.values()))['events']):,} events, {int(next(iter(best.values()))['rejected'])} rejected")


if __name__ == "__main__":
    main()
