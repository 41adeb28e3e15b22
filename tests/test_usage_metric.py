"""UsageMetric: quiet on the simulated bills and their rhythms; a spike, a level shift and a drift each page."""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pytest

from detector.models.usage_metric import DRIFT, LEARNING, LEVEL, SHIFTED, SPIKE, WATCHING, UsageMetric
from detector.simulate import DEFAULT_START, World, simulate

START_S = DEFAULT_START.timestamp()  # a Monday, 00:00 UTC
HOUR, DAY = 3600.0, 86400.0


def bills(days: int, seed: int) -> dict[str, list[tuple[float, float]]]:
    """The default world's spend lines (hourly vector DB, daily labelling with quiet weekends): (ts, value)."""
    world = World.default()
    sim = simulate(days=days, seed=seed, world=World((), (), world.usage_lines))
    out: dict[str, list[tuple[float, float]]] = {}
    for event in sim.events():
        ts = DEFAULT_START.fromisoformat(event["ts"]).timestamp()
        out.setdefault(event["metric"], []).append((ts, event["value"]))
    return out


def run(model: UsageMetric, samples: list[tuple[float, float]]) -> list[tuple[float, object]]:
    """Feed the samples; returns (ts, shift) at each alarm or change of its kind, (ts, None) at each resolution."""
    events: list[tuple[float, object]] = []
    for ts, value in samples:
        was = model.phase, model.kind
        model.update(value, ts)
        if model.phase == SHIFTED and (model.phase, model.kind) != was:
            events.append((ts, model.shift()))
        elif was[0] == SHIFTED and model.phase != SHIFTED:
            events.append((ts, None))
    return events


@pytest.fixture(scope="module")
def five_weeks():
    return {seed: bills(35, seed) for seed in (1, 2, 3)}


def test_five_clean_weeks_of_both_bills_never_page(five_weeks):
    for lines in five_weeks.values():
        assert set(lines) == {"vector_db_usd", "labelling_vendor_usd"}
        for samples in lines.values():
            model = UsageMetric()
            assert run(model, samples) == []
            assert model.phase == WATCHING


def test_the_weekend_discount_and_the_day_shape_are_learned_not_paged(five_weeks):
    daily = UsageMetric()
    run(daily, five_weeks[1]["labelling_vendor_usd"])
    saturday = START_S + 5 * DAY
    assert daily.expected(saturday) / daily.expected(saturday - DAY) == pytest.approx(0.3, rel=0.15)
    hourly = UsageMetric()
    run(hourly, five_weeks[1]["vector_db_usd"])
    noon, night = hourly.expected(START_S + 12 * HOUR), hourly.expected(START_S + 3 * HOUR)
    assert noon / night == pytest.approx(1.15 / 0.874, rel=0.05)  # the simulator's 0.85 + 0.3 × day shape


def with_change(samples: list[tuple[float, float]], at: float, factor) -> list[tuple[float, float]]:
    return [(ts, v * factor(ts) if ts >= at else v) for ts, v in samples]


def test_one_bill_at_three_times_is_a_spike_that_ends_at_the_next_normal_bill(five_weeks):
    samples = five_weeks[2]["vector_db_usd"]
    at = START_S + 20 * DAY + 14 * HOUR
    spiked = [(ts, v * 3 if ts == at else v) for ts, v in samples]
    events = run(UsageMetric(), spiked)
    assert [(ts - at, None if s is None else s.kind) for ts, s in events] == [(0.0, SPIKE), (HOUR, None)]
    s = events[0][1]
    assert s.direction == 1 and s.onset_ts == at and s.ratio == pytest.approx(3.0, rel=0.1)


def test_a_doubled_hourly_bill_is_a_level_shift_within_a_few_samples(five_weeks):
    at = START_S + 20 * DAY + 9 * HOUR
    events = run(UsageMetric(), with_change(five_weeks[3]["vector_db_usd"], at, lambda ts: 2.0))
    ts, s = events[0]
    assert s.kind in (SPIKE, LEVEL) and s.direction == 1 and s.onset_ts == at
    assert ts - at <= 2 * HOUR
    assert events[1][1].kind == LEVEL and events[1][1].onset_ts == at  # the spike became a shift
    assert events[1][1].ratio == pytest.approx(2.0, rel=0.1)


