"""Engine: LLM requests in, Contract 3 records out, priced and worded."""

from __future__ import annotations

import gc
import math
import random
from datetime import datetime

import pytest

from detector.anomaly import Anomaly, money
from detector.config import Settings
from detector.engine import Engine
from detector.events import GpuSample, LlmRequest, UsageSample
from detector.pricing import PriceTable

T0 = datetime.fromisoformat("2026-11-16T00:00:00+00:00").timestamp()
CONTRACT_FIELDS = {
    "id", "rule", "metric", "labels", "severity", "status", "started_at", "detected_at",
    "resolved_at", "observed", "baseline", "ratio", "excess_cost_usd_per_hour",
    "projected_month_usd", "summary", "runbook",
}
EXTRA_FIELDS = {"drivers", "related", "excess_total_usd"}  # spendwatch's own, beside the contract


def traffic(
    *, minutes: float, per_minute: float, median: float, start: float, seed: int,
    model: str = "gpt-4o", team: str = "search", feature: str = "summarize",
):
    rng = random.Random(seed)
    ts = start
    end = start + minutes * 60
    while True:
        ts += rng.expovariate(per_minute / 60)
        if ts >= end:
            return
        yield LlmRequest(
            ts=ts, model=model, team=team, feature=feature,
            input_tokens=int(rng.lognormvariate(math.log(median), 0.6)),
            output_tokens=int(rng.lognormvariate(math.log(200), 0.5)),
        )


def run(engine: Engine, events) -> list[Anomaly]:
    out: list[Anomaly] = []
    for ev in events:
        out.extend(engine.process(ev))
    return out


def incident_run(model: str = "gpt-4o", per_minute: float = 20, settings: Settings | None = None):
    engine = Engine(PriceTable.packaged(), settings)
    onset = T0 + 6 * 3600
    records = run(engine, traffic(minutes=360, per_minute=per_minute, median=1800, start=T0, seed=1, model=model))
    records += run(engine, traffic(minutes=120, per_minute=per_minute, median=3600, start=onset, seed=2, model=model))
    records += run(engine, traffic(minutes=120, per_minute=per_minute, median=1800, start=onset + 7200, seed=3, model=model))
    return engine, onset, records


def test_a_prompt_doubling_fires_once_and_resolves_once_with_the_same_id():
    _, onset, records = incident_run()
    assert [r.status for r in records] == ["firing", "resolved"]
    firing, resolved = records
    assert firing.id == resolved.id
    assert set(firing.to_dict()) == CONTRACT_FIELDS | EXTRA_FIELDS
    assert firing.labels == {"team": "search", "feature": "summarize", "model": "gpt-4o"}
    assert firing.metric == "input_tokens_per_request"
    started = datetime.fromisoformat(firing.started_at).timestamp()
    detected = datetime.fromisoformat(firing.detected_at).timestamp()
    assert abs(started - onset) <= 120
    assert 0 <= detected - onset <= 300
    assert firing.ratio == pytest.approx(2.0, rel=0.15)
    assert firing.baseline == pytest.approx(1800, rel=0.1)
    assert resolved.resolved_at is not None
    assert 0 <= datetime.fromisoformat(resolved.resolved_at).timestamp() - (onset + 7200) <= 600


def test_the_firing_record_is_priced_from_the_table():
    engine, _, records = incident_run()
    firing = records[0]
    price = engine.prices.model_price("gpt-4o").input_per_token
    # ~1,800 extra tokens (lognormal mean ×2) × 20 req/min × 60 min × price
    expected = 1800 * math.exp(0.6**2 / 2) * 20 * 60 * price
    assert firing.excess_cost_usd_per_hour == pytest.approx(expected, rel=0.35)
    assert firing.projected_month_usd > 0
    assert f"({firing.ratio:.1f}×)" in firing.summary or f"grew {firing.ratio:.1f}×:" in firing.summary
    assert firing.summary.count(f"{firing.ratio:.1f}×") <= 1  # the ratio said once
    assert "search/summarize on gpt-4o" in firing.summary
    assert "/h above normal" in firing.summary and "by month end" in firing.summary
    assert "spent above normal in all" in records[1].summary


def test_the_resolved_record_measures_what_its_cause_cost_over_its_whole_life():
    """Two hours of doubled prompts: the longer prompts' own dollars, measured, not the detection rate × duration."""
    engine, _, (firing, resolved) = incident_run()
    price = engine.prices.model_price("gpt-4o").input_per_token
    true_total = 2 * 1800 * math.exp(0.6**2 / 2) * 20 * 60 * price  # two hours of the excess above
    assert firing.excess_total_usd is None  # not known while it lasts
    assert resolved.excess_total_usd == pytest.approx(true_total, rel=0.2)
    assert resolved.drivers and "input_tokens" in resolved.drivers
    assert f"about {money(resolved.excess_total_usd)} spent above normal in all" in resolved.summary


