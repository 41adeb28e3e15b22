"""Alert delivery: Block Kit rendering, escaping, and delivery that loses nothing.

Delivery tests run slack-sdk for real against a local fake Slack
(tests/slack_server.py), so retries, threads, updates and outages are
exercised over HTTP; the outbox is a real SQLite file.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sqlite3
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_interval_calculators import (
    FixedValueRetryIntervalCalculator,
)
from slack_sdk.webhook import WebhookClient
from slack_server import TOKEN, WEBHOOK_PATH, FakeSlack, block_kit_problems

from detector.anomaly import Anomaly, anomaly_id, money, rfc3339
from detector.drivers import describe_drivers
from detector.errors import ConfigError
from detector.notify.escape import (
    ANGLE_LOOKALIKES,
    FORMATTING_LOOKALIKES,
    clip,
    escape_mrkdwn,
    escape_plain,
)
from detector.notify.outbox import SCHEMA_VERSION, Outbox
from detector.notify.render import (
    Driver,
    as_record,
    render_alert,
    render_resolved,
    render_summary,
    silence_command,
)
from detector.notify.slack import NOTICE_EVENT, SlackNotifier
from detector.notify.transport import retry_handlers

T0 = datetime(2026, 11, 16, 15, 0, tzinfo=UTC).timestamp()
RULE = "search.prompt-length"
FAST = FixedValueRetryIntervalCalculator(0.01)  # slack-sdk's pause between retries, kept short here
ATTACKS = ["<!channel>", "<!here>", "<@U123>", "<#C1>", "<https://evil|click>", "<!subteam^S1|@oncall>",
           "<!date^1^{date}|x>", "*bold* _it_ ~s~ `code`", "&lt;!channel&gt;", "https://evil.example/x @here"]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def anomaly(n: int = 0, **changes: object) -> Anomaly:
    labels = {"team": "search", "feature": f"feature-{n}", "model": "gpt-4o"}
    started = rfc3339(T0 - 3600 + n * 60)
    record = Anomaly(
        id=anomaly_id(RULE, labels, started), rule=RULE, metric="input_tokens_per_request", labels=labels,
        severity="critical", status="firing", started_at=started, detected_at=rfc3339(T0 - 3000 + n * 60),
        resolved_at=None, observed=3400.0 + n, baseline=1700.0, ratio=2.0, excess_cost_usd_per_hour=41.2 + n,
        projected_month_usd=29_800.0, summary=f"Input tokens per request for feature-{n} doubled",
        runbook="https://wiki.example.com/runbooks/prompt-length",
    )
    return replace(record, **changes)


def texts(message: dict) -> list[str]:
    """Every text Slack would show from a message, fallback first."""
    out = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return out


def field_text(message: dict, title: str) -> str:
    for block in message["blocks"]:
        for f in block.get("fields", []):
            if f["text"].startswith(f"*{title}*\n"):
                return f["text"].split("\n", 1)[1]
    raise AssertionError(f"no field {title!r} in {json.dumps(message)[:300]}")


def mentions_id(message_blocks: list, record: Anomaly) -> bool:
    return record.id in json.dumps(message_blocks)


@pytest.fixture
def slack():
    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def make_notifier(tmp_path):
    """Notifiers on one outbox file, all closed at the end (a new one is a worker restart)."""
    made: list[SlackNotifier] = []

    def make(slack_or_url, clock: Clock, *, retries: int = 2, token: str = TOKEN, timeout: int = 5,
             **kwargs) -> SlackNotifier:
        url = slack_or_url if isinstance(slack_or_url, str) else slack_or_url.api_url
        client = WebClient(token=token, base_url=url, timeout=timeout, retry_handlers=retry_handlers(retries, FAST))
        notifier = SlackNotifier(client, None, "#spend", Outbox(tmp_path / "outbox.db"), clock, **kwargs)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close()


def test_the_package_exports_a_sorted_public_api():
    import detector.notify as notify

    assert notify.__all__ == sorted(notify.__all__)
    assert all(hasattr(notify, name) for name in notify.__all__)


# -- rendering ---------------------------------------------------------------------
def test_alert_answers_what_where_how_much_since_when_and_what_to_do():
    record = anomaly(3, labels={"team": "search", "feature": "summarize", "model": "gpt-4o", "provider": "azure"})
    message = render_alert(record)
    assert block_kit_problems(message) == []
    header = message["blocks"][0]["text"]["text"]
    assert "Critical" in header and "input tokens per request doubled" in header
    assert field_text(message, "Team") == "search"
    assert field_text(message, "Feature") == "summarize"
    assert field_text(message, "Model") == "gpt-4o"
    assert field_text(message, "Observed") == f"{record.observed:,.0f} tokens/request ({record.ratio:.1f}× normal)"
    assert field_text(message, "Normal") == f"{record.baseline:,.0f} tokens/request"
    assert field_text(message, "Since").startswith(record.started_at[:10] + " " + record.started_at[11:16] + " UTC")
    assert field_text(message, "Cost now") == f"{money(record.excess_cost_usd_per_hour)} per hour above normal"
    assert field_text(message, "Projected") == f"{money(record.projected_month_usd)} by month end"
    shown = "\n".join(texts(message))
    assert f"<{record.runbook}|Open the runbook>" in shown
    command = silence_command(record.rule, record.labels)
    assert f"`{command}`" in shown
    assert command.startswith(f"spendwatch silence add --matcher 'rule=\"{record.rule}\"' --matcher 'feature=\"summarize\"'")
    assert command.endswith(' --for 2h --comment "why"')
    assert "provider=azure" in shown  # labels beyond team/feature/model are not dropped
    assert record.summary in shown
    assert all(t["verbatim"] for b in message["blocks"] for t in _mrkdwn_objects(b))


def _mrkdwn_objects(block: dict) -> list[dict]:
    objs = [block["text"]] if "text" in block else []
    objs += block.get("fields", []) + block.get("elements", [])
    return [o for o in objs if o["type"] == "mrkdwn"]


@pytest.mark.parametrize("changes", [
    {},
    {"excess_cost_usd_per_hour": -3.5, "projected_month_usd": None},
    {"metric": "cost_per_request", "observed": 0.031, "baseline": 0.012},
    {"metric": "spend_rate", "observed": 82.0, "baseline": 41.0},
])
def test_every_dollar_amount_is_written_with_its_unit(changes):
    record = anomaly(1, **changes)
    drivers = [Driver({"feature": "a", "model": "m"}, 30.0), Driver({"feature": "b"}, 11.2)]
    firing = render_alert(record, drivers=drivers)
    resolved = render_resolved(record.resolve(rfc3339(T0), "back to normal"))
    summary = render_summary([record.to_dict()], reason="a Slack outage")
    units = (" per hour", " per request", " by month end", " above normal in all", " below normal in all")
    amounts = 0
    for message in (firing, resolved.reply, resolved.original, summary):
        for text in texts(message):
            for m in re.finditer(r"\$[\d,]+(?:\.\d+)?", text):
                amounts += 1
                assert text[m.end():].startswith(units), f"{m.group()} has no unit in {text!r}"
    assert amounts >= 8


def test_driver_breakdown_is_shown_only_when_there_is_one():
    drivers = [Driver({"feature": f"f{i}", "model": "gpt-4o"}, float(10 - i)) for i in range(7)]
    with_drivers = "\n".join(texts(render_alert(anomaly(), drivers=drivers)))
    assert "What drives it" in with_drivers
    assert f"f0 on gpt-4o: {money(10.0)} per hour" in with_drivers and "… and 2 more" in with_drivers
    from_dict = render_alert({**anomaly().to_dict(), "drivers": [{"labels": {"feature": "x"}, "usd_per_hour": 4}]})
    assert "x: $4.00 per hour" in "\n".join(texts(from_dict))
    causes = render_alert(anomaly(drivers={"volume": 8.0, "input_tokens": 30.0, "cache": 0.0}))
    assert "+$30/h longer prompts, +$8.00/h more requests" in "\n".join(texts(causes))
    assert "What drives it" not in "\n".join(texts(render_alert(anomaly())))


def test_a_cause_that_saved_money_is_named_for_what_it_did():
    """"-$3.33/h cheaper model mix", never "-$3.33/h pricier model mix"."""
    causes = "\n".join(texts(render_alert(anomaly(drivers={"input_tokens": 4.0, "tier_mix": -3.33, "volume": -0.5}))))
    assert "+$4.00/h longer prompts, -$3.33/h cheaper model mix, -$0.50/h fewer requests" in causes
    assert "pricier" not in causes and "more requests" not in causes


def test_the_card_names_causes_in_the_words_of_the_summary_line():
    """The summary line and the card's split are read side by side: one cause, one name."""
    drivers = {"output_tokens": 5.0, "cache": 2.0, "tier_mix": 1.0}
    record = anomaly(drivers=drivers, summary=f"Spend grew: {describe_drivers(drivers)}")
    card = "\n".join(texts(render_alert(record)))
    for words in ("longer answers", "fewer cache hits", "pricier model mix"):
        assert card.count(words) == 2, words  # once in the summary, once in the split


