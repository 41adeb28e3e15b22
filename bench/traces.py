"""The real traces in ../shared/data as usage events, clean or with a prompt doubling injected.

The conversion is the one the test suite's fixtures use (tests/conftest.py):
Azure's wall-clock times are UTC, Mooncake's relative times start at
2025-11-16T00:00Z; neither trace names a model, so each gets one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOONCAKE_START_MS = 1_763_251_200_000
TRACES: tuple[str, ...] = ("azure-code", "azure-conv", "mooncake")


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the real traces live in ../shared/data beside the repository")
    return path


def azure_events(name: str) -> Iterator[dict[str, object]]:
    """Azure LLM inference trace rows as llm_request events (one service, one model)."""
    with _require(DATA / "azure-llm" / f"AzureLLMInferenceTrace_{name}.csv").open() as f:
        for i, row in enumerate(csv.DictReader(f)):
            yield {"ts": row["TIMESTAMP"][:23].replace(" ", "T") + "Z", "model": "gpt-4o", "provider": "azure",
                   "team": "azure", "feature": name, "input_tokens": int(row["ContextTokens"]),
                   "output_tokens": int(row["GeneratedTokens"]), "request_id": f"azure-{name}-{i}"}


def mooncake_events() -> Iterator[dict[str, object]]:
    """Mooncake (Kimi) conversation trace rows as llm_request events, times in epoch ms."""
    with _require(DATA / "mooncake" / "conversation_trace.jsonl").open("rb") as f:
        for i, line in enumerate(f):
            row = orjson.loads(line)
            yield {"ts": MOONCAKE_START_MS + row["timestamp"], "model": "deepseek-chat", "team": "kimi",
                   "feature": "conversation", "input_tokens": row["input_length"],
                   "output_tokens": row["output_length"], "request_id": f"kimi-{i}"}


@dataclass(frozen=True, slots=True)
class Trace:
    """One real trace as events, with times in epoch seconds alongside."""

    name: str
    events: list[dict[str, object]]
    ts: list[float]
    labels: dict[str, str]

    @property
    def start_s(self) -> float:
        return self.ts[0]

    @property
    def end_s(self) -> float:
        return self.ts[-1]

    def active_minute_start(self, k: int) -> float:
        """When the ``k``-th minute holding requests begins (1-based): warm-up counts such minutes.

        >>> t = Trace("t", [{}] * 4, [0.0, 30.0, 200.0, 250.0], {})
        >>> t.active_minute_start(2), t.active_minute_start(4)
        (180.0, inf)
        """
        minutes = sorted({int(t // 60) for t in self.ts})
        return minutes[k - 1] * 60.0 if k <= len(minutes) else float("inf")

    def lines(self, doubled_from_s: float | None = None) -> list[bytes]:
        """The trace as JSONL lines; prompts from ``doubled_from_s`` on are twice as long."""
        out = []
        for event, t in zip(self.events, self.ts, strict=True):
            if doubled_from_s is not None and t >= doubled_from_s:
                event = {**event, "input_tokens": 2 * int(event["input_tokens"])}  # type: ignore[call-overload]
            out.append(orjson.dumps(event))
        return out


def load(name: str) -> Trace:
    """One of :data:`TRACES`."""
    if name not in TRACES:
        raise ValueError(f"unknown trace {name!r}; expected one of {', '.join(TRACES)}")
    events = list(mooncake_events()) if name == "mooncake" else list(azure_events(name.split("-", 1)[1]))
    ts = [_seconds(e["ts"]) for e in events]
    first = events[0]
    labels = {k: str(first[k]) for k in ("team", "feature", "model")}
    return Trace(name, events, ts, labels)


def _seconds(ts: object) -> float:
    if isinstance(ts, int | float):
        return ts / 1000.0
    return datetime.fromisoformat(str(ts)).timestamp()
