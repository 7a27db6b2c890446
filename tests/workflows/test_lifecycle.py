"""Subscription lifecycle on the real time-skipping server and real PostgreSQL (R-LIFE, R-APPLY,
R-CANCEL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from domain.calendar import day_start, seoul_date
from domain.errors import BizError
from services.models import SubscriptionOut
from services.subscriptions import SubscriptionService
from store import audit, ledger, subscriptions
from store.db import Pool
from tests.conftest import TERMS, Workplace, advance, advance_to, apply_for, eventually
from tests.partner_sandbox import session_partner
from workflows import search_attributes as sa


async def apply(service: SubscriptionService, wp: Workplace, svc: str, plan: str | None = None):
    return await apply_for(service, wp, svc, plan, expect_active=False)


async def partner_rows(subscription_id: str) -> dict[str, int]:
    return await session_partner().objects(subscription_id)


async def test_full_life_apply_cancel_delete_at_day_30(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-APPLY-2/4, R-LIFE-2, R-CANCEL-1/2: applied → active → cancelled → purged at day 30."""
    status = await apply(service, workplace, "miricanvas")
    assert status.state == "active"
    sub = status.subscription_id
    assert status.managers == [workplace.rep]  # R-APPLY-4
    async with pool.connection() as conn:
        terms = await (
            await conn.execute("SELECT * FROM terms_agreements WHERE subscription_id = %s", (sub,))
        ).fetchone()
    for title in ("포스터", "명함"):  # the members' designs at the partner
        await session_partner().add_document(sub, workplace.rep, title)
    assert terms["terms_version"] == TERMS and terms["agreed_by"] == workplace.rep
    await service.set_usage(
        workplace_id=workplace.id,
        service_id="miricanvas",
        actor_id=workplace.rep,
        member_id=workplace.members[0],
        grant=True,
    )

    cancelled = await service.cancel(
        workplace_id=workplace.id, service_id="miricanvas", actor_id=workplace.rep
    )
    assert cancelled.state == "cancelled"
    indexed = (await service.handle(sub).describe()).typed_search_attributes
    assert indexed.get(sa.SUBSCRIPTION_STATE) == "cancelled"  # R-LIFE-4: the UI sees it at once
    assert cancelled.data_deletion_at == cancelled.cancelled_at + timedelta(days=30)
    assert (await partner_rows(sub))["accounts"] == 1
    account = await _account(sub)
    assert account["status"] == "suspended"  # R-CANCEL-1: at once

    await advance(env, timedelta(days=29, hours=23))
    assert await ledger.deletion_record(pool, sub) is None
    assert (await partner_rows(sub))["documents"] == 2

    await advance(env, timedelta(hours=1, seconds=1))
    record = await eventually(lambda: ledger.deletion_record(pool, sub), what="deletion record")
    assert record["partner_objects"] == 3  # two documents and the account
    assert record["local_rows"] == 1  # the usage permission
    assert await partner_rows(sub) == {"accounts": 0, "documents": 0, "learning_records": 0}
    row = await eventually(
        lambda: _state_is(pool, sub, "purged"), what="purged state in the read model"
    )
    assert row.purged_at is not None
    actions = [e.action for e in await audit.entries(pool, workplace.id, "miricanvas")]
    assert actions[:3] == ["applied", "activated", "usage_granted"]
    assert "cancelled" in actions and actions[-1] in ("purged", "invoice_issued")


async def _account(sub: str):
    return await session_partner().account(sub)


async def _state_is(pool: Pool, sub: str, state: str):
    row = await subscriptions.by_id(pool, sub)
    return row if row and row.state == state else None


