"""Team-owned rule files: the format, the loader with precise errors, and hot reload.

Rules are YAML data in the shape of Prometheus alerting rules, with a
structured ``expr`` (see ``rules/EXAMPLE.yaml``). Start with
:func:`load_rules` (paths → :class:`RuleSet` or a list of :class:`RuleError`),
:func:`check_paths` and :func:`format_error` (``spendwatch rules check``),
:meth:`RuleSet.for_series` (which rules apply to a series, precedence
resolved) and :class:`RuleReloader` (picks up changed files, refuses broken
ones). Modules: ``source`` (safe YAML), ``schema`` (the format),
``checks`` (relations between fields), ``matchers``, ``templates``,
``durations``, ``catalog`` (closed sets of names), ``ruleset`` (precedence),
``loader``, ``reloader``, ``diagnostics`` (errors).

Judging rules: :class:`RuleEvaluator` evaluates every threshold and budget
rule over a stream of events (``evaluate``, ``threshold``, ``budget``,
``window_stats``, ``spend``, ``records``); anomaly rules are the engine's.
``detection`` runs both side by side for ``ruletests`` (``spendwatch rules
test``, with ``series_notation`` and ``synthesis``) and ``backtest``;
``cli`` holds the ``spendwatch rules`` commands.
"""

from detector.rules.diagnostics import RuleError, format_error
from detector.rules.evaluate import RuleEvaluator
from detector.rules.loader import (
    RuleLoadError,
    check_paths,
    load_data,
    load_rules,
    load_rules_or_raise,
    load_sources,
)
from detector.rules.matchers import Matcher, parse_matcher
from detector.rules.reloader import RuleReloader
from detector.rules.ruleset import FileVersion, Origin, Rule, RuleSet
from detector.rules.schema import Expr, RuleSpec
from detector.rules.templates import Template, parse_template

__all__ = [
    "Expr",
    "FileVersion",
    "Matcher",
    "Origin",
    "Rule",
    "RuleError",
    "RuleEvaluator",
    "RuleLoadError",
    "RuleReloader",
    "RuleSet",
    "RuleSpec",
    "Template",
    "check_paths",
    "format_error",
    "load_data",
    "load_rules",
    "load_rules_or_raise",
    "load_sources",
    "parse_matcher",
    "parse_template",
]
