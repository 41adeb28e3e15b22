"""The one place bytes meet ``detector`` types on Kafka; never the pickle codec.

Three payloads:

* **keyed batches** on the repartition topic: for each partition key of one
  partition, its events in order, grouped by the usage message they came
  from, so that :mod:`streams.agents` can tell (source partition, offset) of
  every event and skip what a redelivery brings twice. Layout::

      [[key, [[src_partition, src_offset, part, type, [{field: value, ...}, ...]], ...]], ...]

  A key's events are all of one type (the key says which), so each segment
  names its type once and msgspec decodes its events straight into that
  type, ~2.5× faster than JSON to dicts to dataclasses; a segment of mixed
  types (never made by the worker) is written as ``"*"`` with ``[type,
  event]`` pairs. A usage message with more events than fit in one message is
  split into parts (``part`` 0, 1, ...), so ``(src_offset, part)`` identifies
  a segment.

* **dead letters**: reason, code, the original text, and where it came from.
* **anomalies**: Contract 3 records, exactly as ``spendwatch replay --out`` writes them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, NamedTuple

import msgspec
import orjson
from aiokafka.partitioner import DefaultPartitioner

from detector.anomaly import Anomaly
from detector.events import Event, GpuSample, LlmRequest, Reject, UsageSample

EVENT_TYPES: dict[str, type[LlmRequest | GpuSample | UsageSample]] = {
    cls.type: cls for cls in (LlmRequest, GpuSample, UsageSample)
}
MIXED = "*"
_ENCODER = msgspec.json.Encoder()
_KEYED = msgspec.json.Decoder(list[tuple[str, list[tuple[int, int, int, str, msgspec.Raw]]]])
_EVENTS = {kind: msgspec.json.Decoder(list[cls]) for kind, cls in EVENT_TYPES.items()}  # type: ignore[valid-type]
_PAIRS = msgspec.json.Decoder(list[tuple[str, dict[str, Any]]])
_PARTITIONER = DefaultPartitioner()


class CodecError(ValueError):
    """A payload on an internal topic is not what this version of spendwatch writes."""


@dataclass(slots=True)
class Segment:
    """The events of one partition key that came in one usage message.

    Not frozen: :class:`streams.agents.Routes` marks the segments a batch
    judges where it read them (``direct``), rather than copying each, and
    a frozen dataclass is built field by field through ``object.__setattr__``,
    at a cost per segment that a batch of one-event messages pays per event.
    """

    src_partition: int
    src_offset: int
    events: list[Event]
    part: int = 0
    direct: bool = False  # judged where it was read, not sent on through the repartition topic

    @property
    def position(self) -> tuple[int, int]:
        """Where the segment stands in its source partition: later segments compare greater."""
        return (self.src_offset, self.part)

    @property
    def route(self) -> str:
        """Under which name the key's saved state remembers the positions applied from this segment's way.

        A source partition's segments come either straight from the usage
        topic or through the repartition topic, and the two ways are not in
        step: one that a worker before direct judging had sent on may still
        wait in the repartition topic when later offsets of the same source
        partition are judged directly. Counted under one name, it would be
        skipped as already applied.

        >>> Segment(3, 7, []).route, Segment(3, 7, [], direct=True).route
        ('3', 'd3')
        """
        return f"d{self.src_partition}" if self.direct else str(self.src_partition)


MAX_EVENTS_PER_MESSAGE = 1000
"""Events per repartition message at most: keeps each well under Kafka's 1 MB default."""

Keyed = tuple[str, list[Segment]]
"""A partition key and its segments, as one repartition message carries them."""


@lru_cache(maxsize=1 << 16)
def partition_of(key: str, partitions: int) -> int:
    """The repartition-topic partition a key lives on (murmur2, as Kafka's default partitioner).

    Chosen here rather than by the producer, because one message carries the
    keys of one partition together, and each of them must always land there.
    Asked for every key of every batch the worker routes (and every message
    the producer sends), of a few thousand keys: hashed once each.

    >>> partition_of("llm:search/answer", 4) == partition_of("llm:search/answer", 4) < 4
    True
    """
    every = _every(partitions)
    return int(_PARTITIONER(key.encode(), every, every))


@cache
def _every(partitions: int) -> list[int]:
    return list(range(partitions))


