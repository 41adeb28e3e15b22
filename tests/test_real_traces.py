"""Real, clean, bursty production traces must not page anyone."""

from __future__ import annotations

import math
from typing import Any

import pytest

from detector.engine import Engine
from detector.events import Decoder
from detector.models.level_shift import LogLevelShift
from detector.pricing import PriceTable
from detector.replay import replay_lines


@pytest.mark.parametrize("trace", ["azure-code", "azure-conv", "mooncake"])
def test_a_clean_real_trace_raises_no_firing_record(real_traces, trace):
    lines = real_traces[trace]
    engine = Engine(PriceTable.packaged())
    records = []
    summary = replay_lines(lines, engine, Decoder(), on_anomaly=records.append)
    assert summary.events == len(lines)
    assert summary.rejected == 0
    assert [r.summary for r in records if r.status == "firing"] == []
    # The trace was watched, not only learned from: every series left warm-up.
    shifts = [m.model for s in engine.series.values() for m in s.per_request
              if m.metric == "input_tokens_per_request" and m.kind is LogLevelShift]
    assert shifts and all(model.phase == "watching" for model in shifts)


def test_a_doubling_injected_into_a_real_trace_is_caught(real_traces):
    """The same real trace with every prompt doubled from 18:50 (just after warm-up) on."""
    import orjson

    lines = real_traces["azure-conv"]
    rows = [orjson.loads(line) for line in lines]
    onset = rows[0]["ts"][:11] + "18:50:00"
    for row in rows:
        if row["ts"] >= onset:
            row["input_tokens"] *= 2
    engine = Engine(PriceTable.packaged())
    records = []
    replay_lines([orjson.dumps(r) for r in rows], engine, Decoder(), on_anomaly=records.append)
    firing = [r for r in records if r.status == "firing"]
    assert len(firing) == 1
    assert firing[0].labels == {"team": "azure", "feature": "conv", "model": "gpt-4o"}
    detected = firing[0].detected_at[11:19]
    assert "18:50:00" <= detected <= "19:14:00"
    # The trace's own level moves too (it fell to ~0.73× just after 18:50), so the honest ratio
    # is the doubling times that move: the doubled minutes against the half hour before.
    expected = geometric_mean(rows, "18:50:00", detected) / geometric_mean(rows, "18:20:00", "18:50:00")
    assert 1.3 < expected < 2.5
    assert firing[0].ratio == pytest.approx(expected, rel=0.1)


def geometric_mean(rows: list[dict[str, Any]], start: str, end: str) -> float:
    """Of the prompt lengths between two times of day, in the model's log(1 + x) scale."""
    logs = [math.log1p(r["input_tokens"]) for r in rows if start <= r["ts"][11:19] < end]
    return math.expm1(math.fsum(logs) / len(logs))
