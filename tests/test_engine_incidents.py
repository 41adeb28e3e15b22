"""Every incident kind, end to end on simulated traffic: caught, attributed, priced, paged once.

Two simulated worlds carry all kinds between them (incidents on different
features, or far apart in time), so the file pays for two replays, not nine.
"""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.events import Decoder, LlmRequest, UsageSample
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.simulate import DEFAULT_START, parse_incident, simulate
from detector.simulate.world import World

PRICES = PriceTable.packaged()
ALSO_SEEN_AS = {"retry_storm": {"error_rate"}}
"""Incident kinds that move a second metric as much as their own: whichever test crosses first pages."""
SEARCH = [
    "retry_storm@2d3h",
    "prompt_doubling@2d14h~3h",
    "error_spike@2d19h",
    "cache_break@3d2h~6h",
    "tier_shift@3d10h~6h",
]
ELSEWHERE = [
    "output_explosion@2d10h",
    "traffic_runaway@2d13h",
    "gpu_idle@3d2h",
]


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run(specs: list[str], world: World, days: int = 4) -> tuple[list[dict], list[Anomaly], Engine]:
    sim = simulate(days=days, incidents=[parse_incident(s, DEFAULT_START) for s in specs], world=world)
    engine = Engine(PRICES)
    records: list[Anomaly] = []
    summary = replay_lines(sim.lines(), engine, Decoder(), on_anomaly=records.append)
    assert summary.rejected == 0
    return sim.truth()["incidents"], records, engine


@pytest.fixture(scope="module")
def search() -> tuple[list[dict], list[Anomaly], Engine]:
    return run(SEARCH, World.default().only(team="search"))


@pytest.fixture(scope="module")
def elsewhere() -> tuple[list[dict], list[Anomaly], Engine]:
    world = World.default()
    node = next(n for n in world.gpu_nodes if n.labels().get("node") == "inf-h100-2")
    features = tuple(f for f in world.features
                     if f.team in ("support", "research") or set(f.models) & set(node.serves))
    keep = World(features, (node,), ())
    return run(ELSEWHERE, keep)


def matching(truth: dict, records: list[Anomaly]) -> list[Anomaly]:
    """Firing records whose labels agree with the incident's target, fired inside its window."""
    start, end = seconds(truth["start"]), seconds(truth["end"])
    return [
        r for r in records
        if r.status == "firing" and all(r.labels.get(k, v) == v for k, v in truth["labels"].items())
        and start <= seconds(r.detected_at) <= end + 1800
    ]


@pytest.mark.parametrize("kind", [s.split("@")[0] for s in SEARCH])
def test_each_search_incident_pages_once_on_its_metric(search, kind):
    incidents, records, _ = search
    truth = next(t for t in incidents if t["kind"] == kind)
    found = matching(truth, records)
    assert len(found) == 1, [r.summary for r in found]
    assert found[0].metric in ALSO_SEEN_AS.get(kind, set()) | {truth["metric"]}
    assert seconds(found[0].detected_at) - seconds(truth["start"]) <= 30 * 60


def test_a_retry_storm_pages_once_and_names_both_its_retries_and_their_failed_first_attempts(search):
    """Every retried request failed first, so a storm moves the error share as much as the retry share."""
    incidents, records, _ = search
    truth = next(t for t in incidents if t["kind"] == "retry_storm")
    [page] = matching(truth, records)
    [resolved] = [r for r in records if r.id == page.id and r.status == "resolved"]  # names what merged
    other = {"retry_rate": "builtin.error_rate", "error_rate": "builtin.retry_rate"}[page.metric]
    assert any(name.startswith(other) for name in resolved.related or ()), resolved.related


@pytest.mark.parametrize("kind", [s.split("@")[0] for s in ELSEWHERE])
def test_each_other_incident_pages_once_on_its_metric(elsewhere, kind):
    incidents, records, _ = elsewhere
    truth = next(t for t in incidents if t["kind"] == kind)
    found = matching(truth, records)
    assert len(found) == 1, [r.summary for r in found]
    assert found[0].metric == truth["metric"]
    assert seconds(found[0].detected_at) - seconds(truth["start"]) <= 45 * 60


