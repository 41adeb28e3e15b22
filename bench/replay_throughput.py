"""Replay throughput against the floor of only reading and parsing the same file.

Generates a simulated events file (≥ 1 M events by default), then measures on
one core, in the same run:

* parse-only: read every line and ``orjson.loads`` it, nothing else (the floor);
* replay: decode + validate + price + detect, exactly what `spendwatch replay` does,
  minus printing.

Prints both rates and their ratio, and checks them against the targets
(replay ≥ 150,000 events/s and ≥ 25 % of the parse-only rate).

    python bench/replay_throughput.py [--days 5] [--keep FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import orjson

from detector.engine import Engine
from detector.events import Decoder
from detector.inputs import open_events
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.simulate import parse_incident, simulate, write_simulation
from detector.simulate.timeline import DEFAULT_START

TARGET_RATE = 150_000
TARGET_SHARE = 0.25


def parse_only(path: Path) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    loads = orjson.loads
    with path.open("rb") as f:
        for line in f:
            loads(line)
            n += 1
    return n, time.perf_counter() - started


def replay(path: Path) -> tuple[int, float, int]:
    engine = Engine(PriceTable.packaged())
    anomalies: list[object] = []
    started = time.perf_counter()
    with open_events(str(path)) as source:
        summary = replay_lines(source, engine, Decoder(), on_anomaly=anomalies.append)
    return summary.lines, time.perf_counter() - started, len(anomalies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=5, help="days of simulated traffic (5 ≈ 1.2 M events)")
    parser.add_argument("--keep", type=Path, help="keep the generated file here")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "events.jsonl"
        incident = parse_incident("prompt_doubling@2d14h:team=support,feature=reply-draft,model=gpt-4.1", DEFAULT_START)
        t = time.perf_counter()
        events = write_simulation(simulate(days=args.days, incidents=[incident]), path)
        print(f"generated {events:,} events ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f} s")

        gc.collect()
        n_parse, s_parse = parse_only(path)
        gc.collect()
        n_replay, s_replay, fired = replay(path)

    parse_rate, replay_rate = n_parse / s_parse, n_replay / s_replay
    share = replay_rate / parse_rate
    print(f"parse-only (read + orjson.loads): {parse_rate:12,.0f} events/s  ({s_parse:.2f} s)")
    print(f"replay (decode+price+detect):     {replay_rate:12,.0f} events/s  ({s_replay:.2f} s, {fired} records)")
    print(f"replay / parse-only:              {share:12.1%}")
    print(f"target replay ≥ {TARGET_RATE:,}/s: {'met' if replay_rate >= TARGET_RATE else 'NOT met'}; "
          f"target ≥ {TARGET_SHARE:.0%} of parse-only: {'met' if share >= TARGET_SHARE else 'NOT met'}")


if __name__ == "__main__":
    main()
