"""The event contract as pydantic models: every field, alias, bound and message.

These models are the one place that decides whether an event is valid and,
when it is not, says why in words a producer can act on ("input_tokens:
expected an integer ≥ 0, got -5"). The fast decoder (``event_fast``) only
ever accepts what these models accept; whenever it is unsure it hands the
object here, so a reject always reads the same whichever path met it first.

Rules that hold for every field:

* ``null`` means absent: an optional field takes its default, a required one
  is reported as missing.
* Unknown top-level keys are ignored (producers send more than we read).
* When a canonical field and one of its aliases are both present, the
  canonical field wins, even if it is ``null``. Among aliases the order of
  :func:`_choices` decides: OpenTelemetry's flat dotted keys before the same
  keys nested under ``attributes``, ``gen_ai.response.model`` (what was
  billed) before ``gen_ai.request.model``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field, PlainValidator
from pydantic import ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from detector.config import Settings
from detector.event_rules import (
    check_category,
    check_status,
    expected,
    optional_text,
    parse_ts,
    required_text,
    show,
)
from detector.events import REJECT_CODES, Event, GpuSample, InvalidEvent, LlmRequest, UsageSample

GPU_CATEGORIES: tuple[str, ...] = ("self_hosted_inference", "training")
# Beyond these a value is a producer's bug, not a measurement; they also keep
# every accepted integer small enough for any JSON parser to read exactly.
MAX_ATTEMPT = 1_000
MAX_LATENCY_MS = 7 * 24 * 3600 * 1000.0
MAX_MEMORY_BYTES = 2**53

Check = Callable[[object, str, Settings], Any]
"""A field rule: (value, field name, settings) → the clean value, or InvalidEvent."""


def _fail(code: str, reason: str) -> PydanticCustomError:
    # The reason travels as context so that braces in a shown value are never
    # taken for template fields.
    return PydanticCustomError(code, "{reason}", {"reason": reason})


@cache
def _default_settings() -> Settings:
    return Settings()


def _settings(info: ValidationInfo) -> Settings:
    """The limits in force: the Settings passed as validation context, else the defaults."""
    return info.context if isinstance(info.context, Settings) else _default_settings()


def _rule(check: Check) -> PlainValidator:
    """Run ``check(value, field_name, settings)`` as a pydantic validator with our error codes."""

    def validate(value: object, info: ValidationInfo) -> object:
        settings = _settings(info)
        try:
            return check(value, info.field_name, settings)
        except InvalidEvent as exc:
            raise _fail(exc.code, exc.reason) from None

    return PlainValidator(validate)


def _integer(value: object, field: str, *, low: int, high: int, high_name: str | None = None) -> int:
    if value is None:
        raise InvalidEvent("missing_field", f"null (expected {expected(field)})")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent("invalid_value", f"expected {expected(field)}, got {show(value)}")
    if value < low:
        code = "negative_value" if value < 0 else "out_of_range"
        raise InvalidEvent(code, f"expected {expected(field)}, got {value}")
    if value > high:
        bound = f"{high_name} ({high})" if high_name else f"{high}"
        raise InvalidEvent("absurd_value", f"{value} is more than {bound}; absurd for one event")
    return value


def _number(value: object, field: str, *, low: float, high: float, high_name: str | None = None) -> float:
    if value is None:
        raise InvalidEvent("missing_field", f"null (expected {expected(field)})")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent("invalid_value", f"expected {expected(field)}, got {show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidEvent("invalid_value", f"expected a finite number, got {show(value)}")
    if number < low:
        code = "negative_value" if low == 0 else "out_of_range"
        raise InvalidEvent(code, f"expected {expected(field)}, got {show(value)}")
    if number > high:
        if high_name is None:
            raise InvalidEvent("out_of_range", f"expected {expected(field)}, got {show(value)}")
        reason = f"{show(value)} is more than {high_name} ({high:g}); absurd for one event"
        raise InvalidEvent("absurd_value", reason)
    return number


def _optional(check: Check, default: object = None) -> Check:
    """The rule for an optional field: null (or absence) gives the default."""
    return lambda value, field, settings: default if value is None else check(value, field, settings)


def _tokens(value: object, field: str, settings: Settings) -> int:
    limit = settings.max_tokens_per_request
    return _integer(value, field, low=0, high=limit, high_name="max_tokens_per_request")


def _attempt(value: object, field: str, settings: Settings) -> int:
    return _integer(value, field, low=1, high=MAX_ATTEMPT)


def _bytes_count(value: object, field: str, settings: Settings) -> int:
    return _integer(value, field, low=0, high=MAX_MEMORY_BYTES)


def _latency(value: object, field: str, settings: Settings) -> float:
    return _number(value, field, low=0, high=MAX_LATENCY_MS, high_name="a week")


def _cost(value: object, field: str, settings: Settings) -> float:
    limit = settings.max_cost_per_request_usd
    return _number(value, field, low=0, high=limit, high_name="max_cost_per_request_usd")


def _hourly_cost(value: object, field: str, settings: Settings) -> float:
    return _number(value, field, low=0, high=math.inf)


def _fraction(value: object, field: str, settings: Settings) -> float:
    return _number(value, field, low=0, high=1)


def _percent(value: object, field: str, settings: Settings) -> float:
    return _number(value, field, low=0, high=100)


def _finite(value: object, field: str, settings: Settings) -> float:
    return _number(value, field, low=-math.inf, high=math.inf)


def _tags(value: object, field: str, settings: Settings) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidEvent("invalid_value", f"expected {expected(field)}, got {show(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise InvalidEvent("invalid_value", f"expected {expected(field)}, got {show(item)} under {show(key)}")
    return dict(value)


def _request_id(value: object, field: str, settings: Settings) -> str | None:
    # An empty id identifies nothing, so it is read as "no id" rather than
    # making every id-less event a duplicate of the first.
    return optional_text(value, field) or None


def _gpu_category(value: object, field: str, settings: Settings) -> str:
    category = check_category(value)
    if category not in GPU_CATEGORIES:
        raise InvalidEvent(
            "invalid_value",
            f"{category!r} is not a GPU category (expected {' or '.join(GPU_CATEGORIES)})",
        )
    return category


Ts = Annotated[float, _rule(lambda v, f, s: parse_ts(v))]
Text = Annotated[str, _rule(lambda v, f, s: required_text(v, f))]
OptText = Annotated[str | None, _rule(lambda v, f, s: None if v is None else optional_text(v, f))]
Tokens = Annotated[int, _rule(_tokens)]
OptTokens = Annotated[int, _rule(_optional(_tokens, 0))]
Category = Annotated[str, _rule(_optional(lambda v, f, s: check_category(v), "hosted_inference"))]
Tags = Annotated[dict[str, str] | None, _rule(_optional(_tags))]


def _choices(name: str, *otel: str, openai: tuple[str, ...] = ()) -> AliasChoices:
    """The keys a field is read from, in order of precedence (canonical first)."""
    paths: list[str | AliasPath] = [name]
    for key in otel:
        paths += [key, AliasPath("attributes", key)]
    if openai:
        paths.append(AliasPath("usage", *openai))
    return AliasChoices(*paths)


class _Tagged(BaseModel):
    """Allocation tags, shared by every kind of event (``feature`` is declared per
    kind, as llm_request also reads it from an OpenTelemetry attribute)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    team: OptText = None
    product: OptText = None
    cost_center: OptText = None
    cohort: OptText = None
    tags: Tags = None