def test_money_below_normal_is_said_in_words_not_with_a_minus_sign():
    resolved = anomaly(0, excess_cost_usd_per_hour=-0.32).resolve(rfc3339(T0 + 7200), "back to normal")
    original = "\n".join(texts(render_resolved(resolved.to_dict(), firing=None).original))
    assert "about $0.96 below normal in all (estimated)" in original and "-$" not in original


def test_resolved_notice_and_rewritten_original_show_duration_and_total():
    firing = anomaly(0)
    resolved = firing.resolve(rfc3339(T0), "Input tokens per request for feature-0 back to normal after 1h 00m")
    started = datetime.fromisoformat(firing.started_at).timestamp()
    exact = render_resolved(resolved, firing=firing, total_usd=63.0)
    reply, original = "\n".join(texts(exact.reply)), "\n".join(texts(exact.original))
    lasted = "1h 00m" if T0 - started == 3600 else None
    assert lasted and f"after {lasted}" in reply and f"after {lasted}" in original
    assert f"{money(63.0)} above normal in all" in reply and f"{money(63.0)} above normal in all" in original
    assert exact.original["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved:")
    assert firing.summary in original  # the original still says what happened
    estimate = render_resolved(resolved, firing=firing)
    expected = money(firing.excess_cost_usd_per_hour * (T0 - started) / 3600)
    assert f"about {expected} above normal in all (estimated" in "\n".join(texts(estimate.reply))
    from_record = render_resolved({**resolved.to_dict(), "excess_total_usd": 12.5})
    assert f"{money(12.5)} above normal in all" in "\n".join(texts(from_record.original))
    assert block_kit_problems(exact.reply) == [] and block_kit_problems(exact.original) == []


