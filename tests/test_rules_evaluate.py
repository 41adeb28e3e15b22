"""Threshold and budget evaluation: statistics against numpy, for/keep_firing_for timing, budgets, precedence, reload."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.events import GpuSample, LlmRequest, UsageSample
from detector.pricing import PriceTable
from detector.rules import RuleEvaluator, RuleReloader, RuleSet, load_data, load_rules
from detector.rules.budget import STAGE
from detector.rules.source import MAX_FILE_BYTES
from detector.rules.loader import MAX_RULES_PER_FILE, check_paths
from detector.rules.diagnostics import format_error
from detector.rules.window_stats import WindowStats

RULES = Path(__file__).resolve().parents[1] / "rules"
T0 = 1_793_491_200.0  # 2026-11-01T00:00:00Z, a month start
PRICES = PriceTable.packaged()


def ruleset(*rules: dict[str, Any], **group: Any) -> RuleSet:
    loaded = load_data({"groups": [{"name": "g", **group, "rules": list(rules)}]})
    assert isinstance(loaded, RuleSet), loaded
    return loaded


def threshold_rule(metric: str, statistic: str, window: str, *, rule_id: str = "t", by: tuple[str, ...] = ("team",),
                   **extra: Any) -> dict[str, Any]:
    bound = {k: extra.pop(k) for k in ("above", "below", "min_requests") if k in extra}
    return {"id": rule_id, "alert": "T", "expr": {"metric": metric, "by": list(by), "threshold": {
        "statistic": statistic, "window": window, **bound}}, **extra}


def request(ts: float, **fields: Any) -> LlmRequest:
    base: dict[str, Any] = {"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100, "team": "search"}
    return LlmRequest(ts=ts, **{**base, **fields})


def run(evaluator: RuleEvaluator, events: list[Any], until: float | None = None) -> list[tuple[float, Any]]:
    """Feed events in order (advancing each minute) and return (event time, record)."""
    out = []
    for ev in events:
        out += [(ev.ts, a) for a in evaluator.advance(ev.ts)]
        cost = PRICES.cost(ev) if isinstance(ev, LlmRequest) else None
        out += [(ev.ts, a) for a in evaluator.observe(ev, cost)]
    if until is not None:
        for minute in range(int(events[-1].ts // 60) + 1, int(until // 60) + 1):
            out += [(minute * 60.0, a) for a in evaluator.advance(minute * 60.0)]
    return out


# ── Streaming statistics against numpy ────────────────────────────────────

def test_window_statistics_match_numpy_on_the_window() -> None:
    rng = random.Random(11)
    stats = WindowStats(600, quantiles=True)
    values, times = [], []
    for i in range(3000):  # 50 minutes, one value a second, log-normal like token counts
        ts, value = T0 + i, rng.lognormvariate(7, 0.6)
        stats.add(ts, value, hit=value > 1500)
        values.append(value)
        times.append(ts)
    now = T0 + 3000.0
    inside = np.array([v for v, t in zip(values, times, strict=True) if now - 600 <= t < now])
    assert stats.count(now) == len(inside) == 600
    assert stats.mean(now) == pytest.approx(inside.mean(), rel=1e-9)
    assert stats.share(now) == pytest.approx((inside > 1500).mean(), rel=1e-9)
    for q in (0.5, 0.9, 0.95, 0.99):
        assert stats.quantile(now, q) == pytest.approx(np.quantile(inside, q, method="lower"), rel=0.021)
    assert len(stats.buckets) <= 11  # bounded by the window, not by the 3,000 values


# ── Threshold timing: for, keep_firing_for, resolve ──────────────────────

def test_threshold_pends_for_its_for_then_fires_and_resolves_after_keep_firing_for() -> None:
    rules = ruleset(threshold_rule("error_rate", "share", "10m", above=0.1, **{"for": "5m", "keep_firing_for": "10m"}))
    ev = RuleEvaluator(rules, PRICES)
    events = [request(T0 + m * 60 + j * 3, status="error" if 30 <= m < 60 and j % 2 == 0 else "ok")
              for m in range(90) for j in range(20)]
    seen = run(ev, events, until=T0 + 100 * 60)
    assert [(a.status, (t - T0) / 60) for t, a in seen] == [("firing", 38.0), ("resolved", 77.0)]
    fired = seen[0][1]
    assert (fired.started_at, fired.detected_at) == ("2026-11-01T00:33:00Z", "2026-11-01T00:38:00Z")
    assert fired.observed == pytest.approx(0.4) and fired.baseline == 0.1 and fired.labels == {"team": "search"}
    assert fired.excess_cost_usd_per_hour > 0 and fired.severity in ("critical", "warning", "info")
    assert seen[1][1].id == fired.id and seen[1][1].resolved_at == "2026-11-01T01:17:00Z"


def test_rate_below_fires_when_traffic_stops_and_uses_the_summary_template() -> None:
    rule = threshold_rule("request_rate", "rate", "5m", below=5, labels={"severity": "critical"},
                          annotations={"summary": "{{ $labels.team }} sends {{ $value }}/min (floor {{ $threshold }})"})
    ev = RuleEvaluator(ruleset(rule), PRICES)
    seen = run(ev, [request(T0 + s) for s in range(0, 1800, 6)], until=T0 + 2400)  # 10/min for 30 min
    firing = [a for _, a in seen if a.status == "firing"]
    assert len(firing) == 1 and firing[0].detected_at == "2026-11-01T00:33:00Z"  # window [28m, 33m) holds 2 minutes
    assert firing[0].summary == "search sends 4/min (floor 5)" and firing[0].severity == "critical"


def test_quantile_threshold_on_gpu_and_usage_samples() -> None:
    rules = ruleset(
        threshold_rule("gpu_utilization", "p50", "30m", rule_id="gpu", by=("node", "gpu"), below=0.1),
        threshold_rule("usage:vector_db_usd", "sum", "1h", rule_id="vdb", above=50))
    ev = RuleEvaluator(rules, PRICES)
    events: list[Any] = [GpuSample(ts=T0 + m * 60, node="n1", gpu="0", utilization=0.02, hourly_cost_usd=4.0)
                         for m in range(40)]
    events += [UsageSample(ts=T0 + m * 60, metric="vector_db_usd", value=1.0, unit="usd", team="search")
               for m in range(90)]
    events.sort(key=lambda e: e.ts)
    firing = [a for _, a in run(ev, events) if a.status == "firing"]
    gpu = next(a for a in firing if a.rule == "gpu")
    assert gpu.labels == {"node": "n1", "gpu": "0"} and gpu.excess_cost_usd_per_hour == pytest.approx(4.0 * 0.98, rel=0.02)
    vdb = next(a for a in firing if a.rule == "vdb")
    assert vdb.detected_at == "2026-11-01T00:51:00Z" and vdb.observed == 51.0


# ── Budgets ───────────────────────────────────────────────────────────────

def test_budget_fires_on_projection_then_on_actual_spend_and_resolves_with_the_month() -> None:
    rules = ruleset({"id": "b", "alert": "Budget", "expr": {"metric": "spend_rate", "by": ["team"],
                                                           "budget": {"monthly_usd": 300}}})
    ev = RuleEvaluator(rules, PRICES)
    events = [request(T0 + h * 3600, cost_usd=1.0) for h in range(30 * 24 + 5)]  # $1/h: $720 in November
    seen = run(ev, events)
    stages = [(a.status, a.labels[STAGE], a.resolved_at or a.detected_at) for _, a in seen]
    assert stages == [("firing", "projected", "2026-11-01T06:00:00Z"),  # after 6 h of history: $720 projected
                      ("firing", "spent", "2026-11-13T12:00:00Z"),       # the 300th dollar
                      ("resolved", "projected", "2026-12-01T00:00:00Z"),
                      ("resolved", "spent", "2026-12-01T00:00:00Z")]
    projected = seen[0][1]
    assert projected.projected_month_usd == pytest.approx(720.0) and projected.baseline == 300.0
    assert projected.excess_cost_usd_per_hour == pytest.approx(1.0 - 300 / 720, rel=1e-3)


# ── Precedence and cost ───────────────────────────────────────────────────

def test_a_team_override_changes_a_builtin_threshold_for_its_own_feature_only(tmp_path: Path) -> None:
    (tmp_path / "search.yaml").write_text("""\
