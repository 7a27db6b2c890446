"""Permission matrix and permission screens (R-PERM-2..6, R-APPLY-4/5; docs/rules.md, "Who may
call what").

Every action is tried by an admin holding exactly one management permission (or none), by the
representative admin and by a plain member. Without the permission the action is refused with
FORBIDDEN (or NOT_REPRESENTATIVE_ADMIN) and nothing changes; with it, it is carried out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from domain.errors import BizError
from domain.permissions import (
    MANAGEMENT_PERMISSIONS,
    PLAN_CHANGE,
    SUBSCRIPTION_CANCEL,
    USAGE_GRANT,
    USAGE_VIEW,
)
from services.access import AccessService
from services.models import ManagementPermissionsOut, ServicePermissions
from services.subscriptions import SubscriptionService
from store import audit, subscriptions
from store.db import Pool
from tests.conftest import Workplace
from tests.conftest import apply_for as apply
from tests.conftest import workplace_state as snapshot

REPRESENTATIVE = "representative"  # the action is the representative admin's alone
ANY = "any"  # any management permission on any service


# ── the matrix ───────────────────────────────────────────────────────────────────────────────


@dataclass
class World:
    service: SubscriptionService
    access: AccessService
    wp: Workplace


@dataclass(frozen=True)
class Action:
    name: str
    needs: str
    run: Callable[[World, str], Awaitable[Any]]  # does it, then puts things back


async def _status(w: World, actor: str) -> None:
    status = await w.service.status(workplace_id=w.wp.id, service_id="miricanvas", actor_id=actor)
    assert status.state == "active"


async def _usage_list(w: World, actor: str) -> None:
    listing = await w.access.usage_permissions(w.wp.id, "miricanvas", actor)
    assert listing.count == 1 and listing.holders[0].member_id == w.wp.members[1]


async def _invoices(w: World, actor: str) -> None:
    await w.service.authz.require(w.wp.id, "miricanvas", actor, USAGE_VIEW)


async def _audit_service(w: World, actor: str) -> None:
    entries = await w.access.audit_log(w.wp.id, actor, "miricanvas", 50)
    assert {e.action for e in entries} >= {"applied", "activated"}
    assert all(e.service_id == "miricanvas" for e in entries)


async def _grant_and_revoke(w: World, actor: str) -> None:
    args = {"workplace_id": w.wp.id, "service_id": "miricanvas", "actor_id": actor}
    granted = await w.service.set_usage(**args, member_id=w.wp.members[0], grant=True)
    assert granted.usage_permission_count == 2
    revoked = await w.service.set_usage(**args, member_id=w.wp.members[0], grant=False)
    assert revoked.usage_permission_count == 1


async def _revoke_held(w: World, actor: str) -> None:
    """Revoking a seat somebody holds, then giving it back."""
    args = {"workplace_id": w.wp.id, "service_id": "miricanvas", "actor_id": actor}
    revoked = await w.service.set_usage(**args, member_id=w.wp.members[1], grant=False)
    assert revoked.usage_permission_count == 0
    await w.service.set_usage(**args, member_id=w.wp.members[1], grant=True)


async def _plan_change(w: World, actor: str) -> None:
    args = {"workplace_id": w.wp.id, "service_id": "ubob", "actor_id": actor}
    scheduled = await w.service.change_plan(**args, plan_id="ubob-standard", when="next_window")
    assert scheduled.scheduled_plan_change.plan_id == "ubob-standard"
    withdrawn = await w.service.withdraw_plan_change(**args)
    assert withdrawn.scheduled_plan_change is None


async def _withdraw_plan_change(w: World, actor: str) -> None:
    args = {"workplace_id": w.wp.id, "service_id": "ubob", "actor_id": actor}
    try:
        await w.service.withdraw_plan_change(**args)
    except BizError as err:  # allowed: refused only for want of a schedule
        if err.code != "NO_SCHEDULED_PLAN_CHANGE":
            raise
    else:
        raise AssertionError("nothing was scheduled, yet a withdrawal succeeded")


async def _cancel(w: World, actor: str) -> None:
    cancelled = await w.service.cancel(workplace_id=w.wp.id, service_id="cartax", actor_id=actor)
    assert cancelled.state == "cancelled"
    await apply(w.service, w.wp, "cartax")  # R-LIFE-3: for the next one to try


async def _management_list(w: World, actor: str) -> None:
    listing = await w.access.management_permissions(w.wp.id, actor)
    assert [s.service_id for s in listing.services][:1] == ["cartax"]


async def _management_set(w: World, actor: str) -> None:
    m = w.wp.admin
    held = await w.access.management_permissions(w.wp.id, w.wp.rep)
    before = sorted(
        p.permission
        for s in held.services
        if s.service_id == "juju"
        for p in s.permissions
        if any(h.member_id == m for h in p.holders)
    )
    listing = await w.access.set_management_permissions(w.wp.id, "juju", m, [USAGE_VIEW], actor)
    assert listing.service_id == "juju"
    await w.access.set_management_permissions(w.wp.id, "juju", m, before, actor)


async def _audit_all(w: World, actor: str) -> None:
    entries = await w.access.audit_log(w.wp.id, actor, None, 500)
    assert {e.action for e in entries} >= {"applied", "management_permissions_changed"}


async def _home_cards(w: World, actor: str) -> None:
    cards = await w.access.home_cards(w.wp.id, actor)
    assert len(cards) == 7


ACTIONS = [
    Action("status (GET …/subscription)", USAGE_VIEW, _status),
    Action("usage list (GET …/usage-permissions)", USAGE_VIEW, _usage_list),
    Action("invoices (GET …/invoices)", USAGE_VIEW, _invoices),
    Action("audit log of a service", USAGE_VIEW, _audit_service),
    Action("grant usage", USAGE_GRANT, _grant_and_revoke),
    Action("revoke usage", USAGE_GRANT, _revoke_held),
    Action("plan change", PLAN_CHANGE, _plan_change),
    Action("withdraw plan change", PLAN_CHANGE, _withdraw_plan_change),
    Action("cancel", SUBSCRIPTION_CANCEL, _cancel),
    Action("management permissions list", REPRESENTATIVE, _management_list),
    Action("management permissions change", REPRESENTATIVE, _management_set),
    Action("audit log of the workplace", REPRESENTATIVE, _audit_all),
    Action("home cards", ANY, _home_cards),
]


@pytest.fixture
async def world(service: SubscriptionService, access: AccessService, workplace: Workplace) -> World:
    for svc, plan in (("miricanvas", None), ("ubob", "ubob-basic"), ("cartax", None)):
        await apply(service, workplace, svc, plan)
    await service.set_usage(
        workplace_id=workplace.id,
        service_id="miricanvas",
        actor_id=workplace.rep,
        member_id=workplace.members[1],
        grant=True,
    )
    return World(service, access, workplace)


async def _give(w: World, member_id: str, held: list[str]) -> None:
    for svc in ("miricanvas", "ubob", "cartax"):
        await w.access.set_management_permissions(w.wp.id, svc, member_id, held, w.wp.rep)


def _refusal_code(action: Action) -> str:
    return "NOT_REPRESENTATIVE_ADMIN" if action.needs == REPRESENTATIVE else "FORBIDDEN"


async def _assert_refused(w: World, pool: Pool, action: Action, actor: str) -> None:
    before = await snapshot(pool, w.wp.id)
    with pytest.raises(BizError) as refused:
        await action.run(w, actor)
    assert refused.value.code == _refusal_code(action), action.name
    assert refused.value.status == 403 and refused.value.message_ko
    if action.needs not in (REPRESENTATIVE, ANY):
        assert refused.value.details["needs"] == action.needs
    assert await snapshot(pool, w.wp.id) == before, f"{action.name} changed something"


@pytest.mark.parametrize("held", [None, *MANAGEMENT_PERMISSIONS])
async def test_admin_matrix_each_permission_allows_exactly_its_actions(
    world: World, pool: Pool, held: str | None
) -> None:
    """R-PERM-3/4, "Who may call what": an admin holding only `held` on the services."""
    w = world
    await _give(w, w.wp.admin, [held] if held else [])
    for action in ACTIONS:
        allowed = action.needs == held or (action.needs == ANY and held is not None)
        if allowed:
            await action.run(w, w.wp.admin)
        else:
            await _assert_refused(w, pool, action, w.wp.admin)


async def test_admin_with_every_permission_is_still_not_the_representative(
    world: World, pool: Pool
) -> None:
    """R-PERM-4: only the representative admin lists or changes management permissions."""
    w = world
    await _give(w, w.wp.admin, list(MANAGEMENT_PERMISSIONS))
    for action in ACTIONS:
        if action.needs == REPRESENTATIVE:
            await _assert_refused(w, pool, action, w.wp.admin)
        else:
            await action.run(w, w.wp.admin)


async def test_representative_may_do_everything(world: World) -> None:
    """R-PERM-3: the representative admin holds every permission implicitly."""
    for action in ACTIONS:
        await action.run(world, world.wp.rep)


async def test_plain_member_may_do_nothing_even_with_a_stale_row(world: World, pool: Pool) -> None:
    """A member holds no management permission, whatever a row says (R-PERM-3/4)."""
    w = world
    member = w.wp.members[2]
    async with pool.connection() as conn:
        for svc in ("miricanvas", "ubob", "cartax"):
            for p in MANAGEMENT_PERMISSIONS:
                await conn.execute(
                    "INSERT INTO management_permissions (workplace_id, service_id, member_id,"
                    " permission) VALUES (%s, %s, %s, %s)",
                    (w.wp.id, svc, member, p),
                )
    for action in ACTIONS:
        await _assert_refused(w, pool, action, member)
    menu = await w.access.menu(w.wp.id, member)
    assert menu.business_support_admin is False


async def test_permissions_are_per_service(world: World, pool: Pool) -> None:
    """usage.grant on miricanvas gives nothing on cartax."""
    w = world
    await w.access.set_management_permissions(
        w.wp.id, "miricanvas", w.wp.admin, [USAGE_GRANT, USAGE_VIEW], w.wp.rep
    )
    await _grant_and_revoke(w, w.wp.admin)
    before = await snapshot(pool, w.wp.id)
    for svc in ("cartax", "ubob"):
        with pytest.raises(BizError) as refused:
            await w.service.status(workplace_id=w.wp.id, service_id=svc, actor_id=w.wp.admin)
        assert refused.value.code == "FORBIDDEN"
    with pytest.raises(BizError) as refused:
        await w.service.set_usage(
            workplace_id=w.wp.id,
            service_id="cartax",
            actor_id=w.wp.admin,
            member_id=w.wp.members[0],
            grant=True,
        )
    assert refused.value.code == "FORBIDDEN"
    assert await snapshot(pool, w.wp.id) == before


# ── management permission screen (R-PERM-3, -4) ──────────────────────────────────────────────


def _holders(
    listing: ManagementPermissionsOut | ServicePermissions, service_id: str, permission: str
) -> list[dict[str, Any]]:
    services = listing.services if isinstance(listing, ManagementPermissionsOut) else [listing]
    (svc,) = [s for s in services if s.service_id == service_id]
    (perm,) = [p for p in svc.permissions if p.permission == permission]
    return [h.model_dump() for h in perm.holders]


async def test_management_listing_replace_and_remove(
    access: AccessService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """R-PERM-4: per permission, the admins that hold it; the representative implicitly."""
    wp = workplace
    await apply(service, wp, "juju")
    listing = await access.management_permissions(wp.id, wp.rep)
    assert [s.service_id for s in listing.services] == [
        "cartax",
        "wishket",
        "miricanvas",
        "loai",
        "juju",
        "ubob",
        "tudy",
    ]
    for s in listing.services:
        assert [p.permission for p in s.permissions] == list(MANAGEMENT_PERMISSIONS)
        for p in s.permissions:
            assert [h.model_dump() for h in p.holders] == [
                {"member_id": wp.rep, "name": "대표", "implicit": True}
            ]

    one = await access.set_management_permissions(
        wp.id, "juju", wp.admin, [USAGE_VIEW, PLAN_CHANGE, USAGE_VIEW], wp.rep
    )
    assert one.service_id == "juju"
    assert _holders(one, "juju", USAGE_VIEW)[1] == {
        "member_id": wp.admin,
        "name": "관리자",
        "implicit": False,
    }
    assert [h["member_id"] for h in _holders(one, "juju", USAGE_GRANT)] == [wp.rep]
    # the set is replaced, not added to
    two = await access.set_management_permissions(wp.id, "juju", wp.admin, [USAGE_GRANT], wp.rep)
    assert [h["member_id"] for h in _holders(two, "juju", USAGE_VIEW)] == [wp.rep]
    assert [h["member_id"] for h in _holders(two, "juju", USAGE_GRANT)] == [wp.rep, wp.admin]
    full = await access.management_permissions(wp.id, wp.rep)
    assert [h["member_id"] for h in _holders(full, "juju", USAGE_GRANT)] == [wp.rep, wp.admin]
    assert [h["member_id"] for h in _holders(full, "ubob", USAGE_GRANT)] == [wp.rep]
    # the same set again: same answer, no second audit entry
    count = len(await audit.entries(pool, wp.id, "juju"))
    again = await access.set_management_permissions(wp.id, "juju", wp.admin, [USAGE_GRANT], wp.rep)
    assert again == two
    assert len(await audit.entries(pool, wp.id, "juju")) == count
    # [] removes
    empty = await access.set_management_permissions(wp.id, "juju", wp.admin, [], wp.rep)
    assert all(len(p.holders) == 1 for p in empty.permissions)
    changes = [
        e
        for e in await audit.entries(pool, wp.id, "juju")
        if e.action == "management_permissions_changed"
    ]
    assert [(c.actor, c.details["added"], c.details["removed"]) for c in changes] == [
        (wp.rep, [PLAN_CHANGE, USAGE_VIEW], []),
        (wp.rep, [USAGE_GRANT], [PLAN_CHANGE, USAGE_VIEW]),
        (wp.rep, [], [USAGE_GRANT]),
    ]
    # the applicant's manager role is unaffected and shows in the status (R-APPLY-4)
    status = await service.status(workplace_id=wp.id, service_id="juju", actor_id=wp.rep)
    assert status.managers == [wp.rep]


@pytest.mark.parametrize(
    ("target", "permissions", "code"),
    [
        ("member", [USAGE_VIEW], "NOT_AN_ADMIN"),
        ("admin", ["usage.delete"], "UNKNOWN_PERMISSION"),
        ("admin", [USAGE_VIEW, "admin.all"], "UNKNOWN_PERMISSION"),
        ("nobody", [USAGE_VIEW], "UNKNOWN_MEMBER"),
        ("rep", [USAGE_VIEW], "REPRESENTATIVE_HOLDS_ALL"),
    ],
)
async def test_bad_management_permission_changes_are_refused(
    access: AccessService,
    pool: Pool,
    workplace: Workplace,
    target: str,
    permissions: list[str],
    code: str,
) -> None:
    """R-PERM-4, R-ERR-1: only admins hold them, only known names; nothing changes."""
    wp = workplace
    member = {
        "member": wp.members[0],
        "admin": wp.admin,
        "nobody": f"{wp.id}-ghost",
        "rep": wp.rep,
    }[target]
    before = await snapshot(pool, wp.id)
    with pytest.raises(BizError) as refused:
        await access.set_management_permissions(wp.id, "tudy", member, permissions, wp.rep)
    assert refused.value.code == code
    assert await snapshot(pool, wp.id) == before


async def test_unknown_service_and_non_representative_changes_are_refused(
    access: AccessService, pool: Pool, workplace: Workplace
) -> None:
    wp = workplace
    await access.set_management_permissions(
        wp.id, "tudy", wp.admin, list(MANAGEMENT_PERMISSIONS), wp.rep
    )
    before = await snapshot(pool, wp.id)
    with pytest.raises(BizError) as unknown:
        await access.set_management_permissions(wp.id, "netflix", wp.admin, [], wp.rep)
    assert unknown.value.code == "UNKNOWN_SERVICE"
    for actor in (wp.admin, wp.members[0]):
        with pytest.raises(BizError) as refused:
            await access.set_management_permissions(wp.id, "tudy", wp.admin, [], actor)
        assert refused.value.code == "NOT_REPRESENTATIVE_ADMIN"
    assert await snapshot(pool, wp.id) == before


# ── usage permissions: bad input (R-PERM-2, -6) ──────────────────────────────────────────────


async def test_usage_grant_bad_input(
    service: SubscriptionService,
    access: AccessService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """Unknown member, member of another workplace, twice, revoke what is not held, ubob."""
    wp = workplace
    other = await Workplace(pool).create()
    await apply(service, wp, "wishket")
    await apply(service, wp, "ubob", "ubob-basic")
    args = {"workplace_id": wp.id, "service_id": "wishket", "actor_id": wp.rep}
    before = await snapshot(pool, wp.id)
    for stranger in (f"{wp.id}-ghost", other.members[0], other.rep):
        with pytest.raises(BizError) as unknown:
            await service.set_usage(**args, member_id=stranger, grant=True)
        assert unknown.value.code == "UNKNOWN_MEMBER"
    with pytest.raises(BizError) as not_held:
        await service.set_usage(**args, member_id=wp.members[0], grant=False)
    assert not_held.value.code == "PERMISSION_NOT_HELD"
    with pytest.raises(BizError) as not_held_stranger:
        await service.set_usage(**args, member_id=other.members[0], grant=False)
    assert not_held_stranger.value.code == "PERMISSION_NOT_HELD"
    with pytest.raises(BizError) as automatic:
        await service.set_usage(
            workplace_id=wp.id,
            service_id="ubob",
            actor_id=wp.rep,
            member_id=wp.members[0],
            grant=False,
        )
    assert automatic.value.code == "AUTO_GRANTED_SERVICE"
    with pytest.raises(BizError) as no_sub:
        await access.usage_permissions(wp.id, "loai", wp.rep)
    assert no_sub.value.code == "NO_SUBSCRIPTION"
    assert await snapshot(pool, wp.id) == before

    first = await service.set_usage(**args, member_id=wp.members[0], grant=True)
    second = await service.set_usage(**args, member_id=wp.members[0], grant=True)
    assert first.usage_permission_count == second.usage_permission_count == 1
    grants = [e for e in await audit.entries(pool, wp.id, "wishket") if e.action == "usage_granted"]
    assert len(grants) == 1
    listing = await access.usage_permissions(wp.id, "wishket", wp.rep)
    assert listing.count == 1
    assert listing.holders[0].member_id == wp.members[0]
    assert listing.holders[0].name == wp.members[0]
    assert listing.holders[0].granted_at is not None


# ── home cards and the member menu (R-APPLY-5, R-PERM-5, -8) ─────────────────────────────────


async def test_home_cards_follow_the_subscription_state(
    service: SubscriptionService, access: AccessService, workplace: Workplace
) -> None:
    wp = workplace
    await apply(service, wp, "loai")
    await apply(service, wp, "tudy")
    await service.cancel(workplace_id=wp.id, service_id="tudy", actor_id=wp.rep)
    cards = {c.service_id: c for c in await access.home_cards(wp.id, wp.rep)}
    assert list(cards) == ["cartax", "wishket", "miricanvas", "loai", "juju", "ubob", "tudy"]
    assert cards["cartax"].state == "not_applied"
    assert cards["cartax"].buttons == ["apply", "browse", "inquire"]
    assert cards["cartax"].name_ko == "카택스"
    assert cards["loai"].state == "active"
    assert cards["loai"].buttons == ["browse", "manage", "inquire"]
    assert cards["tudy"].state == "cancelled"
    assert cards["tudy"].buttons == ["apply", "browse", "manage", "inquire"]
    # after a new application the live one is shown
    again = await apply(service, wp, "tudy")
    cards = {c.service_id: c for c in await access.home_cards(wp.id, wp.rep)}
    assert cards["tudy"].state == "active"
    assert cards["tudy"].subscription_id == again.subscription_id


async def test_menu_services_and_admin_menu(
    service: SubscriptionService, access: AccessService, workplace: Workplace
) -> None:
    """R-PERM-5: admin menu iff representative or any management permission; R-PERM-8: the
    services with usage permission on an active subscription."""
    wp = workplace
    await apply(service, wp, "miricanvas")
    await apply(service, wp, "ubob", "ubob-basic")
    await service.set_usage(
        workplace_id=wp.id,
        service_id="miricanvas",
        actor_id=wp.rep,
        member_id=wp.members[0],
        grant=True,
    )
    m0 = await access.menu(wp.id, wp.members[0])
    assert [s.service_id for s in m0.services] == ["miricanvas", "ubob"]
    assert m0.services[0].name == "미리캔버스"
    assert m0.business_support_admin is False and m0.notices == []
    m1 = await access.menu(wp.id, wp.members[1])
    assert [s.service_id for s in m1.services] == ["ubob"]
    assert (await access.menu(wp.id, wp.rep)).business_support_admin is True
    assert (await access.menu(wp.id, wp.admin)).business_support_admin is False
    with pytest.raises(BizError) as forbidden:
        await access.home_cards(wp.id, wp.admin)
    assert forbidden.value.code == "FORBIDDEN"
    await access.set_management_permissions(wp.id, "loai", wp.admin, [USAGE_VIEW], wp.rep)
    assert (await access.menu(wp.id, wp.admin)).business_support_admin is True
    assert len(await access.home_cards(wp.id, wp.admin)) == 7
    # cancellation takes the service off the menu at once (R-CANCEL-1)
    await service.cancel(workplace_id=wp.id, service_id="miricanvas", actor_id=wp.rep)
    m0 = await access.menu(wp.id, wp.members[0])
    assert [s.service_id for s in m0.services] == ["ubob"]


async def test_audit_log_limits_and_order(
    service: SubscriptionService, access: AccessService, pool: Pool, workplace: Workplace
) -> None:
    wp = workplace
    await apply(service, wp, "loai")
    entries = await access.audit_log(wp.id, wp.rep, "loai", 100)
    assert [e.action for e in entries] == ["applied", "activated"]
    latest = await access.audit_log(wp.id, wp.rep, "loai", 1)
    assert [e.action for e in latest] == ["activated"]
    for bad in (0, 1001, -3):
        with pytest.raises(BizError) as refused:
            await access.audit_log(wp.id, wp.rep, "loai", bad)
        assert refused.value.code == "VALIDATION_ERROR"
    with pytest.raises(BizError) as unknown:
        await access.audit_log(wp.id, wp.rep, "netflix", 10)
    assert unknown.value.code == "UNKNOWN_SERVICE"
    rows = await subscriptions.for_workplace(pool, wp.id)
    assert all(e.subscription_id == rows[0].subscription_id for e in entries)
