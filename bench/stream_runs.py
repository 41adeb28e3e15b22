"""The parts of the stream benchmark: loading topics, the bare consumer, consumer processes and their timing.

Every consumer process (the do-nothing faust agent, ``spendwatch worker``)
is polled over HTTP for its counters; a run is timed from the first poll at
which every process has finished something to the first poll at which the
counters add up to the whole topic, and its CPU time is read from
``/proc/PID/stat`` at the same two polls. Reading begins before a consumer
group's last join settles (a second worker's join stops both for about
three seconds on the test broker), so the clock waits for work to be done,
not read. Only the events not yet read when it starts count: a worker
decodes ahead of what it has judged, and what it read before the clock
started is left out, though judging it is in the timed span (conservative
for the worker, exact for the do-nothing agent, which reads and finishes
at once).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.compiled import start_dir
from streams.codecs import partition_of
from streams.producer import Batcher, bootstrap_servers

REPO = Path(__file__).resolve().parents[1]
POLL_S = 0.1
TICKS = os.sysconf("SC_CLK_TCK")

# The test broker (Tansu 0.6, memory engine) makes a consumer-group join wait
# about half the rebalance timeout (DESIGN.md, "Test infrastructure"); a short
# timeout keeps start-up quick. Benchmark configuration only. The one-record
# producer batches that tests use for complete changelog recovery are left
# off: they cost ~40 % of throughput, and nothing here restarts a worker.
BENCH_BROKER_ENV = {
    "SPENDWATCH_REBALANCE_TIMEOUT_S": "4",
    "SPENDWATCH_WEB_HOST": "127.0.0.1",
}


@dataclass(frozen=True)
class Loaded:
    """A topic filled with events: how many messages, how many events."""

    topic: str
    messages: int
    events: int

    @property
    def events_per_message(self) -> float:
        return self.events / self.messages


@dataclass(frozen=True)
class Figures:
    """One measured run: what was read, in how long, at what CPU cost."""

    events: int
    messages: float
    seconds: float
    cpu_s: float | None
    broker_cpu_s: float | None

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds


# -- loading --------------------------------------------------------------------------------------------


async def _send_all(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=16 * 2**20,
                                enable_idempotence=False)
    await producer.start()
    try:
        pending = []
        for key, value, partition in messages:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def load_single(broker: str, topic: str, lines: Sequence[bytes], partitions: int) -> Loaded:
    """One event per message, a bare JSON object keyed by its partition key, on the partition
    ``spendwatch produce`` would choose for it (as a gateway keyed that way would send it)."""
    batcher = Batcher("array")
    messages = []
    for line in lines:
        line = line.rstrip(b"\r\n")
        key = batcher.key_of(line)
        messages.append((None, line, None) if key is None else
                        (json.dumps(key).encode(), line, partition_of(key, partitions)))
    asyncio.run(_send_all(bootstrap_servers(broker), topic, messages))
    return Loaded(topic, len(messages), len(messages))


def load_batched(broker: str, topic: str, lines: Sequence[bytes], chunk: int, partitions: int) -> Loaded:
    """JSON arrays, the ``spendwatch produce`` way: per chunk of lines, one message per partition key."""
    batcher = Batcher("array", partitions=partitions)
    messages, events = [], 0
    for start in range(0, len(lines), chunk):
        for message in batcher.messages(list(lines[start:start + chunk])):
            messages.append((message.key, message.value, message.partition))
            events += message.events
    asyncio.run(_send_all(bootstrap_servers(broker), topic, messages))
    return Loaded(topic, len(messages), events)


def partition_shares(lines: Sequence[bytes], partitions: int) -> list[float]:
    """Share of the events on each partition of the worker's repartition topic (keyed by partition key).

    The worker repartitions by ``Engine.partition_key`` (one key per team and
    feature for LLM requests), so a few busy keys can put most events on one partition,
    whichever worker holds it: that bounds what more workers can gain.

    >>> line = b'{"ts": 1.8e9, "model": "m", "input_tokens": 5, "output_tokens": 1, "team": "%s"}'
    >>> partition_shares([line % b"a"] * 3 + [line % b"d"], 2)
    [0.75, 0.25]
    """
    batcher = Batcher("array")
    counts = [0] * partitions
    for line in lines:
        key = batcher.key_of(line.rstrip(b"\r\n"))
        if key is not None:
            counts[partition_of(key, partitions)] += 1
    total = sum(counts) or 1
    return [n / total for n in counts]


def best_speedup(shares: Sequence[float], workers: int) -> float:
    """The most ``workers`` can gain over one when each holds whole partitions (balanced as well as possible).

    >>> round(best_speedup([0.65, 0.22, 0.04, 0.09], 2), 2)
    1.54
    >>> best_speedup([0.25] * 4, 2)
    2.0
    """
    loads = [0.0] * workers
    for share in sorted(shares, reverse=True):  # greedy: optimal for the few partitions of a benchmark
        loads[loads.index(min(loads))] += share
    return sum(shares) / max(loads)


# -- the floor: a bare consumer ---------------------------------------------------------------------------


def bare_consumer(broker: str, loaded: Loaded, broker_pid: int) -> Figures:
    """Read every message of the topic with a plain aiokafka consumer, in this process, doing nothing else."""
    return asyncio.run(_bare(bootstrap_servers(broker), loaded, broker_pid))


async def _bare(bootstrap: str, loaded: Loaded, broker_pid: int) -> Figures:
    # Partitions assigned by hand: no group join, so the clock covers reading alone.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=16 * 2**20, fetch_max_bytes=64 * 2**20)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = sorted(consumer.partitions_for_topic(loaded.topic) or ())
        consumer.assign([TopicPartition(loaded.topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        wall, cpu, broker_cpu = time.perf_counter(), time.process_time(), process_cpu(broker_pid)
        seen = 0  # counted against what was sent: the test broker's end offsets are not to be trusted
        deadline = time.monotonic() + 120
        while seen < loaded.messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer: {seen:,} of {loaded.messages:,} messages of {loaded.topic}")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        seconds = time.perf_counter() - wall
        return Figures(round(seen * loaded.events_per_message), seen, seconds, time.process_time() - cpu,
                       process_cpu(broker_pid) - broker_cpu)
    finally:
        await consumer.stop()


# -- consumer processes -----------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Consumer:
    """A consumer process and how to ask it how far it is (events done, and events read)."""

    process: subprocess.Popen[bytes]
    web_port: int
    log: Path
    progress: Callable[[Consumer], tuple[float, float]]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as response:
            return bytes(response.read())

    def poll(self) -> tuple[float, float] | None:
        """(events done, events read), or None while the web endpoint is not up."""
        if self.process.poll() is not None:
            raise RuntimeError(f"consumer exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
        try:
            return self.progress(self)
        except OSError:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def consumer_env(broker_url: str, loaded: Loaded, group: str, partitions: int, data_dir: Path) -> dict[str, str]:
    """The settings of a consumer process in ``group`` reading ``loaded``'s topic, as environment variables."""
    return {"SPENDWATCH_BROKER": broker_url, "SPENDWATCH_USAGE_TOPIC": loaded.topic,
            "SPENDWATCH_CONSUMER_GROUP": group, "SPENDWATCH_PARTITIONS": str(partitions),
            "SPENDWATCH_DATA_DIR": str(data_dir)}


