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

from functools import cache
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import Meta

from detector.config import Settings
from detector.event_rules import parse_ts
from detector.event_schema import GPU_CATEGORIES, MAX_ATTEMPT, MAX_LATENCY_MS, MAX_MEMORY_BYTES, LlmRequestIn
from detector.events import CATEGORIES, STATUSES, Event, GpuSample, InvalidEvent, LlmRequest, UsageSample

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
        self._finish = {shapes.llm: self._llm, shapes.gpu: _gpu, shapes.usage: _usage}
        self._max_tokens = settings.max_tokens_per_request

    def from_text(self, line: bytes | str) -> Event | None:
        """One JSON line to an event, if it is plain."""
        try:
            return self._llm(self._decode_llm(line))
        except msgspec.ValidationError:
            pass  # well-formed JSON of another shape: perhaps a typed event
        except Exception:  # anything unusual, even a wrong input type, is the contract's to judge
            return None
        try:
            plain = self._decode_typed(line)
            return self._finish[type(plain)](plain)
        except Exception:  # as above
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
            plain = msgspec.convert(obj, shape)
        except Exception:  # as above
            return None
        return self._finish[type(plain)](plain)

    def _llm(self, p: Any) -> LlmRequest | None:
        tokens, cached = p.input_tokens, p.cached_input_tokens
        if cached > tokens or tokens + p.output_tokens > self._max_tokens:
            return None
        ts = _ts(p.ts)
        if ts is None:
            return None
        return LlmRequest(
            ts, p.model, tokens, p.output_tokens, cached, p.request_id, p.provider, p.tier, p.category,
            p.team, p.product, p.feature, p.cost_center, p.cohort, p.tags, p.attempt, p.status,
            p.latency_ms, p.cost_usd,
        )  # fmt: skip


def _gpu(p: Any) -> GpuSample | None:
    ts = _ts(p.ts)
    utilization = p.utilization if p.utilization is not None else _percent(p.utilization_pct)
    if ts is None or utilization is None:
        return None
    return GpuSample(
        ts, p.node, p.gpu, utilization, p.cluster, p.gpu_model, p.memory_used_bytes, p.hourly_cost_usd,
        p.category, p.team, p.product, p.feature, p.cost_center, p.cohort, p.tags,
    )  # fmt: skip


def _usage(p: Any) -> UsageSample | None:
    ts = _ts(p.ts)
    if ts is None:
        return None
    return UsageSample(
        ts, p.metric, p.value, p.unit, p.category, p.team, p.product, p.feature, p.cost_center, p.cohort, p.tags
    )


def _percent(pct: float | None) -> float | None:
    return None if pct is None else pct / 100


def _ts(value: str | int | float) -> float | None:
    # The contract's own reading of time, so the two paths cannot disagree on it.
    try:
        return parse_ts(value)
    except InvalidEvent:
        return None
