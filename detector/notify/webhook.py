"""A generic webhook sink: JSON notifications through a durable outbox, signed, retried.

:meth:`WebhookNotifier.enqueue` only writes the payload down (SQLite, keyed
by the notification's key and the URL, so a repeat changes nothing);
:meth:`WebhookNotifier.deliver_pending` POSTs what is due. A 429 (waiting its
``Retry-After``, capped), a 5xx or a broken connection is retried a few times
at once, then the row waits in the outbox with exponential backoff and
survives a restart. Any other answer than 2xx is a failure the row keeps
retrying with backoff too; a receiver that refuses a payload for good shows
up in ``last_error`` and in the report, not in silence.

Each request carries ``X-Spendwatch-Delivery`` (the key: a receiver that
saw it already can drop the repeat a lost answer causes) and, when a secret
is set, ``X-Spendwatch-Signature: sha256=<hex>``, the HMAC-SHA256 of the
exact body bytes with that secret, so the receiver can check who sent it.
The URL may hold a token in its path, so messages name only its scheme and
host.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from detector.errors import ConfigError
from detector.notify.transport import DeliveryError

SIGNATURE_HEADER = "X-Spendwatch-Signature"
DELIVERY_HEADER = "X-Spendwatch-Delivery"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
SCHEMA_VERSION = 1
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS webhook_schema (version INTEGER NOT NULL);
INSERT INTO webhook_schema (version) SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM webhook_schema);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    key             TEXT NOT NULL,
    url             TEXT NOT NULL,
    payload         TEXT NOT NULL,
    enqueued_at     REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    finished_at     REAL,
    PRIMARY KEY (key, url)
);
COMMIT;
"""


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body.

    >>> sign("s3cret", b'{"a":1}')
    'sha256=5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def where_to(url: str) -> str:
    """A URL as it may be shown: scheme and host only (a webhook's path is often its secret).

    >>> where_to("https://hooks.example.com/T0/secret?x=1")
    'https://hooks.example.com'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True, slots=True)
class WebhookReport:
    """What one :meth:`WebhookNotifier.deliver_pending` round did, by key."""

    delivered: tuple[str, ...] = ()
    failed: tuple[tuple[str, DeliveryError], ...] = ()
    pending: int = 0


Post = Callable[[str, bytes, dict[str, str], float], tuple[int, dict[str, str], bytes]]


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, dict[str, str], bytes]:
    """POST with the standard library; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) checked at load)
            return response.status, dict(response.headers.items()), response.read(2048)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers.items()), e.read(2048)


class WebhookNotifier:
    """JSON payloads to webhook URLs, through an outbox that loses and repeats nothing.

    >>> hook = WebhookNotifier(":memory:", clock=lambda: 100.0)
    >>> url = "http://127.0.0.1:9/hook"
    >>> hook.enqueue("g1/0", url, {"status": "firing"}), hook.enqueue("g1/0", url, {"status": "firing"})
    (True, False)
    >>> hook.close()
    """

    def __init__(
        self,
        outbox_path: str | Path,
        *,
        secret: str | None = None,
        clock: Callable[[], float] = time.time,
        post: Post = urllib_post,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 10.0,
        max_retry_count: int = 2,
        max_retry_after_s: float = 30.0,
        backoff_s: float = 30.0,
        max_backoff_s: float = 900.0,
    ) -> None:
        self.path = str(outbox_path)
        self.secret, self.clock, self.post, self.sleep = secret, clock, post, sleep
        self.timeout, self.max_retry_count, self.max_retry_after_s = timeout, max_retry_count, max_retry_after_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "webhook_schema" not in tables:
                self._db.executescript(_SCHEMA)
            elif self._db.execute("SELECT version FROM webhook_schema").fetchone() != (SCHEMA_VERSION,):
                raise ConfigError(f"{self.path}: webhook outbox schema is not version {SCHEMA_VERSION}; "
                                  "point the webhook outbox setting at a new file")
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: not a webhook outbox database: {exc}") from exc

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.path!r}, signed={self.secret is not None})"

    def close(self) -> None:
        self._db.close()

    def enqueue(self, key: str, url: str, payload: dict[str, Any]) -> bool:
        """Write a notification down; False when (key, url) is already there."""
        now = self.clock()
        cur = self._db.execute(
            "INSERT INTO webhook_outbox (key, url, payload, enqueued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key, url) DO NOTHING", (key, url, json.dumps(payload, sort_keys=True), now, now))
        return cur.rowcount == 1

    def count(self, state: str) -> int:
        return self._db.execute("SELECT count(*) FROM webhook_outbox WHERE state = ?", (state,)).fetchone()[0]

    def row(self, key: str, url: str) -> dict[str, Any] | None:
        """One row as a dict (state, attempts, next_attempt_at, last_error), for reports and tests."""
        r = self._db.execute("SELECT state, attempts, next_attempt_at, last_error FROM webhook_outbox "
                             "WHERE key = ? AND url = ?", (key, url)).fetchone()
        return None if r is None else dict(zip(("state", "attempts", "next_attempt_at", "last_error"), r, strict=True))

    def deliver_pending(self, now: float | None = None) -> WebhookReport:
        """POST every due row, oldest first; a URL that is down is not tried again this round."""
        now = self.clock() if now is None else now
        rows = self._db.execute(
            "SELECT key, url, payload, attempts FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY enqueued_at, key", (now,)).fetchall()
        delivered, failed, down = [], [], set()
        for key, url, payload, attempts in rows:
            if url in down:
                continue
            self._db.execute("UPDATE webhook_outbox SET attempts = attempts + 1 WHERE key = ? AND url = ?", (key, url))
            try:
                self._send(key, url, payload.encode())
            except DeliveryError as err:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempts)
                self._db.execute(
                    "UPDATE webhook_outbox SET last_error = ?, next_attempt_at = ? WHERE key = ? AND url = ?",
                    (str(err), now + delay, key, url))
                failed.append((key, err))
                if err.unavailable:
                    down.add(url)
                continue
            self._db.execute("UPDATE webhook_outbox SET state = 'delivered', finished_at = ?, last_error = NULL "
                             "WHERE key = ? AND url = ?", (now, key, url))
            delivered.append(key)
        return WebhookReport(tuple(delivered), tuple(failed), self.count("pending"))

    def _send(self, key: str, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "spendwatch", DELIVERY_HEADER: key}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        for attempt in range(self.max_retry_count + 1):
            last = attempt == self.max_retry_count
            try:
                status, answer_headers, answer = self.post(url, body, headers, self.timeout)
            except OSError as e:
                if last:
                    raise DeliveryError(f"webhook {where_to(url)}: no answer: {type(e).__name__}", method="webhook",
                                        status_code=None, error=type(e).__name__, unavailable=True) from None
                self.sleep(min(2.0, 0.1 * 2 ** attempt))
                continue
            if 200 <= status < 300:
                return
            if status not in RETRY_STATUS or last:
                text = answer[:100].decode("utf-8", "replace")
                raise DeliveryError(f"webhook {where_to(url)}: answered HTTP {status}: {text!r}", method="webhook",
                                    status_code=status, error=str(status), unavailable=status in RETRY_STATUS)
            self.sleep(_retry_after(answer_headers, attempt, self.max_retry_after_s))


def _retry_after(headers: dict[str, str], attempt: int, cap: float) -> float:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return min(cap, max(0.0, float(value))) if value is not None else min(cap, 0.1 * 2 ** attempt)
    except ValueError:
        return min(cap, 0.1 * 2 ** attempt)
