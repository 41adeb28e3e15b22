"""Rule-file errors: where, what is wrong, what was expected, and a near miss.

Errors are values, collected rather than raised, so one run reports every
problem in every file. They print the way Prometheus ``rulefmt`` does::

    rules/search.yaml:9:17: group "search", rule "PromptLengthDoubled": expr.metric:
    unknown metric "input_token_per_request" (expected ...); did you mean "input_tokens_per_request"?

(on one line). Checks produce :class:`Problem` (a path inside the file); the
loader turns each into a :class:`RuleError` with the line, column, group and
rule. Schema failures from pydantic are translated here into the same words.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from detector.rules.catalog import ANOMALY_MODELS, closest

Loc = tuple[str | int, ...]
ERROR_TYPE = "spendwatch_rule"


class Refused:
    """Stands in for a value the YAML reader refused (an alias, a foreign tag)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<refused>"


REFUSED = Refused()


@dataclass(frozen=True, slots=True)
class Pos:
    """A 1-based line and column in a rule file (0:0 when the file has none)."""

    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem at a path inside one file (``("groups", 0, "rules", 1, "for")``).

    ``on_key`` points at the key rather than its value; ``pos`` overrides the
    path when the position is known directly (YAML syntax errors).
    """

    loc: Loc
    message: str
    expected: str | None = None
    suggestion: str | None = None
    on_key: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class RuleError:
    """One error in one rule file, with everything needed to act on it."""

    path: str
    line: int
    col: int
    message: str
    expected: str | None = None
    suggestion: str | None = None
    group: str | None = None
    rule: str | None = None
    rule_index: int | None = None
    field: str | None = None


def format_error(err: RuleError) -> str:
    """One line: ``path:line:col: group "g", rule "Name": field: message (expected …)``.

    >>> print(format_error(RuleError("r.yaml", 9, 17, 'unknown metric "cost"', "a metric", "cost_per_request",
    ...                              group="s", rule="C", field="expr.metric")))
    r.yaml:9:17: group "s", rule "C": expr.metric: unknown metric "cost" (expected a metric); did you mean "cost_per_request"?
    """
    where = f"{err.path}:{err.line}:{err.col}: " if err.line else f"{err.path}: "
    context = []
    if err.group is not None:
        context.append(f"group {quote(err.group)}")
    if err.rule is not None:
        context.append(f"rule {quote(err.rule)}")
    elif err.rule_index is not None:
        context.append(f"rule {err.rule_index}")
    text = where + (", ".join(context) + ": " if context else "")
    text += (f"{err.field}: " if err.field else "") + err.message
    if err.expected:
        text += f" (expected {err.expected})"
    if err.suggestion:
        text += f"; did you mean {quote(err.suggestion)}?"
    return " ".join(text.splitlines())


def quote(text: str) -> str:
    """A user's text in double quotes, escaped so it can never break the line.

    >>> print(quote('a"b\\nc'), quote('team="a"'))
    "a\\"b\\nc" 'team="a"'
    """
    escaped = json.dumps(text, ensure_ascii=False)
    if '"' in text and "'" not in text and "\\" not in text and escaped.count("\\") == text.count('"'):
        return f"'{text}'"  # easier to read than escaped quotes: 'team="search"'
    return escaped


def show(value: object) -> str:
    """A value as it reads in YAML, short enough for a message.

    >>> show("5m"), show(True), show(None), show(3), show([1]), show({"a": 1})
    ('"5m"', 'true', 'null', '3', 'a list', 'a mapping')
    """
    if isinstance(value, str):
        text = quote(value)
        return text if len(text) <= 60 else text[:56] + '…"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else "a value"


def fail(message: str, expected: str | None = None, suggestion: str | None = None,
         at: Loc = (), on_key: bool = False) -> PydanticCustomError:
    """The error a schema validator raises, carrying our own words through pydantic."""
    ctx = {"message": message, "expected": expected, "suggestion": suggestion, "at": at, "on_key": on_key}
    return PydanticCustomError(ERROR_TYPE, "{message}", ctx)


EXPECTED: dict[str, str] = {
    "groups": "a list of groups, each with a name and rules",
    "name": "a group name, e.g. search-spend",
    "rules": "a list of rules",
    "id": "a stable id of lowercase letters, digits, '.', '_' or '-', e.g. search.prompt-length",
    "alert": "an alert name like PromptLengthDoubled",
    "expr": "a mapping with metric, by, matchers and one of threshold, anomaly or budget",
    "metric": "a metric from DESIGN.md Contract 2, or usage:<name>",
    "by": "a list of labels, e.g. [team, feature]",
    "matchers": 'a list of matchers like team="search"',
    "labels": "a mapping of label → string",
    "annotations": "a mapping of name → template string",
    "for": "a Prometheus duration like 5m",
    "keep_firing_for": "a Prometheus duration like 15m",
    "enabled": "true or false",
    "threshold": "a mapping with statistic, window and above and/or below",
    "anomaly": "a mapping with model and that model's parameters",
    "budget": "a mapping with monthly_usd",
    "statistic": "one of mean, p50, p90, p95, p99, rate, share, sum",
    "window": "a Prometheus duration like 10m",
    "above": "a number",
    "below": "a number",
    "monthly_usd": "dollars per month, a number above 0",
    "ratio_above": "a ratio above 1, e.g. 1.5",
    "ratio_below": "a ratio between 0 and 1, e.g. 0.5",
    "min_requests": "a whole number of requests ≥ 1",
    "delta_above": "a share between 0 and 1, e.g. 0.15",
    "delta_below": "a share between 0 and 1, e.g. 0.2",
    "seasonal": "true or false",
}
_TYPE_WORDS = {
    "string_type": "a string", "int_type": "a whole number", "float_type": "a number", "bool_type": "true or false",
    "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "finite_number": "a finite number",
}
_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def from_validation(exc: ValidationError, model: type[BaseModel], data: Any, prefix: Loc = (),
                    texts: dict[Loc, str] | None = None) -> list[Problem]:
    """pydantic's errors for ``data`` (validated as ``model``) in our words and paths.

    ``texts`` holds the source text of non-string scalars, so ``team: no`` can be
    explained (YAML reads an unquoted no as false).
    """
    return [_translate(err, model, data, prefix, texts or {}) for err in exc.errors(include_url=False)]


def _translate(err: Any, model: type[BaseModel], data: Any, prefix: Loc, texts: dict[Loc, str]) -> Problem:
    kind, raw_loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    if kind == ERROR_TYPE:
        raw_loc = raw_loc + tuple(ctx.get("at") or ())
    loc, on_key = _resolve(raw_loc, data)
    name = raw_loc[-1] if raw_loc and isinstance(raw_loc[-1], str) else ""
    full = prefix + loc
    if kind == ERROR_TYPE:
        on_key = on_key or bool(ctx.get("on_key"))
        return Problem(full, ctx["message"], ctx.get("expected"), ctx.get("suggestion"), on_key)
    if kind == "missing":
        return Problem(full, f"missing key {quote(name)}", EXPECTED.get(name))
    if kind == "extra_forbidden":
        allowed = _keys_at(model, raw_loc[:-1])
        return Problem(full, f"unknown key {quote(name)}", "one of: " + ", ".join(allowed) if allowed else None,
                       closest(name, allowed), on_key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("tag")
        message = f"unknown anomaly model {quote(str(tag))}" if tag is not None else 'missing key "model"'
        loc_model, _ = _resolve((*raw_loc, "model"), data)
        return Problem(prefix + loc_model, message, "one of: " + ", ".join(ANOMALY_MODELS),
                       closest(str(tag), ANOMALY_MODELS) if tag is not None else None)
    if kind in _TYPE_WORDS:
        suggestion = f"[{value}]" if kind in ("list_type", "tuple_type") and isinstance(value, str) else None
        expected = EXPECTED.get(name, _TYPE_WORDS[kind])
        raw = texts.get(full)
        if kind == "string_type" and raw:
            return Problem(full, f"found {show(value)}, which is how YAML reads an unquoted {raw}",
                           f"a string; write it in quotes: {quote(raw)}", on_key=on_key)
        return Problem(full, f"found {show(value)}", expected, suggestion, on_key)
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        bound_text = f"{bound:g}" if isinstance(bound, int | float) else str(bound)
        return Problem(full, f"{show(value)} is not {words} {bound_text}", EXPECTED.get(name), on_key=on_key)
    return Problem(full, _first_line(err.get("msg", kind)), EXPECTED.get(name), on_key=on_key)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def _resolve(loc: Loc, data: Any) -> tuple[Loc, bool]:
    """The part of pydantic's path that exists in the data (union tags and missing keys dropped).

    The flag says the path ended at a dict key (pydantic's ``[key]``), not its value.
    """
    out: list[str | int] = []
    current = data
    for part in loc:
        if part == "[key]":
            return tuple(out), True
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            continue
        out.append(part)
    return tuple(out), False


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the schema allows at ``loc`` (walking through anomaly model tags)."""
    current: Any = model
    for part in loc:
        if isinstance(current, dict):
            current = current.get(part)
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _inner_model(annotation: Any) -> Any:
    """The model class under an annotation, or {tag: class} for a tagged union."""
    found = [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(found) == 1:
        return found[0]
    if found:
        return {typing.get_args(m.model_fields["model"].annotation)[0]: m for m in found}
    return None


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _flatten(arg)]
