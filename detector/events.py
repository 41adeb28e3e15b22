"""The event contract (DESIGN.md, Contract 1): what producers send us.

Two layers, on purpose. The pydantic models are the contract: they define
every field, alias and rule, and they write the error messages. The decoded
events handed to the engine are plain slotted dataclasses, because a pydantic
instance per event costs more than the whole rest of the pipeline. A fast
decoder builds those dataclasses straight from parsed JSON for the common,
valid case and defers to the pydantic models whenever anything looks unusual,
so both paths accept exactly the same events and reject with the same words.

Where each part lives: this module holds the types and the :class:`Decoder`
(batches, payload forms, duplicates); ``event_schema`` the pydantic contract
(fields, aliases, bounds, messages); ``event_rules`` the field rules both
paths share (timestamps, closed sets); ``event_fast`` the msgspec fast path.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec
import orjson

from detector.config import Settings

CATEGORIES: tuple[str, ...] = (
    "hosted_inference",
    "self_hosted_inference",
    "training",
    "embedding",
    "labelling",
    "evaluation",
)
STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "rate_limited", "cancelled")
ALLOCATION_TAGS: tuple[str, ...] = ("team", "product", "feature", "cost_center", "cohort")


@dataclass(slots=True)
class LlmRequest:
    """One priced-or-priceable LLM call, with time as epoch seconds (UTC)."""

    type: ClassVar[str] = "llm_request"
    ts: float
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    request_id: str | None = None
    provider: str | None = None
    tier: str | None = None
    category: str = "hosted_inference"
    team: str | None = None
    product: str | None = None
    feature: str | None = None
    cost_center: str | None = None
    cohort: str | None = None
    tags: dict[str, str] | None = None
    attempt: int = 1
    status: str = "ok"
    latency_ms: float | None = None
    cost_usd: float | None = None


@dataclass(slots=True)
class GpuSample:
    """One utilisation reading of one paid GPU; ``utilization`` is 0–1."""

    type: ClassVar[str] = "gpu_sample"
    ts: float
    node: str
    gpu: str
    utilization: float
    cluster: str | None = None
    gpu_model: str | None = None
    memory_used_bytes: int | None = None
    hourly_cost_usd: float | None = None
    category: str = "self_hosted_inference"
    team: str | None = None
    product: str | None = None
    feature: str | None = None
    cost_center: str | None = None
    cohort: str | None = None
    tags: dict[str, str] | None = None


@dataclass(slots=True)
class UsageSample:
    """Spend or usage that does not come per request (a vector DB's hourly bill, ...)."""

    type: ClassVar[str] = "usage_sample"
    ts: float
    metric: str
    value: float
    unit: str
    category: str = "hosted_inference"
    team: str | None = None
    product: str | None = None
    feature: str | None = None
    cost_center: str | None = None
    cohort: str | None = None
    tags: dict[str, str] | None = None


Event = LlmRequest | GpuSample | UsageSample

REJECT_CODES: tuple[str, ...] = (
    "malformed_json",
    "not_an_object",
    "unknown_type",
    "missing_field",
    "bad_timestamp",
    "invalid_value",
    "negative_value",
    "cached_exceeds_input",
    "unknown_category",
    "unknown_status",
    "out_of_range",
    "absurd_value",
    "internal_error",
)
"""Every code a reject can carry; ``internal_error`` means a bug of ours, never the producer's."""

RAW_KEPT_CHARS = 10_000
"""A reject keeps at most this much of the original text, enough to see what went wrong."""

_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


class InvalidEvent(ValueError):
    """An event breaks the contract: ``code`` for counting, ``reason`` for people.

    Raised inside decoding only; a Decoder turns it into a :class:`Reject`.

    >>> InvalidEvent("negative_value", "input_tokens: expected an integer ≥ 0, got -5").code
    'negative_value'
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reject:
    """An input that is not a valid event: what goes to the dead-letter topic or file.

    ``line`` is 1-based within its source (for a JSON array, the element's
    position), ``raw`` the original text (cut at RAW_KEPT_CHARS), ``code`` a
    short name for counting and ``reason`` what to fix.

    >>> Reject(3, "{", "malformed_json", "not valid JSON: unexpected end of data").code
    'malformed_json'
    """

    line: int
    raw: str
    code: str
    reason: str


class Decoder:
    """Raw lines or Kafka payloads in, valid events and reasoned rejects out; never raises.

    Stateful only to drop duplicates: an llm_request whose ``request_id`` (and
    ``attempt``, so a retry is kept) was already seen is counted in
    ``duplicates`` and dropped, which makes at-least-once redelivery harmless.
    The most recent ``settings.dedupe_ids`` ids are remembered. ``fast=False``
    sends every event through the pydantic contract, for tests and comparison.

    >>> decoder = Decoder()
    >>> events, rejects = decoder.decode_lines([
    ...     b'{"ts": "2026-11-16T14:05:00Z", "model": "m", "input_tokens": 5, "output_tokens": 1}',
    ...     b'',
    ...     b'{"ts": "2026-11-16T14:05:00Z", "model": "m", "input_tokens": -5, "output_tokens": 1}',
    ... ])
    >>> events[0].input_tokens, rejects[0].line, rejects[0].reason
    (5, 3, 'input_tokens: expected an integer ≥ 0, got -5')
    """

    def __init__(self, settings: Settings | None = None, *, fast: bool = True) -> None:
        # The contract and the fast path are built on this module's types,
        # so they are imported here, not at the top, to keep imports one-way.
        from detector.event_fast import FastPath
        from detector.event_schema import validate_event

        self.settings = settings if settings is not None else Settings()
        self.duplicates = 0
        self.rejects_by_code: Counter[str] = Counter()
        self._validate = validate_event
        self._fast = FastPath(self.settings) if fast else None
        self._seen: set[str | tuple[str, int]] = set()
        self._seen_order: deque[str | tuple[str, int]] = deque()
        self._remember = self.settings.dedupe_ids

    def decode_lines(
        self, lines: Iterable[bytes | str], first_line: int = 1
    ) -> tuple[list[Event], list[Reject]]:
        """Decode JSON lines; blank lines are skipped, every other line is an event or a reject."""
        batch = lines if type(lines) is list else list(lines)
        rejects: list[Reject] = []
        decoded = self._fast.decode_lines(batch) if self._fast else [None] * len(batch)
        events = self._settle(
            decoded, first_line, lambda index, number: self._decode_slowly(batch[index], number, rejects)
        )
        return events, rejects

    def decode_payload(self, payload: bytes, first_line: int = 1) -> tuple[list[Event], list[Reject]]:
        """Decode one Kafka message: a single event, a JSON array of events, or JSON lines.

        A bad array element is rejected alone, with its position as ``line``.
        """
        body = payload.strip()
        if body[:1] == b"[":
            whole = self._fast.decode_array(body) if self._fast is not None else None
            if whole is not None:  # every element plain: only repeats are left to drop
                return self._settle(whole, first_line, _never_judged), []  # type: ignore[arg-type]
            try:
                items = _ARRAY.decode(body)
            except ValueError as exc:
                return [], [self._reject(first_line, payload, "malformed_json", f"not a valid JSON array: {exc}")]
            return self.decode_lines([bytes(item) for item in items], first_line)
        if b"\n" not in body:  # one event, the common message: its trailing newline is no second, blank line
            return self.decode_lines([body] if body else [], first_line)
        if body[:1] == b"{":
            whole = _pretty_printed(body)
            if whole is not None:
                return self.decode_objects([whole], first_line, raw=[payload])
        return self.decode_lines(payload.rstrip().split(b"\n"), first_line)  # leading blank lines keep numbers

    def decode_payloads(self, payloads: Sequence[bytes]) -> list[tuple[list[Event], list[Reject]]]:
        """:meth:`decode_payload` of each message of a batch, in order; one-event messages in one pass.

        A message holding one event is the common one, and decoding it alone
        costs as much in calls as in decoding: when every message of the
        batch is one JSON object on one line, the fast path takes them all at
        once. Otherwise each message is decoded alone, so repeated request
        ids are always dropped in message order.

        >>> ok = b'{"ts": 1800000000, "model": "m", "input_tokens": 5, "output_tokens": 1, "request_id": "r"}'
        >>> [(len(events), [r.code for r in rejects]) for events, rejects in Decoder().decode_payloads(
        ...     [ok, b'{"model": "m"}', ok + b"\\n"])]
        [(1, []), (0, ['missing_field']), (0, [])]
        """
        bodies = [payload.strip() for payload in payloads]
        if self._fast is None or not all(body[:1] == b"{" and b"\n" not in body for body in bodies):
            return [self.decode_payload(payload) for payload in payloads]
        rejects: dict[int, list[Reject]] = {}
        settled = self._settle_each(
            self._fast.decode_lines(bodies),
            lambda index, number: self._decode_slowly(bodies[index], number, rejects.setdefault(index, [])),
            alone=True,
        )
        return [([] if event is None else [event], rejects.get(i, [])) for i, event in enumerate(settled)]

    def decode_objects(
        self, objects: Iterable[object], first_line: int = 1, raw: Iterable[bytes | str] | None = None
    ) -> tuple[list[Event], list[Reject]]:
        """Decode already-parsed JSON values (a codec that parsed the JSON itself).

        ``raw``, when given, holds each value's original text for rejects;
        otherwise rejects carry the value re-encoded as JSON.
        """
        values = list(objects)
        texts = list(raw) if raw is not None else []
        rejects: list[Reject] = []

        def judge(index: int, number: int) -> Event | None:
            text = texts[index] if index < len(texts) else None
            return self._check(values[index], number, text if text is not None else _as_json(values[index]), rejects)

        decoded = [self._fast.from_object(obj) for obj in values] if self._fast else [None] * len(values)
        return self._settle(decoded, first_line, judge), rejects

    def _settle(
        self, decoded: list[Event | None], first_line: int, judge: Callable[[int, int], Event | None]
    ) -> list[Event]:
        """The events in input order: ``judge(index, number)`` where the fast path gave None, duplicates dropped."""
        return [event for event in self._settle_each(decoded, judge, first_line) if event is not None]

    def _settle_each(
        self, decoded: list[Event | None], judge: Callable[[int, int], Event | None], first_line: int = 1,
        alone: bool = False,
    ) -> list[Event | None]:
        """Each item's event, or None where ``judge(index, number)`` rejected it or it is a repeat.

        Items are lines numbered from ``first_line`` on, or with ``alone``
        each a message of its own (line 1). One loop for both steps, with the
        duplicate check written out rather than called, because it runs once
        per event of every batch.
        """
        events: list[Event | None] = []
        append = events.append
        seen, order, remember = self._seen, self._seen_order, self._remember
        for index, event in enumerate(decoded):
            if event is None:
                event = judge(index, first_line if alone else first_line + index)
                if event is None:
                    append(None)
                    continue
            if type(event) is LlmRequest and (rid := event.request_id) is not None:
                key: str | tuple[str, int] = rid if event.attempt == 1 else (rid, event.attempt)
                if key in seen:
                    self.duplicates += 1
                    append(None)
                    continue
                seen.add(key)
                order.append(key)
                if len(order) > remember:
                    seen.discard(order.popleft())
            append(event)
        return events

    def _decode_slowly(self, line: bytes | str, number: int, rejects: list[Reject]) -> Event | None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if not isinstance(line, str | bytes | bytearray | memoryview):
                reason = f"expected a line of text, got {type(line).__name__}"
                rejects.append(self._reject(number, repr(line), "malformed_json", reason))
            elif not _is_blank(line):
                rejects.append(self._reject(number, line, "malformed_json", _json_problem(exc)))
            return None
        return self._check(obj, number, line, rejects)

    def _check(self, obj: object, number: int, raw: bytes | str, rejects: list[Reject]) -> Event | None:
        """The contract's verdict on one parsed value: the event, or None with a reject recorded."""
        try:
            return self._validate(obj, self.settings)
        except InvalidEvent as exc:
            rejects.append(self._reject(number, raw, exc.code, exc.reason))
        except Exception as exc:  # a bug of ours: dead-letter the event, keep going
            reason = f"could not decode ({type(exc).__name__}: {exc}); a spendwatch bug, please report it"
            rejects.append(self._reject(number, raw, "internal_error", reason))
        return None

    def _reject(self, number: int, raw: bytes | str, code: str, reason: str) -> Reject:
        self.rejects_by_code[code] += 1
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
        return Reject(number, text.rstrip("\r\n")[:RAW_KEPT_CHARS], code, reason)


def _never_judged(index: int, number: int) -> Event | None:
    raise AssertionError(f"line {number}: an event the fast path decoded is not judged again")


def _is_blank(line: bytes | str | bytearray | memoryview) -> bool:
    return not (line if isinstance(line, str) else bytes(line)).strip()


def _pretty_printed(body: bytes) -> object | None:
    """The payload as one JSON value if it is one (spread over lines), else None (JSON lines)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _json_problem(exc: orjson.JSONDecodeError) -> str:
    where = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno} column {exc.colno}"
    return f"not valid JSON: {exc.msg} at {where}; expected one JSON object per line"


def _as_json(obj: object) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (TypeError, orjson.JSONEncodeError):
        return repr(obj)
