"""Partner calls are counted, with their latency, on the worker's /metrics: the gateway the
worker builds (starter/temporal.py) records on its client's runtime."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.testing import WorkflowEnvironment

from starter.temporal import connect, partner_gateway
from store.db import Pool
from tests.partner_sandbox import SandboxPartnerProcess, free_port


async def test_partner_calls_by_service_and_outcome_on_the_workers_metrics(
    env: WorkflowEnvironment, pool: Pool, partner_server: SandboxPartnerProcess
) -> None:
    port = free_port()
    client = await connect(
        env.client.service_client.config.target_host, metrics_address=f"127.0.0.1:{port}"
    )
    partner = partner_gateway(pool, client)
    await partner.active_accounts(workplace_id="wp-metrics")  # one call to each of 7 partners
    text = ""
    async with httpx.AsyncClient() as http:
        for _ in range(50):
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            if "bizsupport_partner_calls" in text:
                break
            await asyncio.sleep(0.1)
    calls = [
        line
        for line in text.splitlines()
        if line.startswith("bizsupport_partner_calls")
        and 'operation="accounts"' in line
        and 'outcome="ok"' in line
    ]
    assert len(calls) == 7, text[-3000:]  # one series per service
    assert all(line.rsplit(" ", 1)[1] == "1" for line in calls)
    buckets = [line for line in text.splitlines() if "bizsupport_partner_call_latency" in line]
    assert any('le="0.25"' in line for line in buckets), buckets  # seconds, not milliseconds
    assert any("_sum" in line for line in buckets)