def test_huge_user_strings_are_clipped_to_block_kit_limits():
    big = "<!channel>&" * 400
    record = anomaly(0, labels={"team": big, "feature": big, "model": big, **{f"k{i}": big for i in range(30)}},
                     summary=big, metric=big, rule=big, runbook="https://x.example/" + "a" * 5000)
    for message in (render_alert(record), *render_resolved(record.resolve(rfc3339(T0), big)),
                    render_summary([record.to_dict()] * 30, reason="a Slack outage")):
        assert block_kit_problems(message) == []
        assert any(t.endswith("…") for t in texts(message))
        assert all("<!channel>" not in t for t in texts(message))
        mrkdwn = texts(message)[2:] if message["blocks"][0]["type"] == "header" else texts(message)[1:]
        assert all(not re.search(r"&(?!amp;|lt;|gt;)", t) for t in [message["text"], *mrkdwn])


def test_a_record_that_cannot_be_rendered_is_refused_before_it_is_queued(tmp_path):
    with pytest.raises(ValueError, match=r"'x'.*missing .*observed"):
        as_record({"id": "x", "rule": "r"})
    no_end = {**anomaly(0).to_dict(), "status": "resolved"}
    with pytest.raises(ValueError, match=r"resolved_at must be an RFC 3339 time, found None"):
        as_record(no_end)
    with pytest.raises(ValueError, match=r"observed must be a number, found '3400'"):
        as_record({**anomaly(0).to_dict(), "observed": "3400"})
    hook = WebhookClient("http://127.0.0.1:9/services/T/B/x")
    notifier = SlackNotifier(None, hook, None, Outbox(tmp_path / "o.db"), Clock(T0))
    try:
        with pytest.raises(ValueError, match="resolved_at"):
            notifier.notify(no_end)
        assert notifier.outbox.count("pending") == 0  # a poison record never blocks the queue
    finally:
        notifier.close()


# -- escaping ----------------------------------------------------------------------
def reads_as(escaped: str) -> str:
    """What a person sees: entities decoded, look-alikes read as the characters they stand for."""
    back = {v: k for k, v in {**FORMATTING_LOOKALIKES, **ANGLE_LOOKALIKES}.items()}
    text = escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return "".join(back.get(ch, ch) for ch in text)


def typed(original: str) -> str:
    """The original as it can be shown: controls as spaces, direction overrides dropped."""
    bidi = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in original if c not in bidi)
    return reads_as(text.replace("&", "&amp;"))  # look-alikes typed by the user read the same way


user_text = st.one_of(st.sampled_from(ATTACKS), st.text(max_size=60),
                      st.lists(st.sampled_from(ATTACKS + ["a", "_", "*", " ", "b1"]), max_size=8).map("".join))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(user_text)
def test_escaped_text_has_no_markup_and_reads_as_typed(text):
    escaped = escape_mrkdwn(text)
    assert "<" not in escaped and ">" not in escaped and "`" not in escaped
    assert not re.search(r"&(?!amp;|lt;|gt;)", escaped)
    for i, ch in enumerate(escaped):
        if ch in "*_~":  # kept only where it cannot open or close formatting
            assert 0 < i < len(escaped) - 1 and escaped[i - 1].isalnum() and escaped[i + 1].isalnum()
    assert reads_as(escaped) == typed(text)
    plain = escape_plain(text)
    assert "<" not in plain and ">" not in plain and "\n" not in plain


