"""The price table: packaged prices, cost arithmetic, name resolution, override files, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import Settings
from detector.errors import ConfigError, PriceTableError
from detector.events import LlmRequest
from detector.pricing import (
    PREMIUM_FROM_PER_TOKEN,
    STANDARD_FROM_PER_TOKEN,
    TIERS,
    ModelPrice,
    PriceTable,
    derive_tier,
)

# The models the traffic simulator sends; each must be priced.
SIMULATOR_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "llama-3.1-70b-instruct",
    "llama-3.1-8b-instruct",
    "mistral-large-latest",
    "deepseek-chat",
)
PREMIUM = ("gpt-4o", "gpt-4.1", "o3", "claude-sonnet-4-5", "claude-opus-4-1", "gemini-2.5-pro", "mistral-large-latest")
ECONOMY = ("gpt-4o-mini", "gemini-2.5-flash", "llama-3.1-8b-instruct", "text-embedding-3-small", "text-embedding-3-large")
GPUS = (
    "H100-SXM-80GB",
    "H100-PCIe-80GB",
    "A100-SXM-80GB",
    "A100-PCIe-40GB",
    "L40S",
    "L4",
    "A10G",
    "T4",
    "H200",
    "B200",
    "MI300X",
)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.packaged()


def request(model: str, inp: int = 1000, out: int = 100, cached: int = 0, cost: float | None = None) -> LlmRequest:
    return LlmRequest(
        ts=0.0, model=model, input_tokens=inp, output_tokens=out, cached_input_tokens=cached, cost_usd=cost
    )


def write_json(tmp_path: Path, content: object, name: str = "prices.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path


# --- the packaged table --------------------------------------------------------


@pytest.mark.parametrize("model", SIMULATOR_MODELS)
def test_every_simulator_model_is_priced_with_a_valid_tier(table: PriceTable, model: str) -> None:
    price = table.model_price(model)
    assert price is not None, model
    assert price.tier in TIERS
    assert price.input_per_token > 0
    assert price.output_per_token >= 0
    assert table.tier(model) == price.tier
    assert model in table.models()


def test_premium_and_economy_models_are_where_routing_incidents_expect_them(table: PriceTable) -> None:
    assert {m: table.tier(m) for m in PREMIUM} == dict.fromkeys(PREMIUM, "premium")
    assert {m: table.tier(m) for m in ECONOMY} == dict.fromkeys(ECONOMY, "economy")


def test_embedding_models_bill_no_output(table: PriceTable) -> None:
    embeddings = [m for m in table.models() if table.model_price(m).mode == "embedding"]
    assert {"text-embedding-3-small", "text-embedding-3-large"} <= set(embeddings)
    for model in embeddings:
        price = table.model_price(model)
        assert price.output_per_token == 0.0, model
        assert price.input_per_token > 0, model


def test_major_providers_are_covered(table: PriceTable) -> None:
    providers = {table.model_price(m).provider for m in table.models()}
    assert {"openai", "anthropic", "gemini", "bedrock", "mistral", "cohere", "deepseek", "xai"} <= providers


def test_packaged_tiers_follow_the_documented_cut_points(table: PriceTable) -> None:
    # So a tier derived for a user's model compares like with like with ours.
    prices = {model: table.model_price(model) for model in table.models()}
    disagree = {m: p.tier for m, p in prices.items() if p.tier != derive_tier(p.input_per_token)}
    assert disagree == {}


def test_packaged_prices_are_sane(table: PriceTable) -> None:
    for model in table.models():
        price = table.model_price(model)
        assert 0 < price.input_per_token < 1e-4, model  # under $100 per 1M tokens
        if price.cache_read_per_token is not None:
            assert price.cache_read_per_token < price.input_per_token, model
    assert table.skipped == ()


# --- cost ----------------------------------------------------------------------


def test_cost_bills_cached_tokens_at_the_cache_price(table: PriceTable) -> None:
    price = table.model_price("gpt-4o")
    assert price.cache_read_per_token is not None
    expected = 800 * price.input_per_token + 200 * price.cache_read_per_token + 100 * price.output_per_token
    assert table.cost(request("gpt-4o", inp=1000, cached=200, out=100)) == pytest.approx(expected)
    uncached = 1000 * price.input_per_token + 100 * price.output_per_token
    assert table.cost(request("gpt-4o", inp=1000, out=100)) == pytest.approx(uncached)
    assert table.cost(request("gpt-4o", inp=1000, cached=200, out=100)) < uncached


def test_cost_by_hand_with_round_prices(tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        {"acme-1": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "cache_read_input_token_cost": 1e-7}},
    )
    table = PriceTable.load(path)
    # 600 uncached × $1/M + 400 cached × $0.10/M + 10 output × $2/M
    assert table.cost(request("acme-1", inp=1000, cached=400, out=10)) == pytest.approx(600e-6 + 40e-6 + 20e-6)


def test_cached_tokens_cost_the_input_price_when_the_model_has_no_cache_price(table: PriceTable) -> None:
    assert table.model_price("mistral-large-latest").cache_read_per_token is None
    with_cache = table.cost(request("mistral-large-latest", inp=5000, cached=3000))
    assert with_cache == pytest.approx(table.cost(request("mistral-large-latest", inp=5000)))


def test_cost_usd_on_the_event_wins(table: PriceTable) -> None:
    assert table.cost(request("gpt-4o", cost=0.123)) == 0.123
    assert table.cost(request("gpt-4o", cost=0.0)) == 0.0  # an explicit zero is a price, not a gap
    assert table.cost(request("no-such-model", cost=0.5)) == 0.5


def test_unknown_model_is_unpriced_not_free(table: PriceTable) -> None:
    for _ in range(2):  # the second lookup comes from the negative cache
        assert table.model_price("acme-unreleased-9") is None
        assert table.tier("acme-unreleased-9") is None
        assert table.cost(request("acme-unreleased-9")) is None


@settings(derandomize=True, max_examples=200)
@given(
    model=st.sampled_from(SIMULATOR_MODELS),
    inp=st.integers(0, 2_000_000),
    cached_share=st.floats(0, 1),
    out=st.integers(0, 100_000),
)
def test_cost_is_non_negative_and_caching_never_costs_more(
    table: PriceTable, model: str, inp: int, cached_share: float, out: int
) -> None:
    cached = int(inp * cached_share)
    with_cache = table.cost(request(model, inp=inp, cached=cached, out=out))
    without = table.cost(request(model, inp=inp, out=out))
    assert 0 <= with_cache <= without * (1 + 1e-12)


# --- name resolution -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "model"),
    [
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic/claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("vertex_ai/claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("vertex_ai/gemini-2.5-pro", "gemini-2.5-pro"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("mistral-large-2411", "mistral-large-latest"),
        ("mistral/mistral-large-latest", "mistral-large-latest"),
        ("command-r-plus-08-2024", "command-r-plus"),
        ("deepseek/deepseek-chat", "deepseek-chat"),
        ("xai/grok-4-0709", "grok-4"),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b-instruct"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b-instruct"),
        ("us.meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-instruct-v0.1"),
    ],
)
def test_common_spellings_resolve_to_the_same_price(table: PriceTable, spelling: str, model: str) -> None:
    assert model in table.models()
    assert table.model_price(spelling) is table.model_price(model)


def test_an_exact_key_wins_over_a_resolved_one(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"azure/gpt-4o": {"input_cost_per_token": 5e-6, "output_cost_per_token": 1.5e-5}})
    table = PriceTable.load(path)
    assert table.model_price("azure/gpt-4o").input_per_token == 5e-6
    assert table.model_price("openai/gpt-4o") is table.model_price("gpt-4o")
    assert table.model_price("gpt-4o").input_per_token != 5e-6


# --- override files ------------------------------------------------------------


def litellm_style_file(tmp_path: Path) -> Path:
    return write_json(
        tmp_path,
        {
            "sample_spec": {
                "input_cost_per_token": 0.0,
                "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
                "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
                "mode": "one of: chat, embedding, completion, image_generation, audio_transcription",
            },
            "gpt-4o": {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6},  # negotiated
            "acme-large": {
                "input_cost_per_token": 4e-6,
                "output_cost_per_token": 1.2e-5,
                "litellm_provider": "acme",
                "mode": "chat",
                "max_input_tokens": 200000,
            },
            "acme-small": {"input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7, "litellm_provider": "acme"},
            "acme-embed": {"input_cost_per_token": 5e-8, "litellm_provider": "acme", "mode": "embedding"},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
            "acme-half-priced": {"input_cost_per_token": 1e-6, "mode": "chat"},
            "gpu/H100-SXM-80GB": {"hourly_cost_usd": 2.1},
            "gpu/RTX-6000-Ada": {"mode": "gpu", "hourly_cost_usd": 0.95, "aliases": ["NVIDIA RTX 6000 Ada Generation"]},
        },
    )


def test_override_replaces_field_by_field_and_keeps_the_packaged_tier(tmp_path: Path, table: PriceTable) -> None:
    custom = PriceTable.load(litellm_style_file(tmp_path))
    mine, packaged = custom.model_price("gpt-4o"), table.model_price("gpt-4o")
    assert (mine.input_per_token, mine.output_per_token) == (2e-6, 8e-6)
    assert (mine.tier, mine.cache_read_per_token, mine.provider) == (
        packaged.tier,
        packaged.cache_read_per_token,
        packaged.provider,
    )
    assert custom.model_price("openai/gpt-4o-2024-08-06") is mine
    assert custom.model_price("claude-sonnet-4-5") == table.model_price("claude-sonnet-4-5")  # untouched


def test_override_extends_the_table(tmp_path: Path, table: PriceTable) -> None:
    custom = PriceTable.load(str(litellm_style_file(tmp_path)))  # a str path works as well as a Path
    assert set(table.models()) < set(custom.models())
    assert custom.model_price("acme-large") == ModelPrice(4e-6, 1.2e-5, None, "premium", "acme", "chat")
    assert custom.tier("acme-small") == "economy"
    assert custom.model_price("acme-embed").output_per_token == 0.0


def test_entries_without_per_token_prices_are_skipped_and_stay_unpriced(tmp_path: Path) -> None:
    custom = PriceTable.load(litellm_style_file(tmp_path))
    assert set(custom.skipped) == {"dall-e-3", "acme-half-priced"}
    assert custom.model_price("dall-e-3") is None
    assert custom.cost(request("acme-half-priced")) is None
    assert "sample_spec" not in custom.models()


def test_override_gpu_prices(tmp_path: Path, table: PriceTable) -> None:
    custom = PriceTable.load(litellm_style_file(tmp_path))
    assert custom.gpu_hourly("H100-SXM-80GB") == 2.1
    assert custom.gpu_hourly("NVIDIA H100 80GB HBM3") == 2.1  # the packaged aliases still apply
    assert custom.gpu_hourly("NVIDIA RTX 6000 Ada Generation") == 0.95
    assert table.gpu_hourly("RTX-6000-Ada") is None
    assert custom.gpu_hourly("L4") == table.gpu_hourly("L4")


def test_the_prices_setting_names_the_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = litellm_style_file(tmp_path)
    monkeypatch.setenv("SPENDWATCH_PRICES", str(path))
    assert PriceTable.load(Settings().prices).model_price("acme-large") is not None


# --- tier derivation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("input_per_token", "tier"),
    [
        (PREMIUM_FROM_PER_TOKEN * 10, "premium"),
        (PREMIUM_FROM_PER_TOKEN, "premium"),
        (PREMIUM_FROM_PER_TOKEN * 0.99, "standard"),
        (STANDARD_FROM_PER_TOKEN, "standard"),
        (STANDARD_FROM_PER_TOKEN * 0.99, "economy"),
        (0.0, "economy"),
    ],
)
def test_derive_tier_cut_points(input_per_token: float, tier: str) -> None:
    assert derive_tier(input_per_token) == tier


def test_an_explicit_tier_in_a_file_wins_over_derivation(tmp_path: Path) -> None:
    path = write_json(
        tmp_path, {"acme-x": {"input_cost_per_token": 9e-6, "output_cost_per_token": 9e-6, "tier": "economy"}}
    )
    assert PriceTable.load(path).tier("acme-x") == "economy"


# --- bad files -----------------------------------------------------------------

NEGATIVE = {"acme": {"input_cost_per_token": -1e-6, "output_cost_per_token": 1e-6}}
TEXT_PRICE = {"acme": {"input_cost_per_token": "0.000001", "output_cost_per_token": 1e-6}}
BOOL_PRICE = {"acme": {"input_cost_per_token": 1e-6, "output_cost_per_token": True}}
BAD_CACHE = {"acme": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "cache_read_input_token_cost": -1}}
BAD_TIER = {"acme": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "tier": "gold"}}
BAD_MODE = {"acme": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "mode": 3}}
GPU_NO_PRICE = {"gpu/X1": {"mode": "gpu"}}
GPU_BAD_ALIASES = {"gpu/X1": {"mode": "gpu", "hourly_cost_usd": 1.0, "aliases": "X1"}}


@pytest.mark.parametrize(
    ("content", "entry", "words"),
    [
        ("{not json", None, "not valid JSON"),
        ("[1, 2]", None, "found a JSON array"),
        ('"gpt-4o"', None, "found a JSON string"),
        ('{"acme": 0.5}', "acme", "expected an object of price fields, found a JSON number"),
        ('{"acme": null}', "acme", "found a JSON null"),
        (json.dumps(NEGATIVE), "acme", "input_cost_per_token must be a number ≥ 0 (USD), found -1e-06"),
        (json.dumps(TEXT_PRICE), "acme", "input_cost_per_token must be a number ≥ 0 (USD), found '0.000001'"),
        (json.dumps(BOOL_PRICE), "acme", "output_cost_per_token must be a number ≥ 0 (USD), found True"),
        (json.dumps(BAD_CACHE), "acme", "cache_read_input_token_cost must be a number ≥ 0"),
        (json.dumps(BAD_TIER), "acme", "unknown tier 'gold'; expected one of premium, standard, economy"),
        (json.dumps(BAD_MODE), "acme", "mode must be a string, found 3"),
        (json.dumps(GPU_NO_PRICE), "gpu/X1", "needs hourly_cost_usd"),
        (json.dumps(GPU_BAD_ALIASES), "gpu/X1", "aliases must be a list of strings"),
    ],
)
def test_a_bad_file_names_the_file_the_entry_and_what_was_expected(
    tmp_path: Path, content: str, entry: str | None, words: str
) -> None:
    path = tmp_path / "negotiated.json"
    path.write_text(content)
    with pytest.raises(PriceTableError) as caught:
        PriceTable.load(path)
    error = caught.value
    assert (error.path, error.entry) == (str(path), entry)
    assert words in str(error)
    assert str(error).startswith(f"{path}: {entry}: " if entry else f"{path}: ")
    assert isinstance(error, ConfigError)


def test_a_missing_file_is_a_price_table_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(PriceTableError, match="cannot read the price file") as caught:
        PriceTable.load(path)
    assert (caught.value.path, caught.value.entry) == (str(path), None)
    assert isinstance(caught.value.__cause__, OSError)


# --- GPUs ----------------------------------------------------------------------


@pytest.mark.parametrize("gpu", GPUS)
def test_every_common_gpu_has_an_hourly_price(table: PriceTable, gpu: str) -> None:
    hourly = table.gpu_hourly(gpu)
    assert hourly is not None
    assert 0.1 < hourly < 20.0
    assert table.gpu_hourly(f"gpu/{gpu}") == hourly
    assert table.gpu_hourly(gpu.lower()) == hourly


@pytest.mark.parametrize(
    ("reported", "gpu"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM-80GB"),
        ("NVIDIA H100 PCIe", "H100-PCIe-80GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM-80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-PCIe-40GB"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla T4", "T4"),
        ("AMD Instinct MI300X", "MI300X"),
    ],
)
def test_gpu_names_as_exporters_report_them(table: PriceTable, reported: str, gpu: str) -> None:
    assert table.gpu_hourly(reported) == table.gpu_hourly(gpu)


def test_gpu_prices_rank_like_the_hardware(table: PriceTable) -> None:
    ladder = ["B200", "H200", "H100-SXM-80GB", "H100-PCIe-80GB", "A100-SXM-80GB", "A100-PCIe-40GB", "T4"]
    prices = [table.gpu_hourly(gpu) for gpu in ladder]
    assert prices == sorted(prices, reverse=True)


def test_unknown_gpu_is_unpriced(table: PriceTable) -> None:
    assert table.gpu_hourly("Voodoo3 3000") is None
    assert table.gpu_hourly("Voodoo3 3000") is None
