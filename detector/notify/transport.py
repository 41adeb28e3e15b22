"""Talking to Slack: one post or update at a time, retried, with secrets kept out of sight.

:class:`SlackTransport` wraps the slack-sdk client it is given, a
``WebClient`` (bot token: chat.postMessage, chat.update, threads) or a
``WebhookClient`` (incoming webhook: new messages only). slack-sdk's retry
handlers (:func:`retry_handlers`) retry a request on a rate limit (429,
sleeping for Retry-After), a server error (500/503) and a broken connection;
when they give up, the failure comes out as one :class:`DeliveryError`.

The token and the webhook URL are secrets: whoever holds either can post. A
slack-sdk error is never passed on, not even as the cause of ours, because
its response object holds the request with its Authorization header; our
messages run through a :class:`Redactor`, and the clients built from settings
log through :data:`SDK_LOGGER`, which redacts too (slack-sdk logs the webhook
URL when it retries).
"""

from __future__ import annotations

import functools
import http.client
import logging
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import (
    HttpRequest,
    HttpResponse,
    RetryHandler,
    RetryIntervalCalculator,
    RetryState,
)
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import (
    BackoffRetryIntervalCalculator,
)
from slack_sdk.webhook import WebhookClient

from detector.errors import ConfigError, SpendwatchError

T = TypeVar("T")
UNAVAILABLE_STATUS = frozenset({429, 500, 502, 503, 504})
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")
PAGE = 200  # messages or channels per page when reading back


class DeliveryError(SpendwatchError):
    """Slack did not take a message.

    ``method`` is the call (``chat.postMessage``, ``chat.update``, ``webhook``),
    ``status_code`` the HTTP status (None when there was no answer), ``error``
    Slack's error code or the kind of failure, and ``unavailable`` says Slack
    itself is unreachable or overloaded, so the rest of a round is not tried.

    >>> DeliveryError("chat.update: Slack answered HTTP 200: message_not_found", method="chat.update",
    ...               status_code=200, error="message_not_found", unavailable=False).unavailable
    False
    """

    def __init__(
        self, message: str, *, method: str, status_code: int | None, error: str, unavailable: bool
    ) -> None:
        super().__init__(message)
        self.method = method
        self.status_code = status_code
        self.error = error
        self.unavailable = unavailable


class Redactor(logging.Filter):
    """Replaces secrets with ``[redacted]`` in text, and in every record of a logger it filters.

    >>> Redactor(["xoxb-123-secret"]).redact("token xoxb-123-secret refused")
    'token [redacted] refused'
    """

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._values: list[str] = []
        self.hide(*values)

    def hide(self, *values: str | None) -> None:
        """Add secrets; a URL's path is hidden on its own too (a webhook's secret is its path)."""
        found = set(self._values)
        for value in values:
            if not value:
                continue
            found.add(value)
            path = urlsplit(value).path if "://" in value else ""
            if len(path) >= 8:
                found.add(path)
        self._values = sorted(found, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


SDK_LOGGER = logging.getLogger("detector.notify.sdk")
SDK_REDACTOR = Redactor()
SDK_LOGGER.addFilter(SDK_REDACTOR)


def _same_metadata(found: Any, wanted: Mapping[str, Any]) -> bool:
    return (isinstance(found, dict) and found.get("event_type") == wanted.get("event_type")
            and found.get("event_payload") == wanted.get("event_payload"))


def read_secret_file(path: str | Path, *, what: str) -> str:
    """A secret from a file (a mounted Kubernetes or Docker secret); errors never quote its content.

    >>> read_secret_file("/nonexistent/token", what="Slack token file")
    Traceback (most recent call last):
    ...
    detector.errors.ConfigError: /nonexistent/token: cannot read the Slack token file: No such file or directory
    """
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the {what} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{path}: the {what} is empty; expected the secret on one line")
    if any(ch.isspace() for ch in text):
        raise ConfigError(f"{path}: the {what} holds whitespace inside; expected the secret alone on one line")
    return text


class UnsentPostRetryHandler(ConnectionErrorRetryHandler):
    """slack-sdk's connection-error retries, except for a post Slack may already have taken.

    A connection reset or a dropped answer to ``chat.postMessage`` can come
    after Slack posted the message, and sending it again blindly posts it
    twice. Such a post is left to the outbox, which looks in the channel
    before trying again; a post whose connection was refused never left, and
    is retried here. Every other method is safe to repeat.
    """

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        if request.url.rstrip("/").endswith("/chat.postMessage") and not _never_sent(error):
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)


