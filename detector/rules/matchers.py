"""Alertmanager-style label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

The value is always double-quoted (``\\"`` and ``\\\\`` escape), so there is
one way to write a matcher and nothing to guess. Regexes are Python ``re``,
fully anchored (``team=~"search|ads"`` matches ``search``, not ``research``)
and compiled when the file loads, so a bad pattern is a load error, never a
failure at alert time. Python's ``re`` can backtrack catastrophically on
nested quantifiers; patterns are therefore capped at
:data:`MAX_PATTERN_CHARS` and are only ever matched against label values
(short strings such as team or model names), once per series, not per event.

An absent label matches as the empty string, as in Alertmanager:
``feature!="batch"`` matches a series without a feature.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from detector.rules.catalog import SERIES_LABELS, closest, is_series_label
from detector.rules.diagnostics import quote as _q

MAX_PATTERN_CHARS = 256
OPERATORS = ("=", "!=", "=~", "!~")
EXPECTED = 'name="value", name!="value", name=~"regex" or name!~"regex"'
_SYNTAX = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_UNQUOTED = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(=~|!~|!=|==|=)\s*'?([^\"']*?)'?\s*")
_ESCAPES = {'\\"': '"', "\\\\": "\\", "\\n": "\n"}


class MatcherError(ValueError):
    """A matcher cannot be used; ``expected`` and ``suggestion`` say what would work."""

    def __init__(self, message: str, expected: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.expected, self.suggestion = expected, suggestion


@dataclass(frozen=True, slots=True)
class Matcher:
    """One compiled matcher; ``str()`` gives it back in canonical form.

    >>> m = parse_matcher('feature=~"summarize|answer"')
    >>> m.matches({"feature": "answer"}), m.matches({"feature": "answers"}), str(m)
    (True, False, 'feature=~"summarize|answer"')
    """

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series with ``labels`` is selected (absent labels read as "")."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    @property
    def is_equality(self) -> bool:
        return self.op == "="

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


NameCheck = Callable[[str, str], None]
"""Refuses a label name (given the name and the whole matcher) with a :class:`MatcherError`."""


def series_label_name(name: str, text: str) -> None:
    """Rule files match series labels only: anything else is a typo, and the error names the closest."""
    if not is_series_label(name):
        raise MatcherError(f"unknown label {_q(name)} in matcher {_q(text)}",
                           "a series label (" + ", ".join(SERIES_LABELS) + ") or tags.<name>",
                           closest(name, SERIES_LABELS))


def parse_matcher(text: str, check_name: NameCheck = series_label_name) -> Matcher:
    """A matcher from its text, or :class:`MatcherError` saying what is wrong; ``check_name`` judges the label.

    >>> parse_matcher('team = "search"')
    Matcher(name='team', op='=', value='search')
    >>> try:
    ...     parse_matcher("team=search")
    ... except MatcherError as exc:
    ...     print(exc, exc.suggestion)
    bad matcher "team=search" team="search"
    """
    match = _SYNTAX.fullmatch(text)
    if match is None:
        loose = _UNQUOTED.fullmatch(text)
        suggestion = None
        if loose is not None:
            op = "=" if loose.group(2) == "==" else loose.group(2)
            suggestion = f'{loose.group(1)}{op}"{loose.group(3)}"'
        raise MatcherError(f"bad matcher {_q(text)}", EXPECTED, suggestion)
    name, op, raw = match.groups()
    check_name(name, text)
    value = re.sub(r"\\.", lambda m: _ESCAPES.get(m.group(0), m.group(0)[1]), raw)
    regex = _compile(value, text) if op in ("=~", "!~") else None
    return Matcher(name, op, value, regex)


def _compile(pattern: str, text: str) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise MatcherError(f"regex in {_q(text[:40] + '…')} is {len(pattern)} characters long",
                           f"at most {MAX_PATTERN_CHARS} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise MatcherError(f"invalid regex {_q(pattern)}: {exc}", "a Python regular expression") from exc


def disjoint(a: tuple[Matcher, ...], b: tuple[Matcher, ...]) -> bool:
    """Whether no series can satisfy both scopes (some label pinned on one side fails the other).

    >>> t = parse_matcher
    >>> disjoint((t('team="a"'),), (t('team="b"'),)), disjoint((t('team="a"'),), (t('feature="x"'),))
    (True, False)
    """
    for one, other in ((a, b), (b, a)):
        for pin in one:
            if pin.is_equality and not all(m.matches({pin.name: pin.value}) for m in other if m.name == pin.name):
                return True
    return False
