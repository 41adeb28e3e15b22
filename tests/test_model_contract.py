"""The checks every online model passes, whatever it models.

Each model is registered below as a :class:`Case`: how to make it, a long
seeded stationary stream of its own kind of input, and a step in that
stream it must catch. Adding a model to ``CASES`` puts it under every check:

* state round trip mid-stream: ``to_state`` → JSON → ``from_state``, then
  the same continuation gives the same phase, score and shift at every
  input, and the same state at the end;
* state is plain JSON (no NaN, no infinity) and small: under the case's
  ``state_bytes`` at every checkpoint, in warm-up, watching and in an alarm;
* another state version is refused;
* warm-up honoured: a step in the middle of warm-up never alarms before it
  ends;
* no alarm on the stationary stream, and ``score() < 1`` throughout;
* the step is caught within the case's delay, ``shift()`` describes it in
  the right direction, and ``score() ≥ 1`` while it is on;
* ``rebaseline`` in an alarm returns to watching.

State budgets: the issue's is 4 KB per series for all its models together.
A distribution series runs LogLevelShift and SlowCreep (1.5 + 1 KB), a
share one ProportionShift per share, a rate one SeasonalRate (2 KB: its 48
buckets and, in an alarm, the run of the latest minutes), a GPU one
GpuUtilization and a spend line one UsageMetric (1 KB each).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from detector.models import level_state, share_state
from detector.models.drift import SlowCreep
from detector.models.gpu_utilization import GpuUtilization
from detector.models.level_shift import LogLevelShift
from detector.models.proportion import ProportionShift
from detector.models.seasonal_rate import SeasonalRate
from detector.models.usage_metric import UsageMetric

MONDAY = 1_794_787_200.0  # 2026-11-16T00:00Z
LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"

Stream = Iterator[tuple[float, float]]  # (input, event time)


@dataclass(frozen=True)
class Case:
    """One model under the contract: its factory, its input, and the step it must catch."""

    name: str
    make: Callable[[], Any]
    stream: Callable[[int, float, float], Stream]  # (seed, factor, first ts) → endless inputs at that factor
    quiet_s: float  # seconds of stationary input: warm-up, then a long watched stretch
    warmup_s: float  # a step this far in is still inside the warm-up
    step: float  # the factor of the step
    delay_s: float  # the step must be caught within this much event time
    direction: int
    state_bytes: int = 1024  # largest JSON state allowed, at any point


def requests(per_minute: float, median: float, sigma: float) -> Callable[[int, float, float], Stream]:
    def gen(seed: int, factor: float, ts: float) -> Stream:
        rng = random.Random(seed)
        while True:
            ts += rng.expovariate(per_minute / 60.0)
            yield factor * rng.lognormvariate(math.log(median), sigma), ts

    return gen


def shares(per_minute: float, p: float) -> Callable[[int, float, float], Stream]:
    def gen(seed: int, factor: float, ts: float) -> Stream:
        rng = random.Random(seed)
        while True:
            ts += rng.expovariate(per_minute / 60.0)
            yield int(rng.random() < min(p * factor, 1.0)), ts  # a hit is counted: 0 or 1

    return gen


def counts(per_minute: float) -> Callable[[int, float, float], Stream]:
    def gen(seed: int, factor: float, ts: float) -> Stream:
        rng = random.Random(seed)
        minute = math.ceil(ts / 60)
        while True:
            lam, k, p = per_minute * factor, 0, math.exp(-per_minute * factor)
            if lam < 30:  # Knuth's Poisson draw, exact for small means
                u = rng.random()
                while u > p:
                    k, u = k + 1, u * rng.random()
            else:
                k = max(round(rng.gauss(lam, math.sqrt(lam))), 0)
            yield float(k), minute * 60.0 + 1.0
            minute += 1

    return gen


def utilisation(level: float) -> Callable[[int, float, float], Stream]:
    def gen(seed: int, factor: float, ts: float) -> Stream:
        rng = random.Random(seed)
        minute = math.ceil(ts / 60)
        while True:
            yield min(max(level * factor + rng.gauss(0, 0.02), 0.0), 1.0), minute * 60.0 + 3.0
            minute += 1

    return gen


def hourly(value: float, sigma: float) -> Callable[[int, float, float], Stream]:
    def gen(seed: int, factor: float, ts: float) -> Stream:
        rng = random.Random(seed)
        hour = math.ceil(ts / 3600)
        while True:
            yield factor * value * rng.lognormvariate(0, sigma), hour * 3600.0
            hour += 1

    return gen


DAY, HOUR = 86400.0, 3600.0
CASES = [
    Case("LogLevelShift", LogLevelShift, requests(10, 2000, 0.7), 2 * DAY, 10 * 60, 2.0, 10 * 60, 1, 1536),
    Case("ProportionShift", ProportionShift, shares(20, 0.02), 2 * DAY, 5 * 60, 20.0, 10 * 60, 1, 1536),
    Case("SeasonalRate", SeasonalRate, counts(10), 7 * DAY, 12 * HOUR, 5.0, 30 * 60, 1, 2048),
    Case("GpuUtilization", GpuUtilization, utilisation(0.6), 7 * DAY, 12 * HOUR, 0.05, 45 * 60, -1),
    Case("UsageMetric", UsageMetric, hourly(3.2, 0.05), 120 * DAY, 6 * HOUR, 2.0, 4 * HOUR, 1),
    Case("SlowCreep", SlowCreep, requests(5, 2000, 0.7), 14 * DAY, DAY, 1.3, 12 * HOUR, 1),
]


def feed(model: Any, inputs: Stream, until: float, check: Callable[[Any, float], None] | None = None) -> float:
    """Feed inputs up to event time ``until``; returns the last event time fed."""
    ts = 0.0
    for value, ts in inputs:
        if ts >= until:
            break
        model.update(value, ts)
        if check is not None:
            check(model, ts)
    return ts


def observe(model: Any) -> tuple:
    return model.phase, model.score(), model.shift()


@dataclass
class Watched:
    """A model after its stationary stream: the states kept on the way, and where the stream ended."""

    case: Case
    cls: type
    states: list[dict[str, Any]]
    end: float
    alarms: list[float]

    def model(self) -> Any:
        """A fresh copy of the model as the stationary stream left it."""
        return self.cls.from_state(json.loads(json.dumps(self.states[-1])))


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def watched(request) -> Watched:
    case: Case = request.param
    model, states, alarms = case.make(), [], []

    def check(m: Any, ts: float) -> None:
        if m.phase == SHIFTED:
            alarms.append(ts)
        assert m.score() < 1.0 or m.phase == SHIFTED

    part_s = case.quiet_s / 8
    for part in range(8):  # the stream in eight parts, a state kept after each
        first = MONDAY + part * part_s
        feed(model, case.stream(100 + part, 1.0, first), first + part_s, check)
        states.append(model.to_state())
    assert model.phase == WATCHING, f"{case.name} did not finish warming up in {case.quiet_s / HOUR:.0f} h"
    return Watched(case, type(model), states, MONDAY + case.quiet_s, alarms)


def test_no_alarm_on_stationary_input_and_state_stays_small_and_plain(watched):
    assert watched.alarms == [], f"{watched.case.name} alarmed on its own stationary input at {watched.alarms[:3]}"
    for state in watched.states:
        text = json.dumps(state, allow_nan=False)
        assert len(text) < watched.case.state_bytes, f"{watched.case.name} state is {len(text)} bytes"


def test_state_of_another_version_is_refused(watched):
    state = dict(watched.states[-1], v=watched.states[-1]["v"] + 1)
    with pytest.raises(ValueError, match="state version"):
        watched.cls.from_state(state)


def test_a_step_is_caught_in_time_and_described(watched):
    case, model, start = watched.case, watched.model(), watched.end
    alarm_ts = None

    def check(m: Any, ts: float) -> None:
        nonlocal alarm_ts
        if m.phase == SHIFTED and alarm_ts is None:
            alarm_ts = ts
            assert m.score() >= 1.0

    feed(model, case.stream(7, case.step, start), start + case.delay_s, check)
    assert alarm_ts is not None, f"{case.name} missed a ×{case.step} step within {case.delay_s / 60:.0f} min"
    shift = model.shift()
    assert shift is not None and shift.direction == case.direction
    assert len(json.dumps(model.to_state(), allow_nan=False)) < case.state_bytes
    model.rebaseline(alarm_ts)
    assert model.phase == WATCHING and model.shift() is None


def test_state_round_trip_mid_stream_gives_identical_behaviour(watched):
    case, start = watched.case, watched.end
    a = watched.cls.from_state(watched.states[-1])
    b = watched.model()
    quiet, stepped = case.stream(11, 1.0, start), case.stream(12, case.step, start + case.delay_s)
    for value, ts in list(_take(quiet, start + case.delay_s)) + list(_take(stepped, start + 3 * case.delay_s)):
        a.update(value, ts)
        b.update(value, ts)
        assert observe(a) == observe(b)
    assert a.to_state() == b.to_state()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_warm_up_is_honoured_even_through_a_step(case):
    model, phases = case.make(), []

    def check(m: Any, ts: float) -> None:
        phases.append(m.phase)

    half = MONDAY + case.warmup_s / 2
    feed(model, case.stream(21, 1.0, MONDAY), half, check)
    feed(model, case.stream(22, case.step, half), MONDAY + case.warmup_s, check)
    assert len(phases) > 3
    assert set(phases) == {LEARNING}, f"{case.name} left warm-up early: {sorted(set(phases))}"


PACKED = [case for case in CASES if case.name in ("LogLevelShift", "ProportionShift", "SeasonalRate", "SlowCreep")]


@pytest.mark.parametrize("case", PACKED, ids=lambda c: c.name)
def test_packed_models_share_their_parameters_and_refuse_a_broken_state(case):
    a, b = case.make(), case.make()
    assert a.config is b.config  # one parameter object per distinct parameter set, not one per series
    feed(a, case.stream(3, 1.0, MONDAY), MONDAY + HOUR)
    state = a.to_state()
    assert type(a).from_state(json.loads(json.dumps(state))).config is a.config
    clock = "hour" if "hour" in state else "minute"
    with pytest.raises(ValueError, match=rf"{case.name} state: missing \['{clock}'\]"):
        type(a).from_state({k: v for k, v in state.items() if k != clock})
    with pytest.raises(ValueError, match="phase: expected one of learning, watching, shifted; got 'paused'"):
        type(a).from_state(dict(state, phase="paused"))


SHIFT_NUMBERS = {"LogLevelShift": level_state.NUMBERS, "ProportionShift": share_state.NUMBERS}


@pytest.mark.parametrize("case", [c for c in CASES if c.name in SHIFT_NUMBERS], ids=lambda c: c.name)
def test_a_shifts_numbers_are_held_only_while_it_lasts_and_always_saved(case):
    """Models per series spend their life watching: the numbers that describe a shift cost nothing until one."""
    numbers, model = SHIFT_NUMBERS[case.name], case.make()
    end = feed(model, case.stream(100, 1.0, MONDAY), MONDAY + case.quiet_s)
    assert model.phase == WATCHING and len(model.a) == numbers.core < numbers.size
    quiet_keys = set(model.to_state())
    held = []

    def check(m: Any, ts: float) -> None:
        if m.phase == SHIFTED:
            held.append(len(m.a))
            restored = type(m).from_state(json.loads(json.dumps(m.to_state())))
            assert restored.a == m.a and observe(restored) == observe(m)
            m.rebaseline(ts)

    feed(model, case.stream(7, case.step, end), end + case.delay_s, check)
    assert held and set(held) == {numbers.size}, "no shift, or its numbers were not held while it lasted"
    assert model.phase == WATCHING and len(model.a) == numbers.core
    assert set(model.to_state()) == quiet_keys


def _take(inputs: Stream, until: float) -> Iterator[tuple[float, float]]:
    for value, ts in inputs:
        if ts >= until:
            return
        yield value, ts