async def test_partner_refusal_cancels_without_charge(
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-LIFE-2: a permanent refusal ends in cancelled with the partner's reason, no invoice."""
    await session_partner().fault(
        "refuse", "cartax", workplace_id=workplace.id, reason="사업자 정보 확인 불가"
    )
    status = await apply(service, workplace, "cartax")
    assert status.state == "cancelled"
    assert status.cancel_reason == "사업자 정보 확인 불가"
    assert status.final_invoice_at is None and status.data_deletion_at is None
    assert await ledger.invoices_for(pool, workplace.id, "cartax") == []
    # the slot is free again (R-LIFE-3)
    await session_partner().clear_faults(workplace_id=workplace.id)
    again = await apply(service, workplace, "cartax")
    assert again.state == "active" and again.subscription_id != status.subscription_id


async def test_transient_partner_faults_are_retried(
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-LIFE-2: provisioning retries transient faults and then activates."""
    await session_partner().fault(
        "transient", "tudy", workplace_id=workplace.id, operation="provision", remaining=2
    )
    status = await service.apply(
        workplace_id=workplace.id,
        service_id="tudy",
        actor_id=workplace.rep,
        plan_id=None,
        terms_version=TERMS,
        agree_terms=True,
        wait_seconds=20,
    )
    assert status.state == "active"


async def test_two_concurrent_applications_exactly_one_wins(
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-LIFE-1: the slot is reserved in PostgreSQL, so only one of two racing applications wins."""
    import asyncio

    results = await asyncio.gather(
        apply(service, workplace, "wishket"),
        apply(service, workplace, "wishket"),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BizError)]
    wins = [r for r in results if isinstance(r, SubscriptionOut)]
    assert len(wins) == 1 and len(errors) == 1, results
    assert errors[0].code == "ALREADY_SUBSCRIBED"
    rows = await subscriptions.for_workplace(pool, workplace.id)
    assert len(rows) == 1


async def test_reapplication_after_cancel_is_a_new_subscription(
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-LIFE-3: new id, new permissions; the old one keeps its own deletion and invoice."""
    first = await apply(service, workplace, "ubob", "ubob-basic")
    assert first.usage_permission_count == 5  # R-PERM-6: everyone, admins included
    await service.cancel(workplace_id=workplace.id, service_id="ubob", actor_id=workplace.rep)
    second = await apply(service, workplace, "ubob", "ubob-premium")
    assert second.subscription_id != first.subscription_id
    assert second.plan_id == "ubob-premium" and second.state == "active"
    assert second.usage_permission_count == 5
    old = await subscriptions.by_id(pool, first.subscription_id)
    assert old.state == "cancelled"
    current = await service.status(
        workplace_id=workplace.id, service_id="ubob", actor_id=workplace.rep
    )
    assert current.subscription_id == second.subscription_id


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"workplace_id": "wp-nope"}, "UNKNOWN_WORKPLACE"),
        ({"service_id": "netflix"}, "UNKNOWN_SERVICE"),
        ({"service_id": "ubob", "plan_id": "ubob-gold"}, "UNKNOWN_PLAN"),
        ({"service_id": "ubob", "plan_id": None}, "PLAN_REQUIRED"),
        ({"actor_id": "ADMIN"}, "NOT_REPRESENTATIVE_ADMIN"),
        ({"agree_terms": False}, "TERMS_NOT_AGREED"),
        ({"terms_version": "2020-01-01"}, "TERMS_VERSION_OUTDATED"),
    ],
)
async def test_bad_applications_are_refused_and_change_nothing(
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
    kwargs: dict,
    code: str,
) -> None:
    """R-APPLY-1..3, R-ERR-1."""
    args = {
        "workplace_id": workplace.id,
        "service_id": "juju",
        "actor_id": workplace.rep,
        "plan_id": None,
        "terms_version": TERMS,
        "agree_terms": True,
    }
    args.update(kwargs)
    if args["actor_id"] == "ADMIN":
        args["actor_id"] = workplace.admin
    with pytest.raises(BizError) as refused:
        await service.apply(**args)
    assert refused.value.code == code
    assert refused.value.message and refused.value.message_ko
    assert await subscriptions.for_workplace(pool, workplace.id) == []


async def test_second_application_cancel_twice_and_cancel_nothing(
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-LIFE-1, R-CANCEL-4, R-ERR-1."""
    with pytest.raises(BizError) as nothing:
        await service.cancel(workplace_id=workplace.id, service_id="loai", actor_id=workplace.rep)
    assert nothing.value.code == "NO_SUBSCRIPTION"
    await apply(service, workplace, "loai")
    with pytest.raises(BizError) as twice:
        await apply(service, workplace, "loai")
    assert twice.value.code == "ALREADY_SUBSCRIBED"
    await service.cancel(workplace_id=workplace.id, service_id="loai", actor_id=workplace.rep)
    before = await audit.entries(pool, workplace.id, "loai")
    with pytest.raises(BizError) as again:
        await service.cancel(workplace_id=workplace.id, service_id="loai", actor_id=workplace.rep)
    assert again.value.code == "ALREADY_CANCELLED"
    assert await audit.entries(pool, workplace.id, "loai") == before


async def test_no_final_invoice_promised_when_no_day_was_billable(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-BILL-2: re-applied and cancelled on the predecessor's cancellation day, the new
    subscription has no billable day, so its status promises no final invoice."""
    now = await env.get_current_time()
    await advance_to(env, day_start(seoul_date(now) + timedelta(days=1)) + timedelta(hours=10))
    first = await apply(service, workplace, "cartax")
    done = await service.cancel(
        workplace_id=workplace.id, service_id="cartax", actor_id=workplace.rep
    )
    assert done.final_invoice_at is not None
    await apply(service, workplace, "cartax")
    again = await service.cancel(
        workplace_id=workplace.id, service_id="cartax", actor_id=workplace.rep
    )
    assert again.subscription_id != first.subscription_id
    assert again.final_invoice_at is None


async def test_an_old_reservation_without_a_workflow_is_started_by_the_next_application(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """R-LIFE-1: a crash between reservation and start leaves a slot with no workflow; the next
    application for the slot starts it (once it is older than a starting application could be),
    while a young reservation is left to its own application."""
    await subscriptions.reserve(
        pool,
        subscription_id="sub_orphan_" + workplace.id[-8:],
        workplace_id=workplace.id,
        service_id="wishket",
        plan_id="wishket-standard",
        applicant_id=workplace.rep,
        terms_version=TERMS,
    )
    orphan = "sub_orphan_" + workplace.id[-8:]
    with pytest.raises(BizError) as young:
        await apply(service, workplace, "wishket")
    assert young.value.code == "ALREADY_SUBSCRIBED"
    assert (await subscriptions.by_id(pool, orphan)).state == "applied"  # left alone
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE subscriptions SET requested_at = now() - interval '5 minutes'"
            " WHERE subscription_id = %s",
            (orphan,),
        )
    with pytest.raises(BizError) as old:
        await apply(service, workplace, "wishket")
    assert old.value.code == "ALREADY_SUBSCRIBED"
    await eventually(lambda: _state_is(pool, orphan, "active"), what="the resumed orphan activates")