@pytest.mark.parametrize("attack", ATTACKS[:5])
def test_mentions_and_links_survive_only_as_text(attack):
    escaped = escape_mrkdwn(attack)
    assert escaped == attack.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "∗") \
        .replace("`", "ˋ")
    assert reads_as(escaped) == attack


@settings(derandomize=True, max_examples=60, deadline=None)
@given(team=user_text, feature=user_text, model=user_text, summary=user_text, other=user_text,
       runbook=st.one_of(st.none(), user_text, st.sampled_from(["https://ok.example/run?a=1&b=<2>|x", "javascript:x"])))
def test_no_user_string_becomes_a_mention_or_a_link(team, feature, model, summary, other, runbook):
    record = anomaly(0, labels={"team": team, "feature": feature, "model": model, "env": other},
                     summary=summary, runbook=runbook, metric=other or "m")
    resolved = record.resolve(rfc3339(T0), summary)
    for message in (render_alert(record), *render_resolved(resolved, firing=record),
                    render_summary([record.to_dict(), resolved.to_dict()], reason="a Slack outage")):
        assert block_kit_problems(message) == []
        for text in texts(message):
            links = re.findall(r"<([^<>]*)>", text)
            assert text.count("<") == text.count(">") == len(links)
            for target in links:  # the only markup is our runbook link, to an http(s) URL
                assert re.fullmatch(r"https?://[^|<>\s]+\|Open the runbook", target), target
        for block in message["blocks"]:
            if block["type"] == "header":
                assert "<" not in block["text"]["text"] and ">" not in block["text"]["text"]


def test_clip_never_cuts_an_entity():
    for limit in range(2, 12):
        out = clip("ab&amp;cd&lt;", limit)
        assert len(out) <= limit and not re.search(r"&(?!amp;|lt;|gt;)", out)


# -- the outbox --------------------------------------------------------------------
def test_outbox_is_idempotent_durable_and_versioned(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        assert box.enqueue(anomaly(1).to_dict(), channel="#spend", now=T0)
        assert not box.enqueue(anomaly(1).to_dict(), channel="#other", now=T0 + 5)
        assert box.enqueue(anomaly(1).resolve(rfc3339(T0), "ok").to_dict(), channel="#spend", now=T0 + 1)
    with Outbox(path) as again:  # a restarted process sees what was pending
        rows = again.due(now=T0 + 1)
        assert [r.status for r in rows] == ["firing", "resolved"]
        assert rows[0].payload == anomaly(1).to_dict() and rows[0].channel == "#spend"
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        db.execute("UPDATE schema_version SET version = 99")
        db.commit()
    finally:
        db.close()
    with pytest.raises(ConfigError, match=rf"outbox.db: .*schema version 99, expected {SCHEMA_VERSION}"):
        Outbox(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="junk.db: not a notification outbox"):
        Outbox(junk)


# -- delivery ----------------------------------------------------------------------
def test_firing_then_resolved_goes_into_the_thread_and_updates_the_original(slack, make_notifier):
    clock = Clock(T0)
    notifier = make_notifier(slack, clock)
    firing = anomaly(2)
    notifier.notify(firing)
    assert notifier.deliver_pending().delivered == ((firing.id, "firing"),)
    [post] = slack.calls("chat.postMessage")
    assert post.body["channel"] == "#spend" and post.body["parse"] == "none" and post.body["unfurl_links"] is False
    [original] = slack.messages
    clock.t += 1800
    notifier.notify(firing.resolve(rfc3339(clock.t), "back to normal"))
    report = notifier.deliver_pending()
    assert report.delivered == ((firing.id, "resolved"),) and report.pending == 0
    reply = slack.messages[1]
    assert reply.thread_ts == original.ts and reply.channel == original.channel
    [update] = slack.calls("chat.update")
    assert (update.body["channel"], update.body["ts"]) == (original.channel, original.ts)
    assert original.edits == 1 and original.blocks[0]["text"]["text"].startswith(":white_check_mark: Resolved")
    minutes = round((clock.t - datetime.fromisoformat(firing.started_at).timestamp()) / 60)
    assert f"after {minutes // 60}h {minutes % 60:02d}m" in json.dumps(original.blocks)
    notifier.notify(firing)  # the stream redelivers: nothing new is sent
    clock.t += 3600
    assert notifier.deliver_pending().delivered == () and len(slack.requests) == 3


@pytest.mark.parametrize("kind", ["429", "500", "503"])
def test_slack_sdk_retries_rate_limits_and_server_errors(kind, slack, make_notifier):
    random.seed(3)  # slack-sdk adds up to a second of random jitter to Retry-After
    slack.fail("chat.postMessage", kind, times=1, retry_after=0)
    notifier = make_notifier(slack, Clock(T0), retries=2)
    notifier.notify(anomaly(0))
    report = notifier.deliver_pending()
    assert report.delivered == ((anomaly(0).id, "firing"),)
    assert [c.answer for c in slack.calls("chat.postMessage")] == [kind, "ok"]
    assert len(slack.messages) == 1


def resolved_with_failing_updates(slack, make_notifier, kind: str, times: int, retries: int):
    """A paged alert resolved while chat.update fails ``times`` times with ``kind``; the round's report."""
    clock = Clock(T0)
    notifier = make_notifier(slack, clock, retries=retries)
    notifier.notify(anomaly(0))
    notifier.deliver_pending()
    slack.fail("chat.update", kind, times=times)
    notifier.notify(anomaly(0).resolve(rfc3339(T0), "back to normal"))
    return notifier, clock, notifier.deliver_pending()


def test_slack_sdk_retries_a_reset_update_at_once(slack, make_notifier):
    _, _, report = resolved_with_failing_updates(slack, make_notifier, "reset", times=1, retries=2)
    assert len(report.delivered) == 1
    assert [c.answer for c in slack.calls("chat.update")] == ["reset", "ok"]  # an edit is safe to repeat


@pytest.mark.parametrize("repeat_posts", [False, True])
def test_slack_sdk_repeats_a_cut_off_post_only_where_no_outbox_looks_for_it(repeat_posts, slack):
    """The weekly digest has no outbox: its post is repeated at once, at the risk of a second copy."""
    client = WebClient(token=TOKEN, base_url=slack.api_url, retry_handlers=retry_handlers(
        2, FAST, repeat_posts=repeat_posts))
    slack.fail("chat.postMessage", "reset", times=1)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "digest"}}]
    if repeat_posts:
        client.chat_postMessage(channel="#finops", text="digest", blocks=blocks)
    else:
        with pytest.raises(ConnectionResetError):
            client.chat_postMessage(channel="#finops", text="digest", blocks=blocks)
    assert [c.answer for c in slack.calls("chat.postMessage")] == (["reset", "ok"] if repeat_posts else ["reset"])


