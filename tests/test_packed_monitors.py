"""Monitors packed into their series' array run exactly as the same models kept as objects."""

from __future__ import annotations

import gc
import json
import random
import weakref
from array import array
from typing import Any

import pytest

from detector.config import Settings
from detector.engine import Engine
from detector.events import LlmRequest
from detector.models.drift import SlowCreep
from detector.models.level_shift import LogLevelShift
from detector.models.proportion import ProportionShift
from detector.models.seasonal_rate import SeasonalRate
from detector.models.state import Watched
from detector.monitor import monitor
from detector.packed_monitors import EMPTY, PackedMonitor, layout_for, pack
from detector.pricing import PriceTable

T0 = 1_794_787_200.0  # a Monday, 00:00 UTC
OWN = (7.0, -1.0, 3.5)  # the owner's own numbers, before its monitors'


class Owner:
    """The least a series needs to keep packed monitors: an array of its own numbers, a list, a layout."""

    __slots__ = ("a", "layout", "x")

    def __init__(self) -> None:
        self.a = array("d", OWN)
        self.x: list[Any] = []
        self.layout = EMPTY


def tokens(rng: random.Random, minute: int) -> list[tuple[float, float]]:
    """Ten requests a minute; their size doubles from minute 600 on (a level shift)."""
    factor = 2.0 if minute >= 600 else 1.0
    return [(factor * rng.lognormvariate(7, 0.5), minute * 60.0 + i * 6) for i in range(10)]


def errors(rng: random.Random, minute: int) -> list[tuple[float, float]]:
    """Twenty requests a minute, 2 % failing, then 30 % from minute 600 on."""
    p = 0.3 if minute >= 600 else 0.02
    return [(float(rng.random() < p), minute * 60.0 + i * 3) for i in range(20)]


def volume(rng: random.Random, minute: int) -> list[tuple[float, float]]:
    """A minute's requests, about 20, five times as many from minute 1,500 on (its hour was seen the day before)."""
    return [(float(rng.gauss(100 if minute >= 1500 else 20, 4)), minute * 60.0 + 1)]


KINDS = [
    (lambda: LogLevelShift(warmup=100, warmup_minutes=10), tokens),
    (lambda: ProportionShift(warmup=100), errors),
    (lambda: SeasonalRate(warmup_minutes=600, min_bucket_minutes=60), volume),
    (lambda: SlowCreep(), tokens),
]


def packed_with_twins() -> tuple[Owner, list[PackedMonitor], list[Any]]:
    """One owner with a monitor of every kind that packs, and beside each the same model kept as an object."""
    owner = Owner()
    models = [monitor(None, f"metric{i}", make()) for i, (make, _) in enumerate(KINDS)]
    twins = [monitor(None, f"metric{i}", make()) for i, (make, _) in enumerate(KINDS)]
    pack(owner, (models[:2], models[2:]))  # two groups, as a series feeds some each request, some each minute
    return owner, [PackedMonitor(owner, i) for i in range(len(models))], twins


def state(model: Any) -> str:
    return json.dumps(model.to_state(), sort_keys=True)


def test_packed_monitors_run_exactly_as_the_same_models_kept_apart_through_a_shift():
    owner, packed, twins = packed_with_twins()
    rngs = [random.Random(i) for i in range(len(KINDS))]
    shifted = set()
    for minute in range(1600):
        for i, (_, stream) in enumerate(KINDS):
            inputs = stream(rngs[i], minute)
            for value, ts in inputs:
                packed[i].update(value, ts)
                twins[i].update(value, ts)
            if isinstance(twins[i], SeasonalRate):
                packed[i].advance(inputs[-1][1] + 60)
                twins[i].advance(inputs[-1][1] + 60)
            if minute % 50 == 0 or twins[i].phase == "shifted":
                assert packed[i].phase == twins[i].phase
                assert state(packed[i]) == state(twins[i]), f"{type(twins[i]).__name__} at minute {minute}"
            if twins[i].phase == "shifted":
                shifted.add(type(twins[i]).__name__)
                assert packed[i].shift() == twins[i].shift()
                assert packed[i].score() == twins[i].score()
    assert shifted >= {"LogLevelShift", "ProportionShift", "SeasonalRate"}  # each went through a shift's numbers
    assert tuple(owner.a[: len(OWN)]) == OWN  # the owner's own numbers are its own
    assert len(owner.a) == owner.layout.size  # and its array holds the monitors' at its exact size


def test_a_method_reached_through_the_handle_keeps_what_it_changed():
    owner, packed, twins = packed_with_twins()
    rng = random.Random(5)
    for minute in range(700):
        for value, ts in tokens(rng, minute):
            packed[0].update(value, ts)
            twins[0].update(value, ts)
    assert packed[0].phase == "shifted"
    packed[0].rebaseline(700 * 60.0)  # not one of the handle's own methods: found on the model
    twins[0].rebaseline(700 * 60.0)
    assert packed[0].phase == "watching"
    assert state(packed[0]) == state(twins[0])
    assert packed[0].baseline_median == twins[0].baseline_median  # a property, read through the handle


