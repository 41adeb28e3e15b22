"""The alert pipeline end to end: real HTTP on loopback for Slack (tests/slack_server.py) and a webhook.

Slack is slack-sdk against the fake Slack Web API; the webhook is a small
recording HTTP server below. Outboxes and silences are real SQLite files.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_server import TOKEN, FakeSlack, _channel_id

from detector.alerts.lifecycle import Lifecycle, fingerprint
from detector.alerts.pipeline import AlertPipeline
from detector.alerts.routing_file import load_routing_text
from detector.alerts.settings import AlertSettings
from detector.alerts.sinks import PreviewSink, SlackSink, WebhookSink
from detector.alerts.terminal import print_messages
from detector.anomaly import Anomaly, anomaly_id, rfc3339
from detector.notify.outbox import Outbox
from detector.notify.slack import SlackNotifier
from detector.notify.transport import retry_handlers
from detector.notify.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookNotifier

T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC).timestamp()
FAST = FixedValueRetryIntervalCalculator(0.01)
SECRET = "whsec-test-0001"
ROUTING = b"""
route:
  receiver: finops
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
    - matchers: ['team="search"']
      receiver: search
      continue: true
    - matchers: ['severity="critical"']
      receiver: pager
receivers:
  - name: finops
    slack_configs: [{channel: "#finops"}]
  - name: search
    slack_configs: [{channel: "#search"}]
  - name: pager
    slack_configs: [{channel: "#pager"}]
    webhook_configs: [{url: "http://127.0.0.1:PORT/hook/secret-path"}]
"""


def firing(t: float, feature: str = "summarize", *, team: str = "search", severity: str = "critical",
           **changes: Any) -> Anomaly:
    labels = {"team": team, "feature": feature, "model": "gpt-4o"}
    started = rfc3339(t - 300)
    record = Anomaly(
        id=anomaly_id("search.prompt-length", labels, started), rule="search.prompt-length",
        metric="input_tokens_per_request", labels=labels, severity=severity, status="firing", started_at=started,
        detected_at=rfc3339(t), resolved_at=None, observed=3400.0, baseline=1700.0, ratio=2.0,
        excess_cost_usd_per_hour=41.0, projected_month_usd=29_800.0,
        summary=f"Input tokens per request for {feature} doubled", runbook="https://wiki.example.com/rb",
        drivers={"input_tokens": 30.0, "volume": 8.0}, related=["cost_per_request"],
    )
    return replace(record, **changes)


class WebhookServer:
    """Records every POST; answers 200, or a scripted 429 (with Retry-After) / 500 / reset."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.failures: deque[tuple[int, int]] = deque()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, retry_after = server.failures.popleft() if server.failures else (200, 0)
                self.send_response(status)
                if retry_after:
                    self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.http.server_address[1]

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join()


@pytest.fixture
def slack():
    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def hook():
    server = WebhookServer()
    yield server
    server.stop()


def build(tmp_path, api_url: str, hook_port: int, *, clock=lambda: T0, sleep=lambda s: None) -> AlertPipeline:
    """A pipeline as from_settings builds it, with slack-sdk's retry pause kept short for the test."""
    routing = load_routing_text("routing.yaml", ROUTING.replace(b"PORT", str(hook_port).encode()))
    client = WebClient(token=TOKEN, base_url=api_url, timeout=5, retry_handlers=retry_handlers(2, FAST))
    slack = SlackNotifier(client, None, "#spend", Outbox(tmp_path / "outbox.db"), clock)
    webhook = WebhookNotifier(tmp_path / "webhook.db", secret=SECRET, clock=clock, sleep=sleep)
    sinks: dict[str, list[Any]] = {
        name: [SlackSink(slack, t) for t in r.slack] + [WebhookSink(webhook, w, "https://spendwatch.example")
                                                      for w in r.webhooks]
        for name, r in routing.receivers.items()
    }
    return AlertPipeline(routing, sinks, lifecycle=Lifecycle(flap_window_s=600),
                         silences=tmp_path / "silences.db", notifiers=(slack, webhook))


def all_text(message_blocks: list[dict], text: str) -> str:
    return text + "\n" + json.dumps(message_blocks, ensure_ascii=False)


