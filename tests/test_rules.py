"""Rule files: the shipped files load, every error kind is reported exactly, precedence, reload, safety."""

from __future__ import annotations

import copy
import os
import pickle
import textwrap
import time
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import detector.rules as rules_pkg
from detector.rules import (
    RuleLoadError,
    RuleReloader,
    RuleSet,
    check_paths,
    format_error,
    load_data,
    load_rules,
    load_sources,
    parse_matcher,
    parse_template,
)
from detector.rules.catalog import METRICS, SERIES_LABELS
from detector.rules.durations import format_duration, parse_duration
from detector.rules.matchers import MatcherError
from detector.rules.schema import FileHead, GroupHead, RuleSpec
from detector.rules.source import MAX_FILE_BYTES, read_document
from detector.rules.templates import TemplateError

RULES = Path(__file__).resolve().parents[1] / "rules"
HEAD = "groups:\n  - name: g\n    rules:\n"  # rule bodies start on line 4, "- id" at column 7
BASE = """\
- id: a.b
  alert: A
  expr:
    metric: input_tokens_per_request
    by: [feature]
    anomaly: {model: level_shift, ratio_above: 1.5}
"""


def rule_file(body: str, head: str = HEAD) -> str:
    return head + textwrap.indent(textwrap.dedent(body), "      ")


def lines(tmp_path: Path, text: str, name: str = "t.yaml") -> tuple[str, list[str]]:
    path = tmp_path / name
    path.write_text(text)
    return str(path), [format_error(e) for e in check_paths([path])]


# ── The shipped files ──────────────────────────────────────────────────────

def test_default_rules_cover_every_metric_once_and_prompts_also_for_slow_creep() -> None:
    loaded = load_rules([RULES / "default.yaml"])
    assert isinstance(loaded, RuleSet), [format_error(e) for e in loaded]
    fast = [r for r in loaded.rules if r.expr.anomaly is None or r.expr.anomaly.model != "drift"]
    assert sorted(r.expr.metric for r in fast) == sorted(METRICS)
    creep = [r for r in loaded.rules if r not in fast]
    assert [(r.id, r.expr.metric) for r in creep] == [("builtin.input_tokens_drift", "input_tokens_per_request")]
    assert all(r.scope == () and r.severity == "auto" for r in loaded.rules)
    prompt = next(r for r in fast if r.expr.metric == "input_tokens_per_request")
    assert prompt.expr.anomaly is not None and prompt.expr.anomaly.model == "level_shift"
    assert (prompt.expr.anomaly.ratio_above, prompt.expr.anomaly.min_requests) == (1.3, 30)
    assert prompt.expr.by == ("team", "feature", "model")


def test_example_loads_alone_and_beside_the_defaults() -> None:
    alone = load_rules([RULES / "EXAMPLE.yaml"])
    both = load_rules([RULES, RULES / "EXAMPLE.yaml"])
    assert isinstance(alone, RuleSet), [format_error(e) for e in alone]
    assert isinstance(both, RuleSet), [format_error(e) for e in both]
    assert [f.path for f in both.files] == [str(RULES / "default.yaml"), str(RULES / "EXAMPLE.yaml")]
    assert {r.expr.kind for r in alone.rules} == {"anomaly", "threshold", "budget"}


def _leaves(annotation: object) -> list[object]:
    args = typing.get_args(annotation)
    return [leaf for arg in args for leaf in _leaves(arg)] if args else [annotation]


def _schema_keys(model: type[BaseModel], seen: set[str]) -> set[str]:
    """Every key the format allows, found by walking the schema's models."""
    for name, field in model.model_fields.items():
        seen.add(field.alias or name)
        for leaf in _leaves(field.annotation):
            if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                _schema_keys(leaf, seen)
    return seen


def test_example_annotates_every_key_of_the_format() -> None:
    text = (RULES / "EXAMPLE.yaml").read_text()
    doc, problems = read_document("EXAMPLE.yaml", text.encode())
    assert doc is not None and problems == []
    source = text.splitlines()
    annotated = set()
    for loc, pos in doc.keys.items():
        line, above = source[pos.line - 1], source[pos.line - 2].strip()
        if "#" in line or above.startswith("#"):
            annotated.add(loc[-1])
    keys = _schema_keys(FileHead, set()) | _schema_keys(GroupHead, set()) | _schema_keys(RuleSpec, set())
    assert keys - annotated == set()


