"""The price table: what a token or a GPU-hour costs, by model.

The packaged table (``detector/data/prices.json``) uses the layout of LiteLLM's
``model_prices_and_context_window.json`` so that a user can drop in LiteLLM's
own file, or their negotiated prices, with ``--prices FILE`` (or
``SPENDWATCH_PRICES``) and have it override or extend ours field by field.
Two additions to that layout: a ``tier`` per model (what the ``tier_mix``
metric counts) and ``gpu/<GPU model>`` entries with an ``hourly_cost_usd``.

A model we have no price for is *unpriced* (``None``), never $0: a silent zero
would hide exactly the spend this project exists to watch.

Tiers are ``premium``, ``standard`` and ``economy``. A model that a user's file
adds without a ``tier`` gets one from its input price (see :func:`derive_tier`);
the cut points are chosen so that every packaged chat model's tier agrees with
them, so derived and packaged tiers compare like with like.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson

from detector.errors import PriceTableError
from detector.events import LlmRequest

TIERS: tuple[str, ...] = ("premium", "standard", "economy")
PREMIUM_FROM_PER_TOKEN = 1.25e-6  # $1.25 per 1M input tokens and up: frontier models
STANDARD_FROM_PER_TOKEN = 0.40e-6  # $0.40 per 1M input tokens and up: mid-size models

_SPEC_KEY = "sample_spec"  # LiteLLM documents its layout in this entry; it prices nothing
_EXPECTED_FILE = "a JSON object of model name → price entry (LiteLLM's model_prices layout)"
_CACHE_LIMIT = 100_000  # resolved names kept; a flood of distinct bogus names cannot grow memory
_MISS = object()

# Name resolution, tried in order after the exact name and its lowercase form.
_REGION = re.compile(r"^(?:us|eu|apac|jp|au|ca|global|us-gov)\.")
_BEDROCK = re.compile(
    r"^(?:anthropic|meta|amazon|cohere|mistral|ai21|deepseek|openai|qwen|writer)\.|-v\d+:\d+$"
)
_VERSION = re.compile(r"@.*$|-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{2}-\d{4}|\d{4}|\d{3})$")
_GPU_SEPARATORS = re.compile(r"[^a-z0-9]+")
_GPU_VENDOR = re.compile(r"^(?:gpu|nvidia|amd|instinct|tesla)-")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per token for one model; ``cache_read_per_token`` None means the input price applies.

    >>> ModelPrice(2.5e-6, 1e-5, 1.25e-6, "premium", "openai", "chat").tier
    'premium'
    """

    input_per_token: float
    output_per_token: float
    cache_read_per_token: float | None
    tier: str
    provider: str | None
    mode: str


def derive_tier(input_per_token: float) -> str:
    """The tier a model gets from its input price when its entry names none.

    Input price, not output, because input tokens dominate most bills and every
    priced entry has one.

    >>> derive_tier(3e-6), derive_tier(0.88e-6), derive_tier(0.15e-6)
    ('premium', 'standard', 'economy')
    """
    if input_per_token >= PREMIUM_FROM_PER_TOKEN:
        return "premium"
    if input_per_token >= STANDARD_FROM_PER_TOKEN:
        return "standard"
    return "economy"