class LlmRequestIn(_Tagged):
    """One LLM call as producers send it (``type`` absent or ``llm_request``).

    >>> LlmRequestIn.model_validate(
    ...     {"ts": 1763301900, "usage": {"prompt_tokens": 12, "completion_tokens": 3}, "model": "m"}
    ... ).to_event().input_tokens
    12
    """

    ts: Ts
    model: Text = Field(validation_alias=_choices("model", "gen_ai.response.model", "gen_ai.request.model"))
    input_tokens: Tokens = Field(
        validation_alias=_choices("input_tokens", "gen_ai.usage.input_tokens", openai=("prompt_tokens",))
    )
    output_tokens: Tokens = Field(
        validation_alias=_choices("output_tokens", "gen_ai.usage.output_tokens", openai=("completion_tokens",))
    )
    cached_input_tokens: OptTokens = Field(
        0,
        validation_alias=_choices(
            "cached_input_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            openai=("prompt_tokens_details", "cached_tokens"),
        ),
    )
    request_id: Annotated[str | None, _rule(_optional(_request_id))] = None
    provider: OptText = Field(None, validation_alias=_choices("provider", "gen_ai.provider.name", "gen_ai.system"))
    tier: OptText = None
    category: Category = "hosted_inference"
    feature: OptText = Field(None, validation_alias=_choices("feature", "gen_ai.prompt.name"))
    attempt: Annotated[int, _rule(_optional(_attempt, 1))] = 1
    status: Annotated[str, _rule(_optional(lambda v, f, s: check_status(v), "ok"))] = "ok"
    latency_ms: Annotated[float | None, _rule(_optional(_latency))] = None
    cost_usd: Annotated[float | None, _rule(_optional(_cost))] = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> LlmRequestIn:
        cached, tokens = self.cached_input_tokens, self.input_tokens
        if cached > tokens:
            reason = f"cached_input_tokens ({cached}) is more than input_tokens ({tokens})"
            raise _fail("cached_exceeds_input", reason)
        limit = _settings(info).max_tokens_per_request
        total = self.input_tokens + self.output_tokens
        if total > limit:
            raise _fail(
                "absurd_value",
                f"input_tokens + output_tokens ({total}) is more than max_tokens_per_request ({limit}); "
                "absurd for one request",
            )
        return self

    def to_event(self) -> LlmRequest:
        """The decoded event the engine consumes."""
        return LlmRequest(**{name: getattr(self, name) for name in type(self).model_fields})


