"""Event → series → models → anomaly records; pure and in event time.

The engine is the one place detection happens: ``spendwatch replay``, the
demo, the tests and (later) the stream worker all feed it events one at a
time and collect the records it returns. It reads no clock: "now" is the
timestamp of the event being processed, so a replay gives exactly the alerts
the live stream gave.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from datetime import UTC, datetime

from detector.anomaly import (
    Anomaly,
    anomaly_id,
    describe_ratio,
    money,
    rfc3339,
    severity_for,
    where,
)
from detector.config import Settings
from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.ledger import SpendLedger
from detector.models.level_shift import SHIFTED, LogLevelShift
from detector.pricing import PriceTable
from detector.series import SeriesKey, labels_of
from detector.window import HourWindow

PROMPT_RULE = "builtin.input_tokens_per_request"
PROMPT_METRIC = "input_tokens_per_request"


class LlmSeries:
    """Everything the engine keeps about one (team, feature, model).

    Spend is booked a minute at a time: requests and dollars of the open
    minute add up here and go to the hour window, the month total and the
    ledger when the minute closes, which keeps the per-event work to a few
    additions.
    """

    __slots__ = (
        "key", "first_ts", "input_tokens", "input_sum", "cached_sum", "month", "month_cost",
        "window", "alert", "excess_tokens", "minute", "category", "m_requests", "m_cost", "m_unpriced",
    )

    def __init__(self, key: SeriesKey, first_ts: float, category: str, settings: Settings) -> None:
        self.key = key
        self.first_ts = first_ts
        self.input_tokens = LogLevelShift(
            warmup=settings.warmup_requests, h=settings.shift_threshold, min_ratio=settings.min_ratio
        )
        self.input_sum = 0  # with cached_sum: the series' cache share, to price input tokens
        self.cached_sum = 0
        self.month = ""
        self.month_cost = 0.0
        self.window = HourWindow()
        self.alert: Anomaly | None = None
        self.excess_tokens = 0.0  # input tokens above baseline since the alert fired
        self.minute = int(first_ts // 60)  # the open minute, and its category and totals
        self.category = category
        self.m_requests = self.m_unpriced = 0
        self.m_cost = 0.0


class Engine:
    """Online detection over a stream of decoded events.

    >>> from detector.pricing import PriceTable
    >>> engine = Engine(PriceTable.packaged())
    >>> engine.process(LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=900, output_tokens=80, team="a"))
    []
    >>> engine.series_count, round(engine.ledger.total(), 6)
    (1, 0.00305)
    """

    def __init__(self, prices: PriceTable, settings: Settings | None = None) -> None:
        self.prices = prices
        self.settings = settings or Settings()
        self._ledger = SpendLedger()
        self.series: dict[SeriesKey, LlmSeries] = {}
        self.watermark = -math.inf
        self._month, self._month_start, self._month_end = "", math.inf, -math.inf
        self.fired = 0
        self.resolved = 0

    @property
    def series_count(self) -> int:
        return len(self.series)

    @property
    def ledger(self) -> SpendLedger:
        """Spend so far, every open minute included."""
        for s in self.series.values():
            self._close_minute(s)
        return self._ledger

    def process(self, ev: Event) -> list[Anomaly]:
        """Feed one event; return the records (firing or resolved) it caused."""
        return self.process_many((ev,))

    def process_many(self, events: Iterable[Event]) -> list[Anomaly]:
        """Feed events in order; return the records they caused, in order.

        The same as calling :meth:`process` on each, written as one loop
        because this is the hot path: the names it needs per event are bound
        once per batch.
        """
        out: list[Anomaly] = []
        series, cost_of = self.series, self.prices.cost
        watermark = self.watermark
        for ev in events:
            ts = ev.ts
            if ts > watermark:
                watermark = ts
            if type(ev) is not LlmRequest:
                self._sample(ev)
                continue
            key = (ev.team, ev.feature, ev.model)
            s = series.get(key)
            if s is None:
                s = series[key] = LlmSeries(key, ts, ev.category, self.settings)
            minute = int(ts // 60)
            if minute != s.minute or ev.category != s.category:
                self._close_minute(s)
                s.minute, s.category = minute, ev.category
            cost = cost_of(ev)
            s.m_requests += 1
            if cost is None:
                s.m_unpriced += 1
            else:
                s.m_cost += cost
            s.input_sum += ev.input_tokens
            s.cached_sum += ev.cached_input_tokens
            model = s.input_tokens
            was_shifted = model.phase == SHIFTED
            model.update(ev.input_tokens, ts)
            if was_shifted or model.phase == SHIFTED:
                record = self._after_shift_update(s, ev, was_shifted)
                if record is not None:
                    out.append(record)
        self.watermark = watermark
        return out

    def _close_minute(self, s: LlmSeries) -> None:
        """Book the series' open minute into its hour window, its month and the ledger."""
        if not s.m_requests:
            return
        ts = s.minute * 60.0
        s.window.add(ts, s.m_cost, s.m_requests)
        if not self._month_start <= ts < self._month_end:
            self._month, self._month_start, self._month_end = _month_span(ts)
        if s.month != self._month:
            s.month, s.month_cost = self._month, 0.0
        s.month_cost += s.m_cost
        team, _, model = s.key
        self._ledger.add_requests(s.category, team, model or "", s.m_requests, s.m_cost, s.m_unpriced)
        s.m_requests = s.m_unpriced = 0
        s.m_cost = 0.0

    def _sample(self, ev: Event) -> None:
        """GPU and usage samples: priced into the ledger."""
        if type(ev) is GpuSample:
            hourly = ev.hourly_cost_usd
            if hourly is None and ev.gpu_model:
                hourly = self.prices.gpu_hourly(ev.gpu_model)
            self._ledger.add_gpu(ev, hourly)
        elif type(ev) is UsageSample:
            self._ledger.add_usage(ev)

    def _after_shift_update(self, s: LlmSeries, ev: LlmRequest, was_shifted: bool) -> Anomaly | None:
        """The alert side of a series whose model is, or just was, in a shift."""
        model = s.input_tokens
        if model.phase != SHIFTED:
            return self._resolve(s, ev.ts, accepted=False)
        s.excess_tokens += ev.input_tokens - model.baseline_mean
        if not was_shifted:
            return self._fire(s, ev.ts)
        if ev.ts - model.shifted_at >= self.settings.rebaseline_after_hours * 3600:
            model.rebaseline(ev.ts)
            return self._resolve(s, ev.ts, accepted=True)
        return None

    def input_price(self, s: LlmSeries) -> float:
        """$ per input token on this series, at its own prompt-cache share; 0 when unpriced."""
        price = self.prices.model_price(s.key[-1] or "")
        if price is None or not s.input_sum:
            return 0.0
        cache_price = price.cache_read_per_token
        if cache_price is None:
            cache_price = price.input_per_token
        cached_share = s.cached_sum / s.input_sum
        return (1 - cached_share) * price.input_per_token + cached_share * cache_price

    # -- records ------------------------------------------------------------
    def _fire(self, s: LlmSeries, ts: float) -> Anomaly:
        self._close_minute(s)
        shift = s.input_tokens.shift()
        assert shift is not None
        labels = labels_of(s.key)
        per_hour = s.window.requests(ts) * 60 / _window_minutes(s, ts)
        price = self.input_price(s)
        excess = (shift.observed_mean - shift.baseline_mean) * price * per_hour
        projected = _projected_month(s, ts)
        started = rfc3339(shift.onset_ts)
        ratio = shift.ratio
        summary = (
            f"Input tokens per request for {where(labels)} {describe_ratio(ratio)}: "
            f"median {shift.baseline_median:,.0f} → {shift.observed_median:,.0f} ({ratio:.1f}×) "
            f"since {started[11:16]} UTC; "
        )
        if price:
            summary += f"about {money(excess)}/h {'above' if excess >= 0 else 'below'} normal"
            if projected is not None:
                summary += f", {money(projected)} by month end at this rate"
        else:
            summary += f"{labels.get('model', 'this model')} has no price, so the cost is unknown"
        s.excess_tokens = shift.requests * (shift.observed_mean - shift.baseline_mean)  # leaked before detection
        s.alert = Anomaly(
            id=anomaly_id(PROMPT_RULE, labels, started),
            rule=PROMPT_RULE,
            metric=PROMPT_METRIC,
            labels=labels,
            severity=severity_for(
                excess, self.settings.critical_usd_per_hour, self.settings.warning_usd_per_hour
            ),
            status="firing",
            started_at=started,
            detected_at=rfc3339(ts),
            resolved_at=None,
            observed=round(shift.observed_median, 1),
            baseline=round(shift.baseline_median, 1),
            ratio=round(ratio, 3),
            excess_cost_usd_per_hour=round(excess, 4),
            projected_month_usd=None if projected is None else round(projected, 2),
            summary=summary,
        )
        self.fired += 1
        return s.alert

    def _resolve(self, s: LlmSeries, ts: float, *, accepted: bool) -> Anomaly:
        alert = s.alert
        assert alert is not None
        labels = alert.labels
        lasted = _duration(ts - _parse_ts(alert.started_at))
        if accepted:
            how = f"still {alert.ratio:.1f}× after {lasted}; accepted as the new normal"
        else:
            how = f"back to normal after {lasted}"
        summary = f"Input tokens per request for {where(labels)} {how}"
        price = self.input_price(s)
        if price:
            summary += f"; about {money(s.excess_tokens * price)} spent above normal in all"
        s.alert = None
        self.resolved += 1
        return alert.resolve(rfc3339(ts), summary)


def _month_span(ts: float) -> tuple[str, float, float]:
    """The calendar month (UTC) holding ``ts``: its name, first and last instant."""
    now = datetime.fromtimestamp(ts, UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start.strftime("%Y-%m"), start.timestamp(), end.timestamp()


def _window_minutes(s: LlmSeries, ts: float) -> float:
    """Minutes the hour window really covers (a young series has less than 60)."""
    return max(1.0, min(60.0, (ts - s.first_ts) / 60))


def _projected_month(s: LlmSeries, ts: float) -> float | None:
    """Month-end spend of the series: spent so far, plus the last hour's rate to the end."""
    if not s.month_cost:
        return None
    now = datetime.fromtimestamp(ts, UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    end = datetime(now.year, now.month, days, 23, 59, 59, tzinfo=UTC).timestamp()
    return s.month_cost + s.window.cost(ts) * (end - ts) / 3600


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60}h {minutes % 60:02d}m"