@pytest.mark.parametrize("kind", ["reset", "drop"])
def test_a_cut_off_post_is_looked_for_in_the_channel_before_it_is_sent_again(kind, slack, make_notifier):
    """A post cut off before its answer may or may not be in the channel: it ends up there exactly once.

    "reset": the connection broke before Slack read the post; "drop": Slack
    posted it and the answer was lost. slack-sdk must not repeat such a post
    at once; the outbox's next attempt finds the dropped one by its metadata.
    """
    clock = Clock(T0)
    slack.clock = clock
    slack.fail("chat.postMessage", kind, times=1)
    notifier = make_notifier(slack, clock, retries=2, backoff_s=30.0)
    notifier.notify(anomaly(0))
    [(key, err)] = notifier.deliver_pending().failed
    assert err.status_code is None and len(slack.calls("chat.postMessage")) == 1  # not repeated by slack-sdk
    assert len(slack.messages) == (1 if kind == "drop" else 0)
    clock.t += 30
    assert notifier.deliver_pending().delivered == (key,)
    assert len(slack.calls("conversations.history")) == 1
    assert len(slack.calls("chat.postMessage")) == (1 if kind == "drop" else 2)
    [page] = slack.messages
    assert notifier.outbox.get(key).message_ts == page.ts  # the resolved notice will find its thread
    notifier.notify(anomaly(0).resolve(rfc3339(T0 + 60), "back to normal"))
    clock.t += 60
    assert len(notifier.deliver_pending().delivered) == 1
    assert [m.thread_ts for m in slack.messages] == [None, page.ts] and page.edits == 1


def test_a_dropped_reply_in_the_thread_is_found_there_and_not_posted_again(slack, make_notifier):
    clock = Clock(T0)
    slack.clock = clock
    notifier = make_notifier(slack, clock, retries=2, backoff_s=30.0)
    notifier.notify(anomaly(0))
    notifier.deliver_pending()
    slack.fail("chat.postMessage", "drop", times=1)
    resolved = anomaly(0).resolve(rfc3339(T0), "back to normal")
    notifier.notify(resolved)
    clock.t += 60
    assert notifier.deliver_pending().failed
    clock.t += 30
    assert len(notifier.deliver_pending().delivered) == 1
    assert [r.answer for r in slack.calls("conversations.replies")] == ["ok"]
    [page, reply] = slack.messages
    assert reply.thread_ts == page.ts and page.edits == 1  # one reply; the original still rewritten


