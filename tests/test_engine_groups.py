"""Partition keys: what the stream repartitions by, and why one feature's state moves alone."""

from __future__ import annotations

import gc

import pytest

from detector.engine import Engine
from detector.engine_state import feature_of_group, group_key, groups_by_feature
from detector.events import LlmRequest
from detector.pricing import PriceTable
from detector.rules.loader import load_sources
from detector.rules.ruleset import RuleSet

PRICES = PriceTable.packaged()


def rules(by: str, kind: str = "budget: {monthly_usd: 100}") -> RuleSet:
    text = f"""groups:
- name: g
  rules:
  - {{id: g.r, alert: A, expr: {{metric: spend_rate, by: {by}, {kind}}}}}
""".encode()
    loaded = load_sources([("g.yaml", text)])
    assert isinstance(loaded, RuleSet), loaded
    return loaded


def request(team: str, feature: str, ts: float = 1.8e9) -> LlmRequest:
    return LlmRequest(ts=ts, model="gpt-4o", input_tokens=900, output_tokens=80, team=team, feature=feature)


def test_each_feature_is_its_own_group_so_a_busy_team_spreads_over_workers() -> None:
    engine = Engine(PRICES)
    engine.process_many([request("search", "answer"), request("search", "summarize"), request("ads", "copy")])
    keys = engine.take_touched()
    assert keys == {"llm:search/answer", "llm:search/summarize", "llm:ads/copy"}
    saved = engine.export_group("llm:search/answer")
    engine.drop_group("llm:search/answer")
    assert not engine.has_group("llm:search/answer") and engine.has_group("llm:search/summarize")
    engine.import_group("llm:search/answer", saved)
    assert engine.series_count == 3 and engine.take_touched() == set()


@pytest.mark.parametrize(("by", "kind", "per_feature"), [
    ("[team]", "budget: {monthly_usd: 100}", False),
    ("[]", "threshold: {statistic: sum, window: 1h, above: 5}", False),
    ("[team, feature]", "budget: {monthly_usd: 100}", True),
    ("[team, feature, model]", "threshold: {statistic: sum, window: 1h, above: 5}", True),
    ("[team]", "anomaly: {model: rate_shift, ratio_above: 3}", True),
])
def test_a_rule_that_adds_up_several_features_keeps_the_team_on_one_worker(by: str, kind: str, per_feature: bool) -> None:
    ruleset = rules(by, kind)
    assert groups_by_feature(ruleset) is per_feature
    engine = Engine(PRICES, rules=ruleset)
    engine.process_many([request("search", "answer"), request("search", "summarize")])
    expected = {"llm:search/answer", "llm:search/summarize"} if per_feature else {"llm:search"}
    assert engine.take_touched() == expected
    assert {engine.partition_key(request("search", f)) for f in ("answer", "summarize")} == expected


def test_a_team_key_exports_all_its_features_and_a_feature_key_only_its_own() -> None:
    engine = Engine(PRICES)
    engine.process_many([request("search", "answer"), request("search", "summarize")])
    assert len(engine.export_group("llm:search")["features"]) == 2
    assert len(engine.export_group("llm:search/answer")["features"]) == 1


def test_names_with_a_slash_cannot_pass_for_another_feature() -> None:
    a, b = request("a/b", "c"), request("a", "b/c")
    assert group_key(a) != group_key(b)
    assert feature_of_group(group_key(a)) == ("a/b", "c") and feature_of_group(group_key(b)) == ("a", "b/c")
    engine = Engine(PRICES)
    engine.process_many([a, b])
    assert [f["key"] for f in engine.export_group(group_key(a))["features"]] == [["a/b", "c"]]


def test_a_request_without_team_or_feature_has_a_group_of_its_own() -> None:
    engine = Engine(PRICES)
    bare = LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=9, output_tokens=8)
    engine.process(bare)
    key = engine.partition_key(bare)
    assert key == "llm:/" and engine.take_touched() == {key} and engine.has_group(key)


def test_a_saved_incident_does_not_change_when_the_incident_goes_on() -> None:
    """The state table keeps the exported value until it is serialised: it must not alias the live incident."""
    from test_alerts_lifecycle import firing

    from detector.llm_series import Incident
    from detector.models.level_shift import LogLevelShift
    from detector.monitor import monitor

    inc = Incident(firing(1.8e9), monitor(None, "input_tokens_per_request", LogLevelShift()), None)
    inc.add_minute("gpt-4o", (1.0, 0.5))
    saved = inc.to_state()
    inc.add_minute("gpt-4o", (2.0, 0.5))
    inc.related.append("builtin.cost_per_request")
    assert saved["sums"] == {"gpt-4o": [1.0, 0.5]} and saved["related"] == []


def test_a_dropped_group_is_freed_at_once_not_left_to_the_cycle_collector() -> None:
    """A series points at its feature and the feature at its series: dropping a group must undo both.

    Otherwise every rebalance leaves the moved groups for Python's cyclic
    collector, which on a big worker makes a full pass rarely and slowly:
    each moved group stays in memory until then.
    """
    engine = Engine(PRICES)
    engine.process_many([request("search", "answer", 1.8e9 + i) for i in range(5)]
                        + [request("search", "summarize")])
    gc.collect()
    gc.disable()
    try:
        engine.drop_group("llm:search/answer")
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert engine.has_group("llm:search/summarize")
