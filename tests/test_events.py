"""The event contract: decoding, aliases, rejects, payload forms, duplicates, and fast ≡ contract."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector import event_fast, event_schema
from detector.config import Settings
from detector.event_fast import TYPE_WITHIN, FastPath
from detector.event_rules import parse_ts
from detector.events import RAW_KEPT_CHARS, REJECT_CODES, Decoder, GpuSample, InvalidEvent, LlmRequest, UsageSample

SETTINGS = Settings()
TS = "2026-11-16T14:05:00.123Z"
TS_EPOCH = 1794837900.123
LLM: dict[str, Any] = {
    "ts": TS, "model": "gpt-4o-mini", "provider": "openai", "team": "search", "feature": "summarize",
    "category": "hosted_inference", "input_tokens": 1834, "output_tokens": 212, "cached_input_tokens": 900,
    "request_id": "r-1-123", "attempt": 1, "status": "ok", "latency_ms": 812.5,
}  # fmt: skip
GPU: dict[str, Any] = {
    "ts": TS, "type": "gpu_sample", "cluster": "training", "node": "n1", "gpu": "0", "gpu_model": "A100",
    "utilization": 0.5, "memory_used_bytes": 7_000_000_000, "hourly_cost_usd": 2.5, "category": "training",
    "team": "research", "product": "p", "feature": "f", "cost_center": "cc", "cohort": "c", "tags": {"k": "v"},
}  # fmt: skip
USAGE: dict[str, Any] = {
    "ts": 1794837900, "type": "usage_sample", "metric": "vector_db_usd", "value": 2.9, "unit": "usd",
    "category": "embedding", "team": "search", "product": "p", "feature": "f", "cost_center": "cc",
    "cohort": "c", "tags": {"env": "prod"},
}  # fmt: skip
both_paths = pytest.mark.parametrize("fast", [True, False], ids=["fast", "contract"])
hypothesis_settings = settings(max_examples=300, derandomize=True, database=None, deadline=None)
few_hypothesis_settings = settings(hypothesis_settings, max_examples=100)  # nested values are slow to generate
many_hypothesis_settings = settings(hypothesis_settings, max_examples=600)


def line(obj: object) -> bytes:
    # stdlib json, not orjson: it writes integers of any size, which the tests want to send
    return json.dumps(obj).encode()


def typed(event: object) -> tuple[Any, ...]:
    """An event as comparable values, with the type of each (1 and 1.0 must not compare equal)."""
    values = dataclasses.astuple(event)  # type: ignore[call-overload]
    return (type(event).__name__, *[(type(v).__name__, v) for v in values])


def decode_one(obj: object, fast: bool = True, **limits: Any) -> object:
    """The single event decoded from ``obj``, or (code, reason) of its reject."""
    events, rejects = Decoder(Settings(**limits) if limits else SETTINGS, fast=fast).decode_lines([line(obj)])
    assert len(events) + len(rejects) == 1
    return events[0] if events else (rejects[0].code, rejects[0].reason)


def without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


# --- each kind, all fields ---------------------------------------------------------------------


@both_paths
def test_llm_request_with_every_field(fast: bool) -> None:
    obj = {**LLM, "tier": "standard", "product": "p", "cost_center": "cc", "cohort": "beta",
           "tags": {"env": "prod"}, "cost_usd": 0.25}  # fmt: skip
    assert typed(decode_one(obj, fast)) == typed(LlmRequest(
        TS_EPOCH, "gpt-4o-mini", 1834, 212, 900, "r-1-123", "openai", "standard", "hosted_inference", "search",
        "p", "summarize", "cc", "beta", {"env": "prod"}, 1, "ok", 812.5, 0.25,
    ))  # fmt: skip


@both_paths
def test_llm_request_defaults(fast: bool) -> None:
    obj = {"ts": 1794837900, "model": "m", "input_tokens": 5, "output_tokens": 1}
    assert typed(decode_one(obj, fast)) == typed(LlmRequest(1794837900.0, "m", 5, 1))


@both_paths
def test_gpu_sample_with_every_field(fast: bool) -> None:
    assert typed(decode_one(GPU, fast)) == typed(GpuSample(
        TS_EPOCH, "n1", "0", 0.5, "training", "A100", 7_000_000_000, 2.5, "training", "research", "p", "f",
        "cc", "c", {"k": "v"},
    ))  # fmt: skip


@both_paths
def test_gpu_sample_percent_and_default_category(fast: bool) -> None:
    obj = {"ts": TS, "type": "gpu_sample", "node": "n1", "gpu": "0", "utilization_pct": 37}
    event = decode_one(obj, fast)
    assert isinstance(event, GpuSample)
    assert (event.utilization, event.category) == (0.37, "self_hosted_inference")


@both_paths
def test_usage_sample_with_every_field(fast: bool) -> None:
    assert typed(decode_one(USAGE, fast)) == typed(UsageSample(
        1794837900.0, "vector_db_usd", 2.9, "usd", "embedding", "search", "p", "f", "cc", "c", {"env": "prod"}
    ))  # fmt: skip


@both_paths
def test_unknown_keys_are_ignored_and_null_means_absent(fast: bool) -> None:
    obj = {**LLM, "gateway": {"region": "eu"}, "team": None, "category": None, "attempt": None}
    event = decode_one(obj, fast)
    assert isinstance(event, LlmRequest)
    assert (event.team, event.category, event.attempt) == (None, "hosted_inference", 1)


# --- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["2026-11-16T14:05:00.123Z", "2026-11-16T15:05:00.123+01:00", "2026-11-16t14:05:00.123z",
     "2026-11-16T14:05:00.123000Z", 1794837900.123, 1794837900123],
)  # fmt: skip
def test_timestamps_in_every_accepted_form_agree(value: object) -> None:
    assert parse_ts(value) == pytest.approx(TS_EPOCH, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [("2026-11-16T14:05:00", "bad_timestamp", "no time zone; add Z or +00:00"),
     ("yesterday", "bad_timestamp", "'yesterday' is not a time"),
     ("2026-11-16T14:05:60Z", "bad_timestamp", "second must be in 0..59"),
     (True, "bad_timestamp", "got true"),
     (946684799, "absurd_value", "1999-12-31, outside 2000-01-01"),
     (4102444800000, "absurd_value", "2100-01-01, outside"),
     (10**30, "absurd_value", "no epoch time")],
)  # fmt: skip
@both_paths
def test_bad_timestamps_are_rejected_with_what_to_send(value: object, code: str, words: str, fast: bool) -> None:
    rejected_code, reason = decode_one({**LLM, "ts": value}, fast)  # type: ignore[misc]
    assert rejected_code == code
    assert reason.startswith("ts: ") and words in reason


# --- aliases -----------------------------------------------------------------------------------

OTEL = {"ts": TS, "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.system": "openai", "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 60, "gen_ai.prompt.name": "summarize"}  # fmt: skip


def alias_fields(event: object) -> tuple[Any, ...]:
    assert isinstance(event, LlmRequest), event
    e = event
    return e.model, e.provider, e.input_tokens, e.output_tokens, e.cached_input_tokens, e.feature


@both_paths
def test_opentelemetry_flat_attributes(fast: bool) -> None:
    expected = ("gpt-4o-2024-08-06", "openai", 100, 20, 60, "summarize")  # the response model is what was billed
    assert alias_fields(decode_one(OTEL, fast)) == expected


@both_paths
def test_opentelemetry_attributes_nested(fast: bool) -> None:
    attributes = {**without(OTEL, "ts", "gen_ai.response.model"), "gen_ai.provider.name": "azure"}
    obj = {"ts": TS, "attributes": attributes}
    assert alias_fields(decode_one(obj, fast)) == ("gpt-4o", "azure", 100, 20, 60, "summarize")


@both_paths
def test_openai_usage_object(fast: bool) -> None:
    obj = {"ts": TS, "model": "gpt-4o-mini", "id": "chatcmpl-1", "object": "chat.completion",
           "usage": {"prompt_tokens": 500, "completion_tokens": 40, "total_tokens": 540,
                     "prompt_tokens_details": {"cached_tokens": 128}}}  # fmt: skip
    assert alias_fields(decode_one(obj, fast)) == ("gpt-4o-mini", None, 500, 40, 128, None)


@both_paths
def test_canonical_field_wins_over_its_alias(fast: bool) -> None:
    obj = {**LLM, "gen_ai.usage.input_tokens": 1, "usage": {"completion_tokens": 2}, "gen_ai.system": "x"}
    assert alias_fields(decode_one(obj, fast)) == ("gpt-4o-mini", "openai", 1834, 212, 900, "summarize")


@both_paths
def test_a_bad_alias_value_is_reported_under_the_key_that_was_sent(fast: bool) -> None:
    obj = {"ts": TS, "model": "m", "usage": {"prompt_tokens": -3, "completion_tokens": 1}}
    assert decode_one(obj, fast) == ("negative_value", "usage.prompt_tokens: expected an integer ≥ 0, got -3")


# --- every reject code, with the field named in the reason ----------------------------------------

REJECTS = [
    (b'{"ts": "2026-11-16T14:05:00Z", "model": ', "malformed_json", "not valid JSON"),
    (b'[{"model": "m"}]', "not_an_object", "expected a JSON object, got a list"),
    (line({**LLM, "type": "gpu"}), "unknown_type", "type: unknown 'gpu' (expected one of llm_request, gpu_sample"),
    (line(without(LLM, "ts")), "missing_field",
     "ts: missing (expected RFC 3339 like 2026-11-16T14:05:00Z or epoch seconds/milliseconds)"),
    (line(without(LLM, "input_tokens")), "missing_field", "input_tokens: missing (expected an integer ≥ 0"),
    (line({**LLM, "model": None}), "missing_field", "model: null"),
    (line({**LLM, "ts": "2026-11-16 14:05"}), "bad_timestamp", "ts: '2026-11-16 14:05' has no time zone"),
    (line({**LLM, "input_tokens": 12.5}), "invalid_value", "input_tokens: expected an integer ≥ 0, got 12.5"),
    (line({**LLM, "output_tokens": "12"}), "invalid_value", "output_tokens: expected an integer ≥ 0, got '12'"),
    (line({**LLM, "attempt": True}), "invalid_value", "attempt: expected an integer ≥ 1, got true"),
    (line({**LLM, "team": 7}), "invalid_value", "team: expected a string, got 7"),
    (line({**LLM, "tags": {"env": 1}}), "invalid_value", "tags: expected an object of string → string, got 1"),
    (line({**LLM, "model": ""}), "invalid_value", "model: expected a non-empty string"),
    (line({**GPU, "category": "embedding"}), "invalid_value", "category: 'embedding' is not a GPU category"),
    (line({**LLM, "input_tokens": -5}), "negative_value", "input_tokens: expected an integer ≥ 0, got -5"),
    (line({**LLM, "latency_ms": -1}), "negative_value", "latency_ms: expected a number ≥ 0, got -1"),
    (line({**LLM, "input_tokens": 500}), "cached_exceeds_input",
     "cached_input_tokens (900) is more than input_tokens (500)"),
    (line({**LLM, "category": "hosted"}), "unknown_category",
     "category: unknown 'hosted' (expected one of hosted_inference, self_hosted_inference, training, embedding, "
     "labelling, evaluation)"),
    (line({**LLM, "status": "failed"}), "unknown_status", "status: unknown 'failed' (expected one of ok, error"),
    (line({**GPU, "utilization": 1.5}), "out_of_range", "utilization: expected a fraction 0–1"),
    (line({**without(GPU, "utilization"), "utilization_pct": 150}), "out_of_range",
     "utilization_pct: expected a percentage 0–100"),
    (line({**LLM, "attempt": 0}), "out_of_range", "attempt: expected an integer ≥ 1, got 0"),
    (line(without(GPU, "utilization")), "missing_field", "utilization: missing"),
    (line({**LLM, "input_tokens": 20_000_000}), "absurd_value",
     "input_tokens: 20000000 is more than max_tokens_per_request"),
    (line({**LLM, "input_tokens": 6_000_000, "output_tokens": 6_000_000}), "absurd_value",
     "input_tokens + output_tokens (12000000) is more than max_tokens_per_request (10000000)"),
    (line({**LLM, "cost_usd": 20_000}), "absurd_value", "cost_usd: 20000 is more than max_cost_per_request_usd"),
    (line({**USAGE, "value": 1e400}), "malformed_json", "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "code", "words"), REJECTS, ids=[f"{i}-{r[1]}" for i, r in enumerate(REJECTS)])
@both_paths
def test_each_reject_says_which_field_and_what_to_send(raw: bytes, code: str, words: str, fast: bool) -> None:
    decoder = Decoder(SETTINGS, fast=fast)
    events, rejects = decoder.decode_lines([b"", raw], first_line=41)
    assert events == [] and len(rejects) == 1
    reject = rejects[0]
    assert (reject.line, reject.raw, reject.code) == (42, raw.decode(), code)
    assert words in reject.reason, reject.reason
    assert decoder.rejects_by_code == {code: 1}


def test_every_reject_code_but_the_internal_one_is_exercised() -> None:
    assert {code for _, code, _ in REJECTS} == set(REJECT_CODES) - {"internal_error"}


@both_paths
def test_limits_come_from_settings(fast: bool) -> None:
    small = {"max_tokens_per_request": 1000, "max_cost_per_request_usd": 1.0}
    modest = {**LLM, "input_tokens": 500, "output_tokens": 400, "cached_input_tokens": 0}
    assert decode_one({**modest, "output_tokens": 600}, fast, **small)[0] == "absurd_value"
    assert decode_one({**modest, "cost_usd": 1.5}, fast, **small) == (
        "absurd_value", "cost_usd: 1.5 is more than max_cost_per_request_usd (1); absurd for one event"
    )


def test_all_problems_of_one_event_are_reported_together() -> None:
    code, reason = decode_one({**LLM, "status": "failed", "team": 1, "attempt": 0})  # type: ignore[misc]
    assert code == "invalid_value"  # the first problem's code; every problem in the reason
    assert all(f in reason for f in ("team:", "attempt:", "status:"))


def test_a_bug_in_the_contract_becomes_a_reject_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj: object, settings: Settings) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(event_schema, "validate_event", broken)
    events, rejects = Decoder(SETTINGS, fast=False).decode_lines([line(LLM)])
    assert events == [] and rejects[0].code == "internal_error" and "RuntimeError: boom" in rejects[0].reason


def test_raw_text_is_kept_but_cut_short() -> None:
    huge = line({**LLM, "input_tokens": -1, "padding": "x" * 50_000})
    [reject] = Decoder(SETTINGS).decode_lines([huge + b"\r\n"])[1]
    assert len(reject.raw) == RAW_KEPT_CHARS and huge.decode().startswith(reject.raw)


# --- lines and payloads ------------------------------------------------------------------------


@both_paths
def test_blank_lines_are_skipped_but_counted_in_line_numbers(fast: bool) -> None:
    lines = [b"", b"   \n", line(LLM), "\r\n", line({**LLM, "input_tokens": -1}).decode(), b"\t"]
    events, rejects = Decoder(SETTINGS, fast=fast).decode_lines(lines)
    assert len(events) == 1 and [r.line for r in rejects] == [5]


@pytest.mark.parametrize(
    "payload", [b"  " + line(LLM) + b"\n", json.dumps(LLM, indent=2).encode()], ids=["one-line", "pretty-printed"]
)
def test_payload_with_one_event(payload: bytes) -> None:
    events, rejects = Decoder(SETTINGS).decode_payload(payload)
    assert [typed(e) for e in events] == [typed(decode_one(LLM))] and rejects == []


@pytest.mark.parametrize("payload", [b"{oops\n", b"{oops\r\n", b"{oops"])
def test_payload_of_one_bad_event_is_one_reject_at_its_line_whatever_ends_it(payload: bytes) -> None:
    events, rejects = Decoder(SETTINGS).decode_payload(payload, first_line=4)
    assert events == [] and [(r.line, r.code, r.raw) for r in rejects] == [(4, "malformed_json", "{oops")]


def test_payload_as_array_rejects_a_bad_element_alone() -> None:
    items = [LLM, {**LLM, "request_id": "b", "input_tokens": -1}, 7, GPU, {**LLM, "request_id": "c"}]
    events, rejects = Decoder(SETTINGS).decode_payload(line(items), first_line=1)
    assert [type(e).__name__ for e in events] == ["LlmRequest", "GpuSample", "LlmRequest"]
    assert [(r.line, r.code) for r in rejects] == [(2, "negative_value"), (3, "not_an_object")]
    assert rejects[1].raw == "7"


def test_payload_as_json_lines() -> None:
    payload = b"\n".join([line(LLM), b"", b"{oops", line(USAGE)]) + b"\n"
    events, rejects = Decoder(SETTINGS).decode_payload(payload, first_line=10)
    assert [type(e).__name__ for e in events] == ["LlmRequest", "UsageSample"]
    assert [(r.line, r.code) for r in rejects] == [(12, "malformed_json")]


@pytest.mark.parametrize("mixed", [False, True], ids=["one-line-messages", "with-an-array-and-json-lines"])
def test_a_batch_of_payloads_decodes_as_each_payload_in_turn(mixed: bool) -> None:
    """The batch path (one fast pass over one-event messages) drops the same repeats and rejects the same lines."""
    payloads = [line(LLM), line({**LLM, "request_id": "b"}) + b"\n", b"{oops", line(LLM), line(GPU),
                line({**LLM, "request_id": "c", "input_tokens": -1}), line({**LLM, "request_id": "d"})]
    if mixed:
        payloads[3:3] = [line([{**LLM, "request_id": "d"}, {**LLM, "request_id": "e"}]),
                         b"\n".join([line({**LLM, "request_id": "b"}), b"{oops"]), b"   "]

    def seen(results: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        return [([typed(e) for e in events], [(r.line, r.code, r.raw) for r in rejects]) for events, rejects in results]

    one_at_a_time = Decoder(SETTINGS)
    batch = Decoder(SETTINGS)
    expected = seen([one_at_a_time.decode_payload(p) for p in payloads])
    if not mixed:  # every message is one line: the one pass, not a message at a time
        batch.decode_payload = None  # type: ignore[assignment,method-assign]
    assert seen(batch.decode_payloads(payloads)) == expected
    assert batch.duplicates == one_at_a_time.duplicates == (3 if mixed else 1)
    assert sum(len(events) for events, _ in expected) == (5 if mixed else 4)


@pytest.mark.parametrize("payload", [b'[{"ts": 1}, ', b"[1, 2"])
def test_payload_with_a_broken_array_is_one_reject(payload: bytes) -> None:
    events, rejects = Decoder(SETTINGS).decode_payload(payload, first_line=3)
    assert events == [] and [(r.line, r.code, r.raw) for r in rejects] == [(3, "malformed_json", payload.decode())]


def test_already_parsed_objects() -> None:
    events, rejects = Decoder(SETTINGS).decode_objects([LLM, {**LLM, "status": "nope"}, GPU])
    assert len(events) == 2 and rejects[0].line == 2 and orjson.loads(rejects[0].raw)["status"] == "nope"


# --- duplicates --------------------------------------------------------------------------------


@both_paths
def test_a_request_id_is_counted_once_across_batches_but_retries_are_kept(fast: bool) -> None:
    decoder = Decoder(SETTINGS, fast=fast)
    first, _ = decoder.decode_lines([line(LLM), line(LLM)])
    again, _ = decoder.decode_lines([line(LLM), line({**LLM, "attempt": 2}), line(without(LLM, "request_id"))] * 2)
    assert (len(first), len(again), decoder.duplicates) == (1, 3, 4)


def test_only_the_most_recent_ids_are_remembered() -> None:
    decoder = Decoder(Settings(dedupe_ids=3))
    ids = ["a", "b", "c", "d", "a", "d"]  # "a" was forgotten when "d" came; "d" is still remembered
    events, _ = decoder.decode_lines([line({**LLM, "request_id": i}) for i in ids])
    assert [e.request_id for e in events] == ["a", "b", "c", "d", "a"]  # type: ignore[union-attr]
    assert decoder.duplicates == 1


@pytest.mark.parametrize(
    "raw",
    [b'{"ts": 1794837900, "model": "a", "model": "b", "input_tokens": 5, "output_tokens": 1}',
     b'{"ts": 1794837900, "model": "a", "input_tokens": -1, "input_tokens": 5, "output_tokens": 1}',
     b'{"typ\\u0065": "gpu_sample", "ts": 1794837900, "node": "n", "gpu": "0", "utilization": 0.5}',
     b'{"ts": 1794837900, "model": "a", "input_tokens": 5, "output_tokens": 1, "usage": null,'
     b' "usage": {"prompt_tokens_details": {"cached_tokens": 3}}}',
     b'\xef\xbb\xbf{"ts": 1794837900, "model": "a", "input_tokens": 5, "output_tokens": 1}'],
    ids=["repeated-key", "repeated-bad-key", "escaped-key", "null-then-alias", "byte-order-mark"],
)  # fmt: skip
def test_json_text_quirks_read_the_same_on_both_paths(raw: bytes) -> None:
    fast, contract = Decoder(SETTINGS).decode_lines([raw]), Decoder(SETTINGS, fast=False).decode_lines([raw])
    assert [typed(e) for e in fast[0]] == [typed(e) for e in contract[0]] and fast[1] == contract[1]


# --- properties: never raise; the fast path agrees with the contract --------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)


def accounted(lines: list[bytes | str], fast: bool) -> None:
    decoder = Decoder(SETTINGS, fast=fast)
    events, rejects = decoder.decode_lines(lines)
    blanks = sum(1 for x in lines if not x.strip())
    assert len(events) + len(rejects) + blanks + decoder.duplicates == len(lines)
    assert "internal_error" not in decoder.rejects_by_code


@hypothesis_settings
@given(st.lists(st.binary(max_size=120), max_size=8), st.booleans())
def test_arbitrary_bytes_never_raise(lines: list[bytes], fast: bool) -> None:
    accounted(list(lines), fast)


@few_hypothesis_settings
@given(st.lists(st.dictionaries(st.sampled_from([*LLM, *GPU, "usage", "attributes"]) | st.text(max_size=6),
                                json_values, max_size=6), max_size=4), st.booleans())  # fmt: skip
def test_arbitrary_json_objects_never_raise(objects: list[dict[str, Any]], fast: bool) -> None:
    accounted([line(o) for o in objects], fast)


ALIASES = {
    "model": ["gen_ai.response.model", "gen_ai.request.model"],
    "input_tokens": ["gen_ai.usage.input_tokens", ("usage", "prompt_tokens")],
    "output_tokens": ["gen_ai.usage.output_tokens", ("usage", "completion_tokens")],
    "cached_input_tokens": ["gen_ai.usage.cache_read.input_tokens",
                            ("usage", "prompt_tokens_details", "cached_tokens")],
    "provider": ["gen_ai.provider.name", ("attributes", "gen_ai.system")],
    "feature": ["gen_ai.prompt.name"],
}  # fmt: skip
ODD_VALUES = st.sampled_from(
    [None, True, False, "", "12", -1, 0, 1, 12.0, 12.5, -0.0, 1e300, 2**53, 2**64 + 1, 10**30, [], {}, {"k": 1},
     "ok", "training", "self_hosted_inference", "2026-11-16T14:05:00Z", "2026-11-16T14:05:00", 1794837900,
     1.5, 150,
     "gpu_sample", "usage_sample", "llm_request", 10_000_001]  # fmt: skip
) | json_values


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of any kind, then one or two fields dropped, retyped, pushed out of range or aliased."""
    obj = dict(draw(st.sampled_from([LLM, GPU, USAGE, {**LLM, "tags": {"a": "b"}, "cost_usd": 3}])))
    for _ in range(draw(st.integers(1, 2))):
        known = sorted({*LLM, *GPU, *USAGE, "utilization_pct", "type", "tags"})
        key = draw(st.sampled_from(sorted(obj)) | st.sampled_from(known))
        how = draw(st.sampled_from(["drop", "set", "alias"]))
        if how == "drop":
            obj.pop(key, None)
        elif how == "set":
            obj[key] = draw(ODD_VALUES | st.integers(-2, 2_000))  # small numbers cross other fields
        elif key in ALIASES and key in obj:
            path = draw(st.sampled_from(ALIASES[key]))
            path = (path,) if isinstance(path, str) else path
            target = obj
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = obj.pop(key)
    return obj


