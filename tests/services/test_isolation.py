"""Tenant isolation (R-PERM-10): nothing of one workplace can be read or changed from another.

Workplace A's representative admin turns every service and permission method on workplace B's
ids. Every call is refused as "not found" (404 at the API), the refusal carries nothing of B,
and B is exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.errors import BizError
from domain.permissions import MANAGEMENT_PERMISSIONS, USAGE_VIEW
from services.access import AccessService
from services.directory import DirectoryService
from services.subscriptions import SubscriptionService
from store.db import Pool
from tests.conftest import TERMS, Workplace
from tests.conftest import apply_for as apply
from tests.conftest import workplace_state as snapshot


@pytest.fixture
async def pair(
    service: SubscriptionService, access: AccessService, pool: Pool, workplace: Workplace
) -> tuple[Workplace, Workplace, dict[str, str]]:
    """A with ubob; B with ubob and miricanvas, a seat, a delegated admin."""
    a = workplace
    b = await Workplace(pool).create()
    await apply(service, a, "ubob", "ubob-basic")
    subs = {
        "ubob": (await apply(service, b, "ubob", "ubob-basic")).subscription_id,
        "miricanvas": (await apply(service, b, "miricanvas")).subscription_id,
    }
    await service.set_usage(
        workplace_id=b.id,
        service_id="miricanvas",
        actor_id=b.rep,
        member_id=b.members[0],
        grant=True,
    )
    await access.set_management_permissions(
        b.id, "miricanvas", b.admin, list(MANAGEMENT_PERMISSIONS), b.rep
    )
    return a, b, subs


def _calls(
    service: SubscriptionService, access: AccessService, a: Workplace, b: Workplace
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every service/permission method, called by A's representative with B's workplace id."""
    actor = a.rep
    target = b.members[0]
    now = datetime.now(UTC)

    def per_service(svc: str) -> dict[str, Callable[[], Awaitable[Any]]]:
        args: dict[str, Any] = {"workplace_id": b.id, "service_id": svc, "actor_id": actor}
        return {
            f"status {svc}": lambda: service.status(**args),
            f"require {svc}": lambda: service.authz.require(b.id, svc, actor, USAGE_VIEW),
            f"grant {svc}": lambda: service.set_usage(**args, member_id=target, grant=True),
            f"revoke {svc}": lambda: service.set_usage(**args, member_id=target, grant=False),
            f"cancel {svc}": lambda: service.cancel(**args),
            f"change plan {svc}": lambda: service.change_plan(
                **args, plan_id="ubob-premium", when="next_window"
            ),
            f"withdraw plan change {svc}": lambda: service.withdraw_plan_change(**args),
            f"usage list {svc}": lambda: access.usage_permissions(b.id, svc, actor),
            f"audit log {svc}": lambda: access.audit_log(b.id, actor, svc, 100),
            f"set management {svc}": lambda: access.set_management_permissions(
                b.id, svc, b.admin, [], actor
            ),
            f"launch {svc}": lambda: access.launch(b.id, actor, svc, now),
        }

    calls = per_service("miricanvas") | per_service("ubob")
    calls |= {
        "apply": lambda: service.apply(
            workplace_id=b.id,
            service_id="tudy",
            actor_id=actor,
            plan_id=None,
            terms_version=TERMS,
            agree_terms=True,
        ),
        "home cards": lambda: access.home_cards(b.id, actor),
        "management list": lambda: access.management_permissions(b.id, actor),
        "audit log": lambda: access.audit_log(b.id, actor, None, 100),
        "menu": lambda: access.menu(b.id, actor),
    }
    return calls


def _leaks(error: BizError, b: Workplace, subs: dict[str, str]) -> list[str]:
    """B's facts that show up in a refusal (B's workplace id itself was given by the caller)."""
    text = json.dumps(error.body(), default=str, ensure_ascii=False) + error.message_ko
    facts = [*subs.values(), b.members[0], b.admin, b.rep, f"Company {b.id}"]
    return [f for f in facts if f in text]


