"""Directory sync (R-PERM-1, -3, -6, -7, -9)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from domain.errors import BizError
from domain.permissions import MANAGEMENT_PERMISSIONS, USAGE_GRANT, USAGE_VIEW
from domain.subscription import UsageRequest
from services.access import AccessService
from services.directory import DirectoryService
from services.subscriptions import SubscriptionService
from store import audit, directory, permissions
from store.audit import AuditRow
from store.db import Pool
from tests.conftest import Workplace, eventually
from tests.conftest import apply_for as apply
from tests.partner_sandbox import session_partner
from workflows.subscription import SubscriptionWorkflow


async def holders(pool: Pool, subscription_id: str) -> list[str]:
    return [r.member_id for r in await permissions.usage_holders(pool, subscription_id)]


async def actions(pool: Pool, workplace_id: str, service_id: str | None = None) -> list[str]:
    return [e.action for e in await audit.entries(pool, workplace_id, service_id, limit=1000)]


async def member_rows(pool: Pool, workplace_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT member_id, login_id, name, role, left_at FROM members"
            " WHERE workplace_id = %s ORDER BY member_id",
            (workplace_id,),
        )
        return await cur.fetchall()


async def test_put_workplace_creates_renames_and_transfers(
    dirs: DirectoryService, pool: Pool
) -> None:
    wp = f"wp-{uuid.uuid4().hex[:10]}"
    rep = {"member_id": f"{wp}-a", "login_id": "a@x", "name": "가"}
    made = await dirs.put_workplace(wp, "회사", rep)
    assert made.created is True
    assert made.workplace.name == "회사"
    assert made.representative_admin.role == "representative_admin"
    again = await dirs.put_workplace(wp, "회사", rep)  # idempotent
    assert again.created is False
    assert again.representative_admin == made.representative_admin
    renamed = await dirs.put_workplace(
        wp, "새 회사", {"member_id": f"{wp}-b", "login_id": "b@x", "name": "나"}
    )
    assert renamed.workplace.name == "새 회사"
    roles = {m["member_id"]: m["role"] for m in await member_rows(pool, wp)}
    assert roles == {f"{wp}-a": "admin", f"{wp}-b": "representative_admin"}
    assert await actions(pool, wp) == [
        "workplace_created",
        "member_joined",
        "workplace_renamed",
        "member_joined",
        "representative_changed",
    ]
    with pytest.raises(BizError) as bad:
        await dirs.put_workplace(wp, "회사", {"member_id": "x", "login_id": "", "name": "n"})
    assert bad.value.code == "VALIDATION_ERROR"


async def test_put_member_unknown_workplace_and_bad_role(
    dirs: DirectoryService, pool: Pool, workplace: Workplace
) -> None:
    with pytest.raises(BizError) as unknown:
        await dirs.put_member("wp-nope", "m", login_id="m@x", name="m", role="member")
    assert unknown.value.code == "UNKNOWN_WORKPLACE"
    before = await member_rows(pool, workplace.id)
    with pytest.raises(BizError) as bad:
        await dirs.put_member(workplace.id, "m", login_id="m@x", name="m", role="owner")
    assert bad.value.code == "VALIDATION_ERROR"
    assert await member_rows(pool, workplace.id) == before


async def test_ubob_grants_everyone_on_application_and_joiners_at_once(
    dirs: DirectoryService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """R-PERM-6, R-PERM-1: admins and the representative admin included; joiners at once."""
    wp = workplace
    ubob = (await apply(service, wp, "ubob", "ubob-basic")).subscription_id
    canvas = (await apply(service, wp, "miricanvas")).subscription_id
    assert await holders(pool, ubob) == sorted([wp.rep, wp.admin, *wp.members])
    assert await holders(pool, canvas) == []

    joiner = f"{wp.id}-new"
    answer = await dirs.put_member(wp.id, joiner, login_id="new@x", name="신입", role="member")
    assert answer.member.role == "member" and answer.changes == ["joined"]
    assert answer.notices == []
    await eventually(lambda: _holds(pool, ubob, joiner), within=30, what="ubob grant to the joiner")
    new_admin = f"{wp.id}-admin2"
    await dirs.put_member(wp.id, new_admin, login_id="a2@x", name="관리자2", role="admin")
    await eventually(
        lambda: _holds(pool, ubob, new_admin), within=30, what="ubob grant to the new admin"
    )
    assert await holders(pool, canvas) == []  # no automatic grant elsewhere
    grants = [
        e
        for e in await audit.entries(pool, wp.id, "ubob", limit=1000)
        if e.action == "usage_granted" and e.details.get("automatic")
    ]
    assert {g.details["member_id"] for g in grants} == {joiner, new_admin}
    # a repeated PUT of a present member changes nothing and grants nothing twice
    await dirs.put_member(wp.id, joiner, login_id="new@x", name="신입", role="member")
    status = await service.status(workplace_id=wp.id, service_id="ubob", actor_id=wp.rep)
    assert status.usage_permission_count == 7
    assert "member_joined" in await actions(pool, wp.id)


async def _holds(pool: Pool, subscription_id: str, member_id: str) -> bool:
    return member_id in await holders(pool, subscription_id)


async def _lacks(pool: Pool, subscription_id: str, member_id: str) -> bool:
    return member_id not in await holders(pool, subscription_id)


async def test_leaver_loses_every_usage_and_management_permission(
    dirs: DirectoryService,
    access: AccessService,
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-PERM-7: usage (ubob and granted) and management permissions go; audited."""
    wp = workplace
    ubob = (await apply(service, wp, "ubob", "ubob-basic")).subscription_id
    canvas = (await apply(service, wp, "miricanvas")).subscription_id
    for member_id in (wp.admin, wp.members[0]):
        await service.set_usage(
            workplace_id=wp.id,
            service_id="miricanvas",
            actor_id=wp.rep,
            member_id=member_id,
            grant=True,
        )
    await access.set_management_permissions(
        wp.id, "miricanvas", wp.admin, [USAGE_VIEW, USAGE_GRANT], wp.rep
    )
    await access.set_management_permissions(wp.id, "ubob", wp.admin, [USAGE_VIEW], wp.rep)

    left = await dirs.remove_member(wp.id, wp.admin)
    assert left.member.left_at is not None
    assert [d.model_dump() for d in left.dropped_management_permissions] == [
        {"service_id": "miricanvas", "permission": USAGE_GRANT},
        {"service_id": "miricanvas", "permission": USAGE_VIEW},
        {"service_id": "ubob", "permission": USAGE_VIEW},
    ]
    assert await permissions.management_of(pool, wp.id, wp.admin) == {}
    await eventually(lambda: _lacks(pool, ubob, wp.admin), within=30, what="ubob usage dropped")
    await eventually(
        lambda: _lacks(pool, canvas, wp.admin), within=30, what="miricanvas usage dropped"
    )
    assert await _holds(pool, canvas, wp.members[0])
    assert "member_left" in await actions(pool, wp.id)
    dropped = [
        e
        for e in await audit.entries(pool, wp.id, "miricanvas", limit=1000)
        if e.action == "management_permissions_dropped"
    ]
    assert dropped[0].details["reason"] == "member_left"
    revoked = [
        e
        for e in await audit.entries(pool, wp.id, "ubob", limit=1000)
        if e.action == "usage_revoked"
    ]
    assert revoked[0].details == {
        "state": "active",
        "previous_state": "active",
        "member_id": wp.admin,
        "reason": "member_left",
    }
    listing = await access.management_permissions(wp.id, wp.rep)
    assert all(
        [h.member_id for h in p.holders] == [wp.rep]
        for s in listing.services
        for p in s.permissions
    )
    # the one who left is unknown from now on
    for call in (
        lambda: access.menu(wp.id, wp.admin),
        lambda: service.status(workplace_id=wp.id, service_id="ubob", actor_id=wp.admin),
        lambda: dirs.remove_member(wp.id, wp.admin),
    ):
        with pytest.raises(BizError) as gone:
            await call()
        assert gone.value.code == "UNKNOWN_MEMBER"
    # coming back is joining again: ubob grants again, nothing else carries over
    back = await dirs.put_member(wp.id, wp.admin, login_id=f"{wp.admin}@x", name="관", role="admin")
    assert back.changes == ["joined"]
    await eventually(
        lambda: _holds(pool, ubob, wp.admin), within=30, what="ubob usage after rejoining"
    )
    assert await _lacks(pool, canvas, wp.admin)
    assert await permissions.management_of(pool, wp.id, wp.admin) == {}


