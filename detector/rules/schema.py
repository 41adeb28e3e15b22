"""The rule-file format as frozen pydantic models: every key typed, unknown keys refused.

The shape is Prometheus' alerting rules (``groups → rules → alert, for,
labels, annotations``) with a structured ``expr`` instead of a query string:
a metric from a closed set, ``by`` labels, Alertmanager ``matchers``, and
exactly one of ``threshold``, ``anomaly`` or ``budget``. ``rules/EXAMPLE.yaml``
documents every key. Validation is strict (a YAML ``"5"`` is not a number,
``yes`` is not a string) and errors carry our own words via
:func:`~detector.rules.diagnostics.fail`. Relations between fields that need
the group or the metric (which model suits which metric, which labels a
template may name) are checked in :mod:`detector.rules.checks`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)

from detector.rules import catalog
from detector.rules.catalog import closest
from detector.rules.diagnostics import EXPECTED, fail, quote, show
from detector.rules.durations import EXPECTED as DURATION
from detector.rules.durations import (
    MAX_MS,
    DurationError,
    format_duration,
    parse_duration,
)
from detector.rules.matchers import Matcher, MatcherError, parse_matcher
from detector.rules.templates import Template, TemplateError, parse_template

_CONFIG = ConfigDict(strict=True, frozen=True, extra="forbid", allow_inf_nan=False)
_ID = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,127}")
_ALERT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LABEL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}|tags\.[A-Za-z_][A-Za-z0-9_\-]{0,63}")


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise fail(f"found {show(value)}", DURATION)
    if not isinstance(value, str):
        plausible = math.isfinite(value) and 0 <= value <= MAX_MS / 1000
        raise fail(f"found the number {value}; a duration needs a unit", DURATION,
                   format_duration(value) if plausible else None)
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise fail(str(exc), DURATION, exc.suggestion) from None


def _metric(name: str) -> str:
    if name in catalog.METRIC_KINDS:
        return name
    usage = name.removeprefix(catalog.USAGE_PREFIX)
    if name.startswith(catalog.USAGE_PREFIX):
        if catalog.USAGE_NAME.fullmatch(usage):
            return name
        raise fail(f"bad usage metric name {quote(name)}", "usage:<name> in letters, digits, '_', '.' or '-'")
    near = closest(name, catalog.METRICS)
    if near is None and catalog.USAGE_NAME.fullmatch(name):
        near = catalog.USAGE_PREFIX + name  # most likely a usage_sample metric written bare
    raise fail(f"unknown metric {quote(name)}", "one of " + ", ".join(catalog.METRICS) + ", or usage:<name>", near)


def _series_label(name: str) -> str:
    if catalog.is_series_label(name):
        return name
    raise fail(f"unknown label {quote(name)}", "a series label (" + ", ".join(catalog.SERIES_LABELS)
               + ") or tags.<name>", closest(name, catalog.SERIES_LABELS))


def _label_key(name: str) -> str:
    if _LABEL_KEY.fullmatch(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("0123456789") or None
    raise fail(f"bad label name {quote(name)}", "letters, digits and '_', not starting with a digit", cleaned)


def _severity(labels: dict[str, str]) -> dict[str, str]:
    severity = labels.get("severity")
    if severity is not None and severity not in catalog.SEVERITIES:
        raise fail(f"unknown severity {quote(severity)}", "one of " + ", ".join(catalog.SEVERITIES),
                   closest(severity, catalog.SEVERITIES), at=("severity",))
    return labels


def _matcher(value: Any) -> Matcher:
    if not isinstance(value, str):
        raise fail(f"found {show(value)}", 'a matcher string like team="search"')
    try:
        return parse_matcher(value)
    except MatcherError as exc:
        raise fail(str(exc), exc.expected, exc.suggestion) from None


def _template(value: Any) -> Template:
    if not isinstance(value, str):
        raise fail(f"found {show(value)}", "a template string; quote it")
    try:
        return parse_template(value)
    except TemplateError as exc:
        raise fail(str(exc), exc.expected, exc.suggestion) from None


def _rule_id(value: str) -> str:
    if _ID.fullmatch(value):
        return value
    near = re.sub(r"[^a-z0-9_.\-]+", "-", value.strip().lower()).strip("-_.")
    raise fail(f"bad id {quote(value)}", EXPECTED["id"], near if _ID.fullmatch(near) else None)


def _alert_name(value: str) -> str:
    if _ALERT.fullmatch(value):
        return value
    near = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9_]+", value) if w)
    raise fail(f"bad alert name {quote(value)}", EXPECTED["alert"], near if _ALERT.fullmatch(near) else None)


def _statistic(value: str) -> str:
    if value in catalog.STATISTICS:
        return value
    raise fail(f"unknown statistic {quote(value)}", EXPECTED["statistic"], closest(value, catalog.STATISTICS))


def _group_name(value: str) -> str:
    if value.strip() and len(value) <= 128 and value.isprintable():
        return value
    raise fail(f"bad group name {show(value)}", "a short printable name, e.g. search-spend")


Duration = Annotated[float, PlainValidator(_duration)]
Metric = Annotated[str, AfterValidator(_metric)]
SeriesLabel = Annotated[str, AfterValidator(_series_label)]
Labels = Annotated[dict[Annotated[str, AfterValidator(_label_key)], str], AfterValidator(_severity)]
Matchers = Annotated[tuple[Annotated[Matcher, PlainValidator(_matcher)], ...], BeforeValidator(_tuple)]
Annotations = dict[Annotated[str, AfterValidator(_label_key)], Annotated[Template, PlainValidator(_template)]]


def _one_of(model: BaseModel, first: str, second: str) -> None:
    if getattr(model, first) is None and getattr(model, second) is None:
        raise fail(f"neither {first} nor {second} is set", f"{first}, {second} or both")


class LevelShift(BaseModel):
    """The series' level moved by a ratio against its learned baseline (distributions, rates)."""

    model_config = _CONFIG
    model: Literal["level_shift"]
    ratio_above: float | None = Field(None, gt=1)
    ratio_below: float | None = Field(None, gt=0, lt=1)
    min_requests: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _direction(self) -> LevelShift:
        _one_of(self, "ratio_above", "ratio_below")
        return self