def test_severity_comes_from_dollars_not_from_the_ratio():
    _, _, expensive = incident_run(model="gpt-4o", per_minute=60)
    _, _, cheap = incident_run(model="gpt-4o-mini", per_minute=2)
    assert expensive[0].severity == "critical"
    assert cheap[0].ratio == pytest.approx(2.0, rel=0.2)
    assert cheap[0].severity == "info"


def test_thresholds_are_settings():
    strict = Settings(critical_usd_per_hour=1e9, warning_usd_per_hour=1e9)
    _, _, records = incident_run(per_minute=60, settings=strict)
    assert records[0].severity == "info"


def test_an_unpriced_model_still_alerts_and_says_its_cost_is_unknown():
    engine, _, records = incident_run(model="in-house-llm-7b")
    assert records[0].excess_cost_usd_per_hour == 0
    assert "has no price" in records[0].summary
    assert engine.ledger.unpriced["in-house-llm-7b"] > 0


def test_ids_are_stable_across_runs():
    assert [r.id for r in incident_run()[2]] == [r.id for r in incident_run()[2]]


def test_a_lasting_shift_is_accepted_as_the_new_normal_after_the_setting():
    engine = Engine(PriceTable.packaged(), Settings(rebaseline_after_hours=2))
    records = run(engine, traffic(minutes=360, per_minute=10, median=1000, start=T0, seed=4))
    records += run(engine, traffic(minutes=600, per_minute=10, median=2500, start=T0 + 6 * 3600, seed=5))
    assert [r.status for r in records] == ["firing", "resolved"]
    assert "accepted as the new normal" in records[1].summary
    lasted = datetime.fromisoformat(records[1].resolved_at) - datetime.fromisoformat(records[0].detected_at)
    assert 2 * 3600 <= lasted.total_seconds() <= 2 * 3600 + 300


def test_a_new_series_is_not_an_anomaly():
    engine = Engine(PriceTable.packaged())
    records = run(engine, traffic(minutes=600, per_minute=10, median=1000, start=T0, seed=6))
    records += run(engine, traffic(minutes=60, per_minute=10, median=9000, start=T0 + 36000, seed=7, feature="launch"))
    assert records == []
    assert engine.series_count == 2


def test_gpu_and_usage_samples_are_priced_into_the_ledger():
    engine = Engine(PriceTable.packaged())
    hourly = engine.prices.gpu_hourly("H100-SXM-80GB")
    for minute in range(61):
        engine.process(GpuSample(ts=T0 + 60 * minute, node="n1", gpu="0", utilization=0.5, gpu_model="H100-SXM-80GB"))
    engine.process(UsageSample(ts=T0, metric="vector_db_usd", value=3.5, unit="usd", category="embedding", team="search"))
    assert engine.ledger.by_category()["self_hosted_inference"] == pytest.approx(hourly)
    assert engine.ledger.by_category()["embedding"] == pytest.approx(3.5)


def test_the_ledger_adds_up_to_the_priced_cost_of_every_request():
    engine = Engine(PriceTable.packaged())
    events = list(traffic(minutes=120, per_minute=30, median=1500, start=T0, seed=9))
    events += list(traffic(minutes=30, per_minute=5, median=800, start=T0, seed=10, model="gpt-4o-mini", team="growth"))
    events.sort(key=lambda e: e.ts)
    events.append(LlmRequest(ts=T0 + 7200, model="mystery-model", input_tokens=5, output_tokens=5, team="growth"))
    engine.process_many(events)
    expected = sum(engine.prices.cost(e) or 0.0 for e in events)
    assert engine.ledger.total() == pytest.approx(expected, rel=1e-12)
    assert engine.ledger.by_team()["growth"] == pytest.approx(
        sum(engine.prices.cost(e) or 0.0 for e in events if e.team == "growth"), rel=1e-12
    )
    assert engine.ledger.unpriced == {"mystery-model": 1}
    assert sum(line.requests for line in engine.ledger.lines.values()) == len(events)


def test_an_evicted_feature_with_an_open_incident_is_freed_at_once() -> None:
    """The incident points at its series and the series at its feature: eviction must undo that cycle."""
    engine = Engine(PriceTable.packaged(), Settings(max_series=10))
    engine.process_many(traffic(minutes=360, per_minute=20, median=1800, start=T0, seed=1))
    engine.process_many(traffic(minutes=30, per_minute=20, median=3600, start=T0 + 6 * 3600, seed=2))
    assert engine.features[("search", "summarize")].incident is not None
    later = T0 + 7 * 3600
    gc.collect()
    gc.disable()
    try:
        engine.process_many(LlmRequest(ts=later + i, model="gpt-4o", input_tokens=100, output_tokens=10,
                                       team="t", feature=f"f{i}") for i in range(10))
        assert ("search", "summarize", "gpt-4o") not in engine.series and engine.evicted == 1
        assert gc.collect() == 0
    finally:
        gc.enable()