async def test_remove_unknown_member_and_the_representative(
    dirs: DirectoryService, pool: Pool, workplace: Workplace
) -> None:
    before = await member_rows(pool, workplace.id)
    with pytest.raises(BizError) as unknown:
        await dirs.remove_member(workplace.id, f"{workplace.id}-ghost")
    assert unknown.value.code == "UNKNOWN_MEMBER"
    with pytest.raises(BizError) as rep:
        await dirs.remove_member(workplace.id, workplace.rep)
    assert rep.value.code == "REPRESENTATIVE_REQUIRED"
    with pytest.raises(BizError) as no_wp:
        await dirs.remove_member("wp-nope", workplace.rep)
    assert no_wp.value.code == "UNKNOWN_WORKPLACE"
    assert await member_rows(pool, workplace.id) == before
    assert await actions(pool, workplace.id) == []


@pytest.mark.parametrize("role", ["admin", "member"])
async def test_demoting_the_only_representative_is_refused(
    dirs: DirectoryService,
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
    role: str,
) -> None:
    """R-PERM-1: exactly one representative admin; name a successor instead."""
    wp = workplace
    await apply(service, wp, "loai")
    before = await member_rows(pool, wp.id)
    managed = await permissions.management_of(pool, wp.id, wp.rep)
    with pytest.raises(BizError) as refused:
        await dirs.put_member(wp.id, wp.rep, login_id="changed@x", name="다른 이름", role=role)
    assert refused.value.code == "REPRESENTATIVE_REQUIRED"
    assert await member_rows(pool, wp.id) == before
    assert await permissions.management_of(pool, wp.id, wp.rep) == managed
    assert "member_role_changed" not in await actions(pool, wp.id)