def test_nothing_pages_outside_the_incidents(search, elsewhere):
    for incidents, records, _ in (search, elsewhere):
        explained = {r.id for t in incidents for r in matching(t, records)}
        stray = [r.summary for r in records if r.status == "firing" and r.id not in explained
                 and r.severity != "info"]
        assert stray == []


def test_every_firing_record_resolves_with_the_same_id(search):
    _, records, _ = search
    firing = {r.id for r in records if r.status == "firing"}
    resolved = {r.id for r in records if r.status == "resolved"}
    assert firing and firing <= resolved | {r.id for r in records[-3:]}


def test_the_tier_shift_is_priced_and_split_into_its_drivers(search):
    incidents, records, _ = search
    truth = next(t for t in incidents if t["kind"] == "tier_shift")
    record = matching(truth, records)[0]
    assert record.labels["tier"] == "premium" and record.excess_cost_usd_per_hour > 0.5
    resolved = next(r for r in records if r.id == record.id and r.status == "resolved")
    assert resolved.drivers and next(iter(resolved.drivers)) == "tier_mix"  # the biggest driver named first
    assert "pricier model mix" in resolved.summary
    # The split is the whole feature's spend while it lasted, named as such beside the alert's own dollars:
    assert "spent above normal in all; feature spend while it lasted +$" in resolved.summary


def test_a_prompt_doubling_names_what_else_it_moved_instead_of_paging_again(search):
    incidents, records, _ = search
    truth = next(t for t in incidents if t["kind"] == "prompt_doubling")
    firing = matching(truth, records)[0]
    resolved = next(r for r in records if r.id == firing.id and r.status == "resolved")
    assert firing.metric == "input_tokens_per_request"
    assert resolved.related and any("builtin.cost_per_request" in name for name in resolved.related)
    assert resolved.drivers and "input_tokens" in resolved.drivers and "longer prompts" in resolved.summary


def test_idle_gpus_of_one_node_page_once_for_the_node(elsewhere):
    incidents, records, _ = elsewhere
    truth = next(t for t in incidents if t["kind"] == "gpu_idle")
    record = matching(truth, records)[0]
    assert record.related and len(record.related) >= 1
    assert record.summary.count("$") >= 2 and record.excess_cost_usd_per_hour > 0


def test_severity_comes_from_dollars_not_from_the_size_of_the_change():
    """A ×3 prompt on a series that costs cents a day is info; the same on a busy premium series is critical."""
    settings = Settings(warmup_requests=50)
    records = {}
    rng = random.Random(5)
    for model, per_minute in (("gpt-4o-mini", 1), ("claude-opus-4-1", 40)):
        engine = Engine(PRICES, settings)
        out: list[Anomaly] = []
        t0 = seconds("2026-11-16T00:00:00+00:00")
        for minute in range(600):
            tokens = 300 if minute < 500 else 900
            out += engine.process_many(
                LlmRequest(ts=t0 + minute * 60 + i * 60 / per_minute, model=model,
                           input_tokens=int(tokens * rng.lognormvariate(0, 0.3)), output_tokens=50, team="t",
                           feature="f") for i in range(per_minute))
        records[model] = [r for r in out if r.status == "firing"]
    assert [r.severity for r in records["gpt-4o-mini"]] == ["info"]
    assert [r.severity for r in records["claude-opus-4-1"]] == ["critical"]


def restored_midway(events: list, cut: int) -> list[Anomaly]:
    """The records of one engine up to ``cut``, then of another that took its state (through JSON) for the rest."""
    first = Engine(PRICES)
    got = first.process_many(events[:cut])
    second = Engine(PRICES)
    for key in first.take_touched():
        second.import_group(key, json.loads(json.dumps(first.export_group(key))))
    return got + second.process_many(events[cut:])


def test_state_exported_mid_stream_and_imported_elsewhere_gives_the_same_records():
    sim = simulate(days=3, incidents=[parse_incident("prompt_doubling@2d14h~2h", DEFAULT_START)],
                   world=World.default().only(team="search"))
    events, _ = Decoder().decode_lines(list(sim.lines()))
    expected = Engine(PRICES).process_many(events)
    got = restored_midway(events, len(events) * 4 // 5)
    assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]
    assert any(r.status == "firing" for r in got[len(got) - len(expected[-2:]):])


