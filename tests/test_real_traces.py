"""Real, clean, bursty production traces must not page anyone."""

from __future__ import annotations

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
              if m.metric == "input_tokens_per_request" and isinstance(m.model, LogLevelShift)]
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
    assert "18:50:00Z" <= firing[0].detected_at[11:] <= "19:14:00Z"
    assert firing[0].ratio == pytest.approx(2.0, rel=0.25)