def test_a_halved_daily_bill_is_a_level_shift_down_and_rebaseline_accepts_it(five_weeks):
    samples = five_weeks[1]["labelling_vendor_usd"]
    at = START_S + 21 * DAY  # a Monday
    model = UsageMetric()
    events = run(model, with_change(samples, at, lambda ts: 0.5))
    [(ts, s)] = events
    assert s.kind == LEVEL and s.direction == -1 and s.ratio < 0.8
    assert abs(s.onset_ts - at) <= 2 * DAY  # the run may begin on the weekend before, leaning low by chance
    assert ts - at <= 3 * DAY
    assert model.shift().ratio == pytest.approx(0.5, abs=0.1)  # two weeks on, the estimate has settled
    model.rebaseline(START_S + 35 * DAY)
    assert model.phase == WATCHING


def test_a_bill_growing_five_percent_a_day_is_a_drift(five_weeks):
    at = START_S + 14 * DAY
    events = run(UsageMetric(), with_change(five_weeks[2]["vector_db_usd"], at, lambda ts: 1.05 ** ((ts - at) / DAY)))
    assert events, "the creep was not caught"
    ts, s = events[0]
    assert s.kind == DRIFT and s.direction == 1
    assert 2 * DAY <= ts - at <= 9 * DAY
    assert 1.15 < s.ratio < 1.6


def test_warm_up_is_counted_in_samples_and_never_pages():
    model = UsageMetric(warmup=14)
    phases = []
    for i in range(13):
        model.update(1000.0 if i > 9 else 3.0, START_S + i * DAY)
        phases.append(model.phase)
    assert set(phases) == {LEARNING}
    model.update(3.0, START_S + 13 * DAY)
    assert model.phase == WATCHING


def test_irregular_samples_stay_quiet_and_still_see_a_doubling():
    rng = random.Random(4)
    ts, samples = START_S, []
    for _ in range(400):
        ts += rng.uniform(0.5, 3.0) * HOUR
        samples.append((ts, 50.0 * rng.lognormvariate(0, 0.08)))
    model = UsageMetric()
    assert run(model, samples) == []
    more = [(t + ts, 100.0 * rng.lognormvariate(0, 0.08)) for t in np.arange(1, 6) * 2 * HOUR]
    events = run(model, more)
    assert events and events[-1][1].kind == LEVEL and events[-1][1].onset_ts == more[0][0]


def test_a_zero_bill_is_a_spike_down_not_an_error():
    model = UsageMetric()
    run(model, [(START_S + i * HOUR, 10.0 + (i % 3) * 0.2) for i in range(48)])
    model.update(0.0, START_S + 48 * HOUR)
    assert model.shift().kind == SPIKE and model.shift().direction == -1
    assert model.shift().observed == pytest.approx(0.0, abs=1e-3)


def test_state_is_small_json_and_resumes_exactly(five_weeks):
    samples = five_weeks[3]["vector_db_usd"]
    a = UsageMetric()
    run(a, samples[:400])
    state = orjson.dumps(a.to_state())
    assert len(state) < 1024
    b = UsageMetric.from_state(orjson.loads(state))
    changed = with_change(samples[400:], samples[450][0], lambda ts: 2.0)
    assert run(a, changed) == run(b, changed)
    assert a.to_state() == b.to_state()


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_negative_or_non_finite_value_is_refused(bad):
    with pytest.raises(ValueError, match="expected a finite value ≥ 0"):
        UsageMetric().update(bad, 0.0)


def test_bad_settings_say_what_was_expected():
    with pytest.raises(ValueError, match="warmup: expected at least 3"):
        UsageMetric(warmup=1)
    with pytest.raises(ValueError, match="expected > 1"):
        UsageMetric(min_ratio=0.9)
