"""The GPU idle rule sets the idle test: a team's file moves the threshold, or switches it off, for its GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.anomaly import Anomaly
from detector.detection_run import rule_paths
from detector.engine import Engine
from detector.events import Decoder
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.rules import load_rules
from detector.simulate import DEFAULT_START, parse_incident, simulate
from detector.simulate.world import World

PRICES = PriceTable.packaged()


@pytest.fixture(scope="module")
def half_busy_node() -> list[bytes]:
    """Two days of one inference node whose GPUs fall to 15 % busy for three hours on day two."""
    world = World.default()
    node = next(n for n in world.gpu_nodes if n.labels().get("node") == "inf-h100-2")
    incident = parse_incident("gpu_idle@1d10h~3hx0.15:cluster=inference,node=inf-h100-2", DEFAULT_START)
    serving = tuple(f for f in world.features if set(f.models) & set(node.serves))  # its load comes from them
    return list(simulate(days=2, incidents=[incident], world=World(serving, (node,), ())).lines())


def run(lines: list[bytes], tmp_path: Path, team_file: str | None) -> tuple[list[Anomaly], Engine]:
    paths = []
    if team_file is not None:
        (tmp_path / "gpu.yaml").write_text(team_file)
        paths.append(tmp_path)
    rules = load_rules(rule_paths(paths))
    assert not isinstance(rules, list), rules
    engine = Engine(PRICES, rules=rules)
    records: list[Anomaly] = []
    replay_lines(lines, engine, Decoder(), on_anomaly=records.append)
    return [r for r in records if r.status == "firing"], engine


def override(body: str) -> str:
    return f"""groups:
  - name: inference-gpus
    labels: {{cluster: inference}}
    rules:
      - id: builtin.gpu_utilization
        alert: GpuIdle
        expr:
          metric: gpu_utilization
          by: [cluster, node, gpu]
          {body}
"""


def test_a_gpu_that_falls_to_15_percent_pages_by_the_default_rule(half_busy_node, tmp_path):
    firing, _ = run(half_busy_node, tmp_path, None)
    assert len(firing) == 1 and firing[0].labels["node"] == "inf-h100-2"
    assert firing[0].started_at.startswith("2026-11-17T10:") and firing[0].excess_cost_usd_per_hour > 0


def test_a_team_rule_with_a_lower_threshold_keeps_its_half_busy_gpus_quiet(half_busy_node, tmp_path):
    firing, _ = run(half_busy_node, tmp_path, override("anomaly: {model: idle, below: 0.10, for: 30m}"))
    assert firing == []


def test_a_rule_switched_off_keeps_pricing_the_gpus_and_never_pages(half_busy_node, tmp_path):
    rule = override("anomaly: {model: idle, below: 0.25, for: 30m}\n        enabled: false")
    firing, engine = run(half_busy_node, tmp_path, rule)
    assert firing == [] and engine.ledger.total() > 0