def test_a_sink_killed_after_slack_took_the_page_finds_it_on_restart(slack, make_notifier):
    """The state a kill -9 leaves: the attempt counted and the message in Slack, but no ts in the outbox."""
    clock = Clock(T0)
    slack.clock = clock
    killed = make_notifier(slack, clock)
    killed.notify(anomaly(0))
    [row] = killed.outbox.due(now=clock())
    killed.outbox.note_attempt(row.key)
    killed.transport.post("#spend", render_alert(row.payload),  # what _post_once sends, then the kill
                          metadata={"event_type": NOTICE_EVENT, "event_payload": {"key": row.alert_id,
                                                                                  "status": "firing"}})
    killed.close()
    clock.t += 5
    restarted = make_notifier(slack, clock)
    restarted.notify(anomaly(0))  # the stream redelivers
    assert restarted.deliver_pending().delivered == (row.key,)
    assert len(slack.messages) == 1
    assert [r.method for r in slack.requests if r.method.startswith("conversations.")] == [
        "conversations.list", "conversations.history"]  # #spend by name: its id is looked up once
    assert restarted.outbox.get(row.key).message_ts == slack.messages[0].ts


def dropped_page_whose_lookup_fails(slack, make_notifier, answer: str, times: int):
    """A page Slack took without answering; at its retry (due now), the channel search answers ``answer``."""
    clock = Clock(T0)
    slack.clock = clock
    slack.fail("chat.postMessage", "drop", times=1)
    slack.fail("conversations.history", answer, times=times)
    notifier = make_notifier(slack, clock, backoff_s=30.0)
    notifier.notify(anomaly(0))
    notifier.deliver_pending()
    clock.t += 30
    return notifier, clock


def test_without_the_history_scope_a_cut_off_post_is_sent_again_not_lost(slack, make_notifier, caplog):
    notifier, _ = dropped_page_whose_lookup_fails(slack, make_notifier, "missing_scope", times=1)
    with caplog.at_level(logging.WARNING, logger="detector.notify.slack"):
        assert len(notifier.deliver_pending().delivered) == 1
    assert len(slack.messages) == 2  # at least once: the page went out again rather than not at all
    assert "cannot check Slack for an earlier post" in caplog.text and "missing_scope" in caplog.text


def test_a_lookup_while_slack_is_down_leaves_the_row_pending(slack, make_notifier):
    notifier, clock = dropped_page_whose_lookup_fails(slack, make_notifier, "503", times=3)
    report = notifier.deliver_pending()
    assert report.failed and report.failed[0][1].method == "conversations.history" and report.pending == 1
    clock.t += 60
    assert len(notifier.deliver_pending().delivered) == 1 and len(slack.messages) == 1


def test_a_slack_that_hangs_times_out_and_the_message_is_sent_once_later(slack, make_notifier):
    clock = Clock(T0)
    slack.fail("chat.postMessage", "hang", times=1, retry_after=2)
    notifier = make_notifier(slack, clock, retries=0, timeout=1, backoff_s=30.0)
    notifier.notify(anomaly(0))
    report = notifier.deliver_pending()
    [(key, _)] = report.failed
    assert report.pending == 1 and slack.messages == [] and notifier.outbox.get(key).state != "delivered"
    clock.t = T0 + 30
    assert notifier.deliver_pending().delivered == (key,)
    assert len(slack.messages) == 1 and notifier.outbox.get(key).state == "delivered"


def test_when_retries_give_up_the_row_waits_with_backoff_and_is_sent_once(slack, make_notifier):
    clock = Clock(T0)
    slack.fail("chat.postMessage", "503", times=3)
    notifier = make_notifier(slack, clock, retries=2, backoff_s=30.0)
    notifier.notify(anomaly(0))
    report = notifier.deliver_pending()
    [(key, err)] = report.failed
    assert err.status_code == 503 and err.unavailable and report.pending == 1
    assert len(slack.calls("chat.postMessage")) == 3  # one try and two retries by slack-sdk
    row = notifier.outbox.get(key)
    assert row.attempts == 1 and row.next_attempt_at == T0 + 30 and "503" in row.last_error
    clock.t = T0 + 29
    assert notifier.deliver_pending().delivered == () and len(slack.requests) == 3
    clock.t = T0 + 30
    assert notifier.deliver_pending().delivered == (key,)
    assert len(slack.messages) == 1 and notifier.outbox.get(key).state == "delivered"


def test_backoff_doubles_up_to_its_cap_and_later_rows_still_go(slack, make_notifier):
    clock = Clock(T0)
    notifier = make_notifier(slack, clock, token="xoxb-revoked", backoff_s=10.0, max_backoff_s=35.0)
    notifier.notify(anomaly(0))
    notifier.notify(anomaly(0).resolve(rfc3339(T0), "ok"))
    delays = []
    for _ in range(4):
        report = notifier.deliver_pending()
        [(key, err)] = report.failed
        assert err.error == "invalid_auth" and not err.unavailable
        assert report.deferred == ((anomaly(0).id, "resolved"),)  # waits for its thread
        clock.t = notifier.outbox.get(key).next_attempt_at
        delays.append(clock.t - sum(delays) - T0)
    assert delays == [10.0, 20.0, 35.0, 35.0]


