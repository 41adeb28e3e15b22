"""The simulator: determinism, the event contract, realistic shape, and incidents that do what they say."""

from __future__ import annotations

import gzip
import re
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.events import CATEGORIES, STATUSES, Decoder
from detector.simulate import (
    DEFAULT_START,
    INCIDENT_KINDS,
    Incident,
    World,
    parse_incident,
    simulate,
    write_simulation,
)
from detector.simulate.incidents import EXAMPLE, KINDS
from detector.simulate.world import GPU_MODELS, MODEL_PROFILES

PRICED_MODELS = {
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3", "claude-sonnet-4-5", "claude-haiku-4-5",
    "claude-opus-4-1", "gemini-2.5-pro", "gemini-2.5-flash", "text-embedding-3-small", "text-embedding-3-large",
    "llama-3.1-70b-instruct", "llama-3.1-8b-instruct", "mistral-large-latest", "deepseek-chat",
}
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SMALL = World.default().only(team="growth")  # four features, about 10k requests a day


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def llm(events: list[dict[str, Any]], **labels: str) -> list[dict[str, Any]]:
    return [e for e in events if "type" not in e and labels.items() <= e.items()]


def between(events: list[dict[str, Any]], start: datetime, end: datetime) -> list[dict[str, Any]]:
    lo, hi = start.isoformat().replace("+00:00", ""), end.isoformat().replace("+00:00", "")
    return [e for e in events if lo <= e["ts"][:-1] < hi]


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    incident = parse_incident("prompt_doubling@10h~2h:team=growth", DEFAULT_START)
    runs = [b"".join(simulate(days=1, seed=s, world=SMALL, incidents=[incident]).lines()) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]

    files = []
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        sim = simulate(days=1, seed=3, world=SMALL, incidents=[incident])
        written = write_simulation(sim, tmp_path / name, tmp_path / f"{name}.truth.json")
        assert written == len(sim) == sim.counts["llm_request"] + sim.counts["usage_sample"]
        files.append((tmp_path / name).read_bytes())
    assert files[0] == files[1]
    assert gzip.decompress(files[0]).count(b"\n") == written


def test_written_file_and_truth_match_the_simulation(tmp_path: Path) -> None:
    sim = simulate(days=1, world=SMALL, incidents=[parse_incident("error_spike@12h:team=growth", DEFAULT_START)])
    count = write_simulation(sim, tmp_path / "events.jsonl", tmp_path / "truth.json")
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert count == len(lines) == len(sim)
    assert [orjson.loads(line) for line in lines[:500]] == list(sim.events())[:500]
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert truth["seed"] == 7 and truth["days"] == 1
    assert (truth["start"], truth["end"]) == ("2026-11-16T00:00:00.000Z", "2026-11-17T00:00:00.000Z")
    assert truth["incidents"] == [{
        "kind": "error_spike", "metric": "error_rate", "labels": {"team": "growth"},
        "start": "2026-11-16T12:00:00.000Z", "end": "2026-11-16T13:00:00.000Z", "magnitude": 0.2,
    }]
    assert {(s["feature"], s["model"]) for s in truth["series"]} == {
        (e["feature"], e["model"]) for e in sim.events() if "type" not in e
    }


# --- the event contract --------------------------------------------------------------------------


def _mini_world() -> World:
    """One feature with caching and a fallback, one self-hosted feature, one GPU node, every spend line."""
    world = World.default()
    features = tuple(f for f in world.features if f.feature in ("code-review", "log-summarize"))
    return World(features, world.gpu_nodes[:1], world.usage_lines)


def test_events_are_sorted_and_follow_contract_1() -> None:
    incident = parse_incident("retry_storm@9h:team=platform", DEFAULT_START)
    sim = simulate(days=1, world=_mini_world(), incidents=[incident])
    events = list(sim.events())
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)
    assert all(TS.match(ts) for ts in stamps)
    assert {e.get("type", "llm_request") for e in events} == {"llm_request", "gpu_sample", "usage_sample"}
    requests = llm(events)
    assert len({e["request_id"] for e in requests}) == len(requests)
    for e in requests:
        assert e["model"] in PRICED_MODELS and e["category"] in CATEGORIES and e["status"] in STATUSES
        assert all(isinstance(e[k], str) for k in ("model", "provider", "team", "feature", "request_id"))
        assert all(isinstance(e[k], int) for k in ("input_tokens", "output_tokens", "attempt", "latency_ms"))
        assert e["input_tokens"] >= 1 and e["output_tokens"] >= 0 and e["latency_ms"] >= 0
        assert 0 < e.get("cached_input_tokens", 1) <= e["input_tokens"]
        assert e["attempt"] in (1, 2) and "cost_usd" not in e
    retries = [e for e in requests if e["attempt"] == 2]
    assert retries and all(e["status"] == "ok" for e in retries)
    assert {e["status"] for e in requests} >= {"ok", "error", "rate_limited", "timeout"}
    for e in events:
        if e.get("type") == "gpu_sample":
            assert e["gpu_model"] in GPU_MODELS and e["category"] in CATEGORIES
            assert 0.0 <= e["utilization"] <= 1.0 and isinstance(e["memory_used_bytes"], int)


