"""Checks that need more than one field: contradictions, fit to the metric, templates.

The schema knows each key alone; these checks know the rule in its group.
Each returns :class:`Problem` values with paths relative to the group or the
rule, never raises, and never stops at the first finding, so a rule with
three contradictions shows all three.
"""

from __future__ import annotations

from collections.abc import Iterable

from detector.rules import catalog
from detector.rules.catalog import closest, is_series_label, metric_kind
from detector.rules.diagnostics import Loc, Problem, quote
from detector.rules.matchers import Matcher
from detector.rules.schema import GroupHead, RuleSpec
from detector.rules.templates import VALUES_BY_KIND

Scoped = tuple[Matcher, Loc | None]  # a matcher and where the rule wrote it (None: from the group)


def group_scope(group: GroupHead) -> tuple[Matcher, ...]:
    """The series a group is about: its series-label ``labels`` pinned, then its ``matchers``.

    >>> g = GroupHead.model_validate({"name": "g", "labels": {"team": "a", "severity": "info"}, "rules": []})
    >>> [str(m) for m in group_scope(g)]
    ['team="a"']
    """
    pins = tuple(Matcher(name, "=", value) for name, value in group.labels.items() if is_series_label(name))
    return pins + group.matchers


def check_group(group: GroupHead) -> list[Problem]:
    """A group whose labels and matchers exclude each other can never fire."""
    scoped: list[Scoped] = [(Matcher(name, "=", value), ("labels", name))
                            for name, value in group.labels.items() if is_series_label(name)]
    scoped += [(m, ("matchers", i)) for i, m in enumerate(group.matchers)]
    return list(_contradictions(scoped))


def check_rule(group: GroupHead | None, rule: RuleSpec) -> list[Problem]:
    """Everything about one rule that depends on its metric, its kind or its group.

    ``group`` is None when the group's own keys are invalid; the checks that need
    them wait until those are fixed rather than report errors that are not there.
    """
    if group is None:
        return list(_fit(rule))
    return [*_fit(rule), *_labels(group, rule), *_templates(group, rule)]


def _fit(rule: RuleSpec) -> Iterable[Problem]:
    expr, metric = rule.expr, rule.expr.metric
    kind = metric_kind(metric)
    if expr.anomaly is not None and expr.anomaly.model not in catalog.MODELS_BY_KIND[kind]:
        fits = catalog.MODELS_BY_KIND[kind]
        yield Problem(("expr", "anomaly", "model"),
                      f"model {quote(expr.anomaly.model)} does not apply to metric {quote(metric)}",
                      "for this metric: " + ", ".join(fits))
    if expr.threshold is not None:
        statistic = expr.threshold.statistic
        if statistic not in catalog.STATISTICS_BY_KIND[kind]:
            fits = catalog.STATISTICS_BY_KIND[kind]
            yield Problem(("expr", "threshold", "statistic"),
                          f"statistic {quote(statistic)} does not apply to metric {quote(metric)}",
                          "for this metric: " + ", ".join(fits), closest(statistic, fits))
        for bound in ("above", "below"):
            value = getattr(expr.threshold, bound)
            if statistic == "share" and value is not None and not 0 <= value <= 1:
                yield Problem(("expr", "threshold", bound), f"a share of {value} can never be reached",
                              "a share between 0 and 1, e.g. 0.05 for 5 %")
    if expr.budget is not None and metric != "spend_rate" and kind != catalog.USAGE:
        yield Problem(("expr", "metric"), f"a budget counts dollars, and metric {quote(metric)} is not dollars",
                      catalog.BUDGET_METRICS)
    allowed = catalog.labels_of_metric(metric)
    seen: set[str] = set()
    for i, name in enumerate(expr.by):
        if name in seen:
            yield Problem(("expr", "by", i), f"label {quote(name)} is listed twice", "each label once")
        seen.add(name)
        yield from _on_metric(name, metric, allowed, ("expr", "by", i))
    for i, matcher in enumerate(expr.matchers):
        yield from _on_metric(matcher.name, metric, allowed, ("expr", "matchers", i))


def _on_metric(name: str, metric: str, allowed: tuple[str, ...], loc: Loc) -> Iterable[Problem]:
    if name not in allowed and not name.startswith(catalog.TAG_PREFIX):
        yield Problem(loc, f"series of metric {quote(metric)} have no label {quote(name)}",
                      "one of " + ", ".join(allowed) + " or tags.<name>", closest(name, allowed))


def _labels(group: GroupHead, rule: RuleSpec) -> Iterable[Problem]:
    scope = group_scope(group)
    scoped: list[Scoped] = [(m, None) for m in scope]
    scoped += [(m, ("expr", "matchers", i)) for i, m in enumerate(rule.expr.matchers)]
    yield from _contradictions(scoped)
    for name, value in rule.labels.items():
        if name in rule.expr.by:
            yield Problem(("labels", name),
                          f"label {quote(name)} is fixed to {quote(value)} here and grouped by in expr.by",
                          "either expr.by or labels, not both: every alert would claim the same " + name)
        for matcher in (*scope, *rule.expr.matchers):
            if matcher.name == name and matcher.is_equality and matcher.value != value:
                yield Problem(("labels", name), f"label {name}={quote(value)} contradicts the scope {matcher}",
                              f"{name}={quote(matcher.value)} or no {name} label here")


def _contradictions(scoped: list[Scoped]) -> Iterable[Problem]:
    """Pairs of matchers no series can satisfy together, reported once, where the caller wrote them.

    A pair whose both halves come from elsewhere (loc None) is left to the check that owns them.
    """
    for i, (one, one_loc) in enumerate(scoped):
        for other, other_loc in scoped[i + 1 :]:
            if one.name != other.name or not _exclusive(one, other):
                continue
            locs = [loc for loc in (one_loc, other_loc) if loc is not None]
            if locs:
                yield Problem(max(locs), f"matchers {one} and {other} exclude each other, so no series can match",
                              "matchers that can hold together")


def _exclusive(a: Matcher, b: Matcher) -> bool:
    """Whether a value pinned by one of the two fails the other."""
    return any(pin.is_equality and not other.matches({pin.name: pin.value}) for pin, other in ((a, b), (b, a)))


def alert_labels(group: GroupHead, rule: RuleSpec) -> set[str]:
    """The labels an alert of this rule carries: its ``by``, pinned scope, group and rule labels, severity."""
    pinned = {m.name for m in (*group_scope(group), *rule.expr.matchers) if m.is_equality}
    return {*rule.expr.by, *rule.labels, *group.labels, *pinned, "severity"}


def _templates(group: GroupHead, rule: RuleSpec) -> Iterable[Problem]:
    labels = sorted(alert_labels(group, rule))
    values = VALUES_BY_KIND[rule.expr.kind]
    for key, template in rule.annotations.items():
        for name in template.labels:
            if name not in labels:
                yield Problem(("annotations", key),
                              f"template names label {quote(name)}, which this alert does not carry",
                              "one of " + ", ".join(labels) + " (a label in expr.by, an equality matcher or labels)",
                              closest(name, labels))
        for name in template.values:
            if name not in values:
                yield Problem(("annotations", key),
                              f"template names ${name}, which a {rule.expr.kind} rule does not have",
                              "one of " + ", ".join("$" + v for v in values))
