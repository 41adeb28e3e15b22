"""The engine's state as plain data, per feature: what a faust table keeps, never pickled.

A feature's state holds its members' sums, profiles and monitors, its rate
and tier-mix monitors and its open incident (the record, which monitor
raised it, what merged into it). Monitors are saved with their rule id and
restored onto the monitors the *current* rules give the series, by id: a
rule removed since is dropped, a rule added starts learning.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from detector.anomaly import Anomaly
from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.llm_series import FeatureSeries, Incident, ModelSeries
from detector.monitor import Monitor, monitor_state
from detector.packed_monitors import PackedMonitor
from detector.rules.ruleset import RuleSet

STATE_VERSION = 1
SAMPLE_METRICS = frozenset({"gpu_utilization"})


def group_key(ev: Event, by_feature: bool = True) -> str:
    """The partition key of an event: series judged together share it and live on one worker.

    An LLM request's key is its (team, feature), everything its feature's
    incident and rates need; with ``by_feature`` off, its team (when a rule
    adds up a whole team's requests). A GPU sample's is its node, a usage
    sample's its metric and team.

    >>> ev = LlmRequest(ts=0, model="m", input_tokens=1, output_tokens=1, team="search", feature="a/b")
    >>> group_key(ev), group_key(ev, by_feature=False)
    ('llm:search/a%2Fb', 'llm:search')
    """
    if type(ev) is LlmRequest:
        return llm_group(ev.team, ev.feature, by_feature)
    if type(ev) is GpuSample:
        return f"gpu:{ev.cluster or ''}/{ev.node or ''}"
    if type(ev) is UsageSample:
        return f"usage:{ev.metric}:{ev.team or ''}"
    raise TypeError(f"not an event: {type(ev).__name__}")


@lru_cache(maxsize=1 << 16)
def llm_group(team: str | None, feature: str | None, by_feature: bool) -> str:
    """The partition key of a (team, feature); names are %-quoted, so a "/" in one cannot fake another's key.

    Asked for every request a worker decodes (and every feature a batch
    touched), of a few thousand names: quoting them each time cost about 4 %
    of a batched worker's time.
    """
    if not by_feature:
        return f"llm:{quote(team or '', safe='')}"
    return f"llm:{quote(team or '', safe='')}/{quote(feature or '', safe='')}"


def feature_of_group(key: str) -> tuple[str, str] | None:
    """The (team, feature) names a feature-level key stands for; None for a team-level or other key.

    >>> feature_of_group("llm:search/a%2Fb"), feature_of_group("llm:search")
    (('search', 'a/b'), None)
    """
    if not key.startswith("llm:") or "/" not in key:
        return None
    team, feature = key[4:].split("/", 1)
    return unquote(team), unquote(feature)


def groups_by_feature(rules: RuleSet | None) -> bool:
    """Can LLM series be grouped per feature, or does some rule add up more than one feature?

    Anomaly rules judge one series or one feature. A threshold or budget rule
    on LLM metrics whose ``by`` leaves out ``feature`` sums a team's (or
    everyone's) requests, so those must meet on one worker: the key is then
    the team.
    """
    if rules is None:
        return True
    for rule in rules.rules:
        expr = rule.expr
        if not rule.enabled or expr.anomaly is not None:
            continue
        if expr.metric in SAMPLE_METRICS or expr.metric.startswith("usage:"):
            continue
        if "feature" not in expr.by:
            return False
    return True


def export_features(features: list[FeatureSeries]) -> list[dict[str, Any]]:
    """JSON-safe state of each feature and its members."""
    return [_export_feature(f) for f in features]


def _export_feature(f: FeatureSeries) -> dict[str, Any]:
    state: dict[str, Any] = {
        "v": STATE_VERSION, "key": list(f.key), "minute": f.minute, "n": f.n, "cost": f.cost,
        "tiers": dict(f.tiers), "rates": [monitor_state(m) for m in f.rates],
        "tier_mix": {tier: [monitor_state(m) for m in ms] for tier, ms in f.tier_mix.items()},
        "members": [s.to_state() for s in f.members.values()], "incident": None, "last_resolved": f.last_resolved,
    }
    inc = f.incident
    if inc is not None:
        state["incident"] = {"record": inc.record.to_dict(), "where": _locate(f, inc.monitor), **inc.to_state()}
    return state


def _locate(f: FeatureSeries, mon: Monitor) -> list[Any]:
    """Where a monitor sits in its feature, as data: ("rate", i), ("tier", tier, i) or ("model", model, i)."""
    for i, m in enumerate(f.rates):
        if m == mon:
            return ["rate", i]
    for tier, ms in f.tier_mix.items():
        for i, m in enumerate(ms):
            if m == mon:
                return ["tier", tier, i]
    for model, s in f.members.items():
        for i, m in enumerate(s.monitors()):
            if m == mon:
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
        s = ModelSeries(key, member["tier"], float(member["first_ts"]), member["category"], f)
        s.restore(member)
        new_monitors(s)
        _restore_packed(s.monitors(), member["monitors"])
        f.members[key[-1]] = s
    new_monitors(f)  # its rate monitors (a pricier member's share of its requests is the member's)
    _restore_packed(f.rates, state["rates"])
    for model, saved in state["tier_mix"].items():
        if model in f.members:
            _restore_packed(f.members[model].tier_mix, saved)
    inc = state["incident"]
    if inc is not None:
        mon, series = _find(f, inc["where"])
        if mon is not None:
            record = Anomaly(**inc["record"])
            f.incident = Incident(record, mon, series)
            f.incident.restore(inc)
    return f


def _restore_packed(monitors: tuple[PackedMonitor, ...], saved: list[dict[str, Any]]) -> None:
    """Give each monitor of the rules in force its saved state, where one was saved under its rule."""
    by_rule = {s["rule"]: s for s in saved}
    for mon in monitors:
        state = by_rule.get(mon.rule_id)
        if state is not None:
            mon.restore(dict(state["model"]))
            mon.paged, mon.held_since = bool(state["paged"]), float(state["held"])


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
