"""The fast path: plain, canonical events straight to the engine's dataclasses.

Validating every event with the pydantic contract costs more than the rest
of the pipeline together, yet almost every line a producer writes has the
same plain shape: canonical keys, right types, values in range. For that
shape msgspec checks types and bounds in C while decoding, and a few lines
of Python finish what msgspec cannot state (rules across fields, the
timestamp). Anything else (an alias, a missing field, an integral float, a
null, a failed check) gives None, and the caller asks the contract, which
either accepts the event, giving the same dataclass, or says why not. This
module therefore never writes a reason: it may be stricter than the
contract, never looser, and a property test holds it to that.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import Meta

from detector.config import Settings
from detector.event_rules import TS_MAX, TS_MIN, parse_ts
from detector.event_schema import GPU_CATEGORIES, MAX_ATTEMPT, MAX_LATENCY_MS, MAX_MEMORY_BYTES, LlmRequestIn
from detector.events import CATEGORIES, STATUSES, Event, GpuSample, InvalidEvent, LlmRequest, UsageSample

TYPE_WITHIN = 64
"""How far into a line a ``"type"`` key is looked for, to try the tagged shapes first.

Only a guess of which shape to try first: a line with its type further in
still decodes, after a failed llm_request attempt, through ``from_text``.
Searching a whole line for it cost more than a tenth of decoding it.
"""
_new = object.__new__
_MAX_FLOAT = 1.7976931348623157e308  # msgspec bounds must be finite; this one still shuts out inf

_Text = str | None
_Name = Annotated[str, Meta(min_length=1)]
_Amount = Annotated[float, Meta(ge=0, le=_MAX_FLOAT)]
_LABELS: list[Any] = [
    ("team", _Text, None),
    ("product", _Text, None),
    ("feature", _Text, None),
    ("cost_center", _Text, None),
    ("cohort", _Text, None),
    ("tags", dict[str, str] | None, None),
]


def alias_keys() -> tuple[str, ...]:
    """Top-level keys through which the contract reads an llm_request field under another name.

    A non-null value under any of them sends the event to the contract, so a
    new alias there is never silently ignored here.

    >>> "usage" in alias_keys() and "gen_ai.system" in alias_keys()
    True
    """
    keys: list[str] = []
    for name, field in LlmRequestIn.model_fields.items():
        for choice in getattr(field.validation_alias, "choices", ()):
            key = choice if isinstance(choice, str) else str(choice.path[0])
            if key != name and key not in keys:
                keys.append(key)
    return tuple(keys)


def _llm_fields(max_tokens: int, max_cost_usd: float) -> list[Any]:
    # Keys in the order producers (and our simulator) write them: msgspec
    # looks for the next field first, so matching orders decode fastest.
    tokens = Annotated[int, Meta(ge=0, le=max_tokens)]
    fields: list[Any] = [
        ("ts", str | int | float),
        ("model", _Name),
        ("provider", _Text, None),
        *_LABELS[:3],
        ("category", Literal[CATEGORIES], "hosted_inference"),  # type: ignore[valid-type]
        ("input_tokens", tokens),
        ("output_tokens", tokens),
        ("cached_input_tokens", tokens, 0),
        ("request_id", _Name | None, None),
        ("attempt", Annotated[int, Meta(ge=1, le=MAX_ATTEMPT)], 1),
        ("status", Literal[STATUSES], "ok"),  # type: ignore[valid-type]
        ("latency_ms", Annotated[float, Meta(ge=0, le=MAX_LATENCY_MS)] | None, None),
        ("cost_usd", Annotated[float, Meta(ge=0, le=max_cost_usd)] | None, None),
        ("tier", _Text, None),
        *_LABELS[3:],
    ]
    fields += [(f"alias_{i}", None, msgspec.field(default=None, name=key)) for i, key in enumerate(alias_keys())]
    return fields


_GPU_FIELDS: list[Any] = [
    ("ts", str | int | float),
    ("cluster", _Text, None),
    ("node", _Name),
    ("gpu", _Name),
    ("gpu_model", _Text, None),
    ("utilization", Annotated[float, Meta(ge=0, le=1)] | None, None),
    ("utilization_pct", Annotated[float, Meta(ge=0, le=100)] | None, None),
    ("memory_used_bytes", Annotated[int, Meta(ge=0, le=MAX_MEMORY_BYTES)] | None, None),
    ("hourly_cost_usd", _Amount | None, None),
    ("category", Literal[GPU_CATEGORIES], "self_hosted_inference"),  # type: ignore[valid-type]
    *_LABELS,
]
_USAGE_FIELDS: list[Any] = [
    ("ts", str | int | float),
    ("metric", _Name),
    ("value", Annotated[float, Meta(ge=-_MAX_FLOAT, le=_MAX_FLOAT)]),
    ("unit", _Name),
    ("category", Literal[CATEGORIES], "hosted_inference"),  # type: ignore[valid-type]
    *_LABELS,
]


class Shapes(NamedTuple):
    """The plain shape of each event kind, as msgspec structs."""

    llm: type[msgspec.Struct]  # "type" absent or "llm_request"
    gpu: type[msgspec.Struct]  # tagged by "type", as is usage
    usage: type[msgspec.Struct]


@cache
def plain_shapes(max_tokens: int, max_cost_usd: float) -> Shapes:
    """The plain shapes under these limits; bounds and defaults are the contract's.

    >>> plain_shapes(10, 1.0).gpu.__name__
    'PlainGpuSample'
    """
    llm = _llm_fields(max_tokens, max_cost_usd)
    tagged = {"kw_only": True, "gc": False, "tag_field": "type"}
    return Shapes(
        msgspec.defstruct(
            "PlainLlmRequest", [*llm, ("type", Literal["llm_request"], "llm_request")], kw_only=True, gc=False
        ),
        msgspec.defstruct("PlainGpuSample", _GPU_FIELDS, tag="gpu_sample", **tagged),
        msgspec.defstruct("PlainUsageSample", _USAGE_FIELDS, tag="usage_sample", **tagged),
    )


class FastPath:
    """Decodes plain events, or returns None to leave the event to the contract.

    >>> fast = FastPath(Settings())
    >>> fast.from_text(b'{"ts": 1794837900, "model": "m", "input_tokens": 5, "output_tokens": 1}').input_tokens
    5
    >>> fast.from_text(b'{"ts": 1794837900, "model": "m", "usage": {"prompt_tokens": 5}}') is None
    True
    """

    def __init__(self, settings: Settings) -> None:
        shapes = plain_shapes(settings.max_tokens_per_request, settings.max_cost_per_request_usd)
        self._decode_llm = msgspec.json.Decoder(shapes.llm).decode
        self._decode_typed = msgspec.json.Decoder(shapes.gpu | shapes.usage).decode
        self._by_kind: dict[str | None, type[msgspec.Struct]] = {
            None: shapes.llm, "llm_request": shapes.llm, "gpu_sample": shapes.gpu, "usage_sample": shapes.usage
        }
        self._decode_llm_array = msgspec.json.Decoder(list[shapes.llm]).decode  # type: ignore[valid-type]
        self._decode_typed_array = msgspec.json.Decoder(list[shapes.gpu | shapes.usage]).decode  # type: ignore[valid-type]
        self._finish = {shapes.llm: self._llm, shapes.gpu: _gpu, shapes.usage: _usage}
        self._llm_shape = shapes.llm
        self._max_tokens = settings.max_tokens_per_request

    def decode_lines(self, lines: Iterable[bytes | str]) -> list[Event | None]:
        """Each line's event, or None where the contract must judge.

        Each line is decoded into its plain shape (the tagged ones first when
        it mentions a ``"type"`` key early), then made an event
        (:meth:`_events`); a line of no plain shape goes to :meth:`from_text`.

        Decoding a chunk as one JSON array (``[`` + lines + ``]``) was
        measured too: no faster per line, and unsound, as a line that is not
        JSON by itself (one that stops inside a list) can borrow from the
        next line and parse.

        >>> [type(e).__name__ for e in FastPath(Settings()).decode_lines([
        ...     b'{"ts": "2026-11-16T14:05:00Z", "model": "m", "input_tokens": 5, "output_tokens": 1}',
        ...     b'{"ts": "2026-11-16T14:05:00Z", "type": "usage_sample", "metric": "x", "value": 1, "unit": "usd"}',
        ...     b'{"ts": "2026-11-16T14:05:00Z", "model": "m", "input_tokens": -5, "output_tokens": 1}',
        ... ])]
        ['LlmRequest', 'UsageSample', 'NoneType']
        """
        return self._events(lines, decode=True)

    def decode_array(self, body: bytes) -> list[Event] | None:
        """Every element of a JSON array message, if all are plain; else None (the caller goes element by element).

        One msgspec pass over the whole array, rather than splitting it into
        elements and decoding each again: a batched message is a few hundred
        events of one partition key, so of one kind.

        >>> fast = FastPath(Settings())
        >>> [e.input_tokens for e in fast.decode_array(b'[{"ts": 1794837900, "model": "m", "input_tokens": 5, '
        ...                                             b'"output_tokens": 1}, {"ts": 1794837960, "model": "m", '
        ...                                             b'"input_tokens": 7, "output_tokens": 2}]')]
        [5, 7]
        >>> fast.decode_array(b'[{"ts": 1794837900, "model": "m", "usage": {"prompt_tokens": 5}}]') is None
        True
        """
        try:
            typed = body.find(b'"type"', 0, TYPE_WITHIN) >= 0
            plains = self._decode_typed_array(body) if typed else self._decode_llm_array(body)
        except Exception:  # an element of another shape: each is judged on its own
            return None
        decoded = self._events(plains, decode=False)
        # Events are always true and None is false: all() asks no event's __eq__, as `None in` would.
        return decoded if all(decoded) else None  # type: ignore[return-value]

    def _events(self, items: Iterable[Any], decode: bool) -> list[Event | None]:
        """Each item's event, or None where the contract must judge; one loop, the common case inline.

        ``items`` are lines to decode, or (``decode`` false) structs decoded
        already. A replay spends most of its time here, and at a few
        microseconds a line, calls from one small step to the next cost as
        much as msgspec's decoding. So for a plain line this one loop does
        what :meth:`from_text` does through five calls: guess the shape,
        decode, read the time, check the rules across fields (those of
        ``_llm``), build the dataclass. The time is read with the steps
        :func:`parse_ts` takes for RFC 3339 text, written out, and once per
        run of events that share it (a GPU node's samples do): parse_ts
        depends on the value alone, and equal values (1 and 1.0 too) read
        the same. Whatever is not plain goes to :meth:`from_text` or
        :func:`parse_ts` themselves.
        """
        decoded: list[Event | None] = []
        append, build = decoded.append, _llm_request
        decode_llm, decode_typed, from_text, read_ts = self._decode_llm, self._decode_typed, self.from_text, self._ts
        finish, max_tokens, llm = self._finish, self._max_tokens, self._llm_shape
        fromisoformat, ts_min, ts_max = datetime.fromisoformat, TS_MIN, TS_MAX
        last_text: object = None
        last_ts: float | None = None
        for item in items:
            try:
                if decode:
                    typed = item.find(b'"type"', 0, TYPE_WITHIN) >= 0
                    p = decode_typed(item) if typed else decode_llm(item)
                else:
                    p = item
                t = p.ts
                if t != last_text:  # neighbours often share a time (one GPU node's samples do): read it once
                    ts = None
                    if type(t) is str:
                        try:
                            moment = fromisoformat(t)
                        except ValueError:
                            moment = None
                        if moment is not None and moment.tzinfo is not None:
                            ts = moment.timestamp()
                    if ts is None or not ts_min <= ts < ts_max:
                        ts = read_ts(t)  # numbers, unusual text, and the verdict on every bad one
                    last_text, last_ts = t, ts
                if last_ts is None:
                    append(None)
                elif type(p) is not llm:
                    append(finish[type(p)](p, last_ts))
                elif p.cached_input_tokens > p.input_tokens or p.input_tokens + p.output_tokens > max_tokens:
                    append(None)
                else:
                    append(build(p, last_ts))
            except Exception:  # another shape, not JSON, not bytes: the general path decides
                append(from_text(item) if decode else None)
        return decoded

    def from_text(self, line: bytes | str) -> Event | None:
        """One JSON line to an event, if it is plain.

        Lines that mention a ``"type"`` key try the tagged shapes first, so a
        GPU sample does not pay for a failed llm_request decode.
        """
        try:
            typed_first = b'"type"' in line if type(line) is bytes else '"type"' in line  # type: ignore[operator]
        except TypeError:
            return None  # not text at all: the contract's to judge
        llm, typed = self._decode_llm, self._decode_typed
        first, second = (typed, llm) if typed_first else (llm, typed)
        try:
            try:
                plain = first(line)
            except msgspec.ValidationError:  # well-formed JSON of another shape: perhaps the other kind
                plain = second(line)
            return self._finish_plain(plain)
        except Exception:  # anything unusual is the contract's to judge
            return None

    def from_object(self, obj: object) -> Event | None:
        """One parsed JSON value to an event, if it is plain."""
        if type(obj) is not dict:
            return None
        kind = obj.get("type")
        shape = self._by_kind.get(kind) if kind is None or type(kind) is str else None
        if shape is None:
            return None
        try:
            return self._finish_plain(msgspec.convert(obj, shape))
        except Exception:  # as above
            return None

    def _finish_plain(self, plain: Any) -> Event | None:
        ts = self._ts(plain.ts)
        return None if ts is None else self._finish[type(plain)](plain, ts)  # type: ignore[no-any-return]

    def _ts(self, value: str | int | float) -> float | None:
        # The contract's own reading of time, so the two paths cannot disagree on it.
        try:
            return parse_ts(value)
        except InvalidEvent:
            return None

    def _llm(self, p: Any, ts: float) -> LlmRequest | None:
        if p.cached_input_tokens > p.input_tokens or p.input_tokens + p.output_tokens > self._max_tokens:
            return None
        return _llm_request(p, ts)


def _llm_request(p: Any, ts: float) -> LlmRequest:
    """The dataclass from a plain struct, slot by slot.

    Calling the class goes through C into a second interpreter loop for
    ``__init__``; setting the slots here costs a third less per event, for
    the same object: LlmRequest has no ``__post_init__``, and a test holds
    it to that and to this function setting every field.
    """
    event = _new(LlmRequest)
    event.ts = ts
    event.model = p.model
    event.input_tokens = p.input_tokens
    event.output_tokens = p.output_tokens
    event.cached_input_tokens = p.cached_input_tokens
    event.request_id = p.request_id
    event.provider = p.provider
    event.tier = p.tier
    event.category = p.category
    event.team = p.team
    event.product = p.product
    event.feature = p.feature
    event.cost_center = p.cost_center
    event.cohort = p.cohort
    event.tags = p.tags
    event.attempt = p.attempt
    event.status = p.status
    event.latency_ms = p.latency_ms
    event.cost_usd = p.cost_usd
    return event


def _gpu(p: Any, ts: float) -> GpuSample | None:
    utilization = p.utilization if p.utilization is not None else _percent(p.utilization_pct)
    if utilization is None:
        return None
    return GpuSample(
        ts, p.node, p.gpu, utilization, p.cluster, p.gpu_model, p.memory_used_bytes, p.hourly_cost_usd,
        p.category, p.team, p.product, p.feature, p.cost_center, p.cohort, p.tags,
    )  # fmt: skip


def _usage(p: Any, ts: float) -> UsageSample:
    return UsageSample(
        ts, p.metric, p.value, p.unit, p.category, p.team, p.product, p.feature, p.cost_center, p.cohort, p.tags
    )


def _percent(pct: float | None) -> float | None:
    return None if pct is None else pct / 100
