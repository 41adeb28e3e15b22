"""GpuUtilization: quiet through nights, weekends and bursts of the simulated fleet; pages on a stuck GPU."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from detector.models.gpu_utilization import IDLE, LEARNING, SATURATED, SHIFTED, WATCHING, GpuUtilization
from detector.simulate import DEFAULT_START, parse_incident, simulate

START_S = DEFAULT_START.timestamp()  # a Monday, 00:00 UTC
COST = 3.5  # $/h of one GPU


def run_fleet(
    incidents: list[str], watch: set[str], days: int = 7
) -> tuple[list[dict], dict[int, GpuUtilization], list[dict]]:
    """The samples of the GPUs named ``node/gpu`` in ``watch`` through a model each: (alarms, models, labels).

    A few GPUs per node keep the test fast; the whole fleet of forty is the
    same code, and measured quiet over two seeded weeks as well.
    """
    sim = simulate(days=days, seed=7, incidents=[parse_incident(i, DEFAULT_START) for i in incidents])
    g, labels = sim._gpus, sim._gpu_labels  # the columns, not 400k event dicts
    keep = np.isin(g.gpu, [i for i, lab in enumerate(labels) if f"{lab['node']}/{lab['gpu']}" in watch])
    models: dict[int, GpuUtilization] = {}
    alarms: list[dict] = []
    rows = zip((g.ts_ms[keep] / 1000).tolist(), g.gpu[keep].tolist(), g.utilization[keep].tolist(), strict=True)
    for ts, gid, u in rows:
        model = models.get(gid)
        if model is None:
            model = models[gid] = GpuUtilization(hourly_cost_usd=COST)
        was = model.phase
        model.update(u, ts)
        if model.phase == SHIFTED and was != SHIFTED:
            alarms.append({"gpu": gid, "node": labels[gid]["node"], "ts": ts, "shift": model.shift()})
        elif was == SHIFTED and model.phase != SHIFTED:
            alarms.append({"gpu": gid, "node": labels[gid]["node"], "ts": ts, "resolved": True})
    return alarms, models, labels


NODES = ("inf-h100-1", "inf-h100-2", "inf-l40s-1", "train-a100-1", "train-a100-2")


@pytest.fixture(scope="module")
def clean_week():
    return run_fleet([], {f"{node}/{gpu}" for node in NODES for gpu in "03"})


@pytest.fixture(scope="module")
def idle_week():
    # inf-h100-2 stuck at 3 % from Thursday 02:00 for 8 hours; two GPUs of its twin for contrast.
    watch = {f"inf-h100-2/{gpu}" for gpu in range(8)} | {"inf-h100-1/0", "inf-h100-1/5"}
    return run_fleet(["gpu_idle@3d2h"], watch, days=4)


def test_a_clean_simulated_week_of_every_kind_of_node_never_pages(clean_week):
    alarms, models, _ = clean_week
    assert len(models) == 10
    assert alarms == []
    assert all(m.phase == WATCHING for m in models.values())


def test_inference_gpus_are_quiet_at_night_by_their_own_pattern(clean_week):
    _, models, labels = clean_week
    gid = next(i for i, lab in enumerate(labels) if lab["node"] == "inf-h100-1")
    m = models[gid]
    saturday = int(START_S // 60) + 5 * 1440
    night, noon = m.expected_at(saturday + 3 * 60), m.expected_at(saturday - 2 * 1440 + 12 * 60)
    assert night is not None and noon is not None
    assert night < m.floor < 3 * m.floor < noon  # below the floor by night is the pattern, so not news
    assert not m.chronic()


def test_a_stuck_node_pages_on_every_gpu_within_the_sustain_time(idle_week):
    alarms, _, labels = idle_week
    onset = START_S + 3 * 86400 + 2 * 3600
    fired = [a for a in alarms if "shift" in a]
    assert sorted(a["gpu"] for a in fired) == [i for i, lab in enumerate(labels) if lab["node"] == "inf-h100-2"]
    assert len(fired) == 8
    for a in fired:
        s = a["shift"]
        assert s.kind == IDLE and s.direction == -1
        assert abs(s.onset_ts - onset) <= 120
        assert 30 * 60 <= a["ts"] - onset <= 35 * 60
        assert s.observed_utilization == pytest.approx(0.03, abs=0.005)
        assert s.baseline_utilization > 2 * s.observed_utilization
        assert s.idle_usd_per_hour == pytest.approx(COST * (1 - s.observed_utilization))
        assert 0 < s.excess_usd_per_hour < s.idle_usd_per_hour


def test_the_alarm_resolves_soon_after_the_node_is_busy_again(idle_week):
    alarms, _, _ = idle_week
    end = START_S + 3 * 86400 + 10 * 3600
    resolved = [a for a in alarms if a.get("resolved")]
    assert len(resolved) == 8
    assert all(0 <= a["ts"] - end <= 15 * 60 for a in resolved)


def feed(model: GpuUtilization, levels: list[float], first_minute: int, seed: int, every: int = 1) -> list[str]:
    """One sample of each level (plus noise) per ``every`` minutes from ``first_minute``; the phase after each."""
    rng, phases = random.Random(seed), []
    for i, level in enumerate(levels):
        if i % every == 0:
            model.update(min(max(level + rng.gauss(0, 0.02), 0.0), 1.0), (first_minute + i) * 60.0 + 7.0)
        phases.append(model.phase)
    return phases


MONDAY_MIN = int(START_S // 60)


def day_shape(days: int, busy: float = 0.6, night: float = 0.12) -> list[float]:
    return [busy if 8 <= (m // 60) % 24 < 20 else night for m in range(days * 1440)]


def test_saturation_sustained_pages_but_a_quarter_hour_burst_does_not():
    model = GpuUtilization()
    feed(model, day_shape(2), MONDAY_MIN, seed=1)
    t = MONDAY_MIN + 2 * 1440 + 10 * 60  # Wednesday 10:00
    assert set(feed(model, [1.0] * 15 + [0.6] * 60, t, seed=2)) == {WATCHING}
    phases = feed(model, [1.0] * 45, t + 75, seed=3)
    assert phases[-1] == SHIFTED and SHIFTED not in phases[:28]
    s = model.shift()
    assert s.kind == SATURATED and s.direction == 1 and s.onset_ts == (t + 75) * 60.0
    assert s.observed_utilization > 0.97
    feed(model, [0.6] * 10, t + 120, seed=4)
    assert model.phase == WATCHING


def test_warm_up_never_pages_even_on_a_dead_gpu():
    model = GpuUtilization(warmup_minutes=1440)
    phases = feed(model, [0.6] * 600 + [0.0] * 839, MONDAY_MIN, seed=5)
    assert set(phases) == {LEARNING}


def test_a_gpu_idle_since_it_was_first_seen_is_chronic_waste_and_pages_after_warm_up():
    model = GpuUtilization(hourly_cost_usd=2.0)
    phases = feed(model, [0.03] * (1440 + 45), MONDAY_MIN, seed=6)
    assert model.chronic()
    assert phases.index(SHIFTED) >= 1440 + 29
    assert model.shift().kind == IDLE
    assert model.shift().idle_usd_per_hour == pytest.approx(2.0 * 0.97, abs=0.02)


def test_samples_every_five_minutes_still_page_and_a_long_silence_starts_over():
    model = GpuUtilization()
    feed(model, day_shape(2), MONDAY_MIN, seed=7, every=5)
    t = MONDAY_MIN + 2 * 1440 + 12 * 60
    assert model.phase == WATCHING
    feed(model, [0.02] * 20, t, seed=8, every=5)
    assert model.phase == WATCHING and model.score() > 0
    # Two silent hours: the run does not span time nobody saw.
    feed(model, [0.02] * 20, t + 140, seed=9, every=5)
    assert model.phase == WATCHING
    feed(model, [0.02] * 20, t + 160, seed=10, every=5)
    assert model.phase == SHIFTED and model.shift().onset_ts == (t + 140) * 60.0


def test_rebaseline_ends_the_alarm_and_the_state_survives_json_mid_incident():
    model = GpuUtilization(hourly_cost_usd=1.0)
    feed(model, day_shape(2), MONDAY_MIN, seed=11)
    feed(model, [0.01] * 40, MONDAY_MIN + 2 * 1440 + 12 * 60, seed=12)
    assert model.phase == SHIFTED
    copy = GpuUtilization.from_state(orjson.loads(orjson.dumps(model.to_state())))
    assert copy.shift() == model.shift()
    model.rebaseline(0.0)
    assert model.phase == WATCHING and model.shift() is None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"floor": 1.5}, "floor and idle_ratio"), ({"saturation": 0.05}, "saturation"), ({"sustain_minutes": 0}, "≥ 1")],
)
def test_bad_settings_say_what_was_expected(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GpuUtilization(**kwargs)


@pytest.mark.parametrize("bad", [-0.1, 1.2, float("nan")])
def test_a_utilisation_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ValueError, match=r"expected utilization in \[0, 1\]"):
        GpuUtilization().update(bad, 0.0)


def test_profile_buckets_hold_the_mean_utilisation_of_their_hour():
    model = GpuUtilization()
    rng = np.random.default_rng(3)
    values = 0.4 + 0.1 * rng.standard_normal(60)
    for i, v in enumerate(values.tolist()):
        model.update(float(np.clip(v, 0, 1)), (MONDAY_MIN + 9 * 60 + i) * 60.0)
    model.update(0.5, (MONDAY_MIN + 10 * 60) * 60.0)  # closes 09:59
    assert model.expected_at(MONDAY_MIN + 9 * 60) == pytest.approx(np.clip(values, 0, 1).mean(), abs=2e-3)