def pack_keyed(by_key: Sequence[Keyed], max_events: int = MAX_EVENTS_PER_MESSAGE) -> list[bytes]:
    """Several keys' segments as repartition messages of at most ``max_events`` events, order kept.

    faust's cost is per message, so the keys bound for one partition travel
    together rather than one message each. A segment longer than
    ``max_events`` is cut into parts by its own length alone, never by what
    else shares the message: a usage message decoded again after a restart
    must give the same (offset, part) to the same events, or the detect
    step's check of what it already applied would count some of them twice.

    >>> ev = LlmRequest(ts=1.8e9, model="m", input_tokens=3, output_tokens=1)
    >>> messages = pack_keyed([("a", [Segment(0, 7, [ev] * 3)]), ("b", [Segment(0, 7, [ev])])], max_events=2)
    >>> [[(k, [(s.src_offset, s.part, len(s.events)) for s in segs]) for k, segs in decode_keyed(m)] for m in messages]
    [[('a', [(7, 0, 2)])], [('a', [(7, 1, 1)]), ('b', [(7, 0, 1)])]]
    """
    messages: list[bytes] = []
    current: list[list[Any]] = []  # [key, segment forms] in the message being filled
    room = max_events
    for key, segments in by_key:
        for part in _parts(segments, max_events):
            if len(part.events) > room:
                messages.append(_ENCODER.encode(current))
                current, room = [], max_events
            if not current or current[-1][0] != key:
                current.append([key, []])
            current[-1][1].append(_segment_form(part))
            room -= len(part.events)
    if current:
        messages.append(_ENCODER.encode(current))
    return messages


def _parts(segments: Sequence[Segment], max_events: int) -> Iterator[Segment]:
    """Each segment cut into parts of at most ``max_events`` events, numbered from its own ``part``."""
    for segment in segments:
        events = segment.events
        for i, start in enumerate(range(0, len(events), max_events)):
            yield Segment(segment.src_partition, segment.src_offset, events[start:start + max_events], segment.part + i)


def _segment_form(s: Segment) -> list[Any]:
    events = s.events
    kind = type(events[0]) if events else LlmRequest
    if all(type(ev) is kind for ev in events):
        return [s.src_partition, s.src_offset, s.part, kind.type, events]
    return [s.src_partition, s.src_offset, s.part, MIXED, [[ev.type, ev] for ev in events]]


def decode_keyed(payload: bytes) -> list[Keyed]:
    """Bytes → each key's segments; a payload of another layout raises :class:`CodecError` saying what it found."""
    try:
        return [(key, [Segment(partition, offset, _events(kind, raw), part)
                       for partition, offset, part, kind, raw in segments])
                for key, segments in _KEYED.decode(payload)]
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        raise CodecError(
            f"repartition payload: expected [[key, [[partition, offset, part, type, [event, ...]], ...]], ...], "
            f"found {payload[:200]!r} ({type(exc).__name__}: {exc})"
        ) from exc


def _events(kind: str, raw: msgspec.Raw) -> list[Event]:
    if kind == MIXED:
        return [EVENT_TYPES[k](**fields) for k, fields in _PAIRS.decode(raw)]
    decoder = _EVENTS.get(kind)
    if decoder is None:
        raise ValueError(f"unknown event type {kind!r}")
    return decoder.decode(raw)  # type: ignore[no-any-return]


def event_text(ev: Event) -> str:
    """One decoded event as JSON text, for a dead letter of an event that failed in processing.

    >>> event_text(UsageSample(ts=1.8e9, metric="vector_db_usd", value=3.0, unit="usd"))[:40]
    '{"type":"usage_sample","ts":1800000000.0'
    """
    fields = {k: v for k, v in orjson.loads(orjson.dumps(ev)).items() if v is not None}
    return orjson.dumps({"type": ev.type, **fields}).decode()


class Origin(NamedTuple):
    """Where a message was read: enough to find it again on the broker.

    A named tuple, as the worker makes one per message it reads: three
    times cheaper to build than a frozen dataclass.
    """

    topic: str
    partition: int
    offset: int


def dead_letter(origin: Origin, code: str, reason: str, raw: bytes | str, line: int | None = None) -> bytes:
    """A dead-letter record: UTF-8 text is kept as text, anything else as base64.

    >>> rec = orjson.loads(dead_letter(Origin("spendwatch.usage", 0, 7), "malformed_json", "not JSON", b"\\xff{"))
    >>> rec["code"], rec["raw_base64"], rec["offset"]
    ('malformed_json', '/3s=', 7)
    """
    record: dict[str, Any] = {
        "code": code, "reason": reason, "topic": origin.topic, "partition": origin.partition,
        "offset": origin.offset, "line": line,
    }
    if isinstance(raw, str):
        record["raw"] = raw
    else:
        try:
            record["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(record)


def reject_letter(origin: Origin, reject: Reject) -> bytes:
    """The dead letter for a decoder :class:`Reject`, with its line within the message."""
    return dead_letter(origin, reject.code, reject.reason, reject.raw, reject.line)


def anomaly_record(anomaly: Anomaly) -> bytes:
    """Contract 3 as bytes: the same fields ``spendwatch replay --out`` writes."""
    return orjson.dumps(anomaly.to_dict())
