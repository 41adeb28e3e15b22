"""Realistic synthetic AI-spend traffic with injected incidents and their ground truth.

:func:`simulate` runs a :class:`World` (teams × features × models, GPU nodes,
non-request spend lines) over a span with daily and weekly seasonality,
Poisson arrivals, benign bursts, slow growth, lognormal token counts,
baseline retries and errors, and prompt caching, then injects each
:class:`Incident`. :func:`write_simulation` writes the events as Contract 1
JSONL and the ground truth as JSON. Same seed, same bytes.
"""

from detector.simulate.incidents import INCIDENT_KINDS, Incident, parse_incident
from detector.simulate.simulation import Simulation, simulate
from detector.simulate.timeline import DEFAULT_START
from detector.simulate.world import Feature, GpuNode, UsageLine, World
from detector.simulate.writer import write_simulation

__all__ = [
    "DEFAULT_START",
    "Feature",
    "GpuNode",
    "INCIDENT_KINDS",
    "Incident",
    "Simulation",
    "UsageLine",
    "World",
    "parse_incident",
    "simulate",
    "write_simulation",
]
