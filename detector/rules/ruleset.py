"""Loaded rules, and which of them apply to a series.

Precedence, in one sentence: **for each rule id, the rule with the most
specific scope that selects the series wins.** A rule's scope is its group's
series-label ``labels`` (``team: search`` pins ``team="search"``), then the
group's ``matchers``, then the rule's ``expr.matchers``; its specificity is
the number of those matchers. So ``rules/default.yaml`` (no scope) applies
everywhere, and a team file that reuses a default rule's id overrides it only
for the series its scope selects, without copying the other defaults. Two
rules with one id must be told apart at load time: a different metric, the
same scope, or equally specific scopes that could select the same series are
errors (:func:`precedence_problems`). A winning rule with ``enabled: false``
switches the id off in its scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from detector.rules.diagnostics import quote
from detector.rules.matchers import Matcher, disjoint
from detector.rules.schema import Expr
from detector.rules.templates import Template

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a rule's id is written, and the version of that file."""

    path: str
    line: int
    col: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One loaded rule, resolved against its group: what the engine evaluates."""

    id: str
    alert: str
    group: str
    expr: Expr
    for_s: float
    keep_firing_for_s: float
    labels: Mapping[str, str]  # group labels, then the rule's own (the rule's win)
    annotations: Mapping[str, Template]
    enabled: bool
    scope: tuple[Matcher, ...]
    origin: Origin

    @property
    def specificity(self) -> int:
        return len(self.scope)

    @property
    def severity(self) -> str:
        """``critical``, ``warning``, ``info``, or ``auto`` (decided by the excess $/hour)."""
        return self.labels.get("severity", "auto")

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether a series with these labels is in this rule's scope."""
        return all(m.matches(labels) for m in self.scope)

    def annotate(self, series_labels: Mapping[str, str], values: Mapping[str, float | str | None]) -> dict[str, str]:
        """Every annotation rendered for one alert (series labels, then the rule's labels)."""
        labels = {**series_labels, **self.labels}
        return {name: template.render(labels, values) for name, template in self.annotations.items()}


@dataclass(frozen=True, slots=True)
class FileVersion:
    """A loaded rule file: its path, content hash and how many rules it holds."""

    path: str
    sha256: str
    rules: int

    @property
    def short(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class RuleSet:
    """All loaded rules, and the files (with content hashes) they came from.

    >>> from detector.rules.loader import load_sources
    >>> text = b'''groups:
    ... - name: defaults
    ...   rules:
    ...   - {id: spend, alert: SpendUp, expr: {metric: spend_rate, rate_shift: 1}}
    ... '''
    >>> load_sources([("d.yaml", text)])[0].message
    'unknown key "rate_shift"'
    >>> text = text.replace(b"rate_shift: 1", b"anomaly: {model: rate_shift, ratio_above: 1.5}")
    >>> override = b'''groups:
    ... - name: search
    ...   labels: {team: search}
    ...   rules:
    ...   - {id: spend, alert: SearchSpendUp, expr: {metric: spend_rate, anomaly: {model: rate_shift, ratio_above: 3}}}
    ... '''
    >>> rules = load_sources([("d.yaml", text), ("search.yaml", override)])
    >>> [r.alert for r in rules.for_series({"team": "search"})], [r.alert for r in rules.for_series({"team": "ads"})]
    (['SearchSpendUp'], ['SpendUp'])
    """

    rules: tuple[Rule, ...] = ()
    files: tuple[FileVersion, ...] = ()
    _by_metric: dict[str, tuple[Rule, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            self._by_metric[rule.expr.metric] = (*self._by_metric.get(rule.expr.metric, ()), rule)

    @property
    def version(self) -> tuple[tuple[str, str], ...]:
        """(path, sha256) of every file in force: what an operator checks after a reload."""
        return tuple((f.path, f.sha256) for f in self.files)

    def for_series(self, labels: Mapping[str, str], metric: str | None = None) -> list[Rule]:
        """The rules that apply to one series: per id, the most specific scope that selects it.

        An id keeps one metric, so filtering by ``metric`` first changes nothing about who wins.
        """
        candidates = self.rules if metric is None else self._by_metric.get(metric, ())
        best: dict[str, Rule] = {}
        for rule in candidates:
            held = best.get(rule.id)
            if (held is None or rule.specificity > held.specificity) and rule.selects(labels):
                best[rule.id] = rule
        return [rule for rule in best.values() if rule.enabled]

    def describe(self) -> list[str]:
        """One line per file in force: path, short hash, rule count."""
        return [f"{f.path} sha256:{f.short} {f.rules} rule{'s' if f.rules != 1 else ''}" for f in self.files]


def freeze(mapping: Mapping[str, V]) -> Mapping[str, V]:
    """A read-only copy, so a loaded rule cannot be changed by whoever holds it."""
    return MappingProxyType(dict(mapping))


def precedence_problems(rules: tuple[Rule, ...]) -> list[tuple[Rule, str, str]]:
    """(rule, message, expected) for each pair of same-id rules that precedence cannot order.

    The later rule of a pair (in load order) carries the error.
    """
    by_id: dict[str, list[Rule]] = {}
    for rule in rules:
        by_id.setdefault(rule.id, []).append(rule)
    found = []
    for same in by_id.values():
        for i, later in enumerate(same):
            conflict = next(filter(None, (_conflict(first, later) for first in same[:i])), None)
            if conflict is not None:
                found.append((later, *conflict))  # one error per rule, against the first rule it clashes with
    return found


def _conflict(first: Rule, later: Rule) -> tuple[str, str] | None:
    if first.expr.metric != later.expr.metric:
        return (f"id {quote(later.id)} is used for metric {quote(first.expr.metric)} at {first.origin}",
                "one metric per id: an id names the state kept for a series")
    if {str(m) for m in first.scope} == {str(m) for m in later.scope}:
        return (f"duplicate id {quote(later.id)}: {first.origin} has the same scope",
                "a unique id, or a narrower scope (more matchers) to override that rule")
    if first.specificity == later.specificity and not disjoint(first.scope, later.scope):
        return (f"id {quote(later.id)} at {first.origin} has a scope just as specific "
                f"({first.specificity} matchers) that can select the same series",
                "one scope with more matchers than the other, or scopes that cannot overlap")
    return None