def outcome(events: list[Any], rejects: list[Any]) -> tuple[Any, ...]:
    return typed(events[0]) if events else (rejects[0].code, rejects[0].reason)


@many_hypothesis_settings
@given(near_valid())
def test_fast_path_and_contract_give_the_same_event_or_the_same_reject(obj: dict[str, Any]) -> None:
    text = line(obj)
    assert outcome(*Decoder(SETTINGS).decode_lines([text])) == outcome(
        *Decoder(SETTINGS, fast=False).decode_lines([text])
    )
    parsed = json.loads(text)  # integers beyond 64 bits stay exact here, unlike in orjson
    assert outcome(*Decoder(SETTINGS).decode_objects([parsed])) == outcome(
        *Decoder(SETTINGS, fast=False).decode_objects([parsed])
    )


# --- the batch loop: every verdict, in order, exactly as the contract gives it ----------------------

FORGETFUL = Settings(dedupe_ids=2)  # evicts within a batch, so eviction order is compared too
TS_FORMS = ["%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S+00:00", "%Y-%m-%dT%H:%M:%S.%f-05:30",
            "%Y-%m-%d %H:%M:%SZ", "%Y-%m-%dt%H:%M:%S.%fz", "%Y-%m-%dT%H:%M:%S"]  # fmt: skip


