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
from detector.rules.matchers import EXPECTED, Matcher, MatcherError, parse_matcher

LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)?")


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
    return parse_matcher(text, check_name=_alert_label_name)


def _alert_label_name(name: str, text: str) -> None:
    if not LABEL_NAME.fullmatch(name):
        raise MatcherError(f"bad label name {quote(name)} in matcher {quote(text)}",
                           "letters, digits and '_', or tags.<name>")


def matches_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    """Whether every matcher selects ``labels`` (no matchers: everything).

    >>> matches_all((parse_label_matcher('team="a"'),), {"team": "a"}), matches_all((), {})
    (True, True)
    """
    return all(m.matches(labels) for m in matchers)
