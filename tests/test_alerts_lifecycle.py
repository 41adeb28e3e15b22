"""The alert lifecycle and grouping state machines: examples, then properties (hypothesis).

Everything here is pure and in event time: no server, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from detector.alerts.grouping import PAGE, REMINDER, Batch
from detector.alerts.lifecycle import Lifecycle, fingerprint
from detector.alerts.matchers import parse_label_matcher as m
from detector.alerts.pipeline import AlertPipeline
from detector.alerts.routing import InhibitRule, Receiver, Route, Routing, SlackTarget
from detector.alerts.silences import Silence
from detector.anomaly import Anomaly, anomaly_id, rfc3339

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC).timestamp()
RULE = "search.prompt-length"


def firing(t: float, feature: str = "summarize", *, onset: float | None = None, team: str = "search",
           severity: str = "critical", rule: str = RULE) -> Anomaly:
    labels = {"team": team, "feature": feature, "model": "gpt-4o"}
    started = rfc3339(onset if onset is not None else t - 120)
    return Anomaly(
        id=anomaly_id(rule, labels, started), rule=rule, metric="input_tokens_per_request", labels=labels,
        severity=severity, status="firing", started_at=started, detected_at=rfc3339(t), resolved_at=None,
        observed=3400.0, baseline=1700.0, ratio=2.0, excess_cost_usd_per_hour=41.0, projected_month_usd=29800.0,
        summary=f"prompts for {feature} doubled",
    )


def resolved(a: Anomaly, t: float) -> Anomaly:
    return a.resolve(rfc3339(t), "back to normal")


@dataclass
class Recorder:
    """A sink that keeps every batch: the tests read what would have been sent."""

    batches: list[Batch] = field(default_factory=list)

    def send(self, batch: Batch) -> None:
        self.batches.append(batch)

    def deliver_pending(self, now: float | None = None) -> None:
        return None

    def notices(self) -> list[tuple[float, str, str]]:
        """(time, kind, episode) of every notice, in order."""
        return [(b.at, n.kind, n.alert.episode) for b in self.batches for n in b.notices]


def routing(wait: float = 30, interval: float = 300, repeat: float = 3600, group_by=("rule",),
            inhibit: tuple[InhibitRule, ...] = ()) -> Routing:
    route = Route("0", "oncall", group_by=group_by, group_wait_s=wait, group_interval_s=interval,
                  repeat_interval_s=repeat)
    return Routing(route, {"oncall": Receiver("oncall", slack=(SlackTarget(None),))}, inhibit)


def pipeline(route: Routing, *, for_s: float = 0, keep_s: float = 0, flap_s: float = 600) -> tuple[AlertPipeline, Recorder]:
    sink = Recorder()
    life = Lifecycle(timing=lambda a: (for_s, keep_s), flap_window_s=flap_s)
    return AlertPipeline(route, {"oncall": [sink]}, lifecycle=life), sink


# -- examples ------------------------------------------------------------------------
def test_an_anomaly_that_clears_before_for_never_notifies_and_one_that_holds_does():
    p, sink = pipeline(routing(wait=0), for_s=300)
    short = firing(T0, "short")
    p.push(short)
    p.advance(T0 + 200)
    p.push(resolved(short, T0 + 250))
    p.advance(T0 + 5000)
    assert sink.notices() == []
    held = firing(T0 + 6000, "held")
    p.push(held)
    p.advance(T0 + 6299)
    assert sink.notices() == []
    p.advance(T0 + 6300)
    assert sink.notices() == [(T0 + 6300, PAGE, held.id)]


def test_resolution_is_announced_after_keep_firing_for_and_the_flap_window():
    p, sink = pipeline(routing(wait=0, interval=60), keep_s=300, flap_s=600)
    a = firing(T0)
    p.push(a)
    p.advance(T0)
    p.push(resolved(a, T0 + 1000))
    p.advance(T0 + 1000 + 899)
    assert [k for _, k, _ in sink.notices()] == [PAGE]
    p.advance(T0 + 1000 + 900 + 60)
    [(at, kind, episode)] = sink.notices()[1:]
    assert kind == "resolved" and episode == a.id and T0 + 1900 <= at <= T0 + 1960
    [batch] = [b for b in sink.batches if b.notices[0].kind == "resolved"]
    assert batch.notices[0].alert.ended_at == T0 + 1000  # the alert ended when the series did


def test_a_flapping_series_stays_one_alert_and_pages_once():
    p, sink = pipeline(routing(wait=0, interval=60, repeat=86400), flap_s=600)
    first = firing(T0)
    p.push(first)
    p.advance(T0)
    t = T0
    for i in range(5):  # clears for 5 minutes, fires again under a new anomaly id, five times
        p.push(resolved(replace(first, id=first.id if i == 0 else f"re-{i - 1}"), t + 600))
        p.advance(t + 600)
        again = replace(firing(t + 900, onset=t + 900), id=f"re-{i}")
        p.push(again)
        p.advance(t + 900)
        t += 900
    assert [k for _, k, _ in sink.notices()] == [PAGE]
    alert = p.lifecycle.alerts[fingerprint(RULE, first.labels)]
    assert alert.episode == first.id and alert.record["id"] == first.id
    assert alert.record["started_at"] == first.started_at and len(alert.ids) == 6
    p.push(resolved(replace(first, id="re-4"), t + 100))
    p.advance(t + 100 + 600 + 60)
    assert [k for _, k, e in sink.notices()] == [PAGE, "resolved"]
    later = firing(t + 10_000, onset=t + 10_000)
    p.push(later)
    p.advance(t + 10_000)
    assert sink.notices()[-1] == (t + 10_000, PAGE, later.id)  # after it was announced resolved: a new alert


def test_a_reminder_goes_out_every_repeat_interval_while_it_fires():
    p, sink = pipeline(routing(wait=30, interval=300, repeat=3600))
    a = firing(T0)
    p.push(a)
    for step in range(0, 4 * 3600 + 120, 60):
        p.advance(T0 + step)
    times = [(at - T0, kind) for at, kind, _ in sink.notices()]
    assert times == [(30, PAGE), (3630, REMINDER), (7230, REMINDER), (10830, REMINDER), (14430, REMINDER)]
    assert [n.number for b in sink.batches for n in b.notices] == [0, 1, 2, 3, 4]


def test_alerts_that_fire_together_arrive_together_in_their_group():
    p, sink = pipeline(routing(wait=30, group_by=("team",)))
    for i, feature in enumerate(["a", "b", "c"]):
        p.push(firing(T0 + i * 5, feature))
    p.push(firing(T0, "x", team="ads"))
    p.advance(T0 + 40)
    assert sorted((tuple(b.group_labels.items()), len(b.notices)) for b in sink.batches) == [
        ((("team", "ads"),), 1), ((("team", "search"),), 3)]


def test_an_alert_whose_records_come_after_the_clock_passed_its_whole_life_still_pages_and_resolves():
    """A restarted sink reads usage faster than the workers produce a backlog's anomalies: the alert clock runs
    ahead, past an alert's firing and its end, before its records arrive. It lasted hours: it must page."""
    p, sink = pipeline(routing(wait=30, interval=300, group_by=("team",)))
    p.push(firing(T0, "a"))
    p.advance(T0 + 40)  # the team's group looks, pages "a", and waits 5 minutes for its next look
    late = firing(T0 + 60, "b")
    p.advance(T0 + 4 * 3600)  # the clock, from usage, hours ahead
    p.push(late)
    p.advance(T0 + 60)
    p.push(resolved(late, T0 + 3 * 3600))
    p.advance(T0 + 3 * 3600)
    p.advance(T0 + 5 * 3600)
    b_notices = [kind for _, kind, episode in sink.notices() if episode == late.id]
    assert b_notices == [PAGE, "resolved"]
    assert [b.at for b in sink.batches if any(n.alert.episode == late.id for n in b.notices)] == [
        sink.batches[-1].at]  # (both in the look that found it over; the resolution follows its page)