def test_every_line_passes_the_event_decoder() -> None:
    lines = list(simulate(days=1, world=_mini_world()).lines())
    decoded, rejects = Decoder().decode_lines(lines)
    assert rejects == [] and len(decoded) == len(lines)
    assert [ev.ts for ev in decoded] == sorted(ev.ts for ev in decoded)
    strict, rejects = Decoder(fast=False).decode_lines(lines[::20])  # the pydantic contract itself
    assert rejects == [] and len(strict) == len(lines[::20])


def test_usage_samples_bill_hourly_and_daily() -> None:
    sim = simulate(days=2, world=World.default().only(category="labelling"))
    bills = list(sim.events())
    assert [b["ts"] for b in bills] == ["2026-11-16T00:00:00.000Z", "2026-11-17T00:00:00.000Z"]
    assert all(b["type"] == "usage_sample" and b["unit"] == "usd" and b["value"] > 100 for b in bills)
    hourly = simulate(days=1, world=World.default().only(metric="vector_db_usd"))
    assert hourly.counts == {"llm_request": 0, "gpu_sample": 0, "usage_sample": 24}


def test_default_world_uses_only_priced_models_and_has_about_thirty_series() -> None:
    world = World.default()
    assert set(MODEL_PROFILES) == PRICED_MODELS
    series = list(world.series())
    assert 25 <= len(series) <= 35
    assert len({f.team for f in world.features}) == 5
    assert sum(f.category == "evaluation" for f in world.features) == 1
    assert any(f.category == "embedding" for f in world.features)
    assert any(f.cache_fraction > 0 for f in world.features) and any(f.fallback for f in world.features)
    assert {n.gpu_model for n in world.gpu_nodes} == set(GPU_MODELS)


# --- realistic shape -----------------------------------------------------------------------------


def test_diurnal_peak_and_weekend_dip() -> None:
    friday = DEFAULT_START + timedelta(days=4)
    sim = simulate(days=3, start=friday, world=World.default().only(feature="ticket-triage"))
    hours = [int(e["ts"][11:13]) for e in sim.events()]
    days = [e["ts"][:10] for e in sim.events()]
    peak = sum(11 <= h < 15 for h in hours)
    night = sum(2 <= h < 6 for h in hours)
    assert peak > 5 * night
    weekday, saturday, sunday = (days.count(d) for d in ("2026-11-20", "2026-11-21", "2026-11-22"))
    assert 0.25 < saturday / weekday < 0.6 and 0.25 < sunday / weekday < 0.6


def test_token_sizes_are_lognormal_around_the_feature_medians() -> None:
    world = World.default().only(feature="summarize")
    feature = world.features[0]
    requests = llm(list(simulate(days=1, world=world).events()), attempt=1, status="ok")
    median_in = statistics.median(e["input_tokens"] for e in requests)
    median_out = statistics.median(e["output_tokens"] for e in requests)
    assert abs(median_in / feature.input_median - 1) < 0.05
    assert abs(median_out / feature.output_median - 1) < 0.05
    cache = sum(e.get("cached_input_tokens", 0) for e in requests) / sum(e["input_tokens"] for e in requests)
    assert abs(cache - feature.cache_fraction) < 0.06
    share = sum(e["model"] == feature.fallback for e in requests) / len(requests)
    assert abs(share - feature.fallback_share) < 0.01


def test_full_week_of_the_default_world_is_realistic_in_size() -> None:
    sim = simulate()
    assert 1_000_000 <= sim.counts["llm_request"] <= 2_000_000
    assert sim.counts["gpu_sample"] == 7 * 1440 * sum(n.gpus for n in World.default().gpu_nodes)
    assert len(sim.truth()["series"]) == len(list(World.default().series()))


# --- incidents -----------------------------------------------------------------------------------


