"""The API's Prometheus metrics, served at GET /metrics (README, "Metrics").

- `bizsupport_http_request_duration_seconds{route,method,status}`: latency by the matched route's
  path template (never the raw path, so ids do not multiply the series), method and status class
  (`2xx`, `4xx`, …);
- `bizsupport_actions_total{action,outcome}`: apply, cancel, change_plan, withdraw, grant and
  revoke by outcome: `ok`, the refusal's code (`PLAN_CHANGE_WINDOW_CLOSED`, …), or `replayed`
  for an answer repeated for an Idempotency-Key;
- from the ledger at scrape time (store/metrics.py), so every API process tells the same:
  `bizsupport_invoices_issued{period}`, `bizsupport_invoiced_won_total{period}` and the month
  close's `bizsupport_month_close_invoices_{issued,expected}{period,which}`.

Each app has registries of its own (several apps live in one test process). /metrics asks for a
bearer token: METRICS_TOKEN (Prometheus's long-lived scrape credential) or a system token, unless
the app is made with `metrics_public=True` (METRICS_PUBLIC=1).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import caller, runtime_of, system
from api.errors import REFUSAL
from store.metrics import MonthClose, PeriodInvoices, invoices_by_period, month_close

SUBSCRIPTION = "/v1/workplaces/{wp}/services/{svc}/subscription"
USAGE = "/v1/workplaces/{wp}/services/{svc}/usage-permissions/{member_id}"

# (method, route template) → the action counted in bizsupport_actions_total.
ACTIONS: dict[tuple[str, str], str] = {
    ("POST", SUBSCRIPTION): "apply",
    ("POST", f"{SUBSCRIPTION}/cancel"): "cancel",
    ("POST", f"{SUBSCRIPTION}/plan-change"): "change_plan",
    ("DELETE", f"{SUBSCRIPTION}/plan-change"): "withdraw",
    ("PUT", USAGE): "grant",
    ("DELETE", USAGE): "revoke",
}

UNMATCHED = "unmatched"


class ApiMetrics:
    """This app's request and action metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "bizsupport_http_request_duration_seconds",
            "HTTP request latency by route template, method and status class.",
            ["route", "method", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.actions = Counter(
            "bizsupport_actions",
            "Subscription actions by outcome: ok, the refusal code, or replayed.",
            ["action", "outcome"],
            registry=self.registry,
        )

    def observe(
        self,
        *,
        route: str,
        method: str,
        status: int,
        seconds: float,
        refusal: str | None,
        replayed: bool,
    ) -> None:
        self.latency.labels(route, method, f"{status // 100}xx").observe(seconds)
        action = ACTIONS.get((method, route))
        if action is None:
            return
        if replayed:
            outcome = "replayed"
        elif status < 400:
            outcome = "ok"
        else:
            outcome = refusal or f"HTTP_{status}"
        self.actions.labels(action, outcome).inc()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class MetricsMiddleware:
    """Times every HTTP request and counts the actions' outcomes (the outermost of ours)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500
        replayed = False

        async def recording_send(message: Message) -> None:
            nonlocal status, replayed
            if message["type"] == "http.response.start":
                status = message["status"]
                replayed = any(
                    name.lower() == b"idempotent-replayed" for name, _ in message.get("headers", [])
                )
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            state = scope.get("state") or {}
            self.metrics.observe(
                route=_route_template(scope),
                method=scope.get("method", ""),
                status=status,
                seconds=time.perf_counter() - started,
                refusal=state.get(REFUSAL) if isinstance(state, dict) else None,
                replayed=replayed,
            )


class LedgerSnapshot(Collector):
    """The ledger's numbers read just before this scrape (store/metrics.py)."""

    def __init__(self, invoices: Iterable[PeriodInvoices], closing: Iterable[MonthClose]) -> None:
        self.invoices = list(invoices)
        self.closing = list(closing)

    def collect(self) -> Iterator[Metric]:
        issued = GaugeMetricFamily(
            "bizsupport_invoices_issued", "Invoices in the ledger, by period.", labels=["period"]
        )
        won = CounterMetricFamily(
            "bizsupport_invoiced_won",
            "Invoiced amount in won (VAT included), by period.",
            labels=["period"],
        )
        for row in self.invoices:
            issued.add_metric([row.period], row.issued)
            won.add_metric([row.period], row.total_won)
        close_issued = GaugeMetricFamily(
            "bizsupport_month_close_invoices_issued",
            "Invoices issued for the last closed and the current period.",
            labels=["period", "which"],
        )
        close_expected = GaugeMetricFamily(
            "bizsupport_month_close_invoices_expected",
            "Subscriptions active at some point in the period (approximates those with a"
            " billable day; store/metrics.py).",
            labels=["period", "which"],
        )
        for close in self.closing:
            close_issued.add_metric([close.period, close.which], close.issued)
            close_expected.add_metric([close.period, close.which], close.expected)
        yield from (issued, won, close_issued, close_expected)


_bearer = HTTPBearer(auto_error=False)


async def _allowed(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """METRICS_TOKEN or a system token, unless the app serves its metrics publicly
    (METRICS_PUBLIC=1)."""
    if request.app.state.metrics_public:
        return
    scrape_token: str | None = request.app.state.metrics_token
    if (
        scrape_token
        and credentials is not None
        and credentials.scheme.lower() == "bearer"
        and hmac.compare_digest(credentials.credentials.encode(), scrape_token.encode())
    ):
        return
    await system(await caller(request, credentials))


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, _: Annotated[None, Depends(_allowed)]) -> Response:
    api_metrics: ApiMetrics = request.app.state.metrics
    runtime = runtime_of(request)
    invoices = await invoices_by_period(runtime.pool)
    closing = await month_close(runtime.pool, await runtime.business_now())
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(LedgerSnapshot(invoices, closing))
    body = generate_latest(api_metrics.registry) + generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
