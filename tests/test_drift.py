"""SlowCreep: quiet on a simulated week and on a daily rhythm; catches +5 %/day prompts within two days."""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pytest

from detector.models.drift import LEARNING, SHIFTED, WATCHING, SlowCreep
from detector.simulate import DEFAULT_START, World, parse_incident, simulate

START_S = DEFAULT_START.timestamp()  # a Monday, 00:00 UTC
HOUR, DAY = 3600.0, 86400.0


def run_sim(incidents: list[str], world: World, seed: int = 7) -> tuple[dict, list[dict]]:
    """Input tokens of every request of a simulated week through a SlowCreep per series: (models, alarms)."""
    sim = simulate(days=7, seed=seed, world=world, incidents=[parse_incident(i, DEFAULT_START) for i in incidents])
    r, series = sim._requests, sim._catalog.series  # the columns, not a million event dicts
    models: dict[int, SlowCreep] = {}
    alarms: list[dict] = []
    for ts, sid, tokens in zip((r.ts_ms / 1000).tolist(), r.series.tolist(), r.input_tokens.tolist(), strict=True):
        model = models.get(sid)
        if model is None:
            model = models[sid] = SlowCreep()
        was = model.phase
        model.update(tokens, ts)
        if model.phase == SHIFTED and was != SHIFTED:
            feature, name = series[sid]
            alarms.append({"series": f"{feature.key}/{name}", "ts": ts, "creep": model.shift()})
    return models, alarms


def test_a_clean_simulated_week_of_every_series_never_pages():
    models, alarms = run_sim([], World.default())
    assert len(models) == 29
    assert alarms == []
    assert sum(m.phase == WATCHING for m in models.values()) >= 25  # the rest are too quiet to warm up


def test_prompts_growing_five_percent_a_day_page_within_two_days():
    _, alarms = run_sim(["slow_creep@2d"], World.default().only(team="support"))
    [alarm] = alarms
    assert alarm["series"] == "support/chat/claude-haiku-4-5"
    creep, onset = alarm["creep"], START_S + 2 * DAY
    assert alarm["ts"] - onset <= 2 * DAY
    assert creep.direction == 1 and 1.06 <= creep.ratio <= 1.12
    assert abs(creep.onset_ts - onset) <= DAY
    assert 1.02 < creep.per_day < 1.1


def lognormal_stream(model: SlowCreep, days: float, per_minute: float, seed: int, factor, start: float = START_S,
                     median: float = 2000.0, sigma: float = 0.7) -> list[tuple[float, str]]:
    """Poisson requests of lognormal size times ``factor(ts)``; returns (ts, phase) once an hour."""
    rng = random.Random(seed)
    ts, end, phases, next_hour = start, start + days * DAY, [], start
    while ts < end:
        ts += rng.expovariate(per_minute(ts) / 60.0)
        model.update(factor(ts) * rng.lognormvariate(math.log(median), sigma), ts)
        if ts >= next_hour:
            phases.append((ts, model.phase))
            next_hour += HOUR
    return phases


def day_rhythm(ts: float) -> float:
    """Busy by day, a tenth of it at night: the simulator's working day."""
    hour = (ts % DAY) / HOUR
    return 10.0 * (0.1 + 0.9 * math.exp(-(((hour - 13) / 4) ** 2)))


def test_a_daily_rhythm_in_prompt_length_is_not_a_creep():
    # Night traffic is other tenants with shorter prompts: the level swings ±10 % every day, and goes nowhere.
    model = SlowCreep()
    swing = lambda ts: 1.0 + 0.1 * math.sin(ts / DAY * 2 * math.pi)  # noqa: E731
    phases = lognormal_stream(model, 10, day_rhythm, seed=1, factor=swing)
    assert {p for _, p in phases} == {LEARNING, WATCHING}


def test_a_creep_down_pages_too_and_warm_up_never_does():
    model = SlowCreep()
    phases = lognormal_stream(model, 6, lambda ts: 5.0, seed=2, factor=lambda ts: 0.95 ** ((ts - START_S) / DAY))
    watching_from = next(ts for ts, p in phases if p == WATCHING)
    assert watching_from - START_S >= 2 * DAY  # 48 hours of warm-up, though the creep runs from the start
    assert phases[-1][1] == SHIFTED and model.shift().direction == -1 and model.shift().ratio < 0.94


def test_one_enormous_request_moves_nothing():
    model = SlowCreep()
    lognormal_stream(model, 3, lambda ts: 5.0, seed=3, factor=lambda ts: 1.0)
    before = model.recent
    model.update(5e7, START_S + 3 * DAY + 1)
    model.update(2000.0, START_S + 3 * DAY + HOUR)  # closes the hour
    assert model.hi > model.lo and abs(model.recent - before) < 0.02
    assert model.phase == WATCHING


def test_a_small_lasting_step_never_pages_and_the_baseline_follows_it_after_three_days():
    model = SlowCreep()
    lognormal_stream(model, 3, lambda ts: 5.0, seed=4, factor=lambda ts: 1.0)
    base = model.baseline
    phases = lognormal_stream(model, 5, lambda ts: 5.0, seed=5, factor=lambda ts: 1.04, start=START_S + 3 * DAY)
    assert SHIFTED not in {p for _, p in phases}
    assert model.held == 0 and 0.005 < model.baseline - base < math.log(1.04)


def test_rebaseline_accepts_the_new_level_and_keeps_the_spread():
    model = SlowCreep()
    lognormal_stream(model, 3, lambda ts: 5.0, seed=6, factor=lambda ts: 1.0)
    lognormal_stream(model, 1, lambda ts: 5.0, seed=7, factor=lambda ts: 1.3, start=START_S + 3 * DAY)
    assert model.phase == SHIFTED and model.shift().ratio == pytest.approx(1.3, rel=0.05)
    sd_before = model.bq / model.bw - (model.bx / model.bw) ** 2
    model.rebaseline(START_S + 4 * DAY)
    assert model.phase == WATCHING and model.gap == pytest.approx(0.0, abs=1e-9)
    assert model.bq / model.bw - (model.bx / model.bw) ** 2 == pytest.approx(sd_before, rel=1e-6)


def test_state_is_small_json_and_resumes_exactly():
    a = SlowCreep()
    lognormal_stream(a, 3, lambda ts: 5.0, seed=8, factor=lambda ts: 1.0)
    state = orjson.dumps(a.to_state())
    assert len(state) < 1024
    b = SlowCreep.from_state(orjson.loads(state))
    rng = np.random.default_rng(9)
    for i in range(20_000):
        ts, value = START_S + 3 * DAY + i * 12.0, float(rng.lognormal(7.6, 0.7)) * 1.05 ** (i * 12.0 / DAY)
        a.update(value, ts)
        b.update(value, ts)
        assert (a.phase, a.score()) == (b.phase, b.score())
    assert a.to_state() == b.to_state()


def test_bad_settings_say_what_was_expected():
    with pytest.raises(ValueError, match="min_ratio: expected > 1"):
        SlowCreep(min_ratio=1.0)
    with pytest.raises(ValueError, match="expected 0 < recent < baseline"):
        SlowCreep(recent_half_life_h=200.0)
