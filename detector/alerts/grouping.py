"""Groups of alerts and when each is sent: Alertmanager's timers on one event-time timeline.

An alert that fires joins one group per route it lands on; the group is named
by the route, the receiver and the alert's values of the route's ``group_by``
labels. Per group, in event time::

    first alert fires at t ─► first look at t + group_wait
                              then a look every group_interval after the last one

At each look the group sends, per alert: the page if it was never sent (and
is not muted), a reminder if it was last sent ``repeat_interval`` ago or
more, the resolved notice if its resolution was announced since the last
look and it had been sent. A muted alert (silenced or inhibited at that
moment) is not sent and not marked sent, so when the silence ends while it
still fires, the next look sends it. The resolved notice is sent even for a
muted alert whose page went out: a thread that was opened gets closed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from detector.alerts.lifecycle import FIRING, RESOLVED, Alert, Transition, snapshot
from detector.alerts.routing import Receiver, Route, Routing

PAGE, REMINDER = "firing", "reminder"
Muted = Callable[[Alert, float], bool]  # (alert, event time) → held back?


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert's part of a group's notification: ``kind`` is firing, reminder or resolved.

    ``number`` counts this alert's notices in its group (0 for the page), so a
    sink can key each one and drop a repeat of it.
    """

    kind: str
    alert: Alert
    number: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one look at one group sends to its receiver."""

    receiver: Receiver
    route: Route
    group_key: str
    group_labels: dict[str, str]
    notices: tuple[Notice, ...]
    alerts: tuple[Alert, ...]  # every alert the notification covers: firing ones, then the resolved
    at: float
    seq: int  # this group's notification count, from 0


@dataclass(slots=True)
class _Member:
    alert: Alert
    fired_at: float
    sent_at: float | None = None
    notices: int = 0
    resolved_at: float | None = None  # event time its resolution was announced
    looked: bool = False  # a look saw it firing (and paged it, unless it was muted)


@dataclass(slots=True)
class _Group:
    key: str
    route: Route
    receiver: Receiver
    labels: dict[str, str]
    next_look: float
    members: dict[str, _Member] = field(default_factory=dict)  # fingerprint → member
    seq: int = 0


class Grouper:
    """Alerts into groups, and groups into batches when their timers say so.

    >>> from detector.alerts.lifecycle import Lifecycle, event_time
    >>> from detector.alerts.routing import default_routing
    >>> from detector.notify.render import _example
    >>> life, grouper = Lifecycle(), Grouper(default_routing())
    >>> a = _example(); t = event_time(a.detected_at)
    >>> life.push(a); grouper.add(life.advance(t))
    >>> never = lambda alert, at: False
    >>> grouper.look(t + 29, never), [n.kind for b in grouper.look(t + 30, never) for n in b.notices]
    ([], ['firing'])
    """

    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self.groups: dict[str, _Group] = {}
        self._by_alert: dict[str, list[str]] = {}  # fingerprint → keys of its groups

    def add(self, transitions: list[Transition]) -> None:
        """Take what the lifecycle says fired or was resolved."""
        for t in transitions:
            if t.kind == FIRING:
                self._join(t.alert, t.at)
            elif t.kind == RESOLVED:
                for key in self._by_alert.pop(t.alert.fingerprint, []):
                    member = self.groups[key].members.get(t.alert.fingerprint)
                    if member is not None:
                        member.resolved_at, member.alert = t.at, t.alert

    def _join(self, alert: Alert, at: float) -> None:
        keys = []
        for route, receiver in self.routing.routes_for(alert.labels):
            labels = route.group_labels(alert.labels)
            key = f"{route.path}|{receiver.name}|{json.dumps(labels, sort_keys=True)}"
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = _Group(key, route, receiver, labels, at + route.group_wait_s)
            group.members[alert.fingerprint] = _Member(alert, at)
            keys.append(key)
        self._by_alert[alert.fingerprint] = keys

    def look(self, now: float, muted: Muted) -> list[Batch]:
        """Every look due by ``now``, in time order, each at its own event time."""
        out = []
        while True:
            due = [g for g in self.groups.values() if g.next_look <= now]
            if not due:
                return sorted(out, key=lambda b: b.at)
            for group in due:
                batch = self._look_at(group, group.next_look, muted)
                if batch is not None:
                    out.append(batch)

    def flush(self, now: float, muted: Muted) -> list[Batch]:
        """Look at every group at ``now`` regardless of its timers (the end of a replay)."""
        batches = [b for g in list(self.groups.values()) if (b := self._look_at(g, now, muted)) is not None]
        return batches

    def _look_at(self, group: _Group, at: float, muted: Muted) -> Batch | None:
        notices, covered = [], []
        for fp, member in list(group.members.items()):
            alert = member.alert
            # The clock can run past an alert's firing and its end before its group looks (a sink
            # reads usage faster than the workers produce a backlog's anomalies), so what a look
            # says of an alert is decided by event times, not by what is known when it runs.
            if member.resolved_at is not None and member.resolved_at <= at:
                del group.members[fp]
                if member.sent_at is None:
                    if member.looked or member.resolved_at - member.fired_at < group.route.group_wait_s \
                            or muted(_still_firing(alert), at):
                        continue  # muted all along, or over before its group would have told anyone
                    # It fired long enough to page, but no look saw it: its anomalies came late.
                    notices.append(Notice(PAGE, snapshot(_still_firing(alert)), member.notices))
                    member.notices += 1
                notices.append(Notice(RESOLVED, snapshot(alert), member.notices))
                covered.append(snapshot(alert))
                continue
            if member.resolved_at is not None:  # resolved after this look's event time: then, it fired
                alert = _still_firing(alert)
            member.looked = True
            if muted(alert, at):
                continue
            covered.append(snapshot(alert))
            due_reminder = member.sent_at is not None and at - member.sent_at >= group.route.repeat_interval_s \
                and member.resolved_at is None  # no "still firing" for what is known to be over
            if member.sent_at is None or due_reminder:
                notices.append(Notice(PAGE if member.sent_at is None else REMINDER, covered[-1], member.notices))
                member.sent_at, member.notices = at, member.notices + 1
        group.next_look = at + group.route.group_interval_s
        if not group.members:
            del self.groups[group.key]
        if not notices:
            return None
        batch = Batch(group.receiver, group.route, group.key, dict(group.labels), tuple(notices),
                      tuple(sorted(covered, key=lambda a: a.state != FIRING)), at, group.seq)
        group.seq += 1
        return batch


def _still_firing(alert: Alert) -> Alert:
    """The alert as it was while it fired (for a page that goes out after its end became known)."""
    return replace(alert, state=FIRING, quiet_until=None, ended_at=None, resolved_record=None)