def test_the_end_of_a_replay_flushes_groups_still_waiting_and_announces_what_cleared():
    p, sink = pipeline(routing(wait=600), for_s=60, flap_s=600)
    a = firing(T0)
    p.push(a)
    p.advance(T0 + 70)
    assert sink.batches == []
    p.flush()
    assert [k for _, k, _ in sink.notices()] == [PAGE]
    p.push(resolved(a, T0 + 100))
    p.push(firing(T0 + 100, "late"))  # pending: its `for` has not elapsed when the stream ends
    p.flush(T0 + 110)
    assert sink.notices()[1:] == [(T0 + 110, "resolved", a.id)]
    assert [x.state for x in p.lifecycle.alerts.values()] == ["pending"]


# -- properties ----------------------------------------------------------------------
FEATURES = ("a", "b", "c")
step = st.tuples(st.sampled_from(FEATURES), st.sampled_from(["fire", "resolve", "redeliver"]),
                 st.integers(min_value=0, max_value=2400))
timers = st.tuples(st.sampled_from([0, 30, 120]), st.sampled_from([60, 300]), st.integers(min_value=0, max_value=3),
                   st.sampled_from([0, 300]), st.sampled_from([0, 120]), st.sampled_from([0, 600]))


def run(steps, timing, *, silence=None, inhibit=False):
    """Drive a pipeline with an engine-like stream; returns the pipeline, its recorder and the final states."""
    wait, interval, extra, for_s, keep_s, flap_s = timing
    repeat = interval * (1 + extra)
    rules = (InhibitRule((m('feature="a"'),), (m('feature!="a"'),), ("team",)),) if inhibit else ()
    p, sink = pipeline(routing(wait, interval, repeat, inhibit=rules), for_s=for_s, keep_s=keep_s, flap_s=flap_s)
    if silence is not None:
        p._silences_path = None
        p._load_silences = lambda: setattr(p, "_silences", [silence])  # a silence set from the start
    active: dict[str, Anomaly] = {}
    t, n = T0, 0
    for feature, action, dt in steps:
        t += dt
        if action == "fire" and feature not in active:
            n += 1
            active[feature] = replace(firing(t, feature, onset=t), id=f"{feature}-{n}")
            p.push(active[feature])
        elif action == "resolve" and feature in active:
            p.push(resolved(active.pop(feature), t))
        elif action == "redeliver" and feature in active:
            p.push(active[feature])  # a stream redelivers after a restart
        p.advance(t)
    end = t + for_s + keep_s + flap_s + 2 * repeat + wait + 1  # long enough for the last firing's `for` too
    p.advance(end)
    return p, sink, set(active), repeat


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.lists(step, max_size=40), timers)
def test_never_two_firing_notifications_for_one_alert_within_repeat_interval(steps, timing):
    _, sink, _, repeat = run(steps, timing)
    last: dict[str, float] = {}
    for at, kind, episode in sink.notices():
        if kind in (PAGE, REMINDER):
            assert episode not in last or at - last[episode] >= repeat, (episode, at - last.get(episode, 0))
            assert (kind == PAGE) == (episode not in last)  # one page, then only reminders
            last[episode] = at


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.lists(step, max_size=40), timers)
def test_every_page_is_resolved_or_still_firing(steps, timing):
    p, sink, still_active, _ = run(steps, timing)
    paged = {e for _, k, e in sink.notices() if k == PAGE}
    closed = [e for _, k, e in sink.notices() if k == "resolved"]
    assert len(closed) == len(set(closed)) and set(closed) <= paged  # never resolved twice, or unpaged
    firing_now = {a.episode for a in p.lifecycle.firing()}
    assert paged - set(closed) <= firing_now  # an open page is an alert that still fires
    features_firing = {a.labels["feature"] for a in p.lifecycle.firing() if a.quiet_until is None}
    assert features_firing == still_active


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(step, max_size=40), timers, st.integers(0, 20_000), st.integers(60, 20_000))
def test_silences_hold_back_pages_and_reminders_while_they_last(steps, timing, start, length):
    silence = Silence(1, (m('feature="b"'),), T0 + start, T0 + start + length, "deploy", "ana")
    _, sink, _, _ = run(steps, timing, silence=silence)
    for b in sink.batches:
        for n in b.notices:
            if n.kind in (PAGE, REMINDER) and n.alert.labels["feature"] == "b":
                assert not silence.active(b.at)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(step, max_size=40), timers)