def _never_sent(error: Exception | None) -> bool:
    reason = error.reason if isinstance(error, URLError) else error
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


def retry_handlers(
    max_retry_count: int = 2, interval_calculator: RetryIntervalCalculator | None = None, *,
    repeat_posts: bool = False,
) -> list[RetryHandler]:
    """slack-sdk's handlers for a broken connection, a 429 (it sleeps Retry-After) and a 500/503.

    ``repeat_posts`` lets slack-sdk resend a post cut off mid-answer: for a
    weekly digest, which has no outbox behind it, twice is better than not
    at all.

    >>> [type(h).__name__ for h in retry_handlers(1)]
    ['UnsentPostRetryHandler', 'RateLimitErrorRetryHandler', 'ServerErrorRetryHandler']
    """
    calc = interval_calculator or BackoffRetryIntervalCalculator(backoff_factor=0.5)
    connection = ConnectionErrorRetryHandler if repeat_posts else UnsentPostRetryHandler
    return [
        connection(max_retry_count=max_retry_count, interval_calculator=calc),
        RateLimitErrorRetryHandler(max_retry_count=max_retry_count, interval_calculator=calc),
        ServerErrorRetryHandler(max_retry_count=max_retry_count, interval_calculator=calc),
    ]


class SlackTransport:
    """Posts and updates rendered messages through one slack-sdk client.

    >>> SlackTransport(None, WebhookClient("http://127.0.0.1:9/services/T/B/secret-path")).mode
    'webhook'
    """

    def __init__(self, client: WebClient | None, webhook: WebhookClient | None) -> None:
        if client is None and webhook is None:
            raise ConfigError("Slack: expected a Web API client or an incoming webhook, found neither")
        self.client, self.webhook = client, webhook
        self._channel_ids: dict[str, str] = {}
        self.redactor = Redactor([
            client.token if client is not None else None, webhook.url if webhook is not None else None,
        ])

    @property
    def mode(self) -> str:
        """``web_api`` (threads and updates) or ``webhook`` (new messages only)."""
        return "web_api" if self.client is not None else "webhook"

    def __repr__(self) -> str:
        return f"SlackTransport(mode={self.mode!r})"

    def post(
        self, channel: str | None, message: dict[str, Any], *, thread_ts: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[str, str | None]:
        """Post a message; returns Slack's channel id and ts (webhook: the channel given, no ts).

        ``metadata`` (``event_type``, ``event_payload``) travels with the
        message, invisible to readers, so that :meth:`find_posted` can
        recognise it later (webhooks carry none).
        """
        if self.client is None:
            self._webhook_send(message)
            return channel or "", None
        client = self.client
        response = self._call("chat.postMessage", lambda: client.chat_postMessage(
            channel=channel, text=message["text"], blocks=message["blocks"], thread_ts=thread_ts,
            parse="none", link_names=False, unfurl_links=False, unfurl_media=False,
            metadata=dict(metadata) if metadata else None,
        ))
        return str(response.get("channel") or channel), str(response["ts"])

    def find_posted(
        self, channel: str, metadata: Mapping[str, Any], *, oldest: float, thread_ts: str | None = None,
        pages: int = 5,
    ) -> str | None:
        """The ts of a message in ``channel`` (or in the thread ``thread_ts``) that carries ``metadata``.

        Slack has no idempotency key: a post whose answer was lost (a crash, a
        dropped connection) may have gone out all the same, and its metadata
        is how it is recognised. Reads messages newer than ``oldest`` (epoch
        seconds), newest first, at most ``pages`` pages; needs the
        ``channels:history`` scope (``groups:history`` for a private channel)
        and a channel id, not a name (see :meth:`channel_id`).
        """
        client = self.client
        if client is None:
            return None
        since = f"{oldest:.6f}"

        def read(cursor: str | None) -> Any:
            if thread_ts:
                return client.conversations_replies(channel=channel, ts=thread_ts, oldest=since,
                                                    include_all_metadata=True, limit=PAGE, cursor=cursor)
            return client.conversations_history(channel=channel, oldest=since, include_all_metadata=True,
                                                limit=PAGE, cursor=cursor)

        method = "conversations.replies" if thread_ts else "conversations.history"
        for message in self._paged(method, read, "messages", pages):
            if message.get("ts") != thread_ts and _same_metadata(message.get("metadata"), metadata):
                return str(message["ts"])
        return None

    def channel_id(self, channel: str, *, pages: int = 10) -> str | None:
        """Slack's id for a channel given by name (``#spend``), which the history methods need.

        An id is returned as it is; a public channel's name is looked up once
        with ``conversations.list`` (the ``channels:read`` scope) and kept.
        None when no public channel has that name (a private channel is
        named by its id).
        """
        if CHANNEL_ID.fullmatch(channel):
            return channel
        name = channel.lstrip("#")
        if name in self._channel_ids or self.client is None:
            return self._channel_ids.get(name)
        read = functools.partial(self.client.conversations_list, types="public_channel", exclude_archived=True,
                                 limit=PAGE)
        for found in self._paged("conversations.list", lambda cursor: read(cursor=cursor), "channels", pages):
            if found.get("name") == name:
                self._channel_ids[name] = str(found["id"])
                return self._channel_ids[name]
        return None

    def _paged(self, method: str, read: Callable[[str | None], Any], key: str, pages: int) -> Iterator[Any]:
        """The ``key`` items of a cursor-paged read, page by page (each a :meth:`_call`), at most ``pages`` pages."""
        cursor: str | None = None
        for _ in range(pages):
            response = self._call(method, functools.partial(read, cursor))
            yield from response.get(key) or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return

    def update(self, channel: str, ts: str, message: dict[str, Any]) -> None:
        """Rewrite a message we posted (Web API only)."""
        client = self.client
        if client is None:
            raise ConfigError("Slack: an incoming webhook cannot update a message; a bot token can")
        self._call("chat.update", lambda: client.chat_update(
            channel=channel, ts=ts, text=message["text"], blocks=message["blocks"], parse="none",
            link_names=False,
        ))

    def _webhook_send(self, message: dict[str, Any]) -> None:
        hook = self.webhook
        assert hook is not None
        response = self._call("webhook", lambda: hook.send(
            text=message["text"], blocks=message["blocks"], unfurl_links=False, unfurl_media=False,
        ))
        if response.status_code != 200 or response.body != "ok":
            body = self.redactor.redact(str(response.body)[:200])
            raise DeliveryError(
                f"webhook: expected HTTP 200 'ok', Slack answered {response.status_code} {body!r}",
                method="webhook", status_code=response.status_code, error=body[:100],
                unavailable=response.status_code in UNAVAILABLE_STATUS,
            )

    def _call(self, method: str, send: Callable[[], T]) -> T:
        """Run one slack-sdk call; any failure becomes a :class:`DeliveryError` with no secret in it."""
        try:
            return send()
        except SlackApiError as e:
            status = e.response.status_code
            data = e.response.data if isinstance(e.response.data, dict) else {}
            code = self.redactor.redact(str(data.get("error") or "unknown_error"))
            err = DeliveryError(
                f"{method}: Slack answered HTTP {status}: {code}", method=method, status_code=status,
                error=code, unavailable=status in UNAVAILABLE_STATUS,
            )
        except (SlackClientError, OSError, http.client.HTTPException) as e:
            err = DeliveryError(
                self.redactor.redact(f"{method}: no answer from Slack: {type(e).__name__}: {e}"),
                method=method, status_code=None, error=type(e).__name__, unavailable=True,
            )
        raise err  # outside the except clause: the slack-sdk error is not even the context
