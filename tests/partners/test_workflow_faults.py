"""Partner faults as a subscription lives them, through the session's worker and the sandbox
partner server: a wrong secret is retried slowly (never a refusal) and heals once fixed; a 429
is retried after its Retry-After; a refusal ends the application with the partner's reason; a
refused suspension or deletion is shown to an operator and retried slowly until settled."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from services.subscriptions import SubscriptionService
from store import audit, subscriptions
from store.audit import AuditRow
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


async def test_a_refused_suspension_or_deletion_waits_for_an_operator_visibly(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
    partner_server: SandboxPartnerProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R-CANCEL-1/2 with a partner that says no: no state of the workflow takes it, so the
    refusal is shown (one `partner_refused` audit entry with the reason, an ALERT log line) and
    the call retried slowly until the partner is settled with; then it happens, once."""
    status = await _apply(service, workplace, "loai", 30)
    sub = status.subscription_id

    async def refused(operation: str) -> list[AuditRow]:
        return [
            e
            for e in await audit.entries(pool, workplace.id, "loai", subscription_id=sub)
            if e.action == "partner_refused" and e.details["operation"] == operation
        ]

    reason = "미납 요금 정산 전에는 계정을 정지할 수 없음"
    await partner_server.fault(
        "refuse", "loai", workplace_id=workplace.id, operation="suspend", reason=reason
    )
    cancelling = asyncio.create_task(
        service.cancel(workplace_id=workplace.id, service_id="loai", actor_id=workplace.rep)
    )
    try:
        [entry] = await eventually(lambda: refused("suspend"), what="the refusal's audit entry")
        assert entry.details["reason"] == reason and entry.outcome == "refused"
        assert "ALERT the partner refused suspend" in caplog.text
        await env.sleep(timedelta(minutes=3))  # a slow retry later: refused again, audited once
        assert len(await refused("suspend")) == 1
        account = await partner_server.account(sub)
        assert account is not None and account["status"] == "active"
    finally:
        await partner_server.clear_faults(service_id="loai")
    await env.sleep(timedelta(minutes=3))  # settled with the partner: the next retry works

    async def suspended() -> bool:
        account = await partner_server.account(sub)
        return account is not None and account["status"] == "suspended"

    await eventually(suspended, within=30, what="the suspension")
    await asyncio.gather(cancelling, return_exceptions=True)

    await partner_server.fault(
        "refuse", "loai", workplace_id=workplace.id, operation="delete_data", reason="보존 의무"
    )
    try:
        await env.sleep(timedelta(days=30, minutes=1))
        [entry] = await eventually(lambda: refused("delete_data"), what="the deletion's refusal")
        assert entry.details["reason"] == "보존 의무"
        assert (await subscriptions.by_id(pool, sub)).state == "cancelled"  # not purged
    finally:
        await partner_server.clear_faults(service_id="loai")
    await env.sleep(timedelta(minutes=3))

    async def purged() -> bool:
        return (await subscriptions.by_id(pool, sub)).state == "purged"

    await eventually(purged, within=30, what="the deletion")
    assert await partner_server.account(sub) is None
    assert len(await refused("delete_data")) == 1 and len(await refused("suspend")) == 1