def spawn(command: list[str], env: dict[str, str], web_port: int, log: Path,
          progress: Callable[[Consumer], tuple[float, float]]) -> Consumer:
    full_env = {**os.environ, **BENCH_BROKER_ENV, "PYTHONPATH": str(REPO), **env,
                "SPENDWATCH_WEB_PORT": str(web_port)}
    with log.open("wb") as out:  # started where PYTHONPATH's first entry is: see bench.compiled.start_dir
        process = subprocess.Popen(command, env=full_env, cwd=start_dir(full_env["PYTHONPATH"]), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Consumer(process, web_port, log, progress)


def noop_command(how: str = "") -> list[str]:
    """The do-nothing agent's command; ``how``: "" (per message), "--take" (as the worker reads) or "--stock"."""
    return [sys.executable, str(REPO / "bench" / "stream_noop.py"), *([how] if how else [])]


def worker_command() -> list[str]:
    return [sys.executable, "-c", "from streams.cli import worker; worker()", "--loglevel", "warning"]


def noop_progress(events_per_message: float) -> Callable[[Consumer], tuple[float, float]]:
    def progress(c: Consumer) -> tuple[float, float]:
        events = json.loads(c.get("/count"))["messages"] * events_per_message
        return events, events
    return progress


def worker_progress(events_per_message: float) -> Callable[[Consumer], tuple[float, float]]:
    """Events the worker is done with (run through detection, dead-lettered, dropped as repeats,
    redelivered), and events it has read (its messages, at the topic's events per message).

    While the worker is in a rebalance (its health page says so, until faust
    has recovered its tables) it counts as done with nothing, so the clock
    does not start on a group still settling: see :func:`time_consumers`.
    """
    from prometheus_client.parser import text_string_to_metric_families

    def progress(c: Consumer) -> tuple[float, float]:
        if json.loads(c.get("/health"))["rebalancing"]:
            return 0.0, 0.0
        done = messages = 0.0
        for family in text_string_to_metric_families(c.get("/metrics").decode()):
            for sample in family.samples:
                if sample.name in ("spendwatch_events_processed_total", "spendwatch_events_deadlettered_total",
                                   "spendwatch_events_duplicate_total", "spendwatch_events_redelivered_total"):
                    done += sample.value
                elif sample.name == "spendwatch_messages_total":
                    messages += sample.value
        return done, messages * events_per_message
    return progress


def time_consumers(consumers: list[Consumer], loaded: Loaded, broker_pid: int, timeout_s: float) -> Figures:
    """Poll until every consumer has finished some events and, together, they are done with the whole topic.

    The clock starts once every consumer has finished events and none is in
    a rebalance: two workers started together join their group one after
    the other, and the first re-reads its tables' changelogs when the second
    arrives. That start-up is not what a second worker adds to a running one.
    """
    deadline = time.monotonic() + timeout_s
    start: tuple[float, float, float, float] | None = None  # (wall, events read, cpu, broker cpu)
    while time.monotonic() < deadline:
        polls = [c.poll() for c in consumers]
        now = time.perf_counter()
        if all(p is not None for p in polls):
            done = sum(p[0] for p in polls if p is not None)
            if start is None and all(p[0] > 0 for p in polls if p is not None):
                read = min(loaded.events, sum(p[1] for p in polls if p is not None))
                start = (now, read, _cpu(consumers), process_cpu(broker_pid))
            if start is not None and done >= loaded.events:
                events = loaded.events - start[1]
                if events <= 0 or now <= start[0]:
                    raise RuntimeError(f"{loaded.topic}: every event was read before all {len(consumers)} consumers "
                                       "had started, so there is nothing left to time; load more events (--batched)")
                return Figures(round(events), events / loaded.events_per_message, now - start[0],
                               _cpu(consumers) - start[2], process_cpu(broker_pid) - start[3])
        time.sleep(POLL_S)
    progress = [c.poll() for c in consumers]
    raise TimeoutError(f"consumers of {loaded.topic} not done in {timeout_s:.0f}s: progress {progress}, "
                       f"{loaded.events:,} events expected; logs: {[str(c.log) for c in consumers]}")


def _cpu(consumers: list[Consumer]) -> float:
    return sum(process_cpu(c.process.pid) for c in consumers)