groups:
  - name: search
    labels: {team: search}
    rules:
      - id: builtin.error_rate
        alert: BatchErrors
        expr:
          metric: error_rate
          by: [team, feature, model, provider]
          matchers: ['feature="batch"']
          threshold: {statistic: share, window: 10m, above: 0.6}
""")
    (tmp_path / "defaults.yaml").write_text("""\
groups:
  - name: defaults
    rules:
      - id: builtin.error_rate
        alert: ErrorRateHigh
        expr:
          metric: error_rate
          by: [team, feature, model, provider]
          threshold: {statistic: share, window: 10m, above: 0.10}
""")
    loaded = load_rules([tmp_path / "defaults.yaml", tmp_path / "search.yaml"])
    assert isinstance(loaded, RuleSet)
    ev = RuleEvaluator(loaded, PRICES)
    events = [request(T0 + m * 60 + j * 3, feature=feature, provider="openai", status="error" if j % 2 else "ok")
              for m in range(30) for j in range(20) for feature in ("batch", "answer")]
    firing = [a for _, a in run(ev, events) if a.status == "firing"]
    assert [(a.rule, a.labels["feature"]) for a in firing] == [("builtin.error_rate", "answer")]


def test_series_without_threshold_or_budget_rules_cost_one_lookup() -> None:
    loaded = load_rules([RULES / "default.yaml"])
    assert isinstance(loaded, RuleSet)
    ev = RuleEvaluator(loaded, PRICES)
    gpu = [GpuSample(ts=T0 + i, node="n", gpu="0", utilization=0.5) for i in range(100)]
    assert run(ev, gpu) == [] and ev.states == {}  # gpu rules are all anomaly rules: no state at all
    run(ev, [request(T0 + i, provider="p") for i in range(100)])
    assert ev.states == {}  # the defaults are all anomaly rules: the engine's models judge them
    assert ev.describe()["cached_series"] == 0  # a metric no threshold or budget rule names is not even looked up


def test_tier_mix_share_counts_every_tier_in_its_denominator() -> None:
    rule = threshold_rule("tier_mix", "share", "10m", by=("team", "tier"), above=0.5, min_requests=10)
    rule["expr"]["matchers"] = ['tier="premium"']
    ev = RuleEvaluator(ruleset(rule), PRICES)
    events = [request(T0 + m * 60 + j * 3, tier="premium" if j < (4 if m < 20 else 16) else "economy")
              for m in range(40) for j in range(20)]
    firing = [a for _, a in run(ev, events) if a.status == "firing"]
    assert len(firing) == 1 and firing[0].labels == {"team": "search", "tier": "premium"}
    assert firing[0].observed == pytest.approx(0.5 * 0.2 + 0.5 * 0.8 + 0.1 * 0.6, abs=0.07)


# ── Reload ────────────────────────────────────────────────────────────────

def test_reloaded_rules_keep_unchanged_state_and_resolve_alerts_of_removed_rules() -> None:
    keep = threshold_rule("error_rate", "share", "5m", rule_id="keep", above=0.1)
    gone = threshold_rule("error_rate", "share", "5m", rule_id="gone", above=0.2)
    ev = RuleEvaluator(ruleset(keep, gone), PRICES)
    firing = run(ev, [request(T0 + s, status="error") for s in range(0, 600, 10)])
    assert sorted(a.rule for _, a in firing) == ["gone", "keep"]
    closed = ev.use(ruleset(keep), T0 + 600)
    assert [(a.rule, a.status) for a in closed] == [("gone", "resolved")]
    assert [a.rule for a in ev.active()] == ["keep"]  # still firing, not fired again
    assert run(ev, [request(T0 + 600 + s, status="error") for s in range(0, 120, 10)]) == []


def test_reload_logs_each_file_with_its_hash_and_a_refusal_with_its_errors(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "a.yaml"
    good = "groups: [{name: g, rules: [{id: a, alert: A, expr: {metric: spend_rate, budget: {monthly_usd: %s}}}]}]"
    file.write_text(good % 100)
    with caplog.at_level(logging.INFO, logger="detector.rules.reloader"):
        reloader = RuleReloader([tmp_path], now=0.0, interval_s=0.0, stat=lambda p: p.read_bytes())
        sha = reloader.version[0].sha256
        file.write_text(good % "lots")
        assert reloader.poll(1.0) is False
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
        f"rules loaded: {file} sha256:{sha[:12]} 1 rule",
        "rules refused, 1 error; the previous rules stay in force:"]
    assert caplog.records[1].levelname == "WARNING" and f"{file}:1:" in caplog.records[1].getMessage()
    described = reloader.describe()
    assert described["files"] == [{"path": str(file), "sha256": sha, "rules": 1}]
    assert (described["refused"], described["reloads"], len(described["errors"])) == (1, 0, 1)
    assert reloader.current.rules[0].expr.budget.monthly_usd == 100  # the old rules still in force


# ── Safety limits not covered elsewhere ───────────────────────────────────

def test_too_many_rules_in_one_file_is_refused_at_the_first_extra_rule(tmp_path: Path) -> None:
    rule = "  - {id: r%d, alert: A, expr: {metric: spend_rate, budget: {monthly_usd: 1}}}\n"
    text = "groups:\n- name: g\n  rules:\n" + "".join(rule % i for i in range(MAX_RULES_PER_FILE + 5))
    assert len(text) < MAX_FILE_BYTES
    path = tmp_path / "many.yaml"
    path.write_text(text)
    assert [format_error(e) for e in check_paths([path])] == [
        f'{path}:{4 + MAX_RULES_PER_FILE}:5: group "g", rule "A": more than 1000 rules in one file '
        "(expected fewer rules per file; split it)"]


def test_templates_cannot_read_files_or_call_anything(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t")
    path = tmp_path / "t.yaml"
    path.write_text("groups: [{name: g, rules: [{id: a, alert: A, expr: {metric: spend_rate, budget: "
                    "{monthly_usd: 1}}, annotations: {summary: \"{{ include '%s' }}\"}}]}]\n" % secret)
    errors = [format_error(e) for e in check_paths([path])]
    assert len(errors) == 1 and "is not an allowed placeholder" in errors[0]
    rules = ruleset({"id": "a", "alert": "A", "expr": {"metric": "spend_rate", "by": ["team"],
                     "budget": {"monthly_usd": 1}}, "annotations": {"summary": "{{ $labels.team }}"}})
    rendered = rules.rules[0].annotate({"team": "{{ include '%s' }}" % secret}, {})
    assert rendered == {"summary": "{{ include '%s' }}" % secret} and "s3cr3t" not in str(rendered)