# -- Slack -----------------------------------------------------------------------------
def test_pages_reminders_and_resolution_land_in_the_routed_channels_and_threads(tmp_path, slack, hook):
    p = build(tmp_path, slack.api_url, hook.port)
    try:
        a = firing(T0)
        p.push(a)
        p.advance(T0 + 30)
        p.deliver_pending()
        pages = slack.top_level()
        assert sorted(m.channel for m in pages) == sorted(_channel_id(c) for c in ("#search", "#pager"))  # continue
        for t in range(330, 3700, 300):
            p.advance(T0 + t)
        p.deliver_pending()
        replies = [m for m in slack.messages if m.thread_ts]
        assert len(replies) == 2 and all("Still firing" in r.text for r in replies)
        assert {r.thread_ts for r in replies} == {m.ts for m in pages}  # each in its own channel's thread
        p.push(a.resolve(rfc3339(T0 + 4000), "back to normal"))
        p.advance(T0 + 4000 + 600 + 300)
        report = p.deliver_pending()
        assert report.slack.pending == 0
        resolved = [m for m in slack.messages if m.thread_ts and "RESOLVED" in m.text]
        assert len(resolved) == 2 and all(m.edits == 1 for m in pages)
        assert all(m.blocks[0]["text"]["text"].startswith(":white_check_mark: Resolved") for m in pages)
        p.deliver_pending()
        assert len(slack.calls("chat.postMessage")) == 6 and len(slack.calls("chat.update")) == 2
    finally:
        p.close()


def test_the_page_says_what_where_how_much_and_how_to_silence(tmp_path, slack, hook):
    p = build(tmp_path, slack.api_url, hook.port)
    try:
        p.push(firing(T0, team="ads", severity="warning"))
        p.advance(T0 + 30)
        p.deliver_pending()
        [page] = slack.top_level()
        assert page.channel == _channel_id("#finops")
        shown = all_text(page.blocks, page.text)
        for expected in ("$41 per hour above normal", "$29,800 by month end", "+$30/h longer prompts",
                         "+$8.00/h more requests", "cost_per_request", "Open the runbook",
                         "spendwatch silence add --matcher 'rule=\\\"search.prompt-length\\\"'"):
            assert expected in shown, expected
    finally:
        p.close()


def test_mentions_and_links_in_labels_and_annotations_reach_slack_as_text(tmp_path, slack, hook):
    p = build(tmp_path, slack.api_url, hook.port)
    try:
        evil = firing(T0, feature="<!channel>", team="<https://evil|click>",
                      summary="ping <!here> and <https://evil|click>", related=["<@U123>"])
        p.push(evil)
        p.advance(T0 + 30)
        p.deliver_pending()
        assert slack.messages
        for message in slack.messages:
            for request_text in [message.text, json.dumps(message.blocks, ensure_ascii=False)]:
                assert "<!channel>" not in request_text and "<!here>" not in request_text
                assert "<https://evil" not in request_text and "<@U123>" not in request_text
            assert "&lt;!channel&gt;" in json.dumps(message.blocks)
    finally:
        p.close()


@pytest.mark.parametrize("kind", ["429", "500"])
def test_rate_limits_and_server_errors_are_retried(tmp_path, slack, hook, kind):
    random.seed(5)  # slack-sdk adds random jitter to Retry-After
    slack.fail("chat.postMessage", kind, times=1, retry_after=1 if kind == "429" else 0)
    p = build(tmp_path, slack.api_url, hook.port)
    try:
        p.push(firing(T0, team="ads"))
        p.advance(T0 + 30)
        report = p.deliver_pending()
        assert len(report.slack.delivered) == 1 and report.slack.failed == ()
        assert [c.answer for c in slack.calls("chat.postMessage")] == [kind, "ok"]
    finally:
        p.close()


def test_an_outage_and_a_restart_lose_nothing_and_send_nothing_twice(tmp_path, hook):
    down = FakeSlack().start()
    dead = down.api_url
    down.stop()
    records = [firing(T0, f"f{i}", team="ads") for i in range(3)]
    first = build(tmp_path, dead, hook.port)
    for r in records:
        first.push(r)
    first.advance(T0 + 30)
    report = first.deliver_pending()
    assert report.slack.pending == 3 and report.slack.failed[0][1].unavailable
    first.close()

    slack = FakeSlack().start()
    try:
        second = build(tmp_path, slack.api_url, hook.port, clock=lambda: T0 + 120)  # a restarted worker
        for r in records:
            second.push(r)  # the stream redelivers what was not committed
        second.advance(T0 + 30)
        assert len(second.deliver_pending().slack.delivered) == 3
        second.advance(T0 + 400)
        second.deliver_pending()
        assert len(slack.top_level()) == 3
        for r in records:
            assert sum(r.id in json.dumps(m.blocks) for m in slack.top_level()) == 1
        second.close()
    finally:
        slack.stop()


