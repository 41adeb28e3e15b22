"""The simulated organisation: its features and models, its GPU nodes, its other spend lines.

A :class:`World` is plain data. The default one is a mid-size company with
five teams and about thirty (team, feature, model) series, sized so that a
week of it is one to two million requests: enough traffic for every detector
to warm up, small enough to generate in seconds.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from detector.events import CATEGORIES

GIB = 1024**3

# model → (provider, time to first token in ms, ms per output token)
MODEL_PROFILES: dict[str, tuple[str, float, float]] = {
    "gpt-4o": ("openai", 450.0, 12.0),
    "gpt-4o-mini": ("openai", 350.0, 8.0),
    "gpt-4.1": ("openai", 500.0, 14.0),
    "gpt-4.1-mini": ("openai", 350.0, 8.0),
    "o3": ("openai", 4000.0, 15.0),
    "claude-sonnet-4-5": ("anthropic", 700.0, 16.0),
    "claude-haiku-4-5": ("anthropic", 400.0, 8.0),
    "claude-opus-4-1": ("anthropic", 1200.0, 30.0),
    "gemini-2.5-pro": ("google", 900.0, 10.0),
    "gemini-2.5-flash": ("google", 350.0, 5.0),
    "text-embedding-3-small": ("openai", 60.0, 0.0),
    "text-embedding-3-large": ("openai", 90.0, 0.0),
    "llama-3.1-70b-instruct": ("vllm", 300.0, 20.0),
    "llama-3.1-8b-instruct": ("vllm", 120.0, 6.0),
    "mistral-large-latest": ("mistral", 500.0, 14.0),
    "deepseek-chat": ("deepseek", 800.0, 18.0),
}
GPU_MODELS: tuple[str, ...] = ("H100-SXM-80GB", "A100-SXM-80GB", "L40S")


def tag_of(key: str) -> str:
    """A short, stable name for a feature or node, for request ids and seeds (crc32, not hash())."""
    return f"{zlib.crc32(key.encode()):08x}"


def rng_for(seed: int, key: str, stream: int) -> np.random.Generator:
    """A generator of its own per (seed, feature or node, stream).

    Narrowing the world or adding an incident therefore leaves every other
    draw unchanged.

    >>> float(rng_for(7, "search/summarize", 0).random()) == float(rng_for(7, "search/summarize", 0).random())
    True
    """
    return np.random.default_rng([seed, int(tag_of(key), 16), stream])


@dataclass(frozen=True, slots=True)
class Feature:
    """One product feature calling one model, perhaps with a premium fallback for a small share.

    Token counts are lognormal around the medians; ``cache_fraction`` is the
    share of the prompt served from the provider's cache (0 = no caching);
    ``batch_hours`` makes a feature a nightly job that runs at its peak rate
    between those UTC hours and not at all otherwise.

    >>> f = Feature("search", "summarize", "gpt-4o-mini", 40, 3000, 0.6, 250, fallback="gpt-4o")
    >>> f.models, f.key
    (('gpt-4o-mini', 'gpt-4o'), 'search/summarize')
    """

    team: str
    feature: str
    model: str
    peak_rate_per_min: float
    input_median: float
    input_sigma: float
    output_median: float = 0.0
    output_sigma: float = 0.6
    category: str = "hosted_inference"
    product: str | None = None
    cache_fraction: float = 0.0
    fallback: str | None = None
    fallback_share: float = 0.03
    retry_rate: float = 0.015
    error_rate: float = 0.005
    weekend_level: float = 0.4
    weekly_growth: float = 0.015
    batch_hours: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        where = f"feature {self.key}"
        for model in self.models:
            if model not in MODEL_PROFILES:
                raise ValueError(f"{where}: unknown model {model!r}; expected one of {sorted(MODEL_PROFILES)}")
        if self.category not in CATEGORIES:
            raise ValueError(f"{where}: category must be one of {CATEGORIES}, got {self.category!r}")
        shares = {"cache_fraction": self.cache_fraction, "fallback_share": self.fallback_share,
                  "retry_rate": self.retry_rate, "error_rate": self.error_rate}
        for name, value in shares.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{where}: {name} must be in [0, 1), got {value}")
        if self.peak_rate_per_min <= 0 or self.input_median <= 0 or self.output_median < 0:
            raise ValueError(f"{where}: rates and token medians must be positive")

    @property
    def key(self) -> str:
        return f"{self.team}/{self.feature}"

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model,) if self.fallback is None else (self.model, self.fallback)

    @property
    def emits_output(self) -> bool:
        return self.output_median > 0

    def labels(self, model: str) -> dict[str, str]:
        """The labels of this feature's series on ``model``, as incident targets see them."""
        out = {"team": self.team, "feature": self.feature, "model": model,
               "category": self.category, "provider": MODEL_PROFILES[model][0]}
        if self.product is not None:
            out["product"] = self.product
        return out

    def peak_share(self, model: str) -> float:
        """Peak requests/min this feature sends to ``model`` (the fallback takes its share)."""
        if model not in self.models:
            return 0.0
        if self.fallback is None:
            return self.peak_rate_per_min
        share = self.fallback_share if model == self.fallback else 1.0 - self.fallback_share
        return self.peak_rate_per_min * share