def test_series_beyond_the_bound_evict_the_least_recently_seen_and_are_counted():
    engine = Engine(PRICES, Settings(max_series=20))
    t0 = seconds("2026-11-16T00:00:00+00:00")
    engine.process_many(LlmRequest(ts=t0 + i, model="gpt-4o", input_tokens=100, output_tokens=10,
                                   team="t", feature=f"f{i}") for i in range(100))
    assert engine.series_count <= 20 and engine.evicted >= 80
    assert ("t", "f99", "gpt-4o") in engine.series and ("t", "f0", "gpt-4o") not in engine.series
    assert round(engine.ledger.total(), 6) == round(100 * PRICES.cost(LlmRequest(
        ts=t0, model="gpt-4o", input_tokens=100, output_tokens=10)), 6)  # spend is booked before eviction


def test_a_usage_line_that_jumps_pages_under_its_own_metric_name():
    engine = Engine(PRICES)
    t0 = seconds("2026-11-16T00:00:00+00:00")
    out: list[Anomaly] = []
    for hour in range(24 * 10):
        value = 12.0 + (hour % 3) * 0.2 if hour < 24 * 9 else 40.0
        out += engine.process(UsageSample(ts=t0 + hour * 3600, metric="vector_db_usd", value=value, unit="usd",
                                          team="search"))
    firing = [r for r in out if r.status == "firing"]
    assert firing and firing[0].metric == "vector_db_usd" and firing[0].labels == {"team": "search"}
    assert seconds(firing[0].detected_at) >= t0 + 24 * 9 * 3600


@pytest.mark.parametrize(("metric", "factor", "pages"), [
    ("input_tokens_per_request", 0.4, False),  # shorter prompts save money
    ("input_tokens_per_request", 2.5, True),
    ("output_tokens_per_request", 0.1, True),  # answers that stopped coming: spend without value
])
def test_a_shift_pages_when_it_costs_money_and_not_when_it_saves(metric: str, factor: float, pages: bool) -> None:
    engine = Engine(PRICES, Settings(warmup_requests=50))
    rng = random.Random(8)
    t0 = seconds("2026-11-16T00:00:00+00:00")
    out: list[Anomaly] = []
    for minute in range(600):
        scale = factor if minute >= 500 else 1.0
        inputs, outputs = (300 * scale, 400) if metric.startswith("input") else (300, 400 * scale)
        out += engine.process_many(
            LlmRequest(ts=t0 + minute * 60 + i * 3, model="claude-opus-4-1", team="t", feature="f",
                       input_tokens=int(inputs * rng.lognormvariate(0, 0.3)),
                       output_tokens=max(1, int(outputs * rng.lognormvariate(0, 0.3)))) for i in range(20))
    fired = [r.metric for r in out if r.status == "firing"]
    assert (metric in fired) is pages
    assert set(fired) <= {metric}  # and nothing else pages for it


def test_a_gpu_node_restored_elsewhere_mid_stream_still_pages_as_one_node():
    """A node's GPUs come back together (they page as one node) and with what they learned."""
    world = World.default()
    node = next(n for n in world.gpu_nodes if n.labels().get("node") == "inf-h100-2")
    served = tuple(f for f in world.features if set(f.models) & set(node.serves))  # what keeps the node busy
    sim = simulate(days=3, incidents=[parse_incident("gpu_idle@2d2h", DEFAULT_START)], world=World(served, (node,), ()))
    events, _ = Decoder().decode_lines(list(sim.lines()))
    cut = next(i for i, ev in enumerate(events) if ev.ts >= DEFAULT_START.timestamp() + 2 * 86400)  # a day early
    expected = Engine(PRICES).process_many(events)
    got = restored_midway(events, cut)
    firing = [r for r in got if r.status == "firing"]
    assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]
    assert len(firing) == 1 and firing[0].labels["node"] == "inf-h100-2" and "more GPUs" in firing[0].summary