def test_inhibited_alerts_are_not_sent_while_their_source_fires(steps, timing):
    seen = []

    class Watch(Recorder):
        def send(self, batch: Batch) -> None:
            sources = [a for a in p.lifecycle.firing() if a.labels["feature"] == "a"]
            seen.append((batch, bool(sources)))
            super().send(batch)

    wait, interval, extra, for_s, keep_s, flap_s = timing
    rules = (InhibitRule((m('feature="a"'),), (m('feature!="a"'),), ("team",)),)
    p, _ = pipeline(routing(wait, interval, interval * (1 + extra), inhibit=rules), for_s=for_s, keep_s=keep_s,
                    flap_s=flap_s)
    p.sinks["oncall"] = [Watch()]
    active: dict[str, Anomaly] = {}
    t = T0
    for i, (feature, action, dt) in enumerate(steps):
        t += dt
        if action == "fire" and feature not in active:
            active[feature] = replace(firing(t, feature, onset=t), id=f"{feature}-{i}")
            p.push(active[feature])
        elif action == "resolve" and feature in active:
            p.push(resolved(active.pop(feature), t))
        p.advance(t)
    for batch, source_fires in seen:
        for n in batch.notices:
            if n.kind in (PAGE, REMINDER) and n.alert.labels["feature"] != "a":
                assert not source_fires
