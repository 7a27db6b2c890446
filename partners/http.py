"""The partner gateway over HTTP: signed JSON requests to each service's partner.

One pooled `httpx.AsyncClient` per worker process and event loop (`shared_client`); a call never
blocks the event loop, waits at most 5 s to connect and `ANSWER_TIMEOUT` for the answer (less
inside an activity whose start-to-close timeout is shorter), and at most `PER_SERVICE_CALLS`
calls to one partner run at once, so a slow or dead partner holds only its own calls.

Outcomes (docs/partners.md, "Answers"):
- 2xx: done, the answer is checked against the protocol's models;
- 400/403/404/409/422: `PartnerRefusal(reason)`, for good;
- 401: `PartnerMisconfigured`, an operator alert (log and metric) and a slow retry;
- 408, 429 (after its Retry-After), 5xx, timeouts and connection errors: `PartnerUnavailable`,
  retried by Temporal with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.common import MetricMeter

from partners.config import PartnerEndpoint, secret_setting
from partners.gateway import (
    DeletionCount,
    MemberCourses,
    PartnerAccount,
    PartnerMisconfigured,
    PartnerRefusal,
    PartnerUnavailable,
)
from partners.wire import (
    REFUSAL_STATUSES,
    TRANSIENT_STATUSES,
    UNAUTHORIZED,
    AccountAnswer,
    AccountsAnswer,
    CoursesAnswer,
    DeletionAnswer,
    PlanAnswer,
    ResetAnswer,
    SuspendAnswer,
    idempotency_key,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
ANSWER_TIMEOUT = 30.0
# Inside an activity the whole call ends this long before its start-to-close timeout, so the
# gateway (not Temporal's timer) reports the timeout and the attempt's slot is freed at once.
ACTIVITY_MARGIN = 3.0
PER_SERVICE_CALLS = 32
MAX_RETRY_AFTER = timedelta(minutes=10)
PARTNER_CALLS_METRIC = "bizsupport_partner_calls"
PARTNER_LATENCY_METRIC = "bizsupport_partner_call_latency"
# Seconds; the runtime that serves the worker's /metrics is made with these buckets.
PARTNER_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

Answer = TypeVar("Answer", bound=BaseModel)

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> httpx.AsyncClient:
    """The process's pooled client for the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(ANSWER_TIMEOUT, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            follow_redirects=False,
        )
        _clients[loop] = client
    return client


def call_budget(answer_timeout: float = ANSWER_TIMEOUT) -> float:
    """Seconds a call may take: `answer_timeout`, less inside a shorter activity."""
    if activity.in_activity():
        limit = activity.info().start_to_close_timeout
        if limit is not None:
            return max(1.0, min(answer_timeout, limit.total_seconds() - ACTIVITY_MARGIN))
    return answer_timeout


def attempt_key() -> str:
    """What tells one business action from another when it carries no time of its own: the
    activity (stable across its retries), or a fresh id outside one."""
    if activity.in_activity():
        info = activity.info()
        return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    return uuid.uuid4().hex


