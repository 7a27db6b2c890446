"""Partner faults as a subscription lives them, through the session's worker and the sandbox
partner server: a wrong secret is retried slowly (never a refusal) and heals once fixed; a 429
is retried after its Retry-After; a refusal ends the application with the partner's reason."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from services.subscriptions import SubscriptionService
from store import audit, subscriptions
from store.db import Pool
from tests.conftest import TERMS, Workplace, eventually
from tests.partner_sandbox import SandboxPartnerProcess


async def _apply(service: SubscriptionService, workplace: Workplace, service_id: str, wait: float):
    return await service.apply(
        workplace_id=workplace.id,
        service_id=service_id,
        actor_id=workplace.rep,
        plan_id=None,
        terms_version=TERMS,
        agree_terms=True,
        wait_seconds=wait,
    )


async def _active(pool: Pool, sub: str):
    row = await subscriptions.by_id(pool, sub)
    return row if row is not None and row.state == "active" else None


async def test_a_wrong_secret_is_retried_slowly_until_fixed(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
    partner_server: SandboxPartnerProcess,
) -> None:
    await partner_server.fault("wrong_secret", "juju")
    try:
        status = await _apply(service, workplace, "juju", 3)
        assert status.state == "applied"  # not refused: a configuration fault is not a "no"
        actions = [e.action for e in await audit.entries(pool, workplace.id, "juju")]
        assert "refused" not in actions
        await env.sleep(timedelta(minutes=3))  # one slow retry later: still 401
        assert (await subscriptions.by_id(pool, status.subscription_id)).state == "applied"
    finally:
        await partner_server.clear_faults(service_id="juju")
    await env.sleep(timedelta(minutes=3))  # the operator fixed the secret: the next retry works
    await eventually(lambda: _active(pool, status.subscription_id), within=30, what="activation")
    assert len(await partner_server.accounts(subscription_id=status.subscription_id)) == 1


async def test_a_429_is_retried_after_retry_after(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
    partner_server: SandboxPartnerProcess,
) -> None:
    await partner_server.fault(
        "rate_limit", "wishket", workplace_id=workplace.id, retry_after=120, remaining=1
    )
    status = await _apply(service, workplace, "wishket", 3)
    assert status.state == "applied"
    await env.sleep(timedelta(seconds=150))
    await eventually(lambda: _active(pool, status.subscription_id), within=30, what="activation")