class PriceTable:
    """Model and GPU prices, with name resolution cached for the per-event hot path.

    >>> table = PriceTable.packaged()
    >>> table.tier("openai/gpt-4o-2024-08-06")
    'premium'
    >>> ev = LlmRequest(ts=0.0, model="gpt-4o-mini", input_tokens=1000, output_tokens=100)
    >>> round(table.cost(ev), 6)
    0.00021
    >>> table.cost(LlmRequest(ts=0.0, model="no-such-model", input_tokens=1, output_tokens=1)) is None
    True
    >>> table.gpu_hourly("NVIDIA L4")
    0.8
    """

    def __init__(
        self,
        models: dict[str, ModelPrice],
        gpus: dict[str, float],
        skipped: tuple[str, ...] = (),
    ) -> None:
        self._models = dict(models)
        self._gpus = {_gpu_key(name): hourly for name, hourly in gpus.items()}
        self.skipped = skipped  # entries with no per-token price (image, audio, ...): unpriced
        self._resolved: dict[str, ModelPrice | None] = {}
        self._gpu_resolved: dict[str, float | None] = {}

    @classmethod
    def packaged(cls) -> PriceTable:
        """The table shipped inside the package, with nothing overridden."""
        return cls.load(None)

    @classmethod
    def load(cls, override: str | Path | None = None) -> PriceTable:
        """The packaged table, with a user's file replacing or extending it entry by entry.

        Field by field, so an override that gives only input and output prices
        keeps the packaged tier and cache price of that model.

        >>> PriceTable.load(None).model_price("gpt-4o").input_per_token
        2.5e-06
        """
        sources = [(_packaged_path(), _packaged_entries())]
        if override is not None:
            path = str(override)
            sources.append((path, _read_file(path)))
        return _build(sources)

    def model_price(self, model: str) -> ModelPrice | None:
        """The price of ``model`` under any common spelling of its name; None when unpriced."""
        price = self._resolved.get(model, _MISS)
        if price is _MISS:
            price = self._resolve(model)
            if len(self._resolved) >= _CACHE_LIMIT:
                self._resolved.clear()
            self._resolved[model] = price
        return price  # type: ignore[return-value]

    def tier(self, model: str) -> str | None:
        """The model's tier, for events that do not carry one."""
        price = self.model_price(model)
        return None if price is None else price.tier

    def cost(self, ev: LlmRequest) -> float | None:
        """What one request cost in USD: the event's own ``cost_usd`` wins, else the table's.

        Cached input tokens are billed at the cache-read price when the model
        has one. None means unpriced, so callers count it instead of adding $0.
        """
        if ev.cost_usd is not None:
            return ev.cost_usd
        price = self.model_price(ev.model)
        if price is None:
            return None
        cached = ev.cached_input_tokens
        cache_rate = price.cache_read_per_token
        if cache_rate is None:
            cache_rate = price.input_per_token
        return (
            (ev.input_tokens - cached) * price.input_per_token
            + cached * cache_rate
            + ev.output_tokens * price.output_per_token
        )

    def gpu_hourly(self, gpu_model: str) -> float | None:
        """USD per hour of one GPU of this model; None when we have no price for it.

        >>> PriceTable.packaged().gpu_hourly("NVIDIA H100 80GB HBM3")
        3.5
        """
        hourly = self._gpu_resolved.get(gpu_model, _MISS)
        if hourly is _MISS:
            hourly = self._gpus.get(_gpu_key(gpu_model))
            if len(self._gpu_resolved) >= _CACHE_LIMIT:
                self._gpu_resolved.clear()
            self._gpu_resolved[gpu_model] = hourly
        return hourly  # type: ignore[return-value]

    def models(self) -> list[str]:
        """Every priced model name, sorted."""
        return sorted(self._models)

    def _resolve(self, model: str) -> ModelPrice | None:
        for name in _candidates(model):
            price = self._models.get(name)
            if price is not None:
                return price
        return None


def _candidates(model: str) -> list[str]:
    """Spellings of one model name, most specific first.

    ``openai/gpt-4o`` → ``gpt-4o``; ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``
    → ``claude-sonnet-4-5``; ``claude-3-7-sonnet@20250219`` → ``claude-3-7-sonnet``;
    ``mistral-large-2411`` → ``mistral-large-latest``.
    """
    low = model.lower()
    base = low.rsplit("/", 1)[-1]
    unregioned = _REGION.sub("", base)
    bare = _BEDROCK.sub("", unregioned)
    undated = _VERSION.sub("", bare)
    names = [model, low, base, unregioned, bare, undated, undated.removeprefix("meta-")]
    for stem in (bare, undated):
        names.append(stem.removesuffix("-latest") if stem.endswith("-latest") else stem + "-latest")
    return list(dict.fromkeys(names))


