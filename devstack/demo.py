"""Demo data for `make run`: one workplace with a representative admin, an admin, members, and
two subscriptions. Idempotent: a second run changes nothing."""

from __future__ import annotations

from domain.permissions import PLAN_CHANGE, USAGE_VIEW
from services.subscriptions import SubscriptionService
from store import access, directory, subscriptions

DEMO_WORKPLACE = "demo"
DEMO_REPRESENTATIVE = "demo-rep"
DEMO_PEOPLE = [
    ("demo-admin", "admin@demo.example", "이관리", "admin"),
    ("demo-m1", "m1@demo.example", "박구성", "member"),
    ("demo-m2", "m2@demo.example", "최구성", "member"),
]


async def seed_demo(service: SubscriptionService) -> str:
    pool = service.pool
    await directory.put_workplace(
        pool,
        DEMO_WORKPLACE,
        "데모 주식회사",
        {"member_id": DEMO_REPRESENTATIVE, "login_id": "ceo@demo.example", "name": "김대표"},
    )
    for member_id, login_id, name, role in DEMO_PEOPLE:
        if await directory.member(pool, DEMO_WORKPLACE, member_id) is None:
            await directory.sync_member(
                pool,
                DEMO_WORKPLACE,
                {"member_id": member_id, "login_id": login_id, "name": name},
                role,
                at=await service.clock(),
            )
    if not await subscriptions.for_workplace(pool, DEMO_WORKPLACE):
        for service_id, plan_id in (("ubob", "ubob-standard"), ("miricanvas", None)):
            svc = service.authz.service(service_id)
            await service.apply(
                workplace_id=DEMO_WORKPLACE,
                service_id=service_id,
                actor_id=DEMO_REPRESENTATIVE,
                plan_id=plan_id,
                terms_version=svc.terms.version,
                agree_terms=True,
                wait_seconds=20,
            )
        await service.set_usage(
            workplace_id=DEMO_WORKPLACE,
            service_id="miricanvas",
            actor_id=DEMO_REPRESENTATIVE,
            member_id="demo-m1",
            grant=True,
        )
        # a delegated admin to try the console as: usage view and plan change on ubob only
        await access.set_management(
            pool,
            workplace_id=DEMO_WORKPLACE,
            service_id="ubob",
            member_id="demo-admin",
            permissions=[USAGE_VIEW, PLAN_CHANGE],
            by=DEMO_REPRESENTATIVE,
            at=await service.clock(),
        )
    return f"workplace '{DEMO_WORKPLACE}', member '{DEMO_REPRESENTATIVE}' (김대표, 대표 관리자)"