@st.composite
def ts_texts(draw: st.DrawFn) -> str:
    """Timestamp text near and in every form parse_ts knows, some of it broken by one character."""
    moment = draw(st.datetimes(min_value=datetime(1999, 12, 31, 12), max_value=datetime(2100, 1, 1, 12)))
    text = moment.strftime(draw(st.sampled_from(TS_FORMS)))
    if "." in text and draw(st.booleans()):  # 1 to 9 fraction digits, not only 6
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit()) + "123"
        text = head + "." + digits[: draw(st.integers(1, 9))] + tail.lstrip("0123456789")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(["0", "9", "6", "٣", "x", ":", ".", " ", ""])) + text[at + 1 :]
    return text


TS_VALUES = ts_texts() | st.integers(-(10**16), 10**16) | st.floats(9e8, 4.2e12)


@hypothesis_settings
@given(st.lists(TS_VALUES, min_size=1, max_size=3))
def test_the_fast_path_reads_time_exactly_as_parse_ts(values: list[object]) -> None:
    # Repeats side by side and apart, and integers next to the equal float: the loop reads a
    # time once per run of equal ones.
    equal_floats = [float(v) for v in values if type(v) is int and abs(v) < 2**53]
    sequence = [*values, *values, *equal_floats, values[0]]
    events = FastPath(SETTINGS).decode_lines([line({**LLM, "ts": value}) for value in sequence])
    for value, event in zip(sequence, events, strict=True):
        try:
            expected = parse_ts(value)
        except InvalidEvent:
            assert event is None
        else:
            assert isinstance(event, LlmRequest) and type(event.ts) is float and event.ts == expected