def test_a_half_done_resolved_notice_resumes_without_a_second_reply(slack, make_notifier):
    notifier, clock, report = resolved_with_failing_updates(slack, make_notifier, "500", times=2, retries=1)
    assert report.failed and report.failed[0][1].method == "chat.update"
    clock.t += 3600
    assert notifier.deliver_pending().delivered == ((anomaly(0).id, "resolved"),)
    assert len(slack.calls("chat.postMessage")) == 2  # the alert and one reply, never a second
    assert [c.answer for c in slack.calls("chat.update")] == ["500", "500", "ok"]
    assert slack.messages[0].edits == 1


def test_a_crash_right_after_slack_answered_does_not_post_again(slack, make_notifier):
    clock = Clock(T0)
    notifier = make_notifier(slack, clock)
    notifier.notify(anomaly(0))
    key = (anomaly(0).id, "firing")
    # Slack took the message and its ts was written down, then the worker died before marking it delivered.
    notifier.outbox.record_message(key, channel="C0123", ts="1700000000.000001")
    assert notifier.deliver_pending().delivered == (key,)
    assert slack.requests == [] and notifier.outbox.get(key).state == "delivered"


def test_an_outage_then_a_restart_delivers_every_notification_exactly_once(tmp_path, make_notifier):
    down = FakeSlack().start()
    dead_url = down.api_url
    down.stop()  # nothing answers there any more: connections are refused
    clock = Clock(T0)
    records = [anomaly(i) for i in range(4)]
    first = make_notifier(dead_url, clock)
    for r in records:
        first.notify(r)
    first.notify(records[0].resolve(rfc3339(T0), "back to normal"))
    report = first.deliver_pending()
    assert report.delivered == () and report.pending == 5
    assert report.failed[0][1].unavailable and report.failed[0][1].status_code is None
    first.close()

    slack = FakeSlack().start()
    try:
        clock.t += 120
        second = make_notifier(slack, clock)  # a new process: new client, outbox reopened from the file
        for r in records:
            second.notify(r)  # the stream redelivers what it had not committed
        report = second.deliver_pending()
        assert len(report.delivered) == 5 and report.pending == 0
        for r in records:
            assert sum(mentions_id(m.blocks, r) for m in slack.top_level()) == 1
        [reply] = [m for m in slack.messages if m.thread_ts]
        assert mentions_id(reply.blocks, records[0])
        clock.t += 7200
        assert second.deliver_pending().delivered == ()
        posts = [r.method for r in slack.requests if r.method.startswith("chat.")]
        assert len(posts) == 6  # 4 alerts, 1 reply, 1 update
        # Only the page tried during the outage was looked for first (the name resolved once):
        assert [r.method for r in slack.requests if r.method.startswith("conversations.")] == [
            "conversations.list", "conversations.history"]
    finally:
        slack.stop()


def test_a_backlog_older_than_max_age_is_one_summary_not_a_flood(slack, make_notifier):
    clock = Clock(T0)
    notifier = make_notifier(slack, clock, retries=0, max_age_s=600)
    early = anomaly(99)
    notifier.notify(early)
    notifier.deliver_pending()  # this one made it before the outage
    slack.fail("chat.postMessage", "503", times=1)
    for i in range(11):
        notifier.notify(anomaly(i))
    notifier.notify(early.resolve(rfc3339(T0), "back to normal"))
    assert notifier.deliver_pending().failed  # Slack is down
    clock.t += 601
    report = notifier.deliver_pending()
    assert len(report.summarised) == 12 and report.delivered == () and report.pending == 0
    summary = slack.top_level()[-1]
    assert summary.text.startswith("12 notifications delayed by a Slack outage: 11 firing, 1 resolved")
    assert all(mentions_id(summary.blocks, anomaly(i)) for i in range(11))
    assert len(slack.top_level()) == 2 and not [m for m in slack.messages if m.thread_ts]
    assert slack.messages[0].edits == 1  # the early alert still shows it resolved
    clock.t += 3600
    assert notifier.deliver_pending() == type(report)() and len(slack.messages) == 2