async def test_a_representative_cannot_touch_another_workplace(
    service: SubscriptionService,
    access: AccessService,
    pool: Pool,
    pair: tuple[Workplace, Workplace, dict[str, str]],
) -> None:
    a, b, subs = pair
    before = await snapshot(pool, b.id)
    calls = _calls(service, access, a, b)
    assert len(calls) == 27
    for name, call in calls.items():
        with pytest.raises(BizError) as refused:
            await call()
        error = refused.value
        assert error.status == 404, f"{name}: {error.code}"
        assert error.code == "UNKNOWN_MEMBER", name  # never NOT_REPRESENTATIVE/FORBIDDEN: B hid
        assert _leaks(error, b, subs) == [], name
    assert await snapshot(pool, b.id) == before


async def test_unknown_and_existing_workplaces_answer_alike_for_an_outsider(
    service: SubscriptionService,
    access: AccessService,
    pair: tuple[Workplace, Workplace, dict[str, str]],
) -> None:
    """A 404 either way; the API answers NOT_FOUND for a path workplace other than the token's
    before calling the services, so not even the code differs there."""
    a, b, _ = pair
    for wp_id in (b.id, "wp-does-not-exist"):
        with pytest.raises(BizError) as refused:
            await access.usage_permissions(wp_id, "miricanvas", a.rep)
        assert refused.value.status == 404


async def test_own_workplace_with_another_workplaces_member_ids(
    service: SubscriptionService,
    access: AccessService,
    dirs: DirectoryService,
    pool: Pool,
    pair: tuple[Workplace, Workplace, dict[str, str]],
) -> None:
    """A's ids for the workplace, B's for the member: B's member is unknown in A."""
    a, b, subs = pair
    await apply(service, a, "miricanvas")
    before_b = await snapshot(pool, b.id)
    before_a = await snapshot(pool, a.id)
    args = {"workplace_id": a.id, "service_id": "miricanvas", "actor_id": a.rep}
    for stranger in (b.members[0], b.admin, b.rep):
        checks = {
            "grant": (service.set_usage(**args, member_id=stranger, grant=True), "UNKNOWN_MEMBER"),
            "revoke": (
                service.set_usage(**args, member_id=stranger, grant=False),
                "PERMISSION_NOT_HELD",
            ),
            "management": (
                access.set_management_permissions(a.id, "miricanvas", stranger, [], a.rep),
                "UNKNOWN_MEMBER",
            ),
            "launch": (
                access.launch(a.id, stranger, "ubob", datetime.now(UTC)),
                "UNKNOWN_MEMBER",
            ),
            "menu": (access.menu(a.id, stranger), "UNKNOWN_MEMBER"),
            "acting in A": (
                service.status(workplace_id=a.id, service_id="ubob", actor_id=stranger),
                "UNKNOWN_MEMBER",
            ),
            "directory removal": (dirs.remove_member(a.id, stranger), "UNKNOWN_MEMBER"),
        }
        for name, (call, code) in checks.items():
            with pytest.raises(BizError) as refused:
                await call
            assert refused.value.code == code, name
            assert _leaks(refused.value, b, subs) in ([], [stranger]), name
    assert await snapshot(pool, b.id) == before_b
    assert await snapshot(pool, a.id) == before_a


async def test_listings_hold_only_the_own_workplace(
    service: SubscriptionService,
    access: AccessService,
    pool: Pool,
    pair: tuple[Workplace, Workplace, dict[str, str]],
) -> None:
    a, b, subs = pair
    outputs = [
        await access.home_cards(a.id, a.rep),
        await access.usage_permissions(a.id, "ubob", a.rep),
        await access.management_permissions(a.id, a.rep),
        await access.audit_log(a.id, a.rep, None, 1000),
        await access.audit_log(a.id, a.rep, "ubob", 1000),
        await access.menu(a.id, a.rep),
        await service.status(workplace_id=a.id, service_id="ubob", actor_id=a.rep),
    ]
    text = json.dumps(outputs, default=str, ensure_ascii=False)
    for fact in (b.id, *subs.values(), *b.members, b.admin, b.rep):
        assert fact not in text
    usage = await access.usage_permissions(a.id, "ubob", a.rep)
    assert usage.count == 5
    assert {h.member_id for h in usage.holders} == {a.rep, a.admin, *a.members}
