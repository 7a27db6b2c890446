"""store/notify.py on the real PostgreSQL: an application's wait is woken by the commit that
settles it, and only that commit notifies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from domain.audit import AuditAction
from domain.subscription import AuditEntry, Publication, StatusSnapshot
from store import subscriptions
from store.db import Pool
from store.notify import SettledListener
from tests.conftest import Workplace

# The audit action of a commit that leaves the subscription in that state.
ACTION_INTO: dict[str, AuditAction] = {
    "applied": "applied",
    "active": "activated",
    "cancelled": "cancelled",
}


def publication(sub: str, wp: str, state: str, seq: int, previous: str) -> Publication:
    snapshot = StatusSnapshot(
        subscription_id=sub,
        workplace_id=wp,
        service_id="cartax",
        state=state,  # type: ignore[arg-type]
        plan_id="cartax-basic",
        applied_at=None,
        activated_at=None,
        cancelled_at=None,
        cancel_reason=None,
        last_plan_change_period=None,
        scheduled_plan_change=None,
        plan_change_notice=None,
        data_deletion_at=None,
        final_invoice_at=None,
        purged_at=None,
        usage_permission_count=0,
        seq=seq,
    )
    audit = AuditEntry(
        at=datetime.now(UTC),
        actor="system",
        action=ACTION_INTO[state],
        details={"state": state, "previous_state": previous},
    )
    return Publication(snapshot=snapshot, audit=audit)


async def test_the_commit_that_settles_an_application_wakes_its_waiter(pool: Pool) -> None:
    wp = await Workplace(pool).create()
    sub, other = (f"sub_{uuid.uuid4().hex[:20]}" for _ in range(2))
    for sid, svc in ((sub, "cartax"), (other, "ubob")):
        assert await subscriptions.reserve(
            pool,
            subscription_id=sid,
            workplace_id=wp.id,
            service_id=svc,
            plan_id="p",
            applicant_id=wp.rep,
            terms_version="t",
        )
    listener = SettledListener(pool, linger=0.5)
    async with listener.watch(sub) as waiter:
        # published while still applied: no notification
        await subscriptions.commit(pool, publication(sub, wp.id, "applied", 1, "applied"))
        assert not await waiter.wait(0.5)
        # another subscription settles: not this waiter's notification
        await subscriptions.commit(pool, publication(other, wp.id, "active", 1, "applied"))
        assert not await waiter.wait(0.5)
        # this one leaves `applied`: woken
        await subscriptions.commit(pool, publication(sub, wp.id, "active", 2, "applied"))
        assert await waiter.wait(5.0)
        # later changes of a settled subscription do not notify again
        await subscriptions.commit(pool, publication(sub, wp.id, "cancelled", 3, "active"))
        assert not await waiter.wait(0.5)