def test_directory_skips_example_and_routing(tmp_path: Path) -> None:
    (tmp_path / "EXAMPLE.yaml").write_text("not: [a rule file")
    (tmp_path / "routing.yaml").write_text("route: {receiver: slack}\n")
    (tmp_path / "a.yaml").write_text(rule_file(BASE))
    loaded = load_rules([tmp_path])
    assert isinstance(loaded, RuleSet) and [f.path for f in loaded.files] == [str(tmp_path / "a.yaml")]
    assert len(check_paths([tmp_path / "EXAMPLE.yaml"])) == 1  # named explicitly, it is checked


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    assert [format_error(e) for e in check_paths([tmp_path / "nope"])] == [
        f"{tmp_path / 'nope'}: no such file or directory (expected a rule file or a directory of them)"]
    assert "directory holds no rule files" in format_error(check_paths([tmp_path])[0])


# ── Every error kind, exactly ──────────────────────────────────────────────

ERRORS: dict[str, tuple[str, ...]] = {  # case: (rule body, "line:col: the rest" [, file head])
    "unknown metric, near miss": (
        BASE.replace("metric: input_tokens_per_request", "metric: input_token_per_request"),
        '7:19: group "g", rule "A": expr.metric: unknown metric "input_token_per_request" (expected one of '
        + ", ".join(METRICS) + ', or usage:<name>); did you mean "input_tokens_per_request"?'),
    "bare usage metric": (
        BASE.replace("input_tokens_per_request", "vector_db_usd").replace("by: [feature]", "by: [team]"),
        '7:19: group "g", rule "A": expr.metric: unknown metric "vector_db_usd" (expected one of '
        + ", ".join(METRICS) + ', or usage:<name>); did you mean "usage:vector_db_usd"?'),
    "unknown key in expr": (
        BASE.replace("anomaly: {model: level_shift, ratio_above: 1.5}", "tresholds: {above: 1}"),
        '9:11: group "g", rule "A": expr.tresholds: unknown key "tresholds" (expected one of: '
        'metric, by, matchers, threshold, anomaly, budget); did you mean "threshold"?'),
    "unknown key in rule": (
        BASE + "  keep_firing: 5m\n",
        '10:9: group "g", rule "A": keep_firing: unknown key "keep_firing" (expected one of: id, alert, expr, '
        'for, keep_firing_for, labels, annotations, enabled); did you mean "keep_firing_for"?'),
    "a number for a duration": (
        BASE + "  for: 300\n",
        '10:14: group "g", rule "A": for: found the number 300; a duration needs a unit '
        '(expected a Prometheus duration like 30s, 5m, 1h30m or 7d); did you mean "5m"?'),
    "a bad duration": (
        BASE + "  keep_firing_for: 1.5h\n",
        '10:26: group "g", rule "A": keep_firing_for: not a duration: "1.5h" '
        '(expected a Prometheus duration like 30s, 5m, 1h30m or 7d); did you mean "1h30m"?'),
    "a string for a list": (
        BASE.replace("by: [feature]", "by: feature"),
        '8:15: group "g", rule "A": expr.by: found "feature" (expected a list of labels, e.g. [team, feature]); '
        'did you mean "[feature]"?'),
    "yes/no read as a boolean": (
        BASE + "  labels: {team: no}\n",
        '10:24: group "g", rule "A": labels.team: found false, which is how YAML reads an unquoted no '
        '(expected a string; write it in quotes: "no")'),
    "unknown label in by": (
        BASE.replace("by: [feature]", "by: [feature, modle]"),
        '8:25: group "g", rule "A": expr.by[1]: unknown label "modle" (expected a series label ('
        + ", ".join(SERIES_LABELS) + ') or tags.<name>); did you mean "model"?'),
    "unknown anomaly model": (
        BASE.replace("model: level_shift", "model: level_shfit"),
        '9:28: group "g", rule "A": expr.anomaly.model: unknown anomaly model "level_shfit" '
        '(expected one of: level_shift, proportion_shift, rate_shift, idle, drift); did you mean "level_shift"?'),
    "unquoted matcher value": (
        BASE + "    matchers: [model=gpt-4o]\n",
        '10:22: group "g", rule "A": expr.matchers[0]: bad matcher "model=gpt-4o" (expected name="value", '
        'name!="value", name=~"regex" or name!~"regex"); did you mean \'model="gpt-4o"\'?'),
    "invalid regex": (
        BASE + "    matchers: ['model=~\"gpt-(4o\"']\n",
        '10:22: group "g", rule "A": expr.matchers[0]: invalid regex "gpt-(4o": missing ), unterminated '
        'subpattern at position 4 (expected a Python regular expression)'),
    "severity typo": (
        BASE + "  labels: {severity: critcal}\n",
        '10:28: group "g", rule "A": labels.severity: unknown severity "critcal" '
        '(expected one of critical, warning, info, auto); did you mean "critical"?'),
    "unknown template value": (
        BASE + "  annotations: {summary: 'up {{ $ratoi }}x'}\n",
        '10:32: group "g", rule "A": annotations.summary: unknown template value "$ratoi" (expected one of value, '
        'excess_usd_per_hour, projected_month_usd, baseline, ratio, threshold, budget_usd, spent_usd); '
        'did you mean "$ratio"?'),
    "template label the alert does not carry": (
        BASE + "  annotations: {summary: '{{ $labels.feture }} grew'}\n",
        '10:32: group "g", rule "A": annotations.summary: template names label "feture", which this alert does '
        'not carry (expected one of feature, severity (a label in expr.by, an equality matcher or labels)); '
        'did you mean "feature"?'),
    "template value of another kind": (
        BASE.replace("anomaly: {model: level_shift, ratio_above: 1.5}",
                     "threshold: {statistic: p95, window: 10m, above: 9000}")
        + "  annotations: {summary: '{{ $ratio }}x'}\n",
        '10:32: group "g", rule "A": annotations.summary: template names $ratio, which a threshold rule does '
        'not have (expected one of $value, $excess_usd_per_hour, $projected_month_usd, $threshold)'),
    "threshold and anomaly": (
        BASE + "    threshold: {statistic: p95, window: 10m, above: 9000}\n",
        '9:11: group "g", rule "A": expr.anomaly: threshold and anomaly are both set '
        '(expected exactly one of threshold, anomaly or budget)'),
    "a band that always fires": (
        BASE.replace("anomaly: {model: level_shift, ratio_above: 1.5}",
                     "threshold: {statistic: mean, window: 10m, above: 10, below: 20}"),
        '9:71: group "g", rule "A": expr.threshold.below: below 20.0 is not under above 10.0, so it would always '
        'fire (expected below < above (a band the value leaves))'),
    "model that does not fit the metric": (
        BASE.replace("anomaly: {model: level_shift, ratio_above: 1.5}", "anomaly: {model: idle}"),
        '9:28: group "g", rule "A": expr.anomaly.model: model "idle" does not apply to metric '
        '"input_tokens_per_request" (expected for this metric: level_shift, drift)'),
    "budget on a metric that is not dollars": (
        BASE.replace("input_tokens_per_request", "request_rate")
        .replace("anomaly: {model: level_shift, ratio_above: 1.5}", "budget: {monthly_usd: 100}"),
        '7:19: group "g", rule "A": expr.metric: a budget counts dollars, and metric "request_rate" is not '
        'dollars (expected spend_rate or usage:<name> (a usage metric counted in dollars))'),
    "label both grouped and fixed": (
        BASE + "  labels: {feature: search}\n",
        '10:27: group "g", rule "A": labels.feature: label "feature" is fixed to "search" here and grouped by in '
        'expr.by (expected either expr.by or labels, not both: every alert would claim the same feature)'),
    "matchers that exclude each other": (
        BASE + "    matchers: ['team=\"ads\"']\n",
        '11:22: group "g", rule "A": expr.matchers[0]: matchers team="search" and team="ads" exclude each other, '
        'so no series can match (expected matchers that can hold together)',
        HEAD.replace("name: g", "name: g\n    labels: {team: search}")),  # one line more: the rule starts on 5
    "key given twice": (
        BASE + "  alert: B\n",
        '10:9: group "g", rule "A": alert: key "alert" is given twice (first at 5:9) '
        '(expected each key once per mapping)'),
    "YAML alias": (
        BASE + "  labels: *common\n",
        '10:17: group "g", rule "A": labels: YAML aliases are not allowed in rule files '
        '(expected each value written out where it applies)'),
    "missing key": (
        BASE.replace("  alert: A\n", ""),
        '4:9: group "g", rule 1: missing key "alert" (expected an alert name like PromptLengthDoubled)'),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_each_error_kind_is_one_exact_line(tmp_path: Path, case: str) -> None:
    body, expected, *head = ERRORS[case]
    path, found = lines(tmp_path, rule_file(body, *head))
    assert found == [f"{path}:{expected}"]


def test_yaml_syntax_error_points_at_the_problem(tmp_path: Path) -> None:
    path, found = lines(tmp_path, 'groups:\n  - name: "g\n')
    assert found == [f"{path}:3:1: YAML syntax error: found unexpected end of stream, while scanning a quoted "
                     "scalar at 2:11 (expected valid YAML)"]


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = rule_file(
        BASE.replace("metric: input_tokens_per_request", "metric: input_token_per_request")
        + "  for: soon\n"
        + BASE.replace("a.b", "c.d").replace("alert: A", "alert: C").replace("[feature]", "[featur]")
        + "  labels: {severity: loud}\n"
    ) + "  - name: h\n    labels: {team: [x]}\n    rules: []\n"
    path, found = lines(tmp_path, text)
    assert [line.split(": ", 2)[:2] for line in found] == [
        [f"{path}:7:19", 'group "g", rule "A"'],
        [f"{path}:10:14", 'group "g", rule "A"'],
        [f"{path}:15:16", 'group "g", rule "C"'],
        [f"{path}:17:28", 'group "g", rule "C"'],
        [f"{path}:19:20", 'group "h"'],
    ]


def test_duplicate_id_in_one_file(tmp_path: Path) -> None:
    path, found = lines(tmp_path, rule_file(BASE + BASE.replace("alert: A", "alert: B")))
    assert found == [f'{path}:10:13: group "g", rule "B": id: duplicate id "a.b": {path}:4:13 has the same scope '
                     "(expected a unique id, or a narrower scope (more matchers) to override that rule)"]


# ── Precedence ─────────────────────────────────────────────────────────────

def scoped(group_labels: str = "", matchers: str = "", alert: str = "A", ratio: float = 1.5,
           metric: str = "input_tokens_per_request", extra: str = "") -> str:
    head = HEAD.replace("name: g", "name: g" + (f"\n    labels: {group_labels}" if group_labels else ""))
    body = BASE.replace("alert: A", f"alert: {alert}").replace("1.5", str(ratio)).replace(
        "input_tokens_per_request", metric)
    return rule_file(body + (f"    matchers: {matchers}\n" if matchers else "") + extra, head)


def load_files(tmp_path: Path, **files: str) -> RuleSet | list[str]:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    loaded = load_rules([tmp_path])
    return [format_error(e) for e in loaded] if isinstance(loaded, list) else loaded


def test_more_specific_scope_wins_only_where_it_applies(tmp_path: Path) -> None:
    loaded = load_files(
        tmp_path,
        a_default=scoped(),
        b_team=scoped("{team: search}", alert="Team", ratio=1.8),
        c_feature=scoped("{team: search}", "['feature=\"summarize\"']", alert="Feature", ratio=2.5),
        d_off=scoped("{team: search}", "['feature=\"batch\"']", alert="Disabled", extra="  enabled: false\n"),
    )
    assert isinstance(loaded, RuleSet), loaded
    def winner(**labels: str) -> list[str]:
        return [r.alert for r in loaded.for_series(labels, "input_tokens_per_request")]
    assert winner(team="ads", feature="summarize") == ["A"]
    assert winner(team="search", feature="answer") == ["Team"]
    assert winner(team="search", feature="summarize") == ["Feature"]
    assert winner(team="search", feature="batch") == []
    assert loaded.for_series({"team": "search"}, "spend_rate") == []


def test_equally_specific_overlapping_scopes_are_an_error(tmp_path: Path) -> None:
    found = load_files(tmp_path, a=scoped("{team: search}"), b=scoped(matchers="['feature=\"x\"']", alert="B"))
    assert found == [f'{tmp_path / "b.yaml"}:4:13: group "g", rule "B": id: id "a.b" at {tmp_path / "a.yaml"}:5:13 '
                     "has a scope just as specific (1 matchers) that can select the same series (expected one scope "
                     "with more matchers than the other, or scopes that cannot overlap)"]


def test_disjoint_scopes_may_share_an_id(tmp_path: Path) -> None:
    loaded = load_files(tmp_path, a=scoped("{team: search}"), b=scoped("{team: ads}", alert="B"))
    assert isinstance(loaded, RuleSet)
    assert [r.alert for r in loaded.for_series({"team": "ads"})] == ["B"]


def test_same_scope_across_files_and_another_metric_are_errors(tmp_path: Path) -> None:
    found = load_files(tmp_path, a=scoped(), b=scoped(alert="B"),
                       c=scoped("{team: x}", alert="C", metric="output_tokens_per_request"))
    assert found == [
        f'{tmp_path / "b.yaml"}:4:13: group "g", rule "B": id: duplicate id "a.b": {tmp_path / "a.yaml"}:4:13 has '
        "the same scope (expected a unique id, or a narrower scope (more matchers) to override that rule)",
        f'{tmp_path / "c.yaml"}:5:13: group "g", rule "C": id: id "a.b" is used for metric '
        f'"input_tokens_per_request" at {tmp_path / "a.yaml"}:4:13 (expected one metric per id: '
        "an id names the state kept for a series)",
    ]


# ── Hot reload ─────────────────────────────────────────────────────────────

def write_at(path: Path, text: str, mtime: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def test_reload_keeps_previous_rules_on_a_broken_file_and_takes_a_fixed_one(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    write_at(file, scoped(), 1)
    reloader = RuleReloader([tmp_path], now=0.0, interval_s=5.0)
    first = reloader.version
    write_at(file, scoped().replace("1.5", "0.5"), 2)
    assert reloader.poll(1.0) is False and reloader.last_errors == []  # within the interval: not even looked at
    assert reloader.poll(6.0) is False
    assert reloader.version == first and reloader.current.rules[0].expr.anomaly.ratio_above == 1.5
    assert [format_error(e) for e in reloader.last_errors] == [
        f'{file}:9:54: group "g", rule "A": expr.anomaly.ratio_above: 0.5 is not greater than 1 '
        "(expected a ratio above 1, e.g. 1.5)"]
    write_at(file, scoped(ratio=2.0), 3)
    assert reloader.poll(12.0) is True and reloader.last_errors == []
    assert reloader.current.rules[0].expr.anomaly.ratio_above == 2.0
    assert reloader.version[0].sha256 == read_document("x", file.read_bytes())[0].sha256 != first[0].sha256
    os.utime(file, ns=(4 * 10**9, 4 * 10**9))  # touched, same content
    assert reloader.poll(18.0) is False
    (tmp_path / "b.yaml").write_text(scoped("{team: x}", alert="B"))
    assert reloader.poll(24.0) is True and [f.path for f in reloader.version] == [str(file), str(tmp_path / "b.yaml")]


def test_reload_refuses_to_start_on_broken_rules(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(scoped().replace("alert: A", "alert: 'A B'"))
    with pytest.raises(RuleLoadError) as caught:
        RuleReloader([tmp_path], now=0.0)
    assert len(caught.value.errors) == 1 and 'bad alert name "A B"' in str(caught.value)


def test_a_rule_load_error_survives_pickling_with_its_errors(tmp_path: Path) -> None:
    """Replays run in a process pool: an error a worker raises must reach the parent whole."""
    (tmp_path / "a.yaml").write_text(scoped().replace("alert: A", "alert: 'A B'"))
    with pytest.raises(RuleLoadError) as caught:
        RuleReloader([tmp_path], now=0.0)
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is RuleLoadError and str(again) == str(caught.value) and again.errors == caught.value.errors


def test_reload_uses_injected_stat_and_read(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("placeholder")
    contents = {"a.yaml": scoped().encode()}
    stamps = {"a.yaml": 1}
    reloader = RuleReloader([tmp_path], now=0.0, interval_s=0.0,
                            stat=lambda p: stamps[p.name], read=lambda p: contents[p.name])
    contents["a.yaml"] = scoped(ratio=3.0).encode()
    assert reloader.poll(1.0) is False  # same stat: content is not read again
    stamps["a.yaml"] = 2
    assert reloader.poll(2.0) is True and reloader.current.rules[0].expr.anomaly.ratio_above == 3.0


# ── Safety ─────────────────────────────────────────────────────────────────

def timed_errors(tmp_path: Path, text: str | bytes) -> tuple[list[str], float]:
    path = tmp_path / "p.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    start = time.perf_counter()
    found = [format_error(e) for e in check_paths([path])]
    return found, time.perf_counter() - start


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    text = "a0: &a0 [lol]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)) + "groups: *a9\n"
    found, seconds = timed_errors(tmp_path, text)
    assert seconds < 1.0
    assert found[0] == f"{tmp_path / 'p.yaml'}:2:10: a1[0]: YAML aliases are not allowed in rule files " \
                       "(expected each value written out where it applies)"


@pytest.mark.parametrize(("text", "message"), [
    ("groups:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)), "nested more than 24 levels deep"),
    ("groups: " + "[" * 20000 + "]" * 20000 + "\n", "YAML syntax error"),
    ("groups: [" + ", ".join(["1"] * 60000) + "]\n", "more than 50,000 YAML nodes"),
    ("groups: []\n" + "#" * MAX_FILE_BYTES + "\n", f"file is larger than {MAX_FILE_BYTES:,} bytes"),
])
def test_pathological_files_are_refused_quickly(tmp_path: Path, text: str, message: str) -> None:
    found, seconds = timed_errors(tmp_path, text)
    assert seconds < 2.0 and len(found) == 1 and message in found[0]


def test_yaml_tags_never_construct_objects(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    found, _ = timed_errors(tmp_path, f"groups: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()
    assert found == [f"{tmp_path / 'p.yaml'}:1:9: groups: YAML tag !!python/object/apply:os.system is not allowed "
                     "(expected plain YAML values (rule files are data))"]


def test_regexes_are_anchored_length_capped_and_absent_labels_read_empty() -> None:
    matcher = parse_matcher('model=~"gpt-4o.*"')
    assert matcher.matches({"model": "gpt-4o-mini"}) and not matcher.matches({"model": "my-gpt-4o"})
    assert parse_matcher('feature!="batch"').matches({}) and parse_matcher('feature=""').matches({})
    with pytest.raises(MatcherError, match="257 characters long"):
        parse_matcher('model=~"' + "a" * 257 + '"')


# ── Templates ──────────────────────────────────────────────────────────────

def test_templates_render_labels_and_values_and_never_expand_twice() -> None:
    template = parse_template("{{$labels.feature}} on {{ $labels.model }}: {{ $ratio }}x, ${{ $excess_usd_per_hour }}")
    values = {"ratio": 2.345, "excess_usd_per_hour": 1234.5, "value": 9}
    rendered = template.render({"feature": "{{ $value }}"}, values)
    assert rendered == "{{ $value }} on (none): 2.35x, $1,234.50"


@pytest.mark.parametrize("text", ["{{ $labels }}", "{{ .Value }}", "{{ $value | humanize }}", "{{ $value",
                                  "}} {{ $value }}", "{{ printf \"%s\" $value }}", "{{ $valeu }}"])
def test_templates_refuse_anything_but_placeholders(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(text)


# ── Properties ─────────────────────────────────────────────────────────────

_KEYS = ["id", "alert", "expr", "for", "labels", "annotations", "metric", "by", "matchers", "anomaly",
         "threshold", "budget", "model", "ratio_above", "statistic", "window", "above", "monthly_usd", "team"]
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=False), st.sampled_from(
    ["5m", "1.5h", "team", "feature", 'team="a"', 'x=~"("', "{{ $value }}", "{{ $labels.team }}", "level_shift",
     "idle", "p95", "spend_rate", "input_token_per_request", "usage:x", "critical", "a.b", "A"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4), max_leaves=10)
_RULE = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=6) | st.fixed_dictionaries(
    {"id": st.sampled_from(["a.b", "c"]), "alert": st.just("A"),
     "expr": st.fixed_dictionaries({"metric": st.sampled_from(METRICS)}, optional={
         "by": _VALUES, "matchers": _VALUES, "anomaly": _VALUES, "threshold": _VALUES, "budget": _VALUES})},
    optional={"for": _VALUES, "labels": _VALUES, "annotations": _VALUES})


@settings(max_examples=100, deadline=None, derandomize=True)
@given(rules=st.lists(_RULE, max_size=3), group_labels=_VALUES)
def test_loading_never_mutates_its_input_and_never_raises(rules: list[object], group_labels: object) -> None:
    data = {"groups": [{"name": "g", "labels": group_labels, "rules": rules}]}
    snapshot = copy.deepcopy(data)
    result = load_data(data)
    assert data == snapshot
    assert isinstance(result, RuleSet) or all(isinstance(format_error(e), str) for e in result)


_PLAIN = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=_PLAIN, flow=st.booleans())
def test_reader_reads_what_safe_load_reads(data: object, flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow)
    doc, problems = read_document("x.yaml", text.encode())
    assert problems == [] and doc is not None and doc.data == yaml.safe_load(text)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(ms=st.integers(0, 5 * 365 * 86400_000))
def test_durations_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == ms / 1000


def test_public_api_is_sorted_and_importable() -> None:
    assert rules_pkg.__all__ == sorted(rules_pkg.__all__)
    assert all(hasattr(rules_pkg, name) for name in rules_pkg.__all__)
    assert load_sources([("e.yaml", b"")]) == RuleSet((), load_sources([("e.yaml", b"")]).files)
