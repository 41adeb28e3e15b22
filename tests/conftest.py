"""Shared fixtures: the real traces in ../shared/data, converted to our event contract."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOONCAKE_START_MS = 1_763_251_200_000  # 2025-11-16T00:00:00Z: the trace's times are relative


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the real traces live in ../shared/data beside the repository"
        )
    return path


def azure_lines(name: str) -> Iterator[bytes]:
    """Azure LLM inference trace rows as llm_request lines (one service, one model)."""
    with _require(DATA / "azure-llm" / f"AzureLLMInferenceTrace_{name}.csv").open() as f:
        for i, row in enumerate(csv.DictReader(f)):
            # The trace gives wall-clock times with no zone; they are UTC.
            ts = row["TIMESTAMP"][:23].replace(" ", "T") + "Z"
            yield orjson.dumps({
                "ts": ts, "model": "gpt-4o", "provider": "azure", "team": "azure", "feature": name,
                "input_tokens": int(row["ContextTokens"]), "output_tokens": int(row["GeneratedTokens"]),
                "request_id": f"azure-{name}-{i}",
            })


def mooncake_lines() -> Iterator[bytes]:
    """Mooncake (Kimi) conversation trace rows as llm_request lines, times in epoch ms."""
    with _require(DATA / "mooncake" / "conversation_trace.jsonl").open("rb") as f:
        for i, line in enumerate(f):
            row = orjson.loads(line)
            yield orjson.dumps({
                "ts": MOONCAKE_START_MS + row["timestamp"], "model": "deepseek-chat", "team": "kimi",
                "feature": "conversation", "input_tokens": row["input_length"],
                "output_tokens": row["output_length"], "request_id": f"kimi-{i}",
            })


@pytest.fixture(scope="session")
def real_traces() -> dict[str, list[bytes]]:
    return {
        "azure-code": list(azure_lines("code")),
        "azure-conv": list(azure_lines("conv")),
        "mooncake": list(mooncake_lines()),
    }


@pytest.fixture(autouse=True)
def _history_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commands that write the history store write it under the test's tmp_path, never into the checkout."""
    monkeypatch.setenv("SPENDWATCH_DB_URL", f"sqlite:///{tmp_path / 'history.db'}")