def test_a_saved_state_restored_into_a_packed_monitor_goes_on_as_the_model_it_came_from():
    _, _, twins = packed_with_twins()
    rng = random.Random(9)
    for minute in range(620):  # into the shift: the saved state holds a shift's numbers and runs
        for value, ts in tokens(rng, minute):
            twins[0].update(value, ts)
    saved = json.loads(json.dumps(twins[0].to_state()))
    owner, packed, _ = packed_with_twins()
    packed[0].restore(saved)
    assert state(packed[0]) == state(twins[0])
    for minute in range(620, 700):
        for value, ts in tokens(rng, minute):
            packed[0].update(value, ts)
            twins[0].update(value, ts)
        assert state(packed[0]) == state(twins[0])
    with pytest.raises(ValueError, match="state version"):
        packed[0].restore({**saved, "v": saved["v"] + 1})


def test_handles_on_one_monitor_are_equal_and_share_its_alert_flags():
    owner, packed, _ = packed_with_twins()
    again = PackedMonitor(owner, 1)
    assert again == packed[1] and hash(again) == hash(packed[1])
    assert again != packed[0] and again != PackedMonitor(Owner(), 1)
    assert not again.paged and again.held_since == 0.0
    packed[1].paged, packed[1].held_since = True, 1234.5
    assert again.paged and again.held_since == 1234.5
    assert not packed[0].paged  # the flags are the monitor's own
    assert again.metric == "metric1" and again.rule_id == "builtin.metric1" and again.kind is ProportionShift
    assert again.model is again  # a monitor is its model, packed or not


def test_series_with_the_same_rules_share_one_layout_and_keep_no_model_objects():
    engine = Engine(PriceTable.packaged(), Settings(warmup_requests=20))
    rng = random.Random(3)
    engine.process_many([
        LlmRequest(ts=T0 + minute * 60 + i, model="gpt-4o", input_tokens=int(rng.lognormvariate(7, 0.4)),
                   output_tokens=200, team="search", feature=f"f{i}")
        for minute in range(30) for i in range(4)
    ])
    series = list(engine.series.values())
    assert len(series) == 4 and len({id(s.layout) for s in series}) == 1
    for s in series:
        assert [m.metric for m in s.monitors()] == [
            "input_tokens_per_request", "input_tokens_per_request", "output_tokens_per_request",
            "cost_per_request", "retry_rate", "error_rate", "cache_hit_rate"]
        assert len(s.a) == s.layout.size
        held = gc.get_referents(s) + [item for item in s.x if item is not None]
        assert not [o for o in held if isinstance(o, Watched)]  # no model kept as an object


def test_a_layout_is_shared_by_identity_and_let_go_with_its_last_user():
    models = [monitor(None, "x", LogLevelShift()), monitor(None, "x", ProportionShift())]
    first = layout_for(models, 3, (1, 2))
    assert layout_for(models, 3, (1, 2)) is first
    assert layout_for(models, 4, (1, 2)) is not first  # another start, another layout
    assert layout_for(models, 3, (2, 2)) is not first  # other groups
    other = [monitor(None, "x", LogLevelShift(h=10.0)), monitor(None, "x", ProportionShift())]
    assert layout_for(other, 3, (1, 2)) is not first  # other parameters
    spec = first.specs[0]
    assert (spec.at, spec.end - spec.at) == (3, len(models[0].a))
    gone = weakref.ref(first)
    del first, spec
    gc.collect()
    assert gone() is None  # rules reloaded many times leave no layouts behind


def test_a_pricier_members_share_of_its_feature_is_kept_in_the_member_and_goes_with_it():
    engine = Engine(PriceTable.packaged(), Settings(warmup_requests=20, max_series=10))
    engine.process_many([
        LlmRequest(ts=T0 + minute * 60 + i, model=model, input_tokens=500, output_tokens=50, team="search",
                   feature="summarize")
        for minute in range(30) for i, model in enumerate(("gpt-4o", "gpt-4o-mini", "claude-haiku-4-5"))
    ])
    f = engine.features[("search", "summarize")]
    assert sorted(f.tier_mix) == ["claude-haiku-4-5", "gpt-4o"]  # the pricier tiers only
    (share,) = f.tier_mix["gpt-4o"]
    assert share.owner is f.members["gpt-4o"] and share.metric == "tier_mix"
    assert share.trials == 87  # fed by the feature a minute at a time: its requests of the 29 closed minutes
    assert [m.metric for m in f.rates] == ["request_rate", "spend_rate"] and f.rates[0].owner is f
    later = T0 + 31 * 60
    engine.process_many([LlmRequest(ts=later, model=model, input_tokens=500, output_tokens=50, team="search",
                                    feature="summarize") for model in ("gpt-4o-mini", "claude-haiku-4-5")])
    engine.process_many([LlmRequest(ts=later + 60 + i, model="gpt-4o-mini", input_tokens=5, output_tokens=5,
                                    team="growth", feature=f"other{i}") for i in range(8)])
    assert engine.evicted == 1 and "gpt-4o" not in f.members  # the least recently seen
    assert list(f.tier_mix) == ["claude-haiku-4-5"]  # an evicted member's share goes with it