def _metric(metric: str, events: list[dict[str, Any]], premium: str | None) -> float:
    if metric == "gpu_utilization":
        return statistics.fmean(e["utilization"] for e in events)
    if metric == "request_rate":
        return float(len(events))
    if metric == "input_tokens_per_request":
        return statistics.median(e["input_tokens"] for e in events)
    if metric == "output_tokens_per_request":
        return statistics.median(e["output_tokens"] for e in events if e["status"] == "ok")
    if metric == "cache_hit_rate":
        return sum(e.get("cached_input_tokens", 0) for e in events) / sum(e["input_tokens"] for e in events)
    share = {"tier_mix": lambda e: e["model"] == premium, "retry_rate": lambda e: e["attempt"] > 1,
             "error_rate": lambda e: e["status"] != "ok"}[metric]
    return sum(map(share, events)) / len(events)


def _on_target(events: list[dict[str, Any]], target: dict[str, str]) -> list[dict[str, Any]]:
    if "node" in target:
        return [e for e in events if e.get("type") == "gpu_sample" and target.items() <= e.items()]
    return llm(events, **target)


# kind → (with incident, without) must land in these ranges; a ratio when the second range is None.
EXPECTED: dict[str, tuple[tuple[float, float], tuple[float, float] | None]] = {
    "prompt_doubling": ((1.8, 2.2), None),
    "output_explosion": ((3.5, 4.5), None),
    "traffic_runaway": ((4.0, 6.0), None),
    "slow_creep": ((1.01, 1.1), None),
    "tier_shift": ((0.4, 0.6), (0.0, 0.1)),
    "retry_storm": ((0.22, 0.36), (0.0, 0.05)),
    "error_spike": ((0.15, 0.3), (0.0, 0.05)),
    "cache_break": ((0.0, 0.01), (0.3, 1.0)),
    "gpu_idle": ((0.0, 0.05), (0.3, 1.0)),
}


def test_every_kind_is_checked_and_moves_a_contract_metric() -> None:
    assert set(EXPECTED) == set(INCIDENT_KINDS)
    assert {KINDS[k].metric for k in INCIDENT_KINDS} == {
        "input_tokens_per_request", "output_tokens_per_request", "tier_mix", "retry_rate", "error_rate",
        "cache_hit_rate", "request_rate", "gpu_utilization",
    }


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_incident_moves_its_metric_on_its_target_in_its_window_only(kind: str) -> None:
    spec = f"{kind}@10h~4h" if kind != "slow_creep" else f"{kind}@0hx0.05"
    incident = parse_incident(spec, DEFAULT_START)
    target = dict(KINDS[kind].target)
    world = World.default().only(team=target.get("team", "platform"))
    if "feature" in target:
        world = world.only(feature=target["feature"])
    with_it = list(simulate(days=1, world=world, incidents=[incident]).events())
    without = list(simulate(days=1, world=world).events())

    window = (at("2026-11-16T10:00:00+00:00"), at("2026-11-16T14:00:00+00:00"))
    if kind == "slow_creep":
        window = (at("2026-11-16T18:00:00+00:00"), at("2026-11-17T00:00:00+00:00"))
    premium = world.features[0].fallback
    observed, normal = (_metric(incident.metric, between(_on_target(part, target), *window), premium)
                        for part in (with_it, without))
    inside, baseline = EXPECTED[kind]
    if baseline is None:
        assert inside[0] <= observed / normal <= inside[1], (kind, observed, normal)
    else:
        assert inside[0] <= observed <= inside[1] and baseline[0] <= normal <= baseline[1], (kind, observed, normal)

    before = (DEFAULT_START, incident.start)
    assert between(with_it, *before) == between(without, *before)
    if incident.end is not None:  # retries and GPU smoothing settle within minutes of the end
        after = (incident.end + timedelta(minutes=10), DEFAULT_START + timedelta(days=1))
        assert between(with_it, *after) == between(without, *after)


def test_incidents_leave_other_series_alone() -> None:
    incident = parse_incident("prompt_doubling@0h~1d:team=growth,feature=email-copy", DEFAULT_START)
    with_it = list(simulate(days=1, world=SMALL, incidents=[incident]).events())
    without = list(simulate(days=1, world=SMALL).events())
    assert llm(with_it, feature="ad-variants") == llm(without, feature="ad-variants")
    assert llm(with_it, feature="email-copy") != llm(without, feature="email-copy")


