"""Annotation templates: ``{{ $labels.feature }}``, ``{{ $value }}``, ``{{ $ratio }}`` and nothing else.

A template is text with placeholders, filled by plain substitution: there is
no expression language, no function, no include, no loop, so a template can
neither run code nor read a file, and a label value that itself looks like a
placeholder is inserted as text, never expanded. A placeholder names a label
of the alert or one of the numbers in :data:`VALUES`; anything else is a load
error (checked again against the rule's own labels and kind by the loader).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from detector.rules.catalog import closest
from detector.rules.diagnostics import quote

MAX_TEMPLATE_CHARS = 4096
ABSENT = "(none)"
"""What an absent label renders as, so a sentence never has a silent hole."""

COMMON_VALUES = ("value", "excess_usd_per_hour", "projected_month_usd")
VALUES_BY_KIND: dict[str, tuple[str, ...]] = {
    "anomaly": (*COMMON_VALUES, "baseline", "ratio"),
    "threshold": (*COMMON_VALUES, "threshold"),
    "budget": (*COMMON_VALUES, "budget_usd", "spent_usd"),
}
VALUES: tuple[str, ...] = tuple(dict.fromkeys(v for names in VALUES_BY_KIND.values() for v in names))
"""Every number a template may name; which ones a rule may use depends on its kind."""

EXPECTED = "{{ $labels.<name> }} or {{ $<value> }} with <value> one of " + ", ".join(VALUES)
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LABEL = re.compile(r"\s*\$labels\.([A-Za-z_][A-Za-z0-9_.\-]*)\s*")
_VALUE = re.compile(r"\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*")


class TemplateError(ValueError):
    """A template cannot be used; ``expected`` and ``suggestion`` say what would work."""

    def __init__(self, message: str, expected: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.expected, self.suggestion = expected, suggestion


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and ("label" | "value", name) placeholders.

    >>> t = parse_template("{{ $labels.feature }} grew {{ $ratio }}x")
    >>> t.render({"feature": "summarize"}, {"ratio": 2.1234}), t.labels, t.values
    ('summarize grew 2.12x', ('feature',), ('ratio',))
    """

    text: str
    parts: tuple[str | tuple[str, str], ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p[1] for p in self.parts if isinstance(p, tuple) and p[0] == "label"))

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p[1] for p in self.parts if isinstance(p, tuple) and p[0] == "value"))

    def render(self, labels: Mapping[str, str], values: Mapping[str, float | str | None]) -> str:
        """The text with each placeholder replaced; nothing inserted is ever expanded again."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part[0] == "label":
                out.append(labels.get(part[1]) or ABSENT)
            else:
                out.append(format_value(part[1], values.get(part[1])))
        return "".join(out)


def parse_template(text: str) -> Template:
    """A template from its text, or :class:`TemplateError` naming the bad placeholder.

    >>> parse_template("{{ $valeu }}")
    Traceback (most recent call last):
    ...
    detector.rules.templates.TemplateError: unknown template value "$valeu"
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is {len(text)} characters long", f"at most {MAX_TEMPLATE_CHARS}")
    parts: list[str | tuple[str, str]] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        _literal(text[pos : match.start()], parts)
        parts.append(_placeholder(match.group(1)))
        pos = match.end()
    _literal(text[pos:], parts)
    return Template(text, tuple(parts))


def _literal(chunk: str, parts: list[str | tuple[str, str]]) -> None:
    if "{{" in chunk or "}}" in chunk:
        brace = "{{" if "{{" in chunk else "}}"
        raise TemplateError(f"unbalanced {brace} in template", EXPECTED)
    if chunk:
        parts.append(chunk)


def _placeholder(inner: str) -> tuple[str, str]:
    label = _LABEL.fullmatch(inner)
    if label is not None:
        return ("label", label.group(1))
    value = _VALUE.fullmatch(inner)
    if value is not None:
        name = value.group(1)
        if name not in VALUES:
            suggestion = closest(name, VALUES)
            raise TemplateError(f"unknown template value {quote('$' + name)}", "one of " + ", ".join(VALUES),
                                "$" + suggestion if suggestion else None)
        return ("value", name)
    raise TemplateError(f"{quote('{{' + inner + '}}')} is not an allowed placeholder", EXPECTED)


def format_value(name: str, value: float | str | None) -> str:
    """A number the way a person reads it: dollars to the cent, ratios to two places.

    >>> format_value("excess_usd_per_hour", 1234.5), format_value("ratio", 2.0), format_value("value", 812.37)
    ('1,234.50', '2.00', '812')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ABSENT
    if isinstance(value, str):
        return value
    if name.endswith(("_usd", "_usd_per_hour")):
        return f"{value:,.2f}"
    if name == "ratio":
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