class ProportionShift(BaseModel):
    """A share (tier mix, retries, errors, cache hits) moved by an absolute amount."""

    model_config = _CONFIG
    model: Literal["proportion_shift"]
    delta_above: float | None = Field(None, gt=0, le=1)
    delta_below: float | None = Field(None, gt=0, le=1)
    min_requests: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _direction(self) -> ProportionShift:
        _one_of(self, "delta_above", "delta_below")
        return self


class RateShift(BaseModel):
    """A rate (requests or dollars per hour) left its expected band, by hour of week if seasonal."""

    model_config = _CONFIG
    model: Literal["rate_shift"]
    ratio_above: float | None = Field(None, gt=1)
    ratio_below: float | None = Field(None, gt=0, lt=1)
    seasonal: bool = True

    @model_validator(mode="after")
    def _direction(self) -> RateShift:
        _one_of(self, "ratio_above", "ratio_below")
        return self


class Idle(BaseModel):
    """Paid GPUs below a utilisation for a while; ``for`` defines idleness, the rule's ``for`` waits after it."""

    model_config = _CONFIG
    model: Literal["idle"]
    below: float = Field(0.05, ge=0, lt=1)
    for_: Duration = Field(1800.0, alias="for")

    @model_validator(mode="after")
    def _long_enough(self) -> Idle:
        if self.for_ < 60:
            raise fail(f"idle for {format_duration(self.for_)} is too short to mean idle", "at least 1m", at=("for",))
        return self


class Drift(BaseModel):
    """A slow climb: the level over a long window against the window before it."""

    model_config = _CONFIG
    model: Literal["drift"]
    ratio_above: float = Field(gt=1)
    window: Duration = 7 * 86400.0

    @model_validator(mode="after")
    def _long_window(self) -> Drift:
        if self.window < 86400:
            raise fail(f"drift window {format_duration(self.window)} is short; use level_shift for fast changes",
                       "a window of at least 1d", at=("window",))
        return self


Anomaly = Annotated[LevelShift | ProportionShift | RateShift | Idle | Drift, Field(discriminator="model")]


class Threshold(BaseModel):
    """A fixed bound on a statistic over a window: fires above ``above`` or below ``below``.

    ``min_requests`` keeps a share or a mean of three requests from paging
    anyone: with fewer observations in the window the statistic is unknown,
    and an unknown statistic does not breach (so a quiet series also resolves).
    """

    model_config = _CONFIG
    statistic: Annotated[str, AfterValidator(_statistic)]
    window: Duration
    above: float | None = None
    below: float | None = None
    min_requests: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> Threshold:
        _one_of(self, "above", "below")
        if self.window <= 0:
            raise fail("window is 0", "a window longer than 0s, e.g. 10m", at=("window",))
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise fail(f"below {self.below} is not under above {self.above}, so it would always fire",
                       "below < above (a band the value leaves)", at=("below",))
        return self


class Budget(BaseModel):
    """Monthly dollars for the matched scope: fires on the projection, and again when actually spent."""

    model_config = _CONFIG
    monthly_usd: float = Field(gt=0)


class Expr(BaseModel):
    """What to watch (metric, by, matchers) and how to judge it (one of threshold, anomaly, budget)."""

    model_config = _CONFIG
    metric: Metric
    by: Annotated[tuple[SeriesLabel, ...], BeforeValidator(_tuple)] = ()
    matchers: Matchers = ()
    threshold: Threshold | None = None
    anomaly: Anomaly | None = None
    budget: Budget | None = None

    @property
    def kind(self) -> str:
        """``threshold``, ``anomaly`` or ``budget``."""
        return next(k for k in ("threshold", "anomaly", "budget") if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _exactly_one(self) -> Expr:
        present = [k for k in ("threshold", "anomaly", "budget") if getattr(self, k) is not None]
        if len(present) != 1:
            message = "none of threshold, anomaly, budget is set"
            if present:
                message = " and ".join(present) + (" are all set" if len(present) > 2 else " are both set")
            raise fail(message, "exactly one of threshold, anomaly or budget", at=tuple(present[1:2]), on_key=True)
        return self


class RuleSpec(BaseModel):
    """One rule as written in a file.

    >>> r = RuleSpec.model_validate({"id": "a.b", "alert": "Big", "for": "5m",
    ...     "expr": {"metric": "spend_rate", "budget": {"monthly_usd": 100}}})
    >>> r.for_, r.expr.kind
    (300.0, 'budget')
    """

    model_config = _CONFIG
    id: Annotated[str, AfterValidator(_rule_id)]
    alert: Annotated[str, AfterValidator(_alert_name)]
    expr: Expr
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    labels: Labels = {}
    annotations: Annotations = {}
    enabled: bool = True


class GroupHead(BaseModel):
    """A group's own keys; its rules are validated one by one so each error names its rule."""

    model_config = _CONFIG
    name: Annotated[str, AfterValidator(_group_name)]
    labels: Labels = {}
    matchers: Matchers = ()
    rules: list[Any]


class FileHead(BaseModel):
    """The top of a rule file: a list of groups and nothing else."""

    model_config = _CONFIG
    groups: list[Any]