class GpuSampleIn(_Tagged):
    """One utilisation reading of one GPU; ``utilization`` wins over ``utilization_pct``.

    >>> GpuSampleIn.model_validate(
    ...     {"ts": "2026-11-16T14:05:00Z", "node": "n1", "gpu": "0", "utilization_pct": 50}
    ... ).to_event().utilization
    0.5
    """

    ts: Ts
    node: Text
    gpu: Text
    utilization: Annotated[float | None, _rule(_optional(_fraction))] = None
    utilization_pct: Annotated[float | None, _rule(_optional(_percent))] = None
    cluster: OptText = None
    gpu_model: OptText = None
    memory_used_bytes: Annotated[int | None, _rule(_optional(_bytes_count))] = None
    hourly_cost_usd: Annotated[float | None, _rule(_optional(_hourly_cost))] = None
    category: Annotated[str, _rule(_optional(_gpu_category, "self_hosted_inference"))] = "self_hosted_inference"
    feature: OptText = None

    @model_validator(mode="after")
    def _has_utilization(self) -> GpuSampleIn:
        if self.utilization is None and self.utilization_pct is None:
            raise _fail("missing_field", f"utilization: missing (expected {expected('utilization')})")
        return self

    def to_event(self) -> GpuSample:
        """The decoded event the engine consumes."""
        fields = {name: getattr(self, name) for name in type(self).model_fields if name != "utilization_pct"}
        if self.utilization is None:
            fields["utilization"] = self.utilization_pct / 100  # type: ignore[operator]
        return GpuSample(**fields)


class UsageSampleIn(_Tagged):
    """Spend or usage that does not come per request.

    >>> UsageSampleIn.model_validate(
    ...     {"ts": 1763301900, "metric": "vector_db_usd", "value": 4.5, "unit": "usd"}
    ... ).to_event().value
    4.5
    """

    ts: Ts
    metric: Text
    value: Annotated[float, _rule(_finite)]
    unit: Text
    category: Category = "hosted_inference"
    feature: OptText = None

    def to_event(self) -> UsageSample:
        """The decoded event the engine consumes."""
        return UsageSample(**{name: getattr(self, name) for name in type(self).model_fields})


EVENT_MODELS: dict[str, type[LlmRequestIn] | type[GpuSampleIn] | type[UsageSampleIn]] = {
    "llm_request": LlmRequestIn,
    "gpu_sample": GpuSampleIn,
    "usage_sample": UsageSampleIn,
}


def validate_event(obj: object, settings: Settings) -> Event:
    """Check one parsed JSON value against the contract; raise InvalidEvent saying why not.

    Every problem pydantic finds goes into the reason, so a producer can fix
    them all at once; the code is that of the first.

    >>> validate_event({"ts": 1763301900, "model": "m", "input_tokens": -5, "output_tokens": 1}, Settings())
    Traceback (most recent call last):
    ...
    detector.events.InvalidEvent: input_tokens: expected an integer ≥ 0, got -5
    """
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {show(obj)}")
    kind = obj.get("type")
    kind = "llm_request" if kind is None else kind
    model = EVENT_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        kinds = ", ".join(EVENT_MODELS)
        raise InvalidEvent("unknown_type", f"type: unknown {show(kind)} (expected one of {kinds})")
    try:
        return model.model_validate(obj, context=settings).to_event()
    except ValidationError as exc:
        raise _explain(exc, model) from None


def _explain(exc: ValidationError, model: type[BaseModel]) -> InvalidEvent:
    problems = [_problem(error, model) for error in exc.errors(include_url=False)]
    return InvalidEvent(problems[0][0], "; ".join(reason for _, reason in problems))


def _problem(error: Any, model: type[BaseModel]) -> tuple[str, str]:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        return "missing_field", f"{where}: missing (expected {expected(where)}{_also_read_from(model, where)})"
    code = error["type"] if error["type"] in REJECT_CODES else "invalid_value"
    return code, f"{where}: {error['msg']}" if where else error["msg"]


def _also_read_from(model: type[BaseModel], name: str) -> str:
    field = model.model_fields.get(name)
    choices = field.validation_alias.choices if field and isinstance(field.validation_alias, AliasChoices) else []
    names = [c if isinstance(c, str) else ".".join(map(str, c.path)) for c in choices[1:]]
    shown = [n for n in names if not n.startswith("attributes.")]
    return f"; also read from {' or '.join(shown)}" if shown else ""