def late_type(obj: dict[str, Any]) -> dict[str, Any]:
    """The same event with its "type" key written last, past where the fast path looks for it first."""
    return {**without(obj, "type"), "padding": "x" * TYPE_WITHIN, "type": obj["type"]}


@st.composite
def mixed_lines(draw: st.DrawFn) -> list[bytes | str]:
    """A batch as producers send it: plain events of each kind, near misses, blanks, junk, repeated ids."""
    lines: list[bytes | str] = []
    for _ in range(draw(st.integers(0, 24))):
        kind = draw(st.sampled_from(["llm", "llm", "llm", "gpu", "usage", "near", "blank", "junk"]))
        if kind == "llm":
            obj: dict[str, Any] = {**LLM, "ts": draw(ts_texts()), "attempt": draw(st.integers(1, 2)),
                                   "request_id": draw(st.sampled_from(["a", "b", "c", "d", None]))}  # fmt: skip
        elif kind in ("gpu", "usage"):
            obj = dict(GPU if kind == "gpu" else USAGE)
            obj = late_type(obj) if draw(st.booleans()) else obj
        elif kind == "near":
            obj = draw(near_valid())
        if kind == "blank":
            raw: bytes | str = draw(st.sampled_from([b"", b"  \n", "\r\n", b"\t"]))
        elif kind == "junk":
            raw = draw(st.binary(max_size=40) | st.sampled_from([b"{oops", b"[1]", b"null", b'{"type": 1}']))
        else:
            raw = line(obj) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
            raw = raw.decode() if draw(st.integers(0, 9)) == 0 else raw
        lines.append(raw)
    return lines


