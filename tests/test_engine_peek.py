"""A busy series' minute is judged before it ends, and where it is judged does not depend on saved state."""

from __future__ import annotations

import json
import random
from datetime import datetime

import pytest

from detector import engine as engine_module
from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.events import LlmRequest
from detector.pricing import PriceTable

PRICES = PriceTable.packaged()
T0 = 1_794_000_000.0 - 1_794_000_000.0 % 86400  # a midnight, UTC
PER_MINUTE = 60
ONSET_MINUTE = 400


def busy_series(minutes: int = ONSET_MINUTE + 10, seed: int = 3) -> list[LlmRequest]:
    """One request a second on one series; prompts double from ONSET_MINUTE on."""
    rng = random.Random(seed)
    return [LlmRequest(ts=T0 + minute * 60 + i, model="gpt-4o", output_tokens=200, team="search", feature="answer",
                       input_tokens=int(2000 * (2 if minute >= ONSET_MINUTE else 1) * rng.lognormvariate(0, 0.5)))
            for minute in range(minutes) for i in range(PER_MINUTE)]


def requests_before(firing: Anomaly) -> int:
    """Doubled requests the series had sent when the alert fired (one a second from the onset)."""
    detected = datetime.fromisoformat(firing.detected_at.replace("Z", "+00:00")).timestamp()
    return int(detected - (T0 + ONSET_MINUTE * 60)) + 1


def first_firing(records: list[Anomaly]) -> Anomaly:
    firing = [r for r in records if r.status == "firing"]
    assert firing, "the doubling was not caught"
    assert firing[0].metric == "input_tokens_per_request"
    return firing[0]


def test_a_busy_series_pages_before_its_doubled_minute_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    events = busy_series()
    early = first_firing(Engine(PRICES, Settings(warmup_requests=200)).process_many(events))
    assert requests_before(early) < PER_MINUTE  # inside the first doubled minute
    monkeypatch.setattr(engine_module, "PEEK_EVERY", 10**9)  # judged only when a minute ends
    late = first_firing(Engine(PRICES, Settings(warmup_requests=200)).process_many(events))
    assert requests_before(late) > PER_MINUTE
    assert early.id == late.id


def test_saving_and_restoring_state_mid_minute_does_not_move_the_early_judgement() -> None:
    """The worker saves a series' state between batches, with a minute half fed to its models."""
    events = busy_series()
    expected = Engine(PRICES, Settings(warmup_requests=200)).process_many(events)
    engine = Engine(PRICES, Settings(warmup_requests=200))
    cut = ONSET_MINUTE * PER_MINUTE - 7
    got = engine.process_many(events[:cut])
    for position in range(cut, len(events), 13):  # from just before the doubling, a new engine every 13 requests
        restored = Engine(PRICES, Settings(warmup_requests=200))
        for key in engine.take_touched():
            restored.import_group(key, json.loads(json.dumps(engine.export_group(key))))
        engine = restored
        got += engine.process_many(events[position:position + 13])
    assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]
    assert requests_before(first_firing(got)) < PER_MINUTE
