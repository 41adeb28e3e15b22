"""Replay throughput against the floor of only reading and parsing the same file.

Generates a simulated events file (≥ 1 M events by default), then measures on
one core, in the same run:

* parse-only: read every line and ``orjson.loads`` it, nothing else (the floor);
* replay: decode + validate + price + detect, exactly what `spendwatch replay` does,
  minus printing.

Prints both rates and their ratio, and checks them against the targets
(replay ≥ 150,000 events/s and ≥ 25 % of the parse-only rate). The two are
measured alternately, ``--rounds`` times each, and the best round of each
counts (CPU time of this process): shared machines are noisy, and the
fastest round is the one least disturbed by others.

    python bench/replay_throughput.py [--days 5] [--rounds 3] [--keep FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import orjson

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5, help="days of simulated traffic (5 ≈ 1.2 M events)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each measurement")
    parser.add_argument("--keep", type=Path, help="keep the generated file here")
    args = parser.parse_args()
    tune_gc_for_streaming()  # as `spendwatch replay` does
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "events.jsonl"
        incident = parse_incident("prompt_doubling@2d14h:team=support,feature=reply-draft,model=gpt-4.1", DEFAULT_START)
        t = time.perf_counter()
        events = write_simulation(simulate(days=args.days, incidents=[incident]), path)
        print(f"generated {events:,} events ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f} s")

        s_parse = s_replay = float("inf")
        for _ in range(args.rounds):
            gc.collect()
            n_parse, seconds = parse_only(path)
            s_parse = min(s_parse, seconds)
            gc.collect()
            n_replay, seconds, fired = replay(path)
            s_replay = min(s_replay, seconds)

    parse_rate, replay_rate = n_parse / s_parse, n_replay / s_replay
    share = replay_rate / parse_rate
    print(f"best of {args.rounds} rounds each, CPU seconds of one core")
    print(f"parse-only (read + orjson.loads): {parse_rate:12,.0f} events/s  ({s_parse:.2f} s)")
    print(f"replay (decode+price+detect):     {replay_rate:12,.0f} events/s  ({s_replay:.2f} s, {fired} records)")
    print(f"replay / parse-only:              {share:12.1%}")
    print(f"target replay ≥ {TARGET_RATE:,}/s: {'met' if replay_rate >= TARGET_RATE else 'NOT met'}; "
          f"target ≥ {TARGET_SHARE:.0%} of parse-only: {'met' if share >= TARGET_SHARE else 'NOT met'}")


if __name__ == "__main__":
    main()
