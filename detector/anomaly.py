"""The anomaly record (DESIGN.md, Contract 3) and how it is worded.

One record is written when an anomaly fires and one when it resolves, with the
same ``id``. The id is derived from the rule, the labels and the onset only,
so replaying a file and running the live stream give the same ids, and a sink
can drop a record it has already seen.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")


def rfc3339(ts: float) -> str:
    """Event time as RFC 3339 UTC with second precision.

    >>> rfc3339(1763301900.4)
    '2025-11-16T14:05:00Z'
    """
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anomaly_id(rule: str, labels: dict[str, str], started_at: str) -> str:
    """Stable identity: the same rule, labels and onset always give the same id.

    >>> anomaly_id("r", {"team": "a"}, "2026-11-16T14:05:00Z") == anomaly_id("r", {"team": "a"}, "2026-11-16T14:05:00Z")
    True
    """
    key = "\x1f".join([rule, *(f"{k}={labels[k]}" for k in sorted(labels)), started_at])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly record: the fields of Contract 3, then two of spendwatch's own.

    ``drivers`` splits the excess dollars per hour of a spend change into its
    causes (``volume``, ``input_tokens``, ``output_tokens``, ``tier_mix``,
    ``retries``, ``cache``), so the page says where to look; ``related``
    names the other metrics and series the same cause moved, which were
    merged into this record instead of paging on their own.
    ``excess_total_usd``, on a resolved record, is what the anomaly's own
    cause cost above normal over its whole life, measured (longer prompts,
    retries, lost cache hits, a pricier mix, extra requests); null where
    there is no such measure, and the total is then the excess at detection
    times the duration, an estimate.
    """

    id: str
    rule: str
    metric: str
    labels: dict[str, str]
    severity: str
    status: str
    started_at: str
    detected_at: str
    resolved_at: str | None
    observed: float
    baseline: float
    ratio: float
    excess_cost_usd_per_hour: float
    projected_month_usd: float | None
    summary: str
    runbook: str | None = None
    drivers: dict[str, float] | None = None
    related: list[str] | None = None
    excess_total_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolve(self, resolved_at: str, summary: str, **changes: Any) -> Anomaly:
        """The matching ``resolved`` record: same id, onset and detection time."""
        return replace(self, status="resolved", resolved_at=resolved_at, summary=summary, **changes)


def severity_for(excess_usd_per_hour: float, critical: float, warning: float) -> str:
    """Severity from money: statistics decide *whether*, dollars decide *how loud*.

    >>> severity_for(50, critical=10, warning=1), severity_for(2, 10, 1), severity_for(-30, 10, 1)
    ('critical', 'warning', 'info')
    """
    if excess_usd_per_hour >= critical:
        return "critical"
    if excess_usd_per_hour >= warning:
        return "warning"
    return "info"


def describe_ratio(ratio: float) -> str:
    """Plain words for a change, the way a person would say it.

    >>> describe_ratio(2.04), describe_ratio(1.6), describe_ratio(0.4)
    ('doubled', 'grew 1.6×', 'fell to 0.40×')
    """
    if 1.9 <= ratio < 2.1:
        return "doubled"
    if 2.85 <= ratio < 3.15:
        return "tripled"
    if ratio >= 1:
        return f"grew {ratio:.1f}×"
    if 0.475 <= ratio < 0.525:
        return "halved"
    return f"fell to {ratio:.2f}×"


def money(usd: float) -> str:
    """Dollars at a precision a person reads at a glance.

    >>> money(41.234), money(29812.5), money(0.0312), money(-3.5)
    ('$41', '$29,812', '$0.03', '-$3.50')
    """
    sign = "-" if usd < 0 else ""
    usd = abs(usd)
    if usd >= 20:
        return f"{sign}${usd:,.0f}"
    return f"{sign}${usd:,.2f}"


CAUSE_WORDS: dict[str, tuple[str, str]] = {
    # The causes of a spend change (the keys of Anomaly.drivers), as a person says them after
    # "+$30/h", and where they saved money: "-$0.08/h fewer requests", not "more requests".
    # One vocabulary for the summary line, the Slack card and the digest.
    "volume": ("more requests", "fewer requests"),
    "input_tokens": ("longer prompts", "shorter prompts"),
    "output_tokens": ("longer answers", "shorter answers"),
    "tier_mix": ("pricier model mix", "cheaper model mix"),
    "retries": ("retries", "fewer retries"),
    "cache": ("fewer cache hits", "more cache hits"),
    "other": ("other", "other"),
}


def cause_part(cause: str, usd_per_hour: float) -> str:
    """One cause of a spend change with its dollars an hour, in the words of its direction.

    >>> cause_part("input_tokens", 30.2), cause_part("volume", -0.08), cause_part("gpu_hours", 2.0)
    ('+$30/h longer prompts', '-$0.08/h fewer requests', '+$2.00/h gpu hours')
    """
    up, down = CAUSE_WORDS.get(cause) or (cause.replace("_", " "),) * 2
    return f"{'+' if usd_per_hour >= 0 else ''}{money(usd_per_hour)}/h {up if usd_per_hour >= 0 else down}"


def vs_normal(usd: float, unit: str = "", *, spent: bool = False) -> str:
    """Dollars against normal with the sign in words: a fall reads "$0.32/h below normal", not "-$0.32/h below".

    >>> vs_normal(41.2, "/h"), vs_normal(-0.318, "/h"), vs_normal(-2.2, spent=True)
    ('$41/h above normal', '$0.32/h below normal', '$2.20 spent below normal')
    """
    return f"{money(abs(usd))}{unit}{' spent' if spent else ''} {'above' if usd >= 0 else 'below'} normal"


def where(labels: dict[str, str]) -> str:
    """``team/feature on model``, leaving out what is unknown.

    >>> where({"team": "search", "feature": "summarize", "model": "gpt-4o"})
    'search/summarize on gpt-4o'
    """
    scope = "/".join(labels[k] for k in ("team", "feature") if labels.get(k))
    model = labels.get("model")
    if scope and model:
        return f"{scope} on {model}"
    return scope or model or "all traffic"


def duration_words(seconds: float) -> str:
    """How long something lasted, the way an alert says it.

    >>> duration_words(2520), duration_words(14760)
    ('42 min', '4h 06m')
    """
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60}h {minutes % 60:02d}m"
