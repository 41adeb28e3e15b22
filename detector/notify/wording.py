"""How an alert words its facts: values with units, times, durations, the silence command.

These are plain strings, apart from Slack's blocks, so a message, its
notification fallback and a thread reply say a value or a time the same way,
and each wording is tested on its own. :mod:`detector.notify.render` puts
them into Block Kit; :mod:`detector.notify.escape` makes user strings safe.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from detector.anomaly import describe_ratio, money
from detector.notify.escape import escape_mrkdwn

# metric → (unit written after the number, how the number is written)
_UNITS: dict[str, tuple[str, str]] = {
    "input_tokens_per_request": ("tokens/request", "count"),
    "output_tokens_per_request": ("tokens/request", "count"),
    "cost_per_request": (" per request", "usd"),
    "request_rate": ("requests/minute", "count"),
    "spend_rate": (" per hour", "usd"),
    "tier_mix": ("of requests on the premium tier", "share"),
    "retry_rate": ("of requests retried", "share"),
    "error_rate": ("of requests failed", "share"),
    "cache_hit_rate": ("of input tokens from the prompt cache", "share"),
    "gpu_utilization": ("GPU utilisation", "share"),
}


def silence_command(rule: str, labels: Mapping[str, str], duration: str = "2h") -> str:
    """The exact command that silences this alert (its rule and series labels), ready to paste.

    Every matcher is quoted for a POSIX shell, so a label value holding a
    quote or ``$(...)`` is passed as text.

    >>> print(silence_command("search.prompt-length", {"team": "search", "feature": "it's"}))
    spendwatch silence add --matcher 'rule="search.prompt-length"' --matcher 'feature="it'"'"'s"' --matcher 'team="search"' --for 2h --comment "why"
    """
    matchers = [f"rule={_quoted(rule)}", *(f"{k}={_quoted(labels[k])}" for k in sorted(labels))]
    parts = " ".join(f"--matcher {shlex.quote(m)}" for m in matchers)
    return f'spendwatch silence add {parts} --for {duration} --comment "why"'


def _quoted(value: str) -> str:
    """A matcher value in double quotes, escaped as the matcher syntax reads it."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def what_changed(record: Mapping[str, Any]) -> str:
    """"input tokens per request doubled", unescaped: callers escape for where it goes.

    >>> what_changed({"metric": "input_tokens_per_request", "ratio": 2.0})
    'input tokens per request doubled'
    """
    metric = str(record["metric"])
    name = metric.replace("_", " ") if metric in _UNITS else metric
    return f"{name} {describe_ratio(float(record['ratio']))}"


def format_value(metric: str, value: float) -> str:
    """A metric's value with its unit written out (escaped: usage metrics are user names).

    >>> format_value("input_tokens_per_request", 3400), format_value("spend_rate", 41.2)
    ('3,400 tokens/request', '$41 per hour')
    >>> format_value("cache_hit_rate", 0.125), format_value("vector_db_usd", 12.5)
    ('12.5% of input tokens from the prompt cache', '12.5 vector_db_usd')
    """
    unit, kind = _UNITS.get(metric, (escape_mrkdwn(metric), "count"))
    if kind == "usd":
        return f"{money(value)}{unit}"
    if kind == "share":
        return f"{value * 100:.1f}% {unit}"
    number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{number} {unit}"


def utc_text(rfc3339_text: str) -> str:
    """RFC 3339 as a person reads it: ``2025-11-16 14:05 UTC``.

    >>> utc_text("2025-11-16T14:05:00Z")
    '2025-11-16 14:05 UTC'
    """
    return parse_rfc3339(rfc3339_text).strftime("%Y-%m-%d %H:%M UTC")


def duration_text(seconds: float) -> str:
    """How long something lasted, to the minute.

    >>> duration_text(720), duration_text(5700), duration_text(2 * 86400 + 3 * 3600)
    ('12 min', '1h 35m', '2d 3h')
    """
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{minutes // 1440}d {minutes % 1440 // 60}h"


def parse_rfc3339(text: str) -> datetime:
    """A record's time stamp as a datetime; a non-string is a TypeError, not a silent pass.

    >>> parse_rfc3339("2025-11-16T14:05:00Z").hour
    14
    """
    if not isinstance(text, str):
        raise TypeError(f"expected an RFC 3339 string, found {type(text).__name__}")
    return datetime.fromisoformat(text)
