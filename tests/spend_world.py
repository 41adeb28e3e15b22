"""A small simulated organisation for the history, digest and export tests.

Two weeks of it are a few hundred thousand events, decoded and priced in a
few seconds, with every cost category, two premium fallbacks, prompt caching,
a GPU node and two non-request spend lines, so every part of the digest has
something to show. Simulated with a fixed seed: the same events every run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from detector.events import Decoder, Event
from detector.simulate import Feature, GpuNode, Incident, UsageLine, World, parse_incident, simulate

START = datetime(2026, 11, 9, tzinfo=UTC)  # Monday of 2026-W46; the digest week is 2026-W47
WEEK = "2026-W47"
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC).timestamp()
WEEK_END = datetime(2026, 11, 23, tzinfo=UTC).timestamp()

WORLD = World(
    features=(
        Feature("search", "summarize", "gpt-4o-mini", 6, 3000, 0.6, 250, product="web-search",
                cache_fraction=0.6, fallback="gpt-4o", fallback_share=0.05),
        Feature("search", "rerank-embed", "text-embedding-3-small", 5, 350, 0.6, category="embedding"),
        Feature("support", "chat", "claude-haiku-4-5", 4, 2500, 0.8, 300, cache_fraction=0.5,
                fallback="claude-sonnet-4-5", fallback_share=0.05),
        Feature("platform", "pii-redact", "llama-3.1-8b-instruct", 3, 600, 0.5, 400,
                category="self_hosted_inference"),
        Feature("research", "eval-suite", "gpt-4.1", 6, 1500, 0.5, 150, category="evaluation",
                batch_hours=(1, 4), weekly_growth=0.0),
    ),
    gpu_nodes=(
        GpuNode("inference", "inf-l40s-1", "L40S", "platform", serves=("llama-3.1-8b-instruct",), gpus=2),
        GpuNode("training", "train-a100-1", "A100-SXM-80GB", "research", gpus=2),
    ),
    usage_lines=(
        UsageLine("vector_db_usd", "embedding", "search", level=3.2),
        UsageLine("labelling_vendor_usd", "labelling", "support", level=480.0, every_hours=24, weekend_level=0.3),
    ),
)

INCIDENT_SPECS = (
    "prompt_doubling@8d14h~6h:team=support,feature=chat,model=claude-haiku-4-5",
    "gpu_idle@10d2h~8hx0.02:cluster=training,node=train-a100-1",
)


def incidents() -> list[Incident]:
    return [parse_incident(spec, START) for spec in INCIDENT_SPECS]


@cache
def lines() -> tuple[bytes, ...]:
    """Two weeks (2026-W46 and W47) as JSONL lines."""
    return tuple(simulate(days=14, seed=11, start=START, incidents=incidents(), world=WORLD).lines())


@cache
def events() -> tuple[Event, ...]:
    """The two weeks decoded (duplicates dropped, as a replay would)."""
    decoded, rejects = Decoder().decode_lines(list(lines()))
    assert rejects == []
    return tuple(decoded)
