"""Matchers on alert labels, for routes, silences and inhibition rules.

The syntax is the one rule files use (:mod:`detector.rules.matchers`):
``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``, value always
double-quoted, regexes fully anchored and capped in length. What differs is
the set of names: an alert carries more than series labels (``rule``,
``alertname``, ``severity``, ``metric`` and the labels a rule adds, such as
``owner``), so any label name is accepted here. An absent label reads as the
empty string, as in Alertmanager.
"""

from __future__ import annotations

import re

from detector.rules.diagnostics import quote
from detector.rules.matchers import EXPECTED, MAX_PATTERN_CHARS, Matcher, MatcherError

LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)?")
_SYNTAX = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_LOOSE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(=~|!~|!=|==|=)\s*'?([^\"']*?)'?\s*")
_ESCAPES = {'\\"': '"', "\\\\": "\\", "\\n": "\n"}


def parse_label_matcher(text: str) -> Matcher:
    """A matcher on any alert label, or :class:`MatcherError` saying what would work.

    >>> parse_label_matcher('severity="critical"').matches({"severity": "critical"})
    True
    >>> parse_label_matcher('rule=~"search\\\\..*"').matches({"rule": "search.budget"})
    True
    >>> try:
    ...     parse_label_matcher("team=search")
    ... except MatcherError as exc:
    ...     print(exc, exc.suggestion)
    bad matcher "team=search" team="search"
    """
    if not isinstance(text, str):
        raise MatcherError(f"a matcher must be a string, found {type(text).__name__}", EXPECTED)
    found = _SYNTAX.fullmatch(text)
    if found is None:
        loose = _LOOSE.fullmatch(text)
        suggestion = None
        if loose is not None:
            op = "=" if loose.group(2) == "==" else loose.group(2)
            suggestion = f'{loose.group(1)}{op}"{loose.group(3)}"'
        raise MatcherError(f"bad matcher {quote(text)}", EXPECTED, suggestion)
    name, op, raw = found.groups()
    if not LABEL_NAME.fullmatch(name):
        raise MatcherError(f"bad label name {quote(name)} in matcher {quote(text)}",
                           "letters, digits and '_', or tags.<name>")
    value = re.sub(r"\\.", lambda m: _ESCAPES.get(m.group(0), m.group(0)[1]), raw)
    regex = _compile(value, text) if op in ("=~", "!~") else None
    return Matcher(name, op, value, regex)


def _compile(pattern: str, text: str) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise MatcherError(f"regex in {quote(text[:40] + '…')} is {len(pattern)} characters long",
                           f"at most {MAX_PATTERN_CHARS} characters")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise MatcherError(f"invalid regex {quote(pattern)}: {exc}", "a Python regular expression") from exc


def matches_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    """Whether every matcher selects ``labels`` (no matchers: everything).

    >>> matches_all((parse_label_matcher('team="a"'),), {"team": "a"}), matches_all((), {})
    (True, True)
    """
    return all(m.matches(labels) for m in matchers)