def retry_after(value: str | None) -> timedelta | None:
    """Retry-After as seconds or an HTTP date, within [1 s, MAX_RETRY_AFTER]; None if absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(timedelta(seconds=seconds), timedelta(seconds=1)), MAX_RETRY_AFTER)


SERVICE_CACHE = 10_000  # subscriptions whose service a gateway keeps in memory


class PartnerMetrics:
    """Partner calls by service, operation and outcome, and their latency, on the worker's
    /metrics (the Temporal runtime's Prometheus endpoint)."""

    def __init__(self, meter: MetricMeter | None) -> None:
        meter = meter or MetricMeter.noop
        self.calls = meter.create_counter(
            PARTNER_CALLS_METRIC, "Partner calls by service, operation and outcome"
        )
        self.latency = meter.create_histogram_float(
            PARTNER_LATENCY_METRIC, "Partner call latency", "seconds"
        )

    def record(self, service_id: str, operation: str, outcome: str, seconds: float) -> None:
        labels = {"service": service_id, "operation": operation, "outcome": outcome}
        self.calls.add(1, labels)
        self.latency.record(seconds, labels)


class HttpPartner:
    """PartnerGateway over the partner protocol, one endpoint per service.

    `service_of` names the service of a subscription (calls that carry only its id)."""

    def __init__(
        self,
        endpoints: Mapping[str, PartnerEndpoint],
        service_of: Callable[[str], Awaitable[str | None]],
        *,
        meter: MetricMeter | None = None,
        client: Callable[[], httpx.AsyncClient] = shared_client,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self.answer_timeout = answer_timeout
        self.endpoints = dict(endpoints)
        self.signers = {sid: e.signer() for sid, e in self.endpoints.items()}
        self.service_of = service_of
        self.client = client
        self.metrics = PartnerMetrics(meter)
        # Which service each subscription is on: looked up once, kept for the most recent
        # SERVICE_CACHE subscriptions only, so a worker's memory does not grow with the book.
        self.services: OrderedDict[str, str] = OrderedDict()
        self.slots = {sid: asyncio.Semaphore(PER_SERVICE_CALLS) for sid in self.endpoints}

    async def _service(self, subscription_id: str) -> str:
        found = self.services.get(subscription_id)
        if found is None:
            found = await self.service_of(subscription_id)
            if found is None:
                raise PartnerRefusal(f"no subscription {subscription_id} to call a partner for")
        self._remember(subscription_id, found)
        return found

    def _remember(self, subscription_id: str, service_id: str) -> None:
        self.services[subscription_id] = service_id
        self.services.move_to_end(subscription_id)
        if len(self.services) > SERVICE_CACHE:
            self.services.popitem(last=False)

    async def _call(
        self,
        service_id: str,
        operation: str,
        method: str,
        path: str,
        answer: type[Answer],
        *,
        key: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        endpoint = self.endpoints.get(service_id)
        if endpoint is None:
            raise PartnerRefusal(f"service {service_id} has no partner configured")
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        started = time.monotonic()
        outcome = "error"
        try:
            async with asyncio.timeout(call_budget(self.answer_timeout)), self.slots[service_id]:
                now = datetime.now(UTC)
                headers = {
                    "webhook-id": key,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self.signers[service_id].sign(key, now, payload),
                    "content-type": "application/json",
                }
                response = await self.client().request(
                    method, endpoint.url + path, content=payload, params=params, headers=headers
                )
            outcome, result = self._outcome(service_id, operation, response, answer)
            return result
        except (TimeoutError, httpx.TimeoutException):
            outcome = "timeout"
            raise PartnerUnavailable(
                f"the {service_id} partner did not answer {operation} in time"
            ) from None
        except httpx.TransportError as err:
            outcome = "unreachable"
            raise PartnerUnavailable(
                f"the {service_id} partner is unreachable ({type(err).__name__})"
            ) from None
        except PartnerRefusal:
            outcome = "refused"
            raise
        except PartnerMisconfigured:
            outcome = "unauthorized"
            raise
        except PartnerUnavailable as err:
            outcome = "rate_limited" if err.next_retry_delay else "unavailable"
            raise
        finally:
            self.metrics.record(service_id, operation, outcome, time.monotonic() - started)

    def _outcome(
        self, service_id: str, operation: str, response: httpx.Response, answer: type[Answer]
    ) -> tuple[str, Answer]:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return "ok", answer.model_validate_json(response.content)
            except ValidationError:
                raise PartnerUnavailable(
                    f"the {service_id} partner's answer to {operation} is not the protocol's"
                ) from None
        if status in REFUSAL_STATUSES:
            raise PartnerRefusal(_reason(response))
        if status == UNAUTHORIZED:
            # Operator alert: the worker's log and bizsupport_partner_calls{outcome=unauthorized}.
            log.error(
                "ALERT partner %s refused our signature on %s (401): check %s and the URL the"
                " partner was given; retrying every %s",
                service_id,
                operation,
                secret_setting(service_id),
                "2 minutes",
            )
            raise PartnerMisconfigured(
                f"the {service_id} partner did not accept bizsupport's signature (401)"
            )
        if status in TRANSIENT_STATUSES or status >= 500:
            raise PartnerUnavailable(
                f"the {service_id} partner answered {operation} with {status}",
                retry_after=retry_after(response.headers.get("retry-after"))
                if status == 429
                else None,
            )
        raise PartnerUnavailable(f"the {service_id} partner answered {operation} with {status}")

    # ── PartnerGateway ───────────────────────────────────────────────────────────────────────

    async def provision(
        self,
        *,
        subscription_id: str,
        workplace_id: str,
        service_id: str,
        plan_id: str,
        at_iso: str,
    ) -> None:
        self._remember(subscription_id, service_id)
        await self._call(
            service_id,
            "provision",
            "PUT",
            f"/accounts/{_seg(subscription_id)}",
            AccountAnswer,
            key=idempotency_key("provision", subscription_id),
            body={
                "workplace_id": workplace_id,
                "service_id": service_id,
                "plan_id": plan_id,
                "at": at_iso,
            },
        )

    async def suspend(self, *, subscription_id: str, at_iso: str) -> None:
        await self._call(
            await self._service(subscription_id),
            "suspend",
            "POST",
            f"/accounts/{_seg(subscription_id)}/suspend",
            SuspendAnswer,
            key=idempotency_key("suspend", subscription_id, at_iso),
            body={"at": at_iso},
        )

    async def active_accounts(self, *, workplace_id: str | None = None) -> list[PartnerAccount]:
        """Every service's partner is asked; an unreachable one fails the whole answer (the
        reconciler tries again on its next pass)."""
        params = {"status": "active", **({"workplace_id": workplace_id} if workplace_id else {})}
        answers = await asyncio.gather(
            *(
                self._call(
                    sid,
                    "accounts",
                    "GET",
                    "/accounts",
                    AccountsAnswer,
                    key=idempotency_key("accounts", uuid.uuid4().hex),
                    params=params,
                )
                for sid in self.endpoints
            )
        )
        accounts = [a for answer in answers for a in answer.accounts]
        return sorted(accounts, key=lambda a: a.subscription_id)

    async def courses_in_progress(self, *, subscription_id: str) -> list[MemberCourses]:
        answer = await self._call(
            await self._service(subscription_id),
            "courses",
            "GET",
            f"/accounts/{_seg(subscription_id)}/courses",
            CoursesAnswer,
            key=idempotency_key("courses", uuid.uuid4().hex),
            params={"status": "in_progress"},
        )
        return answer.members

    async def change_plan(
        self, *, subscription_id: str, plan_id: str, stop_courses: bool, at_iso: str
    ) -> int:
        answer = await self._call(
            await self._service(subscription_id),
            "change_plan",
            "POST",
            f"/accounts/{_seg(subscription_id)}/plan",
            PlanAnswer,
            key=idempotency_key("change-plan", subscription_id, plan_id, at_iso),
            body={"plan_id": plan_id, "stop_courses": stop_courses, "at": at_iso},
        )
        return answer.stopped_courses

    async def reset_learning_records(
        self, *, subscription_id: str, member_id: str, at_iso: str | None = None
    ) -> int:
        answer = await self._call(
            await self._service(subscription_id),
            "reset_learning_records",
            "POST",
            f"/accounts/{_seg(subscription_id)}/members/{_seg(member_id)}/learning-records/reset",
            ResetAnswer,
            key=idempotency_key(
                "reset-learning-records", subscription_id, member_id, at_iso or attempt_key()
            ),
            body={"at": at_iso or datetime.now(UTC).isoformat()},
        )
        return answer.deleted

    async def delete_data(self, *, subscription_id: str) -> DeletionCount:
        answer = await self._call(
            await self._service(subscription_id),
            "delete_data",
            "DELETE",
            f"/accounts/{_seg(subscription_id)}/data",
            DeletionAnswer,
            key=idempotency_key("delete-data", subscription_id),
        )
        return DeletionCount(partner_objects=answer.partner_objects, details=answer.details)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _reason(response: httpx.Response) -> str:
    try:
        reason = response.json().get("reason")
    except (ValueError, AttributeError):
        reason = None
    return str(reason) if reason else f"refused by the partner (HTTP {response.status_code})"
