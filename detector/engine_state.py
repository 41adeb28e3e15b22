"""The engine's state as plain data, per feature: what a faust table keeps, never pickled.

A feature's state holds its members' sums, profiles and monitors, its rate
and tier-mix monitors and its open incident (the record, which monitor
raised it, what merged into it). Monitors are saved with their rule id and
restored onto the monitors the *current* rules give the series, by id: a
rule removed since is dropped, a rule added starts learning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detector.anomaly import Anomaly
from detector.llm_series import FeatureSeries, Incident, ModelSeries
from detector.monitor import Monitor

STATE_VERSION = 1


def export_features(features: list[FeatureSeries]) -> list[dict[str, Any]]:
    """JSON-safe state of each feature and its members."""
    return [_export_feature(f) for f in features]


def _export_feature(f: FeatureSeries) -> dict[str, Any]:
    state: dict[str, Any] = {
        "v": STATE_VERSION, "key": list(f.key), "minute": f.minute, "n": f.n, "cost": f.cost,
        "tiers": dict(f.tiers), "rates": [m.to_state() for m in f.rates],
        "tier_mix": {tier: [m.to_state() for m in ms] for tier, ms in f.tier_mix.items()},
        "members": [s.to_state() for s in f.members.values()], "incident": None, "last_resolved": f.last_resolved,
    }
    inc = f.incident
    if inc is not None:
        state["incident"] = {"record": inc.record.to_dict(), "where": _locate(f, inc.monitor), **inc.to_state()}
    return state


def _locate(f: FeatureSeries, mon: Monitor) -> list[Any]:
    """Where a monitor sits in its feature, as data: ("rate", i), ("tier", tier, i) or ("model", model, i)."""
    for i, m in enumerate(f.rates):
        if m is mon:
            return ["rate", i]
    for tier, ms in f.tier_mix.items():
        for i, m in enumerate(ms):
            if m is mon:
                return ["tier", tier, i]
    for model, s in f.members.items():
        for i, m in enumerate(s.monitors()):
            if m is mon:
                return ["model", model, i]
    raise ValueError(f"monitor {mon.rule_id} is not part of feature {f.key}")


def import_features(
    states: list[dict[str, Any]], new_monitors: Callable[[ModelSeries | FeatureSeries], None]
) -> list[FeatureSeries]:
    """Rebuild features from :func:`export_features` output; ``new_monitors`` gives a series its current rules."""
    out = []
    for state in states:
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"feature state version {state.get('v')!r}; this engine reads {STATE_VERSION}")
        out.append(_import_feature(state, new_monitors))
    return out


def _import_feature(state: dict[str, Any], new_monitors: Callable[[ModelSeries | FeatureSeries], None]) -> FeatureSeries:
    f = FeatureSeries((state["key"][0], state["key"][1]), int(state["minute"]))
    f.n, f.cost, f.tiers = int(state["n"]), float(state["cost"]), dict(state["tiers"])
    f.last_resolved = float(state["last_resolved"])
    for member in state["members"]:
        key = tuple(member["key"])
        s = ModelSeries(key, member["tier"], float(member["first_ts"]), member["category"])
        s.restore(member)
        new_monitors(s)
        _restore(s.monitors(), member["monitors"])
        f.members[key[-1]] = s
    new_monitors(f)  # after the members: a pricier member gets its share-of-requests monitor
    _restore(f.rates, state["rates"])
    for model, saved in state["tier_mix"].items():
        _restore(f.tier_mix.get(model, []), saved)
    inc = state["incident"]
    if inc is not None:
        mon, series = _find(f, inc["where"])
        if mon is not None:
            record = Anomaly(**inc["record"])
            f.incident = Incident(record, mon, series)
            f.incident.restore(inc)
    return f


def _restore(monitors: list[Monitor], saved: list[dict[str, Any]]) -> None:
    by_rule = {s["rule"]: s for s in saved}
    for mon in monitors:
        state = by_rule.get(mon.rule_id)
        if state is not None:
            mon.restore(state)


def _find(f: FeatureSeries, where: list[Any]) -> tuple[Monitor | None, ModelSeries | None]:
    kind = where[0]
    try:
        if kind == "rate":
            return f.rates[where[1]], None
        if kind == "tier":
            return f.tier_mix[where[1]][where[2]], None
        s = f.members[where[1]]
        return s.monitors()[where[2]], s
    except (IndexError, KeyError):
        return None, None  # the rule that raised it is gone: the incident ends with it