async def test_representative_transfer_keeps_the_applicants_manager_role(
    dirs: DirectoryService,
    access: AccessService,
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """Making someone representative admin demotes the previous one to admin (R-PERM-1); the
    applicant's explicit manager role survives (R-PERM-3, R-APPLY-4)."""
    wp = workplace
    await apply(service, wp, "juju")
    answer = await dirs.put_member(
        wp.id, wp.admin, login_id=f"{wp.admin}@x", name="관리자", role="representative_admin"
    )
    assert answer.changes == ["role_changed", "representative_changed"]
    roles = {m["member_id"]: m["role"] for m in await member_rows(pool, wp.id)}
    assert roles[wp.admin] == "representative_admin" and roles[wp.rep] == "admin"
    # the old representative still manages juju (explicit rows), but nothing else
    status = await service.status(workplace_id=wp.id, service_id="juju", actor_id=wp.rep)
    assert status.managers == [wp.rep]
    with pytest.raises(BizError) as other:
        await service.status(workplace_id=wp.id, service_id="ubob", actor_id=wp.rep)
    assert other.value.code == "FORBIDDEN"
    with pytest.raises(BizError) as not_rep:
        await access.management_permissions(wp.id, wp.rep)
    assert not_rep.value.code == "NOT_REPRESENTATIVE_ADMIN"
    listing = await access.management_permissions(wp.id, wp.admin)
    juju = next(s for s in listing.services if s.service_id == "juju")
    for p in juju.permissions:
        assert [h.model_dump() for h in p.holders] == [
            {"member_id": wp.admin, "name": "관리자", "implicit": True},
            {"member_id": wp.rep, "name": "대표", "implicit": False},
        ]
    # the new representative may now demote the old one, whose permissions then go
    demoted = await dirs.put_member(
        wp.id, wp.rep, login_id=f"{wp.rep}@example.com", name="대표", role="member"
    )
    assert demoted.changes == ["role_changed", "management_permissions_dropped"]
    assert await permissions.management_of(pool, wp.id, wp.rep) == {}
    assert (await access.menu(wp.id, wp.rep)).business_support_admin is False
    log = await actions(pool, wp.id)
    assert "representative_changed" in log and "management_permissions_dropped" in log


async def test_demoting_an_admin_to_member_drops_management_permissions(
    dirs: DirectoryService,
    access: AccessService,
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-PERM-3: demotion drops them; promotion again does not bring them back."""
    wp = workplace
    await apply(service, wp, "wishket")
    await access.set_management_permissions(
        wp.id, "wishket", wp.admin, list(MANAGEMENT_PERMISSIONS), wp.rep
    )
    assert (await access.menu(wp.id, wp.admin)).business_support_admin is True
    answer = await dirs.put_member(
        wp.id, wp.admin, login_id=f"{wp.admin}@x", name="관", role="member"
    )
    assert "management_permissions_dropped" in answer.changes
    assert await permissions.management_of(pool, wp.id, wp.admin) == {}
    assert (await access.menu(wp.id, wp.admin)).business_support_admin is False
    with pytest.raises(BizError) as refused:
        await service.status(workplace_id=wp.id, service_id="wishket", actor_id=wp.admin)
    assert refused.value.code == "FORBIDDEN"
    await dirs.put_member(wp.id, wp.admin, login_id=f"{wp.admin}@x", name="관", role="admin")
    assert await permissions.management_of(pool, wp.id, wp.admin) == {}
    # an admin promoted from member can be given permissions; a member cannot
    with pytest.raises(BizError) as member:
        await access.set_management_permissions(wp.id, "wishket", wp.members[0], [], wp.rep)
    assert member.value.code == "NOT_AN_ADMIN"


async def _learning(subscription_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in await session_partner().learning_records(subscription_id):
        counts[record["member_id"]] = counts.get(record["member_id"], 0) + 1
    return counts


async def test_login_change_resets_learning_records_with_a_notice(
    dirs: DirectoryService,
    access: AccessService,
    service: SubscriptionService,
    pool: Pool,
    workplace: Workplace,
) -> None:
    """R-PERM-9: records reset (courses in progress included), answer lists it, menu notice,
    audited; other members untouched."""
    wp = workplace
    ubob = (await apply(service, wp, "ubob", "ubob-basic")).subscription_id
    await apply(service, wp, "miricanvas")
    m0, m1 = wp.members[0], wp.members[1]
    for member_id, course, status in (
        (m0, "c-101", "in_progress"),
        (m0, "c-102", "completed"),
        (m1, "c-101", "in_progress"),
    ):
        await session_partner().add_learning_record(ubob, member_id, course, status, 40)
    answer = await dirs.put_member(wp.id, m0, login_id="renamed@x", name=m0, role="member")
    assert answer.changes == ["login_id_changed"]
    assert answer.member.login_id == "renamed@x"
    (notice,) = answer.notices
    assert notice.kind == "learning_records_reset"
    assert notice.service_id == "ubob" and notice.subscription_id == ubob
    assert "유밥" in notice.message_ko and notice.message
    await eventually(lambda: _no_records(ubob, m0), within=30, what="learning records reset")
    assert await _learning(ubob) == {m1: 1}
    entry = await eventually(
        lambda: _audit_action(pool, wp.id, "learning_records_reset"),
        within=30,
        what="reset audited",
    )
    assert entry.details["member_id"] == m0
    assert entry.details["records"] == 2
    assert entry.details["login_id"] == "renamed@x"
    assert entry.subscription_id == ubob
    menu = await access.menu(wp.id, m0)
    assert [n.notice_id for n in menu.notices] == [notice.notice_id]
    assert (await access.menu(wp.id, m1)).notices == []
    assert "login_id_changed" in await actions(pool, wp.id)
    # the same login id again resets nothing more
    again = await dirs.put_member(wp.id, m0, login_id="renamed@x", name=m0, role="member")
    assert again.notices == [] and again.changes == []


async def _no_records(subscription_id: str, member_id: str) -> bool:
    return member_id not in await _learning(subscription_id)


async def _audit_action(pool: Pool, workplace_id: str, action: str) -> AuditRow | None:
    for e in await audit.entries(pool, workplace_id, limit=1000):
        if e.action == action:
            return e
    return None


async def test_login_change_without_ubob_has_no_notice(
    dirs: DirectoryService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    wp = workplace
    await apply(service, wp, "cartax")
    answer = await dirs.put_member(
        wp.id, wp.members[2], login_id="other@x", name=wp.members[2], role="member"
    )
    assert answer.changes == ["login_id_changed"] and answer.notices == []
    row = await directory.member(pool, wp.id, wp.members[2])
    assert row.login_id == "other@x"


@pytest.mark.parametrize("bad", ["a\x00b", "\udbe6", "line\nbreak", "   ", "x" * 201])
async def test_unstorable_text_is_refused_before_any_write(
    dirs: DirectoryService, access: AccessService, pool: Pool, workplace: Workplace, bad: str
) -> None:
    """R-ERR-1: NUL bytes, lone surrogates, control characters, blanks, oversized → 400."""
    wp = workplace
    before = await member_rows(pool, wp.id)
    calls = [
        lambda: dirs.put_workplace(wp.id, bad, {"member_id": wp.rep, "login_id": "r", "name": "r"}),
        lambda: dirs.put_workplace(bad, "n", {"member_id": "r", "login_id": "r", "name": "r"}),
        lambda: dirs.put_member(wp.id, bad, login_id="l", name="n", role="member"),
        lambda: dirs.put_member(wp.id, wp.members[0], login_id=bad, name="n", role="member"),
        lambda: dirs.put_member(wp.id, wp.members[0], login_id="l", name=bad, role="member"),
        lambda: dirs.remove_member(wp.id, bad),
    ]
    for call in calls:
        with pytest.raises(BizError) as refused:
            await call()
        assert refused.value.code == "VALIDATION_ERROR"
    assert await member_rows(pool, wp.id) == before
    assert await actions(pool, wp.id) == []
    if bad.strip() and len(bad) < 200:
        for call, code in (
            (lambda: access.menu(wp.id, bad), "UNKNOWN_MEMBER"),
            (lambda: access.menu(bad, wp.rep), "UNKNOWN_WORKPLACE"),
            (lambda: access.usage_permissions(wp.id, "ubob", bad), "UNKNOWN_MEMBER"),
            (
                lambda: access.set_management_permissions(wp.id, "ubob", bad, [], wp.rep),
                "UNKNOWN_MEMBER",
            ),
        ):
            with pytest.raises(BizError) as unknown:
                await call()
            assert unknown.value.code == code


# ── who is signalled (issue 12: only the subscriptions a directory change concerns) ───────────


async def _signals(service: SubscriptionService, subscription_id: str) -> list[str]:
    """The signal names in the subscription workflow's history, in order."""
    history = await service.handle(subscription_id).fetch_history()
    return [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in history.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]


async def _events(service: SubscriptionService, subscription_id: str) -> int:
    return len((await service.handle(subscription_id).fetch_history()).events)


async def _settled_events(service: SubscriptionService, subscription_id: str) -> int | None:
    """The history's length once no workflow task is pending (each scheduled one completed) and
    no activity is running."""
    events = (await service.handle(subscription_id).fetch_history()).events
    kinds = [e.WhichOneof("attributes") for e in events]

    def count(kind: str) -> int:
        return kinds.count(f"{kind}_event_attributes")

    tasks_done = count("workflow_task_scheduled") == count("workflow_task_completed")
    activities_done = count("activity_task_scheduled") == count("activity_task_completed")
    return len(events) if tasks_done and activities_done else None


async def test_a_quiet_subscription_hears_nothing_of_joins_and_leaves(
    dirs: DirectoryService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """cartax acts on neither `member_joined` nor the departure of a member holding no seat
    there, so its history gains nothing; ubob (auto-grant) still hears and acts on each."""
    wp = workplace
    ubob = (await apply(service, wp, "ubob", "ubob-basic")).subscription_id
    cartax = (await apply(service, wp, "cartax")).subscription_id
    # the application answers once the read model says active; the workflow task after that
    # last publish may still be completing: count from a settled history
    quiet = await eventually(lambda: _settled_events(service, cartax), what="a settled history")
    joiner, m0 = f"{wp.id}-new", wp.members[0]

    await dirs.put_member(wp.id, joiner, login_id="new@x", name="신입", role="member")
    await eventually(lambda: _holds(pool, ubob, joiner), within=30, what="ubob grant to joiner")
    await dirs.put_member(wp.id, joiner, login_id="new@x", name="신입", role="member")  # re-send
    await dirs.remove_member(wp.id, joiner)
    await eventually(lambda: _lacks(pool, ubob, joiner), within=30, what="ubob drop of leaver")
    with pytest.raises(BizError) as again:  # a repeated DELETE re-sends, then refuses
        await dirs.remove_member(wp.id, joiner)
    assert again.value.code == "UNKNOWN_MEMBER"
    await dirs.remove_member(wp.id, m0)
    await eventually(lambda: _lacks(pool, ubob, m0), within=30, what="ubob drop of m0")
    await dirs.put_member(wp.id, m0, login_id=f"{m0}@x", name=m0, role="member")  # comes back
    await eventually(lambda: _holds(pool, ubob, m0), within=30, what="ubob grant on return")

    # A signal is in the history as soon as the signal call returns: nothing can still arrive.
    assert await _signals(service, cartax) == []
    assert await _events(service, cartax) == quiet
    assert await _signals(service, ubob) == [
        "member_joined",
        "member_joined",
        "member_left",
        "member_left",
        "member_left",
        "member_joined",
    ]
    assert await holders(pool, cartax) == []


async def test_a_leaver_is_signalled_only_where_they_hold_a_seat(
    dirs: DirectoryService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """R-PERM-7 with manual seats: the subscription holding the leaver's seat drops it; the
    one where they held none is not signalled; nor is either signalled when someone joins."""
    wp = workplace
    canvas = (await apply(service, wp, "miricanvas")).subscription_id
    cartax = (await apply(service, wp, "cartax")).subscription_id
    m0, m1 = wp.members[0], wp.members[1]
    for member_id in (m0, m1):
        await service.set_usage(
            workplace_id=wp.id,
            service_id="miricanvas",
            actor_id=wp.rep,
            member_id=member_id,
            grant=True,
        )
    quiet = await _events(service, cartax)
    await dirs.put_member(wp.id, f"{wp.id}-new", login_id="new@x", name="신입", role="member")
    await dirs.remove_member(wp.id, m0)
    await eventually(lambda: _lacks(pool, canvas, m0), within=30, what="miricanvas seat dropped")
    assert await holders(pool, canvas) == [m1]
    assert await _signals(service, canvas) == ["member_left"]
    assert await _signals(service, cartax) == []
    assert await _events(service, cartax) == quiet


async def test_a_repeated_departure_heals_a_seat_the_first_one_missed(
    dirs: DirectoryService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """The module docstring's healing: a seat a departed member still holds (a lost
    `member_left`, or a grant that raced the departure) is in the read model, so the next
    DELETE of that member re-sends `member_left` there, and only there."""
    wp = workplace
    canvas = (await apply(service, wp, "miricanvas")).subscription_id
    cartax = (await apply(service, wp, "cartax")).subscription_id
    m0 = wp.members[0]
    await dirs.remove_member(wp.id, m0)  # holds nothing: nobody is signalled
    assert await _signals(service, canvas) == []
    # The seat the departure did not see: granted straight through the workflow, as a grant
    # already under way when the member left would.
    await service.handle(canvas).execute_update(
        SubscriptionWorkflow.grant_usage, UsageRequest(member_id=m0, actor=wp.rep)
    )
    assert await holders(pool, canvas) == [m0]
    with pytest.raises(BizError) as gone:
        await dirs.remove_member(wp.id, m0)
    assert gone.value.code == "UNKNOWN_MEMBER"
    await eventually(lambda: _lacks(pool, canvas, m0), within=30, what="healed seat dropped")
    assert await _signals(service, canvas) == ["member_left"]
    assert await _signals(service, cartax) == []


async def test_a_grant_racing_a_departure_leaves_no_seat(
    dirs: DirectoryService, service: SubscriptionService, pool: Pool, workplace: Workplace
) -> None:
    """Whichever way a grant and the member's departure interleave, the departed member ends
    without a seat: the departure signals where it sees one, the grant re-checks the member."""
    wp = workplace
    canvas = (await apply(service, wp, "miricanvas")).subscription_id
    for member_id in wp.members:
        outcomes = await asyncio.gather(
            service.set_usage(
                workplace_id=wp.id,
                service_id="miricanvas",
                actor_id=wp.rep,
                member_id=member_id,
                grant=True,
            ),
            dirs.remove_member(wp.id, member_id),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, BizError) and outcome.code == "UNKNOWN_MEMBER"

    async def seatless() -> bool:
        return not set(wp.members) & set(await holders(pool, canvas))

    await eventually(seatless, within=30, what="no departed member holding a seat")