def test_slow_creep_compounds_daily_from_its_onset() -> None:
    world = World.default().only(feature="ticket-triage")
    incident = parse_incident("slow_creep@1dx0.2", DEFAULT_START)
    incident = Incident(incident.kind, incident.start, None, 0.2, {"feature": "ticket-triage"})
    grown = {e["request_id"]: e for e in simulate(days=3, world=world, incidents=[incident]).events()}
    plain = {e["request_id"]: e for e in simulate(days=3, world=world).events()}
    assert grown.keys() == plain.keys()
    for rid, event in list(grown.items())[::37]:
        elapsed = (at(event["ts"].replace("Z", "+00:00")) - incident.start) / timedelta(days=1)
        factor = 1.2 ** max(elapsed, 0.0)
        # both counts are rounded from the same draw, so they agree to within the rounding
        assert abs(event["input_tokens"] - plain[rid]["input_tokens"] * factor) <= 0.5 * factor + 0.5, rid


# --- parse_incident ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start"),
    [
        ("error_spike@2d14h", "2026-11-18T14:00:00+00:00"),
        ("error_spike@3d9h30m", "2026-11-19T09:30:00+00:00"),
        ("error_spike@36h", "2026-11-17T12:00:00+00:00"),
        ("error_spike@90m", "2026-11-16T01:30:00+00:00"),
        ("error_spike@2026-11-18T14:05:00Z", "2026-11-18T14:05:00+00:00"),
        ("error_spike@2026-11-18T15:05:00+01:00", "2026-11-18T14:05:00+00:00"),
    ],
)
def test_parse_incident_start_as_offset_or_time(spec: str, start: str) -> None:
    inc = parse_incident(spec, DEFAULT_START)
    assert inc.start == at(start)
    assert inc.end == inc.start + KINDS["error_spike"].duration  # type: ignore[operator]
    assert (inc.magnitude, inc.target) == (0.2, dict(KINDS["error_spike"].target))


def test_parse_incident_duration_magnitude_and_target() -> None:
    inc = parse_incident("tier_shift@2026-11-17T09:00:00Z~90mx0.75:team=growth,feature=email-copy", DEFAULT_START)
    assert inc == Incident("tier_shift", at("2026-11-17T09:00:00+00:00"), at("2026-11-17T10:30:00+00:00"), 0.75,
                           {"team": "growth", "feature": "email-copy"})
    assert inc.metric == "tier_mix"
    assert parse_incident(EXAMPLE, DEFAULT_START).target == {"team": "search", "feature": "summarize"}
    assert parse_incident("gpu_idle@1dx0:node=train-a100-1", DEFAULT_START).magnitude == 0.0
    assert parse_incident("slow_creep@1d", DEFAULT_START).end is None


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_every_kind_has_its_own_defaults(kind: str) -> None:
    inc = parse_incident(f"{kind}@1d", DEFAULT_START)
    assert (inc.magnitude, inc.target) == (KINDS[kind].magnitude, dict(KINDS[kind].target))
    assert inc.target  # the default targets are exercised on the default world by the incident tests above
    expected_end = None if KINDS[kind].duration is None else inc.start + KINDS[kind].duration
    assert inc.end == expected_end


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("prompt_tripling@2d", ["unknown kind 'prompt_tripling'", "prompt_doubling", "gpu_idle"]),
        ("prompt_doubling", ["KIND@START", "e.g. prompt_doubling@"]),
        ("prompt_doubling@tomorrow", ["KIND@START"]),
        ("prompt_doubling@x2", ["empty time span", "2d14h"]),
        ("prompt_doubling@2d~", ["empty time span"]),
        ("tier_shift@2dx1.5", ["share of the feature's traffic", "<= 1", "1.5"]),
        ("traffic_runaway@2dx0.5", ["factor on request volume", "> 1"]),
        ("error_spike@2d:team", ["'team' is not key=value"]),
        ("error_spike@2d:colour=red", ["unknown target label", "colour"]),
    ],
)
def test_parse_incident_errors_say_what_was_expected(spec: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        parse_incident(spec, DEFAULT_START)
    for word in words:
        assert word in str(caught.value)


def test_simulate_refuses_incidents_that_would_do_nothing() -> None:
    late = parse_incident("error_spike@8d", DEFAULT_START)
    with pytest.raises(ValueError, match="outside the simulated span"):
        simulate(days=7, world=SMALL, incidents=[late])
    nowhere = parse_incident("error_spike@1h:team=nobody", DEFAULT_START)
    with pytest.raises(ValueError, match="matches nothing.*team=growth"):
        simulate(days=1, world=SMALL, incidents=[nowhere])
    with pytest.raises(ValueError, match="nothing matches"):
        World.default().only(team="nobody")
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(days=1, world=SMALL, start=datetime(2026, 11, 16))
    assert simulate(days=1, world=SMALL, start=datetime(2026, 11, 16, tzinfo=UTC)).counts["llm_request"] > 0