def test_webhook_mode_posts_the_alert_and_the_resolved_card(tmp_path, slack):
    clock = Clock(T0)
    hook = WebhookClient(slack.webhook_url, timeout=5, retry_handlers=retry_handlers(2, FAST))
    notifier = SlackNotifier(None, hook, None, Outbox(tmp_path / "outbox.db"), clock)
    try:
        slack.fail("webhook", "503", times=1)
        notifier.notify(anomaly(5))
        notifier.notify(anomaly(5).resolve(rfc3339(T0 + 60), "back to normal"))
        report = notifier.deliver_pending()
        assert report.delivered == ((anomaly(5).id, "firing"), (anomaly(5).id, "resolved"))
        assert [c.answer for c in slack.calls("webhook")] == ["503", "ok", "ok"]
        alert, resolved = slack.messages
        assert alert.blocks[0]["text"]["text"].startswith(":red_circle: Critical")
        assert resolved.blocks[0]["text"]["text"].startswith(":white_check_mark: Resolved")
        assert not slack.calls("chat.postMessage") and not slack.calls("chat.update")
    finally:
        notifier.close()


# -- secrets -----------------------------------------------------------------------
def test_the_token_never_reaches_a_log_line_an_error_or_a_repr(tmp_path, slack, caplog):
    secret = "xoxb-1111-2222-do-not-leak"
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    caplog.set_level(logging.DEBUG)
    clock = Clock(T0)
    notifier = SlackNotifier.from_settings(
        token_file=token_file, channel="#spend", api_url=slack.api_url, outbox_path=tmp_path / "o.db",
        clock=clock, max_retry_count=1, interval_calculator=FAST,
    )
    try:
        notifier.notify(anomaly(0))
        refused = notifier.deliver_pending()  # the fake knows another token: invalid_auth
        slack.token = secret
        slack.fail("chat.postMessage", "reset", times=1)  # a post is not repeated at once (it may be in)
        clock.t += 600
        reset = notifier.deliver_pending()
        errors = [err for _, err in refused.failed + reset.failed]
        assert [e.error for e in errors] == ["invalid_auth", "ConnectionResetError"]
        assert slack.calls("chat.postMessage")[0].headers["authorization"] == f"Bearer {secret}"
        row = notifier.outbox.get((anomaly(0).id, "firing"))
        shown = [caplog.text, repr(notifier), repr(refused), repr(reset), row.last_error]
        shown += [str(e) for e in errors] + [repr(e) for e in errors]
        assert all(secret not in s for s in shown)
        assert all(e.__cause__ is None and e.__context__ is None for e in errors)
        clock.t += 600
        assert notifier.deliver_pending().delivered  # and the token does work when Slack lets it
    finally:
        notifier.close()


def test_the_webhook_url_is_a_secret_too(tmp_path, slack, caplog):
    caplog.set_level(logging.DEBUG)
    notifier = SlackNotifier.from_settings(
        webhook_url=slack.webhook_url, outbox_path=tmp_path / "o.db", clock=Clock(T0), max_retry_count=2,
        interval_calculator=FAST,
    )
    try:
        slack.fail("webhook", "reset", times=3)
        notifier.notify(anomaly(0))
        [(_, err)] = notifier.deliver_pending().failed
        secret_part = WEBHOOK_PATH.rsplit("/", 1)[1]
        sdk_lines = [r.getMessage() for r in caplog.records if r.name == "detector.notify.sdk"]
        assert any("[redacted]" in line for line in sdk_lines)  # slack-sdk did try to log the URL
        assert secret_part not in caplog.text and secret_part not in str(err) and secret_part not in repr(notifier)
    finally:
        notifier.close()


def test_settings_errors_say_what_to_set_and_never_quote_a_secret(tmp_path):
    with pytest.raises(ConfigError, match="no destination"):
        SlackNotifier.from_settings(outbox_path=tmp_path / "o.db")
    with pytest.raises(ConfigError, match="not both"):
        SlackNotifier.from_settings(token="xoxb-a", webhook_url="https://hooks.example/x", channel="#c")
    with pytest.raises(ConfigError, match="needs a default channel"):
        SlackNotifier.from_settings(token="xoxb-a", outbox_path=tmp_path / "o.db")
    with pytest.raises(ConfigError, match="not an http") as bad_url:
        SlackNotifier.from_settings(webhook_url="hooks.example/services/very-secret")
    assert "very-secret" not in str(bad_url.value)
    token_file = tmp_path / "token"
    token_file.write_text("xoxb-secret-part one two\n")
    with pytest.raises(ConfigError, match="token: the Slack token file holds whitespace") as bad_file:
        SlackNotifier.from_settings(token_file=token_file, channel="#c", outbox_path=tmp_path / "o.db")
    assert "secret-part" not in str(bad_file.value)
    token_file.write_text("  \n")
    with pytest.raises(ConfigError, match="token: the Slack token file is empty"):
        SlackNotifier.from_settings(token_file=token_file, channel="#c", outbox_path=tmp_path / "o.db")
