"""Metrics (issue 12): the API's /metrics and the worker's Temporal SDK endpoint, on the real
servers. The suite shares one database, so counts are compared as "at least" what this test did.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import uuid
from datetime import datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.metrics import SUBSCRIPTION
from api.runtime import Runtime
from domain.calendar import first_instant_of_next_month, period_of
from starter.temporal import build_worker, connect
from store.db import Pool
from tests.api.conftest import TERMS, bearer, free_port, system_token, token
from tests.conftest import Workplace


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    matching = [v for n, lbl, v in found if n == name and labels.items() <= lbl.items()]
    assert matching, f"no {name}{labels} in the scrape"
    return sum(matching)


async def test_api_metrics_after_an_application_and_an_invoice(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    system = bearer(system_token(api_runtime))
    rep = bearer(token(api_runtime, workplace.id, workplace.rep))
    path = f"/v1/workplaces/{workplace.id}/services/cartax/subscription"
    applied = await api.post(path, json={"terms_version": TERMS, "agree_terms": True}, headers=rep)
    assert applied.status_code == 201, applied.text
    again = await api.post(path, json={"terms_version": TERMS, "agree_terms": True}, headers=rep)
    assert again.status_code >= 400
    refusal = again.json()["error"]["code"]

    now = datetime.fromisoformat((await api.get("/v1/sandbox/clock", headers=system)).json()["now"])
    period = period_of(now)
    seconds = (first_instant_of_next_month(now) - now).total_seconds() + 1
    moved = await api.post("/v1/sandbox/clock/advance", json={"seconds": seconds}, headers=system)
    assert moved.status_code == 200, moved.text
    listed = await api.get(f"/v1/workplaces/{workplace.id}/services/cartax/invoices", headers=rep)
    (invoice,) = listed.json()["invoices"]

    # Not public by default: a system token, and only that, opens it.
    assert (await api.get("/metrics")).status_code == 401
    assert (await api.get("/metrics", headers=rep)).status_code == 403
    scraped = await api.get("/metrics", headers=system)
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)

    latency = "bizsupport_http_request_duration_seconds_count"
    assert value(found, latency, route=SUBSCRIPTION, method="POST", status="2xx") >= 1
    assert value(found, latency, route=SUBSCRIPTION, method="POST", status="4xx") >= 1
    # the path template, never the raw path with its ids
    assert not [lbl for n, lbl, _ in found if workplace.id in lbl.get("route", "")]
    assert value(found, "bizsupport_actions_total", action="apply", outcome="ok") >= 1
    assert value(found, "bizsupport_actions_total", action="apply", outcome=refusal) >= 1

    assert value(found, "bizsupport_invoices_issued", period=period) >= 1
    won = value(found, "bizsupport_invoiced_won_total", period=period)
    assert won >= int(invoice["total"]) > 0
    last = {"period": period, "which": "last_closed"}
    issued = value(found, "bizsupport_month_close_invoices_issued", **last)
    expected = value(found, "bizsupport_month_close_invoices_expected", **last)
    assert issued >= 1 and expected >= 1
    assert value(found, "bizsupport_month_close_invoices_expected", which="current") >= 1


async def test_worker_serves_temporal_sdk_metrics(env: WorkflowEnvironment, pool: Pool) -> None:
    port = free_port()
    client = await connect(
        env.client.service_client.config.target_host, metrics_address=f"127.0.0.1:{port}"
    )
    worker = build_worker(client, pool, f"bizsupport-metrics-{uuid.uuid4().hex[:8]}")
    names: set[str] = set()
    async with worker, httpx.AsyncClient() as http:
        for _ in range(100):
            answer = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert answer.status_code == 200
            names = {name for name, _, _ in samples(answer.text)}
            if any(name.startswith("temporal_worker_task_slots") for name in names):
                break
            await asyncio.sleep(0.1)
    assert any(name.startswith("temporal_worker_task_slots") for name in names), sorted(names)
    assert any(name.startswith("temporal_") for name in names)


async def test_metrics_token_opens_metrics_only(api_runtime: Runtime) -> None:
    """METRICS_TOKEN is Prometheus's scrape credential: it opens /metrics and nothing else;
    METRICS_PUBLIC=1 opens /metrics to anyone."""
    scrape = secrets.token_urlsafe(32)
    guarded = create_app(api_runtime, metrics_token=scrape, metrics_public=False)
    public = create_app(api_runtime, metrics_public=True)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(guarded), base_url="http://a") as api,
        httpx.AsyncClient(transport=httpx.ASGITransport(public), base_url="http://a") as open_api,
    ):
        assert (await api.get("/metrics", headers=bearer(scrape))).status_code == 200
        assert (await api.get("/metrics", headers=bearer(scrape + "x"))).status_code == 401
        assert (await api.get("/v1/services", headers=bearer(scrape))).status_code == 401
        assert (await open_api.get("/metrics")).status_code == 200


async def test_a_taken_metrics_port_leaves_the_worker_working(
    env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    """The metrics port in use (another stack on this host): logged, and the client still works."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        client = await connect(
            env.client.service_client.config.target_host, metrics_address=address
        )
    assert "metrics are off" in caplog.text and address in caplog.text
    assert (await client.workflow_service.get_system_info(GetSystemInfoRequest())) is not None
