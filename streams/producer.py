"""Loading a JSONL file into the usage topic: ``spendwatch produce``.

Lines are sent in batches, each batch split by partition key
(:func:`detector.engine_state.group_key`: one feature's requests) and every part sent as one message keyed by that
key, so all events of a key travel through one partition in file order: the
worker then sees them in the order ``spendwatch replay`` does. That partition
is the one the key's state lives on (:func:`streams.codecs.partition_of`, as
the worker repartitions): the worker that reads a key's events is then the one
that judges them, and two workers do not wait on each other's decoding. A
line that is not a valid event goes alone and unkeyed, byte for byte, so the
worker dead-letters exactly it and nothing else.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from detector.engine_state import group_key
from detector.events import Decoder
from streams.codecs import partition_of
from streams.settings import StreamSettings

Framing = Literal["array", "ndjson"]


def bootstrap_servers(broker: str) -> str:
    """faust's broker URL (``kafka://h1:9092;kafka://h2:9092``) as a client's host:port list.

    >>> bootstrap_servers("kafka://10.0.0.1:9092;kafka://10.0.0.2:9092")
    '10.0.0.1:9092,10.0.0.2:9092'
    >>> bootstrap_servers("broker:9092")
    'broker:9092'
    """
    hosts = []
    for part in broker.replace(",", ";").split(";"):
        part = part.strip()
        if part:
            hosts.append(part.split("://", 1)[-1].rstrip("/"))
    if not hosts:
        raise ValueError(f"broker: expected a URL like kafka://host:9092, found {broker!r}")
    return ",".join(hosts)


def client_options(settings: StreamSettings) -> dict[str, Any]:
    """Connection options for an aiokafka client, from the same settings the worker uses."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings.broker),
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.ssl_cafile) if settings.ssl_cafile else None
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    if settings.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return options


def batch_options(settings: StreamSettings) -> dict[str, Any]:
    """The producer's batch cap, when the settings set one: the same cap as the worker's producer.

    >>> batch_options(StreamSettings(producer_max_batch_bytes=1)), batch_options(StreamSettings())
    ({'max_batch_size': 1}, {})
    """
    cap = settings.producer_max_batch_bytes
    return {"max_batch_size": cap} if cap is not None else {}


@dataclass
class Message:
    key: bytes | None
    value: bytes
    events: int
    partition: int | None = None  # where the key's state lives; None: the producer's choice


class Batcher:
    """Lines → messages: per batch, one message per partition key; bad lines alone.

    >>> b = Batcher(framing="array")
    >>> line = b'{"ts": 1.8e9, "model": "m", "input_tokens": 5, "output_tokens": 1, "team": "a"}'
    >>> [(m.events, m.value[:1]) for m in b.messages([line, line.replace(b'"a"', b'"b"'), b"{oops"])]
    [(1, b'{'), (1, b'['), (1, b'[')]
    """

    def __init__(self, framing: Framing = "array", settings: StreamSettings | None = None,
                 partitions: int | None = None) -> None:
        """``partitions``: the usage topic's, to place each key's messages where its state lives."""
        # Only the key is wanted here, so duplicates are the worker's business, not ours.
        base = settings or StreamSettings()
        self._decoder = Decoder(base.model_copy(update={"dedupe_ids": 1}))
        self.framing = framing
        self.partitions = partitions

    def key_of(self, line: bytes) -> str | None:
        events, _ = self._decoder.decode_lines([line])
        return group_key(events[0]) if len(events) == 1 else None

    def messages(self, lines: list[bytes]) -> Iterator[Message]:
        groups: dict[str, list[bytes]] = {}
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            key = self.key_of(line)
            if key is None:
                yield Message(None, line, 1)
            else:
                groups.setdefault(key, []).append(line)
        for key, group in groups.items():
            body = b"[" + b",".join(group) + b"]" if self.framing == "array" else b"\n".join(group)
            partition = partition_of(key, self.partitions) if self.partitions else None
            yield Message(_key_bytes(key), body, len(group), partition)


def _key_bytes(key: str) -> bytes:
    """The key as JSON, the encoding the worker's repartition topic uses."""
    import orjson

    return orjson.dumps(key)


async def ensure_topic(settings: StreamSettings, name: str) -> None:
    """Create ``name`` with the configured partitions unless it exists."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=settings.partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def produce_lines(
    lines: Iterable[bytes],
    settings: StreamSettings,
    *,
    batch: int = 500,
    rate: float | None = None,
    framing: Framing = "array",
    on_sent: Callable[[int, int], None] = lambda lines, events: None,
) -> tuple[int, int]:
    """Send ``lines`` to the usage topic; return (messages, events). ``rate`` caps events per second."""
    await ensure_topic(settings, settings.usage_topic)
    producer = AIOKafkaProducer(**client_options(settings), **batch_options(settings), linger_ms=5,
                                enable_idempotence=False)
    sent_messages = sent_events = 0
    started = time.monotonic()
    await producer.start()
    try:
        batcher = Batcher(framing, settings, len(await producer.partitions_for(settings.usage_topic)))
        pending = []
        for chunk in _chunks(lines, batch):
            for message in batcher.messages(chunk):
                pending.append(await producer.send(settings.usage_topic, message.value, key=message.key,
                                                   partition=message.partition))
                sent_messages += 1
                sent_events += message.events
            on_sent(len(chunk), sent_events)
            if rate:
                ahead = sent_events / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) > 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent_messages, sent_events


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
