"""``rules/routing.yaml`` → :class:`~detector.alerts.routing.Routing`, or every error at once.

The file is read as plain data with positions by the same safe reader as
rule files (:mod:`detector.rules.source`: no aliases, no tags, no duplicate
keys), validated by frozen pydantic models that refuse unknown keys, then
checked across fields: receivers named by routes exist, the root route has a
receiver, ``repeat_interval`` is not shorter than ``group_interval`` on any
route once inheritance is applied. Each problem reads
``path:line:col: field: what is wrong (what was expected)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
)

from detector.alerts.matchers import LABEL_NAME, parse_label_matcher
from detector.alerts.routing import (
    GROUP_BY,
    GROUP_INTERVAL_S,
    GROUP_WAIT_S,
    REPEAT_INTERVAL_S,
    InhibitRule,
    Receiver,
    Route,
    Routing,
    SlackTarget,
    WebhookTarget,
)
from detector.errors import ConfigError
from detector.rules.catalog import closest
from detector.rules.diagnostics import (
    Loc,
    Problem,
    RuleError,
    fail,
    format_error,
    from_validation,
    quote,
    show,
)
from detector.rules.durations import EXPECTED as DURATION
from detector.rules.durations import DurationError, format_duration, parse_duration
from detector.rules.matchers import Matcher, MatcherError
from detector.rules.source import MAX_FILE_BYTES, Document, read_document

_CONFIG = ConfigDict(strict=True, frozen=True, extra="forbid", populate_by_name=False)


class RoutingLoadError(ConfigError):
    """A routing file that cannot be used; ``errors`` holds every error found."""

    def __init__(self, errors: list[RuleError]) -> None:
        lines = [format_error(e) for e in errors]
        super().__init__(f"{len(lines)} error{'s' if len(lines) != 1 else ''} in the routing file:\n"
                         + "\n".join(lines))
        self.errors = errors


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise fail(f"found {show(value)}", DURATION, format_duration(value)
                   if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None)
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise fail(str(exc), DURATION, exc.suggestion) from None


def _matcher(value: Any) -> Matcher:
    if not isinstance(value, str):
        raise fail(f"found {show(value)}", 'a matcher like team="search", in single quotes in YAML')
    try:
        return parse_label_matcher(value)
    except MatcherError as exc:
        raise fail(str(exc), exc.expected, exc.suggestion) from None


def _label(value: Any) -> str:
    if not isinstance(value, str) or not (LABEL_NAME.fullmatch(value) or value == "..."):
        raise fail(f"found {show(value)}", "a label name, or '...' alone for every label")
    return value


def _url(value: Any) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise fail(f"found {show(value)}", "an http:// or https:// URL")
    return value


Duration = Annotated[float, PlainValidator(_duration)]
Matchers = Annotated[tuple[Annotated[Matcher, PlainValidator(_matcher)], ...], BeforeValidator(_tuple)]
Labels = Annotated[tuple[Annotated[str, PlainValidator(_label)], ...], BeforeValidator(_tuple)]


class RouteSpec(BaseModel):
    model_config = _CONFIG
    receiver: str | None = None
    matchers: Matchers = ()
    group_by: Labels | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(False, alias="continue")
    routes: Annotated[tuple[RouteSpec, ...], BeforeValidator(_tuple)] = ()


class SlackSpec(BaseModel):
    model_config = _CONFIG
    channel: str | None = None
    send_resolved: bool = True


class WebhookSpec(BaseModel):
    model_config = _CONFIG
    url: Annotated[str, PlainValidator(_url)]
    send_resolved: bool = True
    max_alerts: int = Field(0, ge=0)


class ReceiverSpec(BaseModel):
    model_config = _CONFIG
    name: str = Field(min_length=1)
    slack_configs: Annotated[tuple[SlackSpec, ...], BeforeValidator(_tuple)] = ()
    webhook_configs: Annotated[tuple[WebhookSpec, ...], BeforeValidator(_tuple)] = ()


class InhibitSpec(BaseModel):
    model_config = _CONFIG
    source_matchers: Matchers = Field(min_length=1)
    target_matchers: Matchers = Field(min_length=1)
    equal: Labels = ()


class RoutingSpec(BaseModel):
    model_config = _CONFIG
    route: RouteSpec
    receivers: Annotated[tuple[ReceiverSpec, ...], BeforeValidator(_tuple)]
    inhibit_rules: Annotated[tuple[InhibitSpec, ...], BeforeValidator(_tuple)] = ()


def load_routing(path: str | Path) -> Routing:
    """The routing file at ``path``, or :class:`RoutingLoadError` listing every problem."""
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the routing file: {exc.strerror or type(exc).__name__}") from None
    return load_routing_text(str(path), raw)


def load_routing_text(path: str, raw: bytes) -> Routing:
    """A routing file from its bytes; ``path`` is only for the messages.

    >>> text = b'route: {receiver: oncall, group_interval: 10m, repeat_interval: 5m}\\nreceivers: [{name: oncall}]\\n'
    >>> try:
    ...     load_routing_text("routing.yaml", text)
    ... except RoutingLoadError as exc:
    ...     print(format_error(exc.errors[0]))
    routing.yaml:1:65: route.repeat_interval: 5m is shorter than group_interval 10m (expected a repeat_interval of at least 10m)
    """
    doc, problems = read_document(path, raw)
    if doc is None or problems or doc.data is None:
        found = problems or [Problem((), "the file is empty", "route: and receivers:")]
        raise RoutingLoadError([_error(path, doc, p) for p in found])
    try:
        spec = RoutingSpec.model_validate(doc.data)
    except ValidationError as exc:
        found = from_validation(exc, RoutingSpec, doc.data, (), doc.texts)
        raise RoutingLoadError(sorted((_error(path, doc, p) for p in found), key=lambda e: (e.line, e.col))) from None
    build = _Build(spec)
    routing = build.routing(path)
    if build.problems:
        errors = [_error(path, doc, p) for p in build.problems]
        raise RoutingLoadError(sorted(errors, key=lambda e: (e.line, e.col)))
    return routing


class _Build:
    """Resolves inheritance and checks what one key alone cannot."""

    def __init__(self, spec: RoutingSpec) -> None:
        self.spec = spec
        self.problems: list[Problem] = []
        self.receivers: dict[str, Receiver] = {}

    def routing(self, path: str) -> Routing:
        if not self.spec.receivers:
            self.problems.append(Problem(("receivers",), "no receivers", "at least one receiver with a name"))
        for i, r in enumerate(self.spec.receivers):
            if r.name in self.receivers:
                self.problems.append(Problem(("receivers", i, "name"), f"receiver {quote(r.name)} is defined twice",
                                             "a unique name per receiver"))
            self.receivers[r.name] = Receiver(
                r.name, tuple(SlackTarget(s.channel, s.send_resolved) for s in r.slack_configs),
                tuple(WebhookTarget(w.url, w.send_resolved, w.max_alerts) for w in r.webhook_configs))
        if self.spec.route.receiver is None:
            self.problems.append(Problem(("route",), 'the root route has no "receiver"',
                                         "a receiver name on the root route: every alert needs somewhere to go",
                                         on_key=True))
        root = Route("0", self.spec.route.receiver or "", group_by=GROUP_BY, group_wait_s=GROUP_WAIT_S,
                     group_interval_s=GROUP_INTERVAL_S, repeat_interval_s=REPEAT_INTERVAL_S)
        route = self.route(self.spec.route, root, ("route",))
        inhibit = tuple(InhibitRule(i.source_matchers, i.target_matchers, i.equal) for i in self.spec.inhibit_rules)
        return Routing(route, self.receivers, inhibit, path)

    def route(self, spec: RouteSpec, parent: Route, loc: Loc) -> Route:
        receiver = spec.receiver or parent.receiver
        if spec.receiver is not None and spec.receiver not in self.receivers:
            self.problems.append(Problem((*loc, "receiver"), f"no receiver named {quote(spec.receiver)}",
                                         "one of: " + ", ".join(self.receivers) if self.receivers else "a receiver"))
        group_by = parent.group_by if spec.group_by is None else (None if "..." in spec.group_by else spec.group_by)
        if spec.group_by and "..." in spec.group_by and len(spec.group_by) > 1:
            self.problems.append(Problem((*loc, "group_by"), "'...' is mixed with label names",
                                         "either ['...'] alone (every label) or label names"))
        node = Route(
            parent.path, receiver, spec.matchers, group_by,
            _pick(spec.group_wait, parent.group_wait_s), _pick(spec.group_interval, parent.group_interval_s),
            _pick(spec.repeat_interval, parent.repeat_interval_s), spec.continue_,
        )
        sets_timer = spec.repeat_interval is not None or spec.group_interval is not None or loc == ("route",)
        if sets_timer and node.repeat_interval_s < node.group_interval_s:  # inherited ones: said at the parent
            at = "repeat_interval" if spec.repeat_interval is not None else "group_interval"
            self.problems.append(Problem(
                (*loc, at) if getattr(spec, at) is not None else loc,
                f"{format_duration(node.repeat_interval_s)} is shorter than group_interval "
                f"{format_duration(node.group_interval_s)}",
                f"a repeat_interval of at least {format_duration(node.group_interval_s)}"))
        children = tuple(self.route(child, _child_parent(node, i), (*loc, "routes", i))
                         for i, child in enumerate(spec.routes))
        return Route(node.path, node.receiver, node.matchers, node.group_by, node.group_wait_s,
                     node.group_interval_s, node.repeat_interval_s, node.continue_, children)


def _child_parent(node: Route, index: int) -> Route:
    return Route(f"{node.path}.{index}", node.receiver, (), node.group_by, node.group_wait_s,
                 node.group_interval_s, node.repeat_interval_s)


def _pick(value: float | None, inherited: float) -> float:
    return inherited if value is None else value


_MODELS: dict[str | None, type[BaseModel]] = {
    None: RoutingSpec, "route": RouteSpec, "routes": RouteSpec, "receivers": ReceiverSpec,
    "slack_configs": SlackSpec, "webhook_configs": WebhookSpec, "inhibit_rules": InhibitSpec,
}


def _allowed(problem: Problem) -> Problem:
    """An unknown key's message with the keys its mapping does allow."""
    if problem.expected is not None or not problem.message.startswith("unknown key"):
        return problem
    parent = next((p for p in reversed(problem.loc[:-1]) if isinstance(p, str)), None)
    model = _MODELS.get(parent)
    if model is None:
        return problem
    keys = [f.alias or n for n, f in model.model_fields.items()]
    return dataclasses.replace(problem, expected="one of: " + ", ".join(keys),
                               suggestion=closest(str(problem.loc[-1]), keys))


def _error(path: str, doc: Document | None, problem: Problem) -> RuleError:
    problem = _allowed(problem)
    pos = problem.pos or (doc.pos(problem.loc, on_key=problem.on_key) if doc is not None else None)
    field = ""
    for part in problem.loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return RuleError(path, pos.line if pos else 0, pos.col if pos else 0, problem.message, problem.expected,
                     problem.suggestion, field=field or None)