# -- the webhook -----------------------------------------------------------------------
def test_the_webhook_gets_an_alertmanager_payload_signed_with_the_secret(tmp_path, slack, hook):
    p = build(tmp_path, slack.api_url, hook.port)
    try:
        a = firing(T0, team="ads")
        p.push(a)
        p.advance(T0 + 30)
        p.deliver_pending()
        [(path, headers, body)] = hook.requests
        assert path == "/hook/secret-path"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER.lower()] == expected and headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert payload["version"] == "4" and payload["status"] == "firing" and payload["receiver"] == "pager"
        assert payload["groupLabels"] == {"rule": "search.prompt-length"}
        assert payload["externalURL"] == "https://spendwatch.example"
        [alert] = payload["alerts"]
        assert alert["labels"]["team"] == "ads" and alert["labels"]["severity"] == "critical"
        assert alert["fingerprint"] == fingerprint(a.rule, a.labels)
        assert alert["startsAt"] == a.started_at and alert["endsAt"] == "0001-01-01T00:00:00Z"
        assert alert["annotations"]["excess_usd_per_hour"] == "41.00"
        assert alert["annotations"]["runbook_url"] == a.runbook
        assert payload["commonLabels"]["team"] == "ads"
        p.push(a.resolve(rfc3339(T0 + 900), "back to normal"))
        p.advance(T0 + 900 + 600 + 300)
        p.deliver_pending()
        done = json.loads(hook.requests[-1][2])
        assert done["status"] == "resolved" and done["alerts"][0]["endsAt"] == rfc3339(T0 + 900)
        assert len({h[DELIVERY_HEADER.lower()] for _, h, _ in hook.requests}) == 2
    finally:
        p.close()


def test_the_webhook_retries_429_and_500_then_backs_off_and_survives_a_restart(tmp_path, slack, hook):
    waits: list[float] = []
    hook.failures.extend([(429, 2), (500, 0)])
    p = build(tmp_path, slack.api_url, hook.port, sleep=waits.append)
    try:
        p.push(firing(T0, team="ads"))
        p.advance(T0 + 30)
        report = p.deliver_pending()
        assert len(report.webhook.delivered) == 1 and [r for r, _ in hook.failures] == []
        assert waits[0] == 2.0 and len(hook.requests) == 3  # Retry-After honoured, then the 500 retried
        hook.failures.extend([(503, 0)] * 3)
        p.push(firing(T0 + 60, "other", team="ads"))
        p.advance(T0 + 400)
        report = p.deliver_pending()
        assert report.webhook.pending == 1 and report.webhook.failed[0][1].status_code == 503
    finally:
        p.close()
    again = build(tmp_path, slack.api_url, hook.port, clock=lambda: T0 + 3600)
    try:
        assert len(again.deliver_pending().webhook.delivered) == 1
        assert again.deliver_pending().webhook.delivered == ()
        keys = [h[DELIVERY_HEADER.lower()] for _, h, _ in hook.requests if _ is not None]
        assert len(set(keys)) == 2
    finally:
        again.close()


# -- the terminal ----------------------------------------------------------------------
def test_the_demo_preview_prints_the_messages_readably_and_literally(tmp_path):
    settings = AlertSettings(slack_outbox=tmp_path / "o.db", routing_file=None, rules_dir=tmp_path)
    p = AlertPipeline.from_settings(settings)
    try:
        assert all(isinstance(s, PreviewSink) for sinks in p.sinks.values() for s in sinks)
        a = firing(T0, feature="[bold]x[/] <!channel>")
        p.push(a)
        p.advance(T0 + 30)
        p.push(a.resolve(rfc3339(T0 + 1200), "back to normal"))
        p.advance(T0 + 1200 + 600 + 300)
        console = Console(record=True, width=120, color_system=None)
        assert print_messages(console, p.previews()) == 2
        out = console.export_text()
        assert "Critical: input tokens per request doubled" in out and "$41 per hour above normal" in out
        assert "[bold]x[/] <!channel>" in out  # shown as typed: no markup, no mention
        assert "Open the runbook (https://wiki.example.com/rb)" in out and "Resolved" in out
    finally:
        p.close()
