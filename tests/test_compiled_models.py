"""The compiled build (``SPENDWATCH_COMPILE=1 pip install .``) gives the pure-Python build's answers.

mypyc compiles the models from the same source, but a compiled class is not
a Python class in every respect: it has no ``__slots__`` at run time, and
only what is declared a property behaves as one. A difference would show
as other records or other saved state rather than as an error, so both
builds replay the same simulated incidents, one of every model's kind, and
everything they produce is compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.compiled import ROOT, compiled_copy, compiled_modules, pythonpath, start_dir

RUN = r"""
import json, sys
import detector.models.level_shift
from detector.models import build
from detector.engine import Engine
from detector.events import Decoder
from detector.pricing import PriceTable
from detector.simulate import DEFAULT_START, parse_incident, simulate
from detector.simulate.world import World

world = World.default()
node = next(n for n in world.gpu_nodes if n.labels().get("node") == "inf-h100-2")
features = tuple(f for f in world.features
                 if f.team in ("search", "support", "research") or set(f.models) & set(node.serves))
specs = ["retry_storm@2d3h", "prompt_doubling@2d14h~3h", "error_spike@2d19h", "traffic_runaway@2d13h",
         "cache_break@3d2h~6h", "gpu_idle@3d2h", "output_explosion@3d10h"]
sim = simulate(days=4, incidents=[parse_incident(s, DEFAULT_START) for s in specs],
               world=World(features, (node,), ()))
events, rejects = Decoder().decode_lines(list(sim.lines()))
prices = PriceTable.packaged()
first, cut = Engine(prices), len(events) * 4 // 5
records = first.process_many(events[:cut])
second = Engine(prices)
moved = first.take_touched()
for key in moved:
    second.import_group(key, json.loads(json.dumps(first.export_group(key))))
records += second.process_many(events[cut:])
json.dump({
    "models": detector.models.level_shift.__file__,
    "build": build(),
    "rejects": len(rejects),
    "records": [r.to_dict() for r in records],
    "state": {key: second.export_group(key) for key in sorted(moved | second.take_touched())},
}, sys.stdout)
"""


def start_replay(path: str) -> subprocess.Popen[str]:
    """A replay of the incidents with ``PYTHONPATH=path``, saved and restored in another engine on the way."""
    return subprocess.Popen([sys.executable, "-c", RUN], env={**os.environ, "PYTHONPATH": path},
                            cwd=start_dir(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(replay: subprocess.Popen[str]) -> dict:
    """Its records and the state its engine ends with."""
    out, err = replay.communicate(timeout=600)
    assert replay.returncode == 0, err[-3000:]
    return json.loads(out)


@pytest.mark.slow
def test_the_compiled_models_replay_to_the_same_records_and_state_as_the_source(tmp_path):
    pure = start_replay(str(ROOT))  # on the other core while the models compile
    fast = outcome(start_replay(pythonpath(compiled_copy(tmp_path))))
    slow = outcome(pure)
    assert slow["models"].endswith(".py") and fast["models"].endswith(".so")  # each ran the build it names
    assert (slow["build"], fast["build"]) == ("source", "compiled")  # and says so (--version, /health, /metrics)
    kinds = {r["metric"] for r in slow["records"] if r["status"] == "firing"}
    assert {"input_tokens_per_request", "error_rate", "request_rate", "cache_hit_rate",
            "gpu_utilization", "output_tokens_per_request"} <= kinds  # every model's kind shifted
    assert slow["rejects"] == 0 and fast["records"] == slow["records"]
    assert fast["state"] == slow["state"]  # saved, restored and saved again by the compiled models alike


def test_every_module_the_build_compiles_is_a_model():
    modules = compiled_modules(ROOT)
    assert "detector/models/level_shift.py" in modules and "detector/models/proportion.py" in modules
    assert all(m.startswith("detector/models/") for m in modules)  # pure logic only: no I/O is compiled


def test_an_editable_install_refuses_to_compile(monkeypatch):
    sys.path.insert(0, str(ROOT / "buildsys"))
    try:
        import spendwatch_build
    finally:
        sys.path.remove(str(ROOT / "buildsys"))
    monkeypatch.setenv("SPENDWATCH_COMPILE", "1")
    with pytest.raises(RuntimeError, match="pip install ."):
        spendwatch_build.get_requires_for_build_editable()
