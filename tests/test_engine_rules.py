"""The engine reads the rules: built-in models with the rules' parameters, overridden per scope by team files."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.detection_run import rule_paths
from detector.engine import Engine
from detector.events import LlmRequest
from detector.pricing import PriceTable
from detector.rules import RuleSet, load_rules

PRICES = PriceTable.packaged()
T0 = datetime.fromisoformat("2026-11-16T00:00:00+00:00").timestamp()
TEAM_FILE = """\
groups:
  - name: search
    labels: {team: search}
    rules:
      - id: builtin.input_tokens_per_request   # the default's id: a higher ratio for the batch feature only
        alert: BatchPromptLengthShift
        expr:
          metric: input_tokens_per_request
          by: [team, feature, model]
          matchers: ['feature="batch"']
          anomaly: {model: level_shift, ratio_above: 3.0, min_requests: 30}
      - id: builtin.output_tokens_per_request  # and no output-length alerts for it at all
        alert: OutputLengthShift
        enabled: false
        expr:
          metric: output_tokens_per_request
          by: [team, feature, model]
          matchers: ['feature="batch"']
          anomaly: {model: level_shift, ratio_above: 1.5}
"""


def doubled_prompts(engine: Engine) -> list[Anomaly]:
    """Two features of one team, 30 requests a minute each; prompts and answers double after 5 hours."""
    rng = random.Random(3)
    out: list[Anomaly] = []
    for minute in range(6 * 60):
        factor = 2.0 if minute >= 300 else 1.0
        for i in range(30):
            for feature in ("batch", "answer"):
                out += engine.process(LlmRequest(
                    ts=T0 + minute * 60 + i * 2, model="gpt-4o", team="search", feature=feature,
                    input_tokens=int(2000 * factor * rng.lognormvariate(0, 0.4)),
                    output_tokens=int(300 * factor * rng.lognormvariate(0, 0.4))))
    return [a for a in out if a.status == "firing"]


def loaded(tmp_path: Path) -> RuleSet:
    (tmp_path / "search.yaml").write_text(TEAM_FILE)
    rules = load_rules(rule_paths([tmp_path]))
    assert isinstance(rules, RuleSet), rules
    return rules


def test_a_team_override_raises_the_ratio_for_its_own_feature_only(tmp_path):
    firing = doubled_prompts(Engine(PRICES, Settings(), rules=loaded(tmp_path)))
    by_feature = {(a.labels["feature"], a.metric) for a in firing}
    assert ("answer", "input_tokens_per_request") in by_feature
    # batch's own prompt rule wants ×3, and its output rule is off; its other defaults still apply
    assert ("batch", "input_tokens_per_request") not in by_feature
    assert ("batch", "output_tokens_per_request") not in by_feature
    assert {a.rule for a in firing if a.labels["feature"] == "batch"} <= {"builtin.cost_per_request"}


def test_without_the_team_file_both_features_page(tmp_path):
    rules = load_rules(rule_paths([]))
    assert isinstance(rules, RuleSet)
    firing = doubled_prompts(Engine(PRICES, Settings(), rules=rules))
    assert {a.labels["feature"] for a in firing} == {"batch", "answer"}


def test_new_rules_taken_mid_stream_keep_what_the_series_learned(tmp_path):
    """Hot reload: the series keep their baselines under rule ids that stay, so nothing is relearned."""
    defaults = load_rules(rule_paths([]))
    assert isinstance(defaults, RuleSet)
    engine = Engine(PRICES, Settings(), rules=defaults)
    rng = random.Random(4)
    for minute in range(240):
        engine.process_many(LlmRequest(ts=T0 + minute * 60 + i * 2, model="gpt-4o", team="search",
                                       feature="answer", input_tokens=int(2000 * rng.lognormvariate(0, 0.4)),
                                       output_tokens=300) for i in range(30))
    engine.export_group("llm:search")  # hands the open minute to the models, as a reload does
    series = engine.series[("search", "answer", "gpt-4o")]
    before = {m.rule_id: m.model.to_state() for m in series.per_request}
    engine.use_rules(loaded(tmp_path), T0 + 240 * 60)
    after = {m.rule_id: m.model.to_state() for m in engine.series[("search", "answer", "gpt-4o")].per_request}
    assert after == before  # the answer feature's rules did not change: same models, same state
