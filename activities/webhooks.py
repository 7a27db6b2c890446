"""The webhook delivery round (R-EVENT-2; docs/webhooks.md, "Delivery").

`deliver_round` is the one activity of an endpoint's workflow (workflows/webhooks.py). PostgreSQL
holds every delivery's state, so a round can die anywhere and the next one picks up: an attempt
sent but not recorded is sent again (at least once; receivers deduplicate by `webhook-id`).

A round, at business time `now` (the workflow's clock, never the wall clock):
1. claims the events after the endpoint's cursor into pending deliveries (store/deliveries.py);
2. sends, for each stream (a subscription, or a workplace's own decisions), only its lowest-seq
   pending delivery, if due: a later event waits while an earlier one is retried. Streams run
   concurrently, at most `STREAMS_AT_ONCE`; a stream whose attempt succeeded goes on with its
   next due delivery in the same round;
3. records each attempt: succeeded on a 2xx, else the next attempt at the schedule's delay
   (domain/webhook_schedule.py) or `failed` after the last one; the endpoint's `failing_since`.
   An attempt's time is `now` plus the wall seconds the round has run (`_RoundClock`), and the
   delay counts from when the attempt ended: a retry after a 15 s timeout is 5 s after it;
4. disables an endpoint failing for three days (audit `webhook_endpoint_disabled`).
It sends at most `ROUND_SENDS` and starts none after `ROUND_SECONDS`, then answers `more`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import MetricMeter

from domain.subscription import SYSTEM_ACTOR
from domain.webhook_schedule import retry_at, should_disable
from store import audit, deliveries, webhooks
from store.db import Pool
from store.deliveries import Attempt, EndpointRow, Pending
from store.events import EventRow

CLAIM_LIMIT = 500  # events read from the feed per round
ROUND_SENDS = 200  # attempts per round
ROUND_SECONDS = 45.0  # wall seconds after which a round starts no new attempt
STREAMS_AT_ONCE = 16  # streams of one endpoint sent to at once
# Heartbeats per heartbeat timeout: for the default 30 s (workflows/webhooks.py), every 5 s; the
# same 5 s when the round is run without a heartbeat timeout.
HEARTBEATS_PER_TIMEOUT = 6
HEARTBEAT_EVERY = 5.0
# Events committed while an older transaction runs are not in the feed yet (store/events.py):
# the endpoint looks again this soon, not at the next poke.
HELD_BACK_RETRY = timedelta(seconds=1)

DELIVERIES_METRIC = "bizsupport_webhook_deliveries"
ATTEMPTS_METRIC = "bizsupport_webhook_attempts"
OLDEST_PENDING_METRIC = "bizsupport_webhook_oldest_pending_age"


Outcome = Literal["ok", "status", "timeout", "unreachable", "refused_url", "no_secret"]


@dataclass(frozen=True, slots=True)
class Sent:
    """What one attempt came to: `ok` for a 2xx in time; else why not, in words for the
    deliveries view (`error`) and as a metric label (`outcome`)."""

    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after: timedelta | None = None  # a 429 or 503's `Retry-After`, as a wait

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class Sender(Protocol):
    """One signed attempt over HTTP (services/webhook_sender.py, given by starter/temporal.py)."""

    async def send(self, url: str, event: EventRow, secrets: list[str]) -> Sent: ...


class RoundInput(BaseModel):
    endpoint_id: str
    now: datetime  # business time, from the workflow


class RoundResult(BaseModel):
    ended: bool = False  # the endpoint is deleted, disabled or gone: the workflow ends
    more: bool = False  # work was left for lack of budget: run another round at once
    next_at: datetime | None = None  # the earliest retry or next delivery not yet due


class WebhookMetrics:
    """On the worker's /metrics (the Temporal runtime's Prometheus endpoint, like the partner
    calls'): deliveries that ended, by outcome; attempts by result; per endpoint, how long its
    oldest pending delivery has waited (business seconds, set every round)."""

    def __init__(self, meter: MetricMeter | None) -> None:
        meter = meter or MetricMeter.noop
        self.deliveries = meter.create_counter(
            DELIVERIES_METRIC, "Webhook deliveries that ended, by outcome (succeeded, failed)"
        )
        self.attempts = meter.create_counter(
            ATTEMPTS_METRIC,
            "Webhook delivery attempts by result (ok, status, timeout, unreachable, refused_url)",
        )
        self.oldest_pending = meter.create_gauge_float(
            OLDEST_PENDING_METRIC,
            "Age of the endpoint's oldest pending webhook delivery",
            "seconds",
        )

    def attempt(self, sent: Sent, ended: str | None) -> None:
        self.attempts.add(1, {"result": sent.outcome})
        if ended is not None:
            self.deliveries.add(1, {"outcome": ended})


class WebhookActivities:
    def __init__(self, pool: Pool, sender: Sender, *, meter: MetricMeter | None = None) -> None:
        self.pool = pool
        self.sender = sender
        self.metrics = WebhookMetrics(meter)

    def all(self) -> list[Callable[..., object]]:
        return [self.deliver_round]

    @activity.defn(name="deliver_round")
    async def deliver_round(self, input: RoundInput) -> RoundResult:
        async with _heartbeating():
            return await self._round(input.endpoint_id, input.now)

    async def _round(self, endpoint_id: str, now: datetime) -> RoundResult:
        claimed = await deliveries.claim(self.pool, endpoint_id, now=now, limit=CLAIM_LIMIT)
        ep = claimed.endpoint
        if ep is None or ep.status != "enabled":
            self.metrics.oldest_pending.set(0.0, {"endpoint": endpoint_id})
            return RoundResult(ended=True)
        heads = await deliveries.stream_heads(self.pool, endpoint_id)
        later = [h.next_attempt_at for h in heads if h.next_attempt_at > now]
        if claimed.held_back:
            later.append(now + HELD_BACK_RETRY)
        due = [h for h in heads if h.next_attempt_at <= now]
        secrets: list[str] = []
        if due:
            async with self.pool.connection() as conn:
                secrets = await webhooks.signing_secrets(conn, endpoint_id, now)
        clock = _RoundClock(now)
        budget = _Budget(ROUND_SENDS, time.monotonic() + ROUND_SECONDS)
        failed = False
        gate = asyncio.Semaphore(STREAMS_AT_ONCE)

        async def stream(head: Pending) -> None:
            nonlocal failed
            async with gate:
                current: Pending | None = head
                while current is not None:
                    if not budget.take():
                        return
                    ok, retry = await self._attempt(ep, current, secrets, clock)
                    if not ok:
                        failed = True
                        if retry is not None:
                            later.append(retry)
                        return
                    current = await deliveries.stream_head(self.pool, endpoint_id, head.stream)
                    if current is not None and current.next_attempt_at > now:
                        later.append(current.next_attempt_at)
                        return

        # A task group, not gather: when one stream fails (PostgreSQL gone), the others stop
        # too, so the retried round never overlaps sends still running from this one.
        try:
            async with asyncio.TaskGroup() as group:
                for h in due:
                    group.create_task(stream(h))
        except ExceptionGroup as failures:  # the round fails as its first stream did
            raise failures.exceptions[0] from None
        if failed and await self._disable_if_failing(endpoint_id, now):
            return RoundResult(ended=True)
        oldest = await deliveries.oldest_pending(self.pool, endpoint_id)
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        self.metrics.oldest_pending.set(max(age, 0.0), {"endpoint": endpoint_id})
        more = claimed.read == CLAIM_LIMIT or budget.exhausted
        return RoundResult(more=more, next_at=min(later) if later else None)

    async def _attempt(
        self, ep: EndpointRow, delivery: Pending, secrets: list[str], clock: _RoundClock
    ) -> tuple[bool, datetime | None]:
        """One attempt, recorded at when it began: whether it succeeded and, when not, when to
        retry, counted from when it ended (None: never, the delivery failed)."""
        began = clock.now()
        sent = await self.sender.send(ep.url, delivery.event, secrets)
        retry = None if sent.ok else retry_at(delivery.attempts + 1, clock.now(), sent.retry_after)
        await deliveries.record_attempt(
            self.pool,
            ep.endpoint_id,
            delivery.delivery_id,
            Attempt(began, sent.ok, sent.status_code, sent.error, retry),
        )
        ended = "succeeded" if sent.ok else (None if retry is not None else "failed")
        self.metrics.attempt(sent, ended)
        return sent.ok, retry

    async def _disable_if_failing(self, endpoint_id: str, now: datetime) -> bool:
        """Disable the endpoint once it has failed for three days without a success, and file its
        audit entry, in one transaction: an endpoint is never disabled without the entry that
        says why (the entry is keyed by when the failing began)."""
        async with self.pool.connection() as conn, conn.transaction():
            ep = await deliveries.endpoint(conn, endpoint_id)
            if ep is None or not should_disable(ep.failing_since, now):
                return False
            assert ep.failing_since is not None
            if not await deliveries.disable(conn, endpoint_id, at=now):
                return False  # not enabled any more: someone else changed it
            await audit.write(
                conn,
                event_key=f"webhook_endpoint_disabled:{endpoint_id}:{ep.failing_since.isoformat()}",
                at=now,
                workplace_id=ep.workplace_id or "",  # system-wide: as services/webhooks.py files it
                service_id=None,
                subscription_id=None,
                actor=SYSTEM_ACTOR,
                action="webhook_endpoint_disabled",
                outcome="ok",
                details={
                    "endpoint_id": endpoint_id,
                    "url": ep.url,
                    "failing_since": ep.failing_since.isoformat(),
                },
            )
        return True


class _RoundClock:
    """Business time during a round: the workflow's `now` when the round began, plus the wall
    seconds the round has run since (an attempt can take 15 s). Only elapsed time is read from
    the machine; where the business clock stands is the workflow's."""

    def __init__(self, started_at: datetime) -> None:
        self.started_at = started_at
        self.started = time.monotonic()

    def now(self) -> datetime:
        return self.started_at + timedelta(seconds=time.monotonic() - self.started)


class _Budget:
    def __init__(self, sends: int, deadline: float) -> None:
        self.sends = sends
        self.deadline = deadline
        self.exhausted = False

    def take(self) -> bool:
        if self.sends <= 0 or time.monotonic() > self.deadline:
            self.exhausted = True
            return False
        self.sends -= 1
        return True


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat several times per heartbeat timeout while the round runs, so a worker that
    died mid-round is noticed by its heartbeat timeout, not the round's whole start-to-close
    timeout. The pace follows the timeout the workflow gave (EndpointInput.round_heartbeat)."""
    timeout = activity.info().heartbeat_timeout
    every = timeout.total_seconds() / HEARTBEATS_PER_TIMEOUT if timeout else HEARTBEAT_EVERY

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