def decode_in_two_batches(lines: list[bytes | str], settings: Settings, fast: bool, split: int) -> tuple[Any, ...]:
    decoder = Decoder(settings, fast=fast)
    first, first_rejects = decoder.decode_lines(lines[:split], first_line=7)
    second, second_rejects = decoder.decode_lines(iter(lines[split:]), first_line=7 + split)  # any iterable
    events = [typed(e) for e in first + second]
    return events, first_rejects + second_rejects, decoder.duplicates, decoder.rejects_by_code


@few_hypothesis_settings
@given(mixed_lines(), st.sampled_from([SETTINGS, FORGETFUL]), st.integers(0, 24))
def test_batches_decode_exactly_as_the_contract_decodes_them(
    lines: list[bytes | str], settings: Settings, split: int
) -> None:
    assert decode_in_two_batches(lines, settings, True, split) == decode_in_two_batches(lines, settings, False, split)


def test_a_type_key_far_into_the_line_still_takes_the_fast_path() -> None:
    raw = line(late_type(GPU))
    assert raw.find(b'"type"') > TYPE_WITHIN
    [event] = FastPath(SETTINGS).decode_lines([raw])
    assert typed(event) == typed(decode_one(GPU, fast=False))


def test_a_type_value_early_in_an_llm_request_still_takes_the_fast_path() -> None:
    obj = {"ts": TS, "feature": "type", **without(LLM, "ts", "feature")}
    [event] = FastPath(SETTINGS).decode_lines([line(obj)])
    assert typed(event) == typed(decode_one(obj, fast=False))