def _gpu_key(name: str) -> str:
    """One spelling for a GPU model: ``NVIDIA A10G``, ``gpu/A10G`` and ``a10g`` all match."""
    key = _GPU_SEPARATORS.sub("-", name.lower()).strip("-")
    while match := _GPU_VENDOR.match(key):
        key = key[match.end() :]
    return key


# --- loading -----------------------------------------------------------------


def _packaged_path() -> str:
    return str(files("detector").joinpath("data/prices.json"))


@cache
def _packaged_entries() -> dict[str, Any]:
    """Parsed once per process; never mutated (merging builds new dicts)."""
    return _parse_json(files("detector").joinpath("data/prices.json").read_bytes(), _packaged_path())


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PriceTableError(
            f"cannot read the price file ({exc.strerror or exc}); expected {_EXPECTED_FILE}", path=path
        ) from exc
    return _parse_json(data, path)


def _parse_json(data: bytes, path: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PriceTableError(f"not valid JSON ({exc}); expected {_EXPECTED_FILE}", path=path) from exc
    if not isinstance(parsed, dict):
        raise PriceTableError(f"expected {_EXPECTED_FILE}, found a JSON {_kind(parsed)}", path=path)
    return parsed


def _build(sources: list[tuple[str, dict[str, Any]]]) -> PriceTable:
    """Merge the sources in order, field by field, then check and type every entry."""
    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}  # entry → the file that last touched it, for error messages
    for path, entries in sources:
        for key, fields in entries.items():
            if key == _SPEC_KEY:
                continue
            if not isinstance(fields, dict):
                raise PriceTableError(
                    f"expected an object of price fields, found a JSON {_kind(fields)}", path=path, entry=key
                )
            merged[key] = {**merged.get(key, {}), **fields}
            origin[key] = path
    models: dict[str, ModelPrice] = {}
    gpus: dict[str, float] = {}
    skipped: list[str] = []
    for key, fields in merged.items():
        path = origin[key]
        if _text(fields, "mode", key, path) == "gpu":
            hourly = _number(fields, "hourly_cost_usd", key, path)
            if hourly is None:
                raise PriceTableError("a gpu entry needs hourly_cost_usd (USD per GPU-hour)", path=path, entry=key)
            for name in (key, *_aliases(fields, key, path)):
                gpus[name] = hourly
            continue
        price = _model_price(fields, key, path)
        if price is None:
            skipped.append(key)
        else:
            models[key] = price
    return PriceTable(models, gpus, tuple(skipped))


def _model_price(fields: dict[str, Any], key: str, path: str) -> ModelPrice | None:
    """None for an entry we cannot price per token (image, audio, half-priced): skipped, unpriced."""
    mode = _text(fields, "mode", key, path) or "chat"
    input_price = _number(fields, "input_cost_per_token", key, path)
    output_price = _number(fields, "output_cost_per_token", key, path)
    if output_price is None and mode == "embedding":
        output_price = 0.0  # embeddings produce no output tokens
    if input_price is None or output_price is None:
        return None
    tier = _text(fields, "tier", key, path) or derive_tier(input_price)
    if tier not in TIERS:
        raise PriceTableError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}", path=path, entry=key)
    return ModelPrice(
        input_per_token=input_price,
        output_per_token=output_price,
        cache_read_per_token=_number(fields, "cache_read_input_token_cost", key, path),
        tier=tier,
        provider=_text(fields, "litellm_provider", key, path),
        mode=mode,
    )


def _number(fields: dict[str, Any], name: str, key: str, path: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PriceTableError(f"{name} must be a number ≥ 0 (USD), found {value!r}", path=path, entry=key)
    return float(value)


def _text(fields: dict[str, Any], name: str, key: str, path: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise PriceTableError(f"{name} must be a string, found {value!r}", path=path, entry=key)
    return value


def _aliases(fields: dict[str, Any], key: str, path: str) -> list[str]:
    value = fields.get("aliases", [])
    if not isinstance(value, list) or not all(isinstance(alias, str) for alias in value):
        raise PriceTableError(f"aliases must be a list of strings, found {value!r}", path=path, entry=key)
    return value


def _kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
