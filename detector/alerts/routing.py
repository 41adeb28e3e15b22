"""Where an alert goes: Alertmanager's route tree, receivers and timers, as loaded values.

An alert's labels walk the tree from the root: a child route whose matchers
all select the labels takes the alert; unless that child says ``continue:
true`` the walk stops at the first one that does; a route none of whose
children take the alert is where it lands. Children inherit ``receiver``,
``group_by`` and the three timers from their parent unless they set them.

The timers, on one timeline per group of alerts (see
:mod:`detector.alerts.grouping`): the first notification waits ``group_wait``
after the group's first alert fires (so alerts that fire together arrive
together); after that the group is looked at every ``group_interval`` and
sends what changed; an alert still firing is sent again ``repeat_interval``
after it was last sent. ``repeat_interval`` shorter than ``group_interval``
would be silently rounded up to it, so the loader refuses it.

:func:`default_routing` is what applies with no routing file: everything to
the default Slack channel (``SPENDWATCH_SLACK_CHANNEL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from detector.alerts.matchers import matches_all
from detector.rules.matchers import Matcher

GROUP_WAIT_S = 30.0
GROUP_INTERVAL_S = 300.0
REPEAT_INTERVAL_S = 4 * 3600.0
GROUP_BY: tuple[str, ...] = ("rule",)
DEFAULT_RECEIVER = "default"


@dataclass(frozen=True, slots=True)
class SlackTarget:
    """A Slack channel; None means the default channel of the settings."""

    channel: str | None = None
    send_resolved: bool = True


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A generic webhook that takes Alertmanager's JSON payload."""

    url: str
    send_resolved: bool = True
    max_alerts: int = 0  # 0: all alerts of the group in one payload


@dataclass(frozen=True, slots=True)
class Receiver:
    """A named set of destinations; a route names one."""

    name: str
    slack: tuple[SlackTarget, ...] = ()
    webhooks: tuple[WebhookTarget, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the route tree, its inherited settings already resolved.

    ``path`` ("0", "0.1", …) names the node; groups key on it, so reordering
    routes starts new groups. ``group_by`` None means every label (``['...']``).

    >>> from detector.alerts.matchers import parse_label_matcher as m
    >>> search = Route("0.0", "search", (m('team="search"'),))
    >>> root = Route("0", "default", routes=(search,))
    >>> [r.receiver for r in root.match({"team": "search"})], [r.receiver for r in root.match({"team": "ads"})]
    (['search'], ['default'])
    """

    path: str
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = GROUP_BY
    group_wait_s: float = GROUP_WAIT_S
    group_interval_s: float = GROUP_INTERVAL_S
    repeat_interval_s: float = REPEAT_INTERVAL_S
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` lands on (the root takes everything)."""
        if not matches_all(self.matchers, dict(labels)):
            return []
        found: list[Route] = []
        for child in self.routes:
            taken = child.match(labels)
            found += taken
            if taken and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that name an alert's group on this route (absent ones left out)."""
        if self.group_by is None:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """While a source alert fires, target alerts with the same ``equal`` labels are not sent.

    Unlike Alertmanager, a label in ``equal`` that is missing on either side
    never inhibits: two alerts that both lack ``team`` are not "the same team".

    >>> from detector.alerts.matchers import parse_label_matcher as m
    >>> rule = InhibitRule((m('rule="team-budget"'),), (m('rule="feature-spend"'),), ("team",))
    >>> src = {"rule": "team-budget", "team": "search"}
    >>> rule.inhibits(src, {"rule": "feature-spend", "team": "search"}), rule.inhibits(src, {"rule": "feature-spend"})
    (True, False)
    """

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def inhibits(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        if not (matches_all(self.source, dict(source)) and matches_all(self.target, dict(target))):
            return False
        return all(k in source and k in target and source[k] == target[k] for k in self.equal)


@dataclass(frozen=True, slots=True)
class Routing:
    """A loaded routing file: the tree, the receivers by name, the inhibition rules."""

    route: Route
    receivers: Mapping[str, Receiver]
    inhibit_rules: tuple[InhibitRule, ...] = ()
    source: str = "<default>"

    def routes_for(self, labels: Mapping[str, str]) -> list[tuple[Route, Receiver]]:
        return [(r, self.receivers[r.receiver]) for r in self.route.match(labels)]


def default_routing() -> Routing:
    """Everything to the default Slack channel, with the default timers.

    >>> [r.receiver for r, _ in default_routing().routes_for({"team": "x"})]
    ['default']
    """
    receiver = Receiver(DEFAULT_RECEIVER, slack=(SlackTarget(None),))
    return Routing(Route("0", DEFAULT_RECEIVER), {DEFAULT_RECEIVER: receiver})