def test_the_fast_path_sets_every_field_of_the_dataclass_it_does_not_construct() -> None:
    # The fast path fills LlmRequest's slots instead of calling __init__: the same object only
    # while LlmRequest has no __post_init__ and every field is set (astuple reads each one).
    assert not hasattr(LlmRequest, "__post_init__")
    obj = {**LLM, "tier": "t", "product": "p", "cost_center": "cc", "cohort": "c", "tags": {"k": "v"}, "cost_usd": 1}
    [event] = FastPath(SETTINGS).decode_lines([line(obj)])
    assert typed(event) == typed(decode_one(obj, fast=False))


def test_a_failure_inside_the_fast_loop_leaves_the_line_to_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(plain: object, ts: float) -> LlmRequest:
        raise RuntimeError("boom")

    monkeypatch.setattr(event_fast, "_llm_request", broken)
    events, rejects = Decoder(SETTINGS).decode_lines([line(LLM)])
    assert rejects == [] and [typed(e) for e in events] == [typed(decode_one(LLM, fast=False))]


@st.composite
def array_messages(draw: st.DrawFn) -> bytes:
    """A batched message: a JSON array of one kind of event (as producers group them by key), now and then
    with a near miss, another kind or a value that is no object among them."""
    kind = draw(st.sampled_from(["llm", "gpu", "usage"]))
    items: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        odd = draw(st.integers(0, 19))
        if odd == 0:
            items.append(draw(near_valid()))
        elif odd == 1:
            items.append(draw(st.sampled_from([7, "x", None, [1], dict(GPU), dict(USAGE), dict(LLM)])))
        elif kind == "llm":
            items.append({**LLM, "ts": draw(ts_texts()), "attempt": draw(st.integers(1, 2)),
                          "request_id": draw(st.sampled_from(["a", "b", "c", None]))})  # fmt: skip
        else:
            obj = dict(GPU if kind == "gpu" else USAGE)
            items.append(late_type(obj) if draw(st.integers(0, 4)) == 0 else obj)
    return line(items)


@few_hypothesis_settings
@given(st.lists(array_messages(), max_size=4), st.sampled_from([SETTINGS, FORGETFUL]))
def test_array_messages_decode_exactly_as_the_contract_decodes_their_elements(
    payloads: list[bytes], settings: Settings
) -> None:
    def decoded(fast: bool) -> tuple[Any, ...]:
        decoder = Decoder(settings, fast=fast)
        results = [decoder.decode_payload(p, first_line=3) for p in payloads]
        return ([([typed(e) for e in events], rejects) for events, rejects in results],
                decoder.duplicates, decoder.rejects_by_code)

    assert decoded(True) == decoded(False)


def test_an_array_of_plain_events_is_decoded_in_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = Decoder(SETTINGS)
    monkeypatch.setattr(decoder, "decode_lines", None)  # the element-by-element path would call it
    items = [LLM, {**LLM, "request_id": "b"}, LLM]  # the third repeats the first: dropped all the same
    events, rejects = decoder.decode_payload(line(items))
    assert rejects == [] and [e.request_id for e in events] == ["r-1-123", "b"] and decoder.duplicates == 1
    [gpu] = decoder.decode_payload(line([GPU]))[0]
    assert typed(gpu) == typed(decode_one(GPU, fast=False))