@pytest.mark.parametrize(("later_min", "pages_again"), [(20, False), (150, True)])
def test_a_cause_hours_after_a_derived_metrics_incident_pages_as_its_own(later_min: int, pages_again: bool) -> None:
    """A cost-per-request alert no cause explained, then longer prompts: within the hour, its cause (named in it);
    hours later, news (paged, not swallowed by the old alert)."""
    engine = Engine(PRICES, Settings(warmup_requests=50))
    rng = random.Random(3)
    t0 = seconds("2026-11-16T00:00:00+00:00")
    out: list[Anomaly] = []
    for minute in range(900):
        billed = 3.0 if minute >= 500 else 1.0  # the provider bills three times as much for the same tokens
        prompts = 3 if minute >= 500 + later_min else 1  # then prompts triple
        out += engine.process_many(
            LlmRequest(ts=t0 + minute * 60 + i * 3, model="claude-opus-4-1", team="t", feature="f",
                       input_tokens=int(300 * prompts * rng.lognormvariate(0, 0.3)), output_tokens=400,
                       cost_usd=0.03 * billed * rng.lognormvariate(0, 0.3)) for i in range(20))
    fired = [r for r in out if r.status == "firing"]
    assert [r.metric for r in fired] == (["cost_per_request", "input_tokens_per_request"] if pages_again
                                         else ["cost_per_request"])
    first_resolved = [r for r in out if r.status == "resolved" and r.id == fired[0].id]
    if pages_again:
        assert seconds(fired[1].detected_at) - (t0 + (500 + later_min) * 60) < 600  # paged within minutes
        assert first_resolved and first_resolved[0].resolved_at == fired[1].detected_at
        assert "input tokens per request began and is paged as its own incident" in first_resolved[0].summary
    else:
        still_open = engine.features[("t", "f")].incident
        assert not first_resolved and still_open is not None and still_open.record.id == fired[0].id
        assert "builtin.input_tokens_per_request on claude-opus-4-1" in still_open.related


def answers_then_prompts(prompts_after_min: int) -> tuple[Engine, list[Anomaly]]:
    """Twenty requests a minute; answers grow fivefold at minute 500 (and stay so), prompts triple later."""
    engine = Engine(PRICES, Settings(warmup_requests=50))
    rng = random.Random(3)
    t0 = seconds("2026-11-16T00:00:00+00:00")
    out: list[Anomaly] = []
    for minute in range(500 + prompts_after_min + 100):
        answers = 5 if minute >= 500 else 1
        prompts = 3 if minute >= 500 + prompts_after_min else 1
        out += engine.process_many(
            LlmRequest(ts=t0 + minute * 60 + i * 3, model="claude-opus-4-1", team="t", feature="f",
                       input_tokens=int(300 * prompts * rng.lognormvariate(0, 0.3)),
                       output_tokens=max(1, int(400 * answers * rng.lognormvariate(0, 0.3)))) for i in range(20))
    return engine, out


def test_what_moves_hours_into_an_incident_a_cause_opened_stays_part_of_it() -> None:
    """Answers growing fivefold, and prompts tripling hours later: one incident (its effects can surface late)."""
    engine, out = answers_then_prompts(150)
    assert [r.metric for r in out if r.status == "firing"] == ["output_tokens_per_request"]
    assert "builtin.input_tokens_per_request on claude-opus-4-1" in engine.features[("t", "f")].incident.related


def test_another_metric_moving_half_a_day_into_a_causes_incident_pages_as_its_own() -> None:
    """The same, prompts tripling seven hours in: a change of its own, paged; the old incident says so."""
    engine, out = answers_then_prompts(7 * 60)
    fired = [r for r in out if r.status == "firing"]
    assert [r.metric for r in fired] == ["output_tokens_per_request", "input_tokens_per_request"]
    assert seconds(fired[1].detected_at) - (seconds("2026-11-16T00:00:00+00:00") + (500 + 7 * 60) * 60) < 600
    old = [r for r in out if r.status == "resolved" and r.id == fired[0].id]
    assert old and "input tokens per request began and is paged as its own incident" in old[0].summary
    assert engine.features[("t", "f")].incident.record.id == fired[1].id
