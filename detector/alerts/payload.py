"""A group's notification as Alertmanager's webhook JSON (version 4).

Receivers built for Alertmanager (PagerDuty and Opsgenie integrations,
in-house bridges) read this shape, so they take spendwatch's alerts as they
are. The alert's labels are its routing labels; its annotations carry the
sentence and the dollars, as strings like every annotation: ``summary``,
``runbook_url``, ``observed``, ``baseline``, ``excess_usd_per_hour``,
``projected_month_usd``. ``endsAt`` is Alertmanager's zero time while an
alert fires. The fingerprint is spendwatch's alert identity (rule and series
labels), stable across flapping.
"""

from __future__ import annotations

import json
from typing import Any

from detector.alerts.grouping import Batch
from detector.alerts.lifecycle import FIRING, Alert
from detector.anomaly import rfc3339

ZERO_TIME = "0001-01-01T00:00:00Z"


def annotations(alert: Alert) -> dict[str, str]:
    """What a person reads about one alert, as Alertmanager annotations (strings)."""
    record = alert.resolved_record if alert.state != FIRING and alert.resolved_record else alert.record
    out = {
        "summary": str(record.get("summary") or ""),
        "observed": f"{float(record['observed']):g}",
        "baseline": f"{float(record['baseline']):g}",
        "excess_usd_per_hour": f"{float(alert.record['excess_cost_usd_per_hour']):.2f}",
    }
    if record.get("runbook"):
        out["runbook_url"] = str(record["runbook"])
    if alert.record.get("projected_month_usd") is not None:
        out["projected_month_usd"] = f"{float(alert.record['projected_month_usd']):.2f}"
    if alert.record.get("drivers"):
        out["drivers"] = json.dumps(alert.record["drivers"], sort_keys=True)
    return out


def alert_json(alert: Alert, generator_url: str) -> dict[str, Any]:
    firing = alert.state == FIRING
    return {
        "status": "firing" if firing else "resolved",
        "labels": dict(sorted(alert.labels.items())),
        "annotations": annotations(alert),
        "startsAt": alert.record["started_at"],
        "endsAt": ZERO_TIME if firing or alert.ended_at is None else rfc3339(alert.ended_at),
        "generatorURL": generator_url,
        "fingerprint": alert.fingerprint,
    }


def alertmanager_payload(batch: Batch, *, external_url: str = "", max_alerts: int = 0) -> dict[str, Any]:
    """The JSON body for one batch; ``max_alerts`` > 0 truncates the list as Alertmanager does.

    >>> from detector.alerts.lifecycle import Lifecycle, event_time
    >>> from detector.alerts.grouping import Grouper
    >>> from detector.alerts.routing import default_routing
    >>> from detector.notify.render import _example
    >>> life, grouper = Lifecycle(), Grouper(default_routing())
    >>> life.push(_example()); grouper.add(life.advance(event_time(_example().detected_at)))
    >>> [batch] = grouper.flush(event_time(_example().detected_at), lambda a, t: False)
    >>> body = alertmanager_payload(batch)
    >>> body["version"], body["status"], body["groupLabels"], body["alerts"][0]["endsAt"]
    ('4', 'firing', {'rule': 'search.prompt-length'}, '0001-01-01T00:00:00Z')
    """
    alerts = [alert_json(a, external_url) for a in batch.alerts]
    shown = alerts[:max_alerts] if max_alerts > 0 else alerts
    return {
        "version": "4",
        "groupKey": batch.group_key,
        "truncatedAlerts": len(alerts) - len(shown),
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": batch.receiver.name,
        "groupLabels": dict(sorted(batch.group_labels.items())),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": shown,
    }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has, with the same value.

    >>> _common([{"a": "1", "b": "2"}, {"a": "1", "b": "3"}])
    {'a': '1'}
    """
    if not maps:
        return {}
    first, rest = maps[0], maps[1:]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in rest)}
