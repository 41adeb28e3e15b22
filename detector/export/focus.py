"""The hourly rollups as FOCUS rows (the FinOps Foundation's FinOps Open Cost and Usage Specification).

FOCUS is the column layout cloud bills are exported in, so AI spend written
this way can be loaded beside the cloud bill and joined on the same columns:
one row per rollup row, ``ServiceCategory`` "AI and Machine Learning",
the hour as the charge period, tokens, GPU-hours or the usage sample's unit
as the consumed quantity, the allocation labels in ``Tags``. What FOCUS has no
column for (the cost category, tokens by kind, retries, idle GPU dollars)
goes in ``x_`` columns, the prefix FOCUS reserves for extensions.

Spreadsheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula, and label values come from producers, so such text cells get a
leading apostrophe (the usual CSV-injection guard); numbers are written as
numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from detector.history.rollup import HOUR_S, RollupRow
from detector.history.store import HistoryStore
from detector.pricing import PriceTable

SERVICE_CATEGORY = "AI and Machine Learning"
COLUMNS: tuple[str, ...] = (
    "BilledCost", "EffectiveCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory",
    "ChargeDescription", "ServiceCategory", "ServiceName", "ProviderName", "ConsumedQuantity", "ConsumedUnit",
    "ResourceId", "ResourceName", "ResourceType", "Tags",
    "x_SpendwatchCategory", "x_Team", "x_Feature", "x_Tier", "x_Requests", "x_InputTokens", "x_OutputTokens",
    "x_CachedInputTokens", "x_Retries", "x_Errors", "x_UnpricedEvents", "x_GpuHours", "x_GpuUtilization",
    "x_IdleGpuCost",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_RESOURCE_TYPE = {"llm": "LLM model", "gpu": "GPU", "usage": "Usage line"}


def iso(ts: float) -> str:
    """An instant as FOCUS writes date-times (ISO 8601, UTC).

    >>> iso(1794787200)
    '2026-11-16T00:00:00Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def safe_text(value: str) -> str:
    """A label value that a spreadsheet will show, never run.

    >>> safe_text("=HYPERLINK(1)"), safe_text("search")
    ("'=HYPERLINK(1)", 'search')
    """
    return "'" + value if value.startswith(_FORMULA_START) else value


def focus_row(row: RollupRow, prices: PriceTable) -> dict[str, Any]:
    """One rollup row as one FOCUS row.

    >>> r = RollupRow(1794787200, "llm", "hosted_inference", "search", "summarize", "gpt-4o", "premium", "tokens",
    ...               requests=2, input_tokens=900, output_tokens=100, cost_usd=0.5)
    >>> out = focus_row(r, PriceTable.packaged())
    >>> out["ConsumedQuantity"], out["ConsumedUnit"], out["ServiceName"], out["Tags"]
    (1000, 'Tokens', 'openai', '{"feature":"summarize","team":"search"}')
    """
    tags = {k: v for k, v in (("team", row.team), ("feature", row.feature)) if v}
    if row.kind == "llm":
        price = prices.model_price(row.model)
        provider = price.provider if price and price.provider else "unknown"
        quantity, unit, service = row.input_tokens + row.output_tokens, "Tokens", provider
        description = f"LLM requests to {row.model}"
    elif row.kind == "gpu":
        provider, quantity, unit, service = "self-hosted", row.gpu_hours, "GPU-Hours", "GPU compute"
        description = f"GPU time on {row.model or 'unknown GPUs'}"
    else:
        provider, quantity, unit, service = "self-reported", row.quantity, row.unit, row.model
        description = f"usage line {row.model}"
    return {
        "BilledCost": round(row.cost_usd, 10),
        "EffectiveCost": round(row.cost_usd, 10),
        "BillingCurrency": "USD",
        "ChargePeriodStart": iso(row.hour_start),
        "ChargePeriodEnd": iso(row.hour_start + HOUR_S),
        "ChargeCategory": "Usage",
        "ChargeDescription": safe_text(description),
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": safe_text(service),
        "ProviderName": safe_text(provider),
        "ConsumedQuantity": quantity,
        "ConsumedUnit": safe_text(unit),
        "ResourceId": safe_text(row.model),
        "ResourceName": safe_text(row.model),
        "ResourceType": _RESOURCE_TYPE.get(row.kind, row.kind),
        "Tags": json.dumps(tags, sort_keys=True, separators=(",", ":")),
        "x_SpendwatchCategory": row.category,
        "x_Team": safe_text(row.team),
        "x_Feature": safe_text(row.feature),
        "x_Tier": row.tier,
        "x_Requests": row.requests,
        "x_InputTokens": row.input_tokens,
        "x_OutputTokens": row.output_tokens,
        "x_CachedInputTokens": row.cached_input_tokens,
        "x_Retries": row.retries,
        "x_Errors": row.errors,
        "x_UnpricedEvents": row.unpriced,
        "x_GpuHours": round(row.gpu_hours, 10),
        "x_GpuUtilization": round(row.gpu_busy_hours / row.gpu_hours, 6) if row.gpu_hours else "",
        "x_IdleGpuCost": round(row.idle_gpu_usd, 10),
    }


def focus_rows(rows: Iterable[RollupRow], prices: PriceTable) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield focus_row(row, prices)


def write_focus_csv(store: HistoryStore, start: float, end: float, out: TextIO, prices: PriceTable) -> int:
    """Write the rollups of the hours in [start, end) to ``out`` as FOCUS CSV; return the rows written."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in focus_rows(store.rollups(start, end), prices):
        writer.writerow(row)
        count += 1
    return count