@dataclass(frozen=True, slots=True)
class GpuNode:
    """A node of paid GPUs. Inference nodes follow the load of the models they ``serve``;
    a node that serves nothing runs training jobs, busy around the clock.

    >>> node = GpuNode("inference", "inf-h100-1", "H100-SXM-80GB", "platform", serves=("llama-3.1-70b-instruct",))
    >>> node.gpu_labels(3)["gpu"], node.category
    ('3', 'self_hosted_inference')
    """

    cluster: str
    node: str
    gpu_model: str
    team: str
    serves: tuple[str, ...] = ()
    gpus: int = 8
    memory_bytes: int = 80 * GIB

    def __post_init__(self) -> None:
        if self.gpu_model not in GPU_MODELS:
            raise ValueError(f"node {self.node}: gpu_model must be one of {GPU_MODELS}, got {self.gpu_model!r}")

    @property
    def category(self) -> str:
        return "self_hosted_inference" if self.serves else "training"

    def labels(self) -> dict[str, str]:
        return {"cluster": self.cluster, "node": self.node, "gpu_model": self.gpu_model,
                "team": self.team, "category": self.category}

    def gpu_labels(self, gpu: int) -> dict[str, str]:
        return {**self.labels(), "gpu": str(gpu)}


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Spend that is not per request: billed every ``every_hours`` at about ``level`` per bill.

    >>> UsageLine("vector_db_usd", "embedding", "search", level=3.2).labels()["metric"]
    'vector_db_usd'
    """

    metric: str
    category: str
    team: str
    level: float
    unit: str = "usd"
    every_hours: int = 1
    weekend_level: float = 1.0

    def labels(self) -> dict[str, str]:
        return {"metric": self.metric, "category": self.category, "team": self.team}


@dataclass(frozen=True, slots=True)
class World:
    """Everything that produces events; :meth:`only` narrows it for quick runs.

    >>> world = World.default()
    >>> len(list(world.series())) >= 25, len(world.only(team="search").features)
    (True, 4)
    """

    features: tuple[Feature, ...]
    gpu_nodes: tuple[GpuNode, ...] = ()
    usage_lines: tuple[UsageLine, ...] = ()

    def __post_init__(self) -> None:
        names = [f.key for f in self.features] + [n.node for n in self.gpu_nodes]
        tags = [tag_of(name) for name in names]
        if len(set(names)) != len(names) or len(set(tags)) != len(tags):
            raise ValueError(f"world: feature keys and node names must be unique, got {names}")

    @classmethod
    def default(cls) -> World:
        return cls(_DEFAULT_FEATURES, _DEFAULT_NODES, _DEFAULT_USAGE)

    def series(self) -> Iterator[tuple[Feature, str]]:
        """Every (feature, model) pair: one llm series per pair."""
        for feature in self.features:
            for model in feature.models:
                yield feature, model

    def only(self, **labels: str) -> World:
        """The part of the world whose labels include all of ``labels``.

        Filtering by ``team`` keeps that team's features, nodes and spend
        lines. Inference nodes kept without the features they serve sit idle.
        """
        want = labels.items()
        features = tuple(f for f in self.features if any(want <= f.labels(m).items() for m in f.models))
        nodes = tuple(n for n in self.gpu_nodes if want <= n.labels().items())
        usage = tuple(u for u in self.usage_lines if want <= u.labels().items())
        if not (features or nodes or usage):
            teams = sorted({f.team for f in self.features})
            raise ValueError(f"world.only({labels}): nothing matches; teams are {teams}")
        return World(features, nodes, usage)


def _f(team: str, product: str, feature: str, model: str, peak: float, inp: tuple[float, float],
       out: tuple[float, float] = (0.0, 0.6), **extra: object) -> Feature:
    return Feature(team, feature, model, peak, inp[0], inp[1], out[0], out[1],
                   product=product, **extra)  # type: ignore[arg-type]


_DEFAULT_FEATURES: tuple[Feature, ...] = (
    _f("search", "web-search", "summarize", "gpt-4o-mini", 40, (3000, 0.6), (250, 0.5),
       cache_fraction=0.6, fallback="gpt-4o", fallback_share=0.03),
    _f("search", "web-search", "query-rewrite", "gpt-4.1-mini", 60, (300, 0.5), (60, 0.5), retry_rate=0.01),
    _f("search", "web-search", "rerank-embed", "text-embedding-3-small", 55, (350, 0.6),
       category="embedding", error_rate=0.003),
    _f("search", "web-search", "answer", "claude-sonnet-4-5", 12, (4000, 0.7), (500, 0.6), cache_fraction=0.7),
    _f("support", "helpdesk", "chat", "claude-haiku-4-5", 25, (2500, 0.8), (300, 0.6),
       cache_fraction=0.5, fallback="claude-sonnet-4-5", fallback_share=0.05),
    _f("support", "helpdesk", "ticket-triage", "gpt-4o-mini", 8, (1200, 0.5), (80, 0.5)),
    _f("support", "helpdesk", "reply-draft", "gpt-4.1", 5, (3000, 0.6), (450, 0.5), cache_fraction=0.4),
    _f("support", "helpdesk", "kb-embed", "text-embedding-3-small", 6, (500, 0.7), category="embedding"),
    _f("support", "helpdesk", "sentiment", "llama-3.1-8b-instruct", 20, (400, 0.5), (50, 0.5),
       category="self_hosted_inference"),
    _f("growth", "marketing", "email-copy", "gemini-2.5-flash", 6, (800, 0.5), (400, 0.6),
       fallback="gemini-2.5-pro", fallback_share=0.04, weekend_level=0.3),
    _f("growth", "marketing", "product-desc", "gpt-4o-mini", 4, (700, 0.5), (350, 0.5),
       fallback="gpt-4o", fallback_share=0.03, weekend_level=0.3),
    _f("growth", "marketing", "ad-variants", "deepseek-chat", 3, (600, 0.5), (300, 0.5), error_rate=0.01),
    _f("growth", "marketing", "seo-audit", "mistral-large-latest", 0.5, (3500, 0.6), (600, 0.5)),
    _f("platform", "internal", "code-review", "claude-sonnet-4-5", 2, (4000, 0.9), (600, 0.7),
       cache_fraction=0.8, fallback="claude-opus-4-1", fallback_share=0.02, weekend_level=0.3),
    _f("platform", "internal", "sql-assist", "gpt-4.1", 3, (2500, 0.6), (300, 0.6), cache_fraction=0.6),
    _f("platform", "internal", "log-summarize", "llama-3.1-70b-instruct", 15, (2000, 0.6), (200, 0.5),
       category="self_hosted_inference", weekend_level=0.5),
    _f("platform", "internal", "pii-redact", "llama-3.1-8b-instruct", 30, (600, 0.5), (400, 0.5),
       category="self_hosted_inference", weekend_level=0.5),
    _f("platform", "internal", "doc-embed", "text-embedding-3-large", 4, (800, 0.6), category="embedding"),
    _f("research", "labs", "agent-planner", "o3", 1.5, (3500, 1.0), (600, 1.0), retry_rate=0.025),
    _f("research", "labs", "eval-suite", "gpt-4.1", 20, (1500, 0.5), (150, 0.6),
       category="evaluation", batch_hours=(1, 4), weekly_growth=0.0),
    _f("research", "labs", "paper-qa", "gemini-2.5-pro", 1, (4000, 0.8), (400, 0.6), cache_fraction=0.5),
    _f("research", "labs", "synth-data", "gpt-4o", 2, (1000, 0.5), (600, 0.5), weekend_level=0.5),
    _f("research", "labs", "playground", "claude-sonnet-4-5", 2, (2000, 1.0), (500, 0.7),
       fallback="claude-opus-4-1", fallback_share=0.05),
)
_70B, _8B = "llama-3.1-70b-instruct", "llama-3.1-8b-instruct"
_DEFAULT_NODES: tuple[GpuNode, ...] = (
    GpuNode("inference", "inf-h100-1", "H100-SXM-80GB", "platform", serves=(_70B,)),
    GpuNode("inference", "inf-h100-2", "H100-SXM-80GB", "platform", serves=(_70B,)),
    GpuNode("inference", "inf-l40s-1", "L40S", "platform", serves=(_8B,), memory_bytes=48 * GIB),
    GpuNode("training", "train-a100-1", "A100-SXM-80GB", "research"),
    GpuNode("training", "train-a100-2", "A100-SXM-80GB", "research"),
)
_DEFAULT_USAGE: tuple[UsageLine, ...] = (
    UsageLine("vector_db_usd", "embedding", "search", level=3.2),
    UsageLine("labelling_vendor_usd", "labelling", "support", level=480.0, every_hours=24, weekend_level=0.3),
)
