"""An admin action has a deadline (issue 11): an update nobody can finish answers 503 within
seconds instead of hanging, and its retry with the same request id gets the one outcome.

The worker of the subscription's task queue is gone (as when its activities cannot reach
PostgreSQL, the update cannot complete): the grant is refused SERVICE_UNAVAILABLE after the
deadline; a new worker comes; the retry with the same request id completes the same update
(Temporal de-duplicates it by id) and the member holds one seat, granted once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.catalog import default_catalog
from domain.errors import BizError
from services.root import build_services
from services.subscriptions import SubscriptionService
from starter.temporal import build_worker
from store import audit
from store.db import Pool
from tests.conftest import Workplace, apply_for, eventually
from tests.partner_sandbox import session_partner


def first_member_grant(workplace: Workplace, **extra: Any) -> dict[str, Any]:
    """set_usage's arguments: the representative grants miricanvas to the first member."""
    return {
        "workplace_id": workplace.id,
        "service_id": "miricanvas",
        "actor_id": workplace.rep,
        "member_id": workplace.members[0],
        "grant": True,
        **extra,
    }


async def test_an_update_nobody_can_finish_answers_503_then_its_retry_the_one_outcome(
    env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    queue = f"bizsupport-deadline-{uuid.uuid4().hex[:8]}"
    service = build_services(
        pool,
        env.client,
        default_catalog(),
        queue,
        clock=env.get_current_time,
        temporal_deadline=2.0,
    ).subscriptions
    # No workflow cache, so no sticky queue: the time-skipping server would keep the workflow's
    # tasks on a gone worker's sticky queue (it does not time them out to the normal queue).
    async with build_worker(env.client, pool, queue, max_cached_workflows=0):
        applied = await apply_for(service, workplace, "miricanvas")

    grant = first_member_grant(workplace, request_id="grant-with-no-worker")
    started = time.monotonic()
    with pytest.raises(BizError) as refused:
        await service.set_usage(**grant)  # type: ignore[arg-type]
    assert refused.value.code == "SERVICE_UNAVAILABLE"
    assert time.monotonic() - started < 6

    async with build_worker(env.client, pool, queue, max_cached_workflows=0):
        # A client following Retry-After until the service is back.
        deadline = time.monotonic() + 30
        while True:
            try:
                status = await service.set_usage(**grant)  # type: ignore[arg-type]
                break
            except BizError as busy:
                assert busy.code == "SERVICE_UNAVAILABLE"
                assert time.monotonic() < deadline, "the update never completed"
                await asyncio.sleep(1)
        assert status.usage_permission_count == 1
        again = await service.set_usage(**grant)  # type: ignore[arg-type]
        assert again.usage_permission_count == 1
        entries = await audit.entries(pool, workplace.id, limit=1000)
        assert [e.action for e in entries].count("usage_granted") == 1
        # Its task queue's worker ends with this test: a workflow left with timers and no worker
        # would stall the session's time-skipping server for every later test.
        await service.handle(applied.subscription_id).terminate(reason="test over")


async def test_a_workflow_behind_its_read_model_answers_503_not_a_refusal(
    env: WorkflowEnvironment, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """After a worker dies between the activation's commit (a local activity: the read model
    says active) and the end of its workflow task, the run replays on another worker and is
    briefly still `applied`. A grant then must not be refused NOT_ACTIVE (the console shows the
    service active); it answers 503 with Retry-After, and a retry succeeds once it caught up.
    Here provisioning keeps failing (the run stays applied) and the row is set active."""
    await session_partner().fault(
        "transient", "miricanvas", workplace_id=workplace.id, operation="provision"
    )
    applied = await apply_for(service, workplace, "miricanvas", expect_active=False)
    assert applied.state == "applied"
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE subscriptions SET state = 'active' WHERE subscription_id = %s",
            (applied.subscription_id,),
        )
    grant = first_member_grant(workplace)
    with pytest.raises(BizError) as refused:
        await service.set_usage(**grant)  # type: ignore[arg-type]
    assert refused.value.code == "SERVICE_UNAVAILABLE"

    await session_partner().clear_faults(workplace_id=workplace.id)  # the partner recovers
    await env.sleep(timedelta(minutes=2))  # past the provisioning retry's backoff
    status = await eventually(
        lambda: _granted(service, grant), within=30, what="the grant after activation"
    )
    assert status.usage_permission_count == 1


async def _granted(service: SubscriptionService, grant: dict[str, Any]) -> Any:
    try:
        return await service.set_usage(**grant)
    except BizError as busy:
        assert busy.code == "SERVICE_UNAVAILABLE"
        return None
