"""FOCUS export: the columns FinOps tools join on, totals that match the store, safe text, the command."""

from __future__ import annotations

import csv
import io
import json

import pytest
import spend_world
from click.testing import CliRunner

from detector.events import LlmRequest
from detector.export import COLUMNS, write_focus_csv
from detector.export.cli import export
from detector.history import HistoryStore, HistoryWriter
from detector.pricing import PriceTable

PRICES = PriceTable.packaged()
DAY = 86400


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = HistoryStore.open(f"sqlite:///{tmp_path_factory.mktemp('focus') / 'history.db'}")
    writer = HistoryWriter(store, PRICES)
    for ev in spend_world.events():
        if spend_world.WEEK_START <= ev.ts < spend_world.WEEK_START + DAY:
            writer.add_event(ev)
    writer.add_event(LlmRequest(ts=spend_world.WEEK_START + 60, model="gpt-4o", input_tokens=10, output_tokens=5,
                                team="=cmd|' /C calc'!A0", feature="@evil"))
    writer.flush()
    yield store
    store.close()


def _read(store, start, end) -> list[dict[str, str]]:
    out = io.StringIO()
    write_focus_csv(store, start, end, out, PRICES)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_every_row_has_the_focus_columns_and_the_dollars_match_the_store(store):
    rows = _read(store, spend_world.WEEK_START, spend_world.WEEK_START + DAY)
    stored = store.rollups(spend_world.WEEK_START, spend_world.WEEK_START + DAY)
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(stored)
    assert sum(float(r["BilledCost"]) for r in rows) == pytest.approx(sum(r.cost_usd for r in stored), abs=1e-6)
    assert {r["ServiceCategory"] for r in rows} == {"AI and Machine Learning"}
    assert {r["ConsumedUnit"] for r in rows} == {"Tokens", "GPU-Hours", "usd"}
    assert {r["x_SpendwatchCategory"] for r in rows} == {"hosted_inference", "self_hosted_inference", "training",
                                                          "embedding", "labelling", "evaluation"}
    llm = next(r for r in rows if r["ResourceId"] == "claude-haiku-4-5")
    assert llm["ProviderName"] == "anthropic" and llm["ChargePeriodStart"].endswith(":00:00Z")
    assert int(llm["ConsumedQuantity"]) == int(llm["x_InputTokens"]) + int(llm["x_OutputTokens"])
    assert json.loads(llm["Tags"]) == {"team": "support", "feature": "chat"}
    gpu = next(r for r in rows if r["ConsumedUnit"] == "GPU-Hours")
    assert 0 <= float(gpu["x_GpuUtilization"]) <= 1 and gpu["ServiceName"] == "GPU compute"


def test_label_values_that_look_like_formulas_are_not_run_by_a_spreadsheet(store):
    rows = _read(store, spend_world.WEEK_START, spend_world.WEEK_START + 3600)
    evil = next(r for r in rows if "calc" in r["x_Team"])
    assert evil["x_Team"] == "'=cmd|' /C calc'!A0" and evil["x_Feature"] == "'@evil"
    assert json.loads(evil["Tags"])["team"] == "=cmd|' /C calc'!A0"  # inside JSON it starts with '{'


def test_the_command_writes_the_csv_and_refuses_an_empty_range(store, tmp_path):
    out = tmp_path / "focus.csv"
    db = str(store.engine.url)
    result = CliRunner().invoke(export, ["focus", "--from", "2026-11-16", "--to", "2026-11-17", "--out", str(out),
                                         "--db", db])
    assert result.exit_code == 0, result.output
    written = list(csv.DictReader(io.StringIO(out.read_text())))
    assert f"{len(written):,} FOCUS rows written to {out}" in result.output
    assert len(written) == len(store.rollups(spend_world.WEEK_START, spend_world.WEEK_START + DAY))
    bad = CliRunner().invoke(export, ["focus", "--from", "2026-11-17", "--to", "2026-11-16", "--db", db])
    assert bad.exit_code == 2 and "--to (2026-11-16 00:00) must be after --from (2026-11-17 00:00)" in bad.output
