"""Replay throughput against the floor of only reading and parsing the same file.

Generates a simulated events file (≥ 1 M events by default), then measures on
one core, in the same run:

* parse-only: read every line and ``orjson.loads`` it, nothing else (the floor);
* replay: decode + validate + price + detect, exactly what `spendwatch replay` does,
  minus printing;
* the same replay with the models compiled by mypyc, as ``SPENDWATCH_COMPILE=1
  pip install .`` builds them (bench/compiled.py builds a copy for it; skip
  it with ``--pure``).

Prints the rates and their ratio to the floor, and checks the fastest build
against the targets (replay ≥ 150,000 events/s and ≥ 25 % of the
parse-only rate). They are measured alternately, ``--rounds`` times each,
and the best round of each counts (CPU seconds of the process that does the
work; each replay runs in a process of its own, so that it imports the build
it measures): shared machines are noisy, and the fastest round is the one
least disturbed by others.

    python bench/replay_throughput.py [--days 5] [--rounds 3] [--keep FILE] [--pure]
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

import orjson

if not __package__:  # run as a script: the checkout, for ``bench``
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compiled import ROOT, compiled_copy, pythonpath, start_dir
from detector.config import Settings
from detector.detection_run import engine_for
from detector.events import Decoder
from detector.inputs import open_events
from detector.pricing import PriceTable
from detector.replay import replay_lines, tune_gc_for_streaming
from detector.simulate import parse_incident, simulate, write_simulation
from detector.simulate.timeline import DEFAULT_START

TARGET_RATE = 150_000
TARGET_SHARE = 0.25


def parse_only(path: Path) -> tuple[int, float]:
    started = time.process_time()
    n = 0
    loads = orjson.loads
    with path.open("rb") as f:
        for line in f:
            loads(line)
            n += 1
    return n, time.process_time() - started


def replay(path: Path) -> tuple[int, float, int]:
    engine = engine_for(Settings(), PriceTable.packaged())  # the packaged rules, as `spendwatch replay` runs
    anomalies: list[object] = []
    started = time.process_time()
    with open_events(str(path)) as source:
        summary = replay_lines(source, engine, Decoder(), on_anomaly=anomalies.append)
    return summary.lines, time.process_time() - started, len(anomalies)


def replay_in_process(path: Path, build: str) -> tuple[int, float, int]:
    """:func:`replay` in a process of its own, importing ``detector`` from ``build`` (a ``PYTHONPATH``)."""
    done = subprocess.run([sys.executable, "-m", "bench.replay_throughput", "--measure", str(path)],
                          env={**os.environ, "PYTHONPATH": build}, cwd=start_dir(build), capture_output=True,
                          text=True, check=True)
    lines, seconds, fired = json.loads(done.stdout)
    return lines, seconds, fired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5, help="days of simulated traffic (5 ≈ 1.2 M events)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each measurement")
    parser.add_argument("--keep", type=Path, help="keep the generated file here")
    parser.add_argument("--pure", action="store_true", help="measure the pure-Python build only (no compiler needed)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # one replay, in the process that runs it
    args = parser.parse_args()
    tune_gc_for_streaming()  # as `spendwatch replay` does
    if args.measure:
        print(json.dumps(replay(args.measure)))
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says (children too)

    with tempfile.TemporaryDirectory() as tmp:
        builds = {"replay (decode+price+detect)": str(ROOT)}
        if not args.pure:
            t = time.perf_counter()
            builds["replay, compiled models"] = pythonpath(compiled_copy(Path(tmp) / "compiled"))
            print(f"compiled the models with mypyc in {time.perf_counter() - t:.0f} s")
        path = args.keep or Path(tmp) / "events.jsonl"
        incident = parse_incident("prompt_doubling@2d14h:team=support,feature=reply-draft,model=gpt-4.1", DEFAULT_START)
        t = time.perf_counter()
        events = write_simulation(simulate(days=args.days, incidents=[incident]), path)
        print(f"generated {events:,} events ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f} s")

        s_parse = float("inf")
        best = {name: (0, float("inf"), 0) for name in builds}
        for _ in range(args.rounds):
            gc.collect()
            n_parse, seconds = parse_only(path)
            s_parse = min(s_parse, seconds)
            for name, build in builds.items():
                measured = replay_in_process(path, build)
                best[name] = min(best[name], measured, key=lambda m: m[1])

    parse_rate = n_parse / s_parse
    print(f"best of {args.rounds} rounds each, CPU seconds of one core")
    print(f"{'parse-only (read + orjson.loads)':33} {parse_rate:12,.0f} events/s  ({s_parse:.2f} s)")
    rates = {}
    for name, (lines, seconds, fired) in best.items():
        rates[name] = lines / seconds
        print(f"{name + ':':33} {rates[name]:12,.0f} events/s  ({seconds:.2f} s, {fired} records, "
              f"{rates[name] / parse_rate:.1%} of parse-only)")
    name, replay_rate = max(rates.items(), key=lambda item: item[1])
    share = replay_rate / parse_rate
    print(f"fastest: {name}; target replay ≥ {TARGET_RATE:,}/s: {'met' if replay_rate >= TARGET_RATE else 'NOT met'}; "
          f"target ≥ {TARGET_SHARE:.0%} of parse-only: {'met' if share >= TARGET_SHARE else 'NOT met'}")


if __name__ == "__main__":
    main()
