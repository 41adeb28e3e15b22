"""A running worker takes changed rule files: valid ones at once, broken ones never, regrouping ones at a restart."""

from __future__ import annotations

import os
from pathlib import Path

from detector.config import Settings
from detector.detection_run import engine_for
from detector.events import LlmRequest
from detector.pricing import PriceTable
from streams.rule_reload import WorkerRules, worker_reloader

OFF = """groups:
  - name: growth-off
    labels: {team: growth}
    rules:
      - id: builtin.input_tokens_per_request
        alert: PromptLengthShift
        enabled: false
        expr: {metric: input_tokens_per_request, by: [team, feature, model], anomaly: {model: level_shift, ratio_above: 1.3}}
"""
BASE = """groups:
  - name: base
    rules:
      - id: base.spend
        alert: FeatureSpendHigh
        expr: {metric: spend_rate, by: [team, feature], threshold: {statistic: sum, window: 1h, above: 500}}
"""
TEAM_BUDGET = """groups:
  - name: budgets
    rules:
      - id: growth.budget
        alert: GrowthOverBudget
        expr: {metric: spend_rate, by: [team], budget: {monthly_usd: 5000}}
"""


def touch(path: Path, text: str, tick: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(tick * 10**9, tick * 10**9))  # a new mtime even within the file system's resolution


def worker_rules(tmp_path: Path) -> WorkerRules:
    touch(tmp_path / "base.yaml", BASE, 0)
    settings = Settings(rules_dir=tmp_path)
    engine = engine_for(settings, PriceTable.packaged())
    engine.process(LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=900, output_tokens=80, team="growth", feature="a"))
    return WorkerRules(engine, worker_reloader(settings, now=0.0))


def monitors_of_growth(rules: WorkerRules) -> list[str]:
    return [m.rule_id for m in rules.engine.series[("growth", "a", "gpt-4o")].monitors()]


def test_a_valid_change_is_taken_and_the_series_keep_the_rest(tmp_path: Path) -> None:
    rules = worker_rules(tmp_path)
    assert "builtin.input_tokens_per_request" in monitors_of_growth(rules)
    touch(tmp_path / "growth.yaml", OFF, 1)
    assert rules.poll(10.0) == []
    assert "builtin.input_tokens_per_request" not in monitors_of_growth(rules)
    assert "builtin.output_tokens_per_request" in monitors_of_growth(rules)
    files = rules.describe()["files"]
    assert [Path(f["path"]).name for f in files] == ["default.yaml", "base.yaml", "growth.yaml"] and rules.describe()["not_taken"] is None


def test_a_broken_file_is_refused_with_its_errors_and_the_rules_in_force_stay(tmp_path: Path) -> None:
    rules = worker_rules(tmp_path)
    touch(tmp_path / "growth.yaml", OFF.replace("enabled: false", "enabled: maybe"), 1)
    rules.poll(10.0)
    health = rules.describe()
    assert "builtin.input_tokens_per_request" in monitors_of_growth(rules)
    assert [Path(f["path"]).name for f in health["files"]] == ["default.yaml", "base.yaml"]
    assert any("growth.yaml:" in e and "enabled" in e for e in health["errors"]), health["errors"]


def test_rules_that_regroup_the_stream_wait_for_a_restart_and_the_health_page_says_so(tmp_path: Path) -> None:
    rules = worker_rules(tmp_path)
    touch(tmp_path / "budget.yaml", TEAM_BUDGET, 1)
    rules.poll(10.0)
    assert rules.engine.by_feature and rules.engine.rules is not None
    assert not any(r.id == "growth.budget" for r in rules.engine.rules.rules)
    assert "restart every worker" in (rules.describe()["not_taken"] or "")
    (tmp_path / "budget.yaml").unlink()
    touch(tmp_path / "growth.yaml", OFF, 2)
    rules.poll(20.0)
    assert rules.describe()["not_taken"] is None
    assert "builtin.input_tokens_per_request" not in monitors_of_growth(rules)
