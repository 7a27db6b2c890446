"""Plan changes (R-PLAN-1..10) through SubscriptionService on the time-skipping server.

Instants are always chosen relative to the session's clock, which only moves forward; the
expected Seoul instants come from tests/billing_oracle.py (fixed +09:00 arithmetic), not from
domain/calendar.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from domain.errors import BizError
from domain.subscription import PlanChangeNotice
from services.models import SubscriptionOut
from services.subscriptions import SubscriptionService
from store import audit, ledger, subscriptions
from store.db import Pool
from tests import billing_oracle as oracle
from tests.conftest import Workplace, advance_to, eventually
from tests.partner_sandbox import session_partner

TERMS = "2026-01-01"
SVC = "ubob"
BASIC, STANDARD, PREMIUM = "ubob-basic", "ubob-standard", "ubob-premium"


@pytest_asyncio.fixture(autouse=True)
async def cancel_afterwards(
    service: SubscriptionService, pool: Pool, workplace: Workplace
) -> AsyncIterator[None]:
    """Leave no subscription live: a live one is invoiced at every later month-end the session
    crosses, which only slows the tests that come after."""
    yield
    for row in await subscriptions.live_for_workplace(pool, workplace.id):
        await service.cancel(
            workplace_id=workplace.id, service_id=row.service_id, actor_id=workplace.rep
        )


# ── helpers ──────────────────────────────────────────────────────────────────────────────────


async def upcoming(
    env: WorkflowEnvironment,
    seconds_of_day: int,
    when: Callable[[date], bool] = lambda _: True,
    ahead: timedelta = timedelta(0),
) -> datetime:
    """The next ``seconds_of_day`` Seoul on a day ``when`` accepts, ``ahead`` from now or later."""
    earliest = await env.get_current_time() + ahead
    day = oracle.seoul_day(earliest)
    while not (when(day) and oracle.seoul_at(day, seconds_of_day) > earliest):
        day += timedelta(days=1)
    return oracle.seoul_at(day, seconds_of_day)


def mid_month(day: date) -> bool:
    """Days 3..20: the next day is in the same month, and so is the one after."""
    return 3 <= day.day <= 20


async def apply(
    service: SubscriptionService, wp: Workplace, svc: str = SVC, plan: str | None = BASIC
) -> SubscriptionOut:
    status = await service.apply(
        workplace_id=wp.id,
        service_id=svc,
        actor_id=wp.rep,
        plan_id=plan if svc == SVC else None,
        terms_version=TERMS,
        agree_terms=True,
    )
    assert status.state == "active", status
    return status


async def change(
    service: SubscriptionService,
    wp: Workplace,
    plan: str,
    *,
    when: str = "now",
    confirm: bool = False,
    svc: str = SVC,
    actor: str | None = None,
) -> SubscriptionOut:
    return await service.change_plan(
        workplace_id=wp.id,
        service_id=svc,
        actor_id=actor or wp.rep,
        plan_id=plan,
        when=when,  # type: ignore[arg-type]
        confirm_course_reset=confirm,
    )


async def refused(call: Any) -> BizError:
    with pytest.raises(BizError) as caught:
        await call
    assert caught.value.message and caught.value.message_ko  # R-ERR-1
    return caught.value


async def status(service: SubscriptionService, wp: Workplace, svc: str = SVC) -> SubscriptionOut:
    return await service.status(workplace_id=wp.id, service_id=svc, actor_id=wp.rep)


async def actions(pool: Pool, wp: Workplace, svc: str = SVC) -> list[str]:
    return [e.action for e in await audit.entries(pool, wp.id, svc, limit=1000)]


async def snapshot(pool: Pool, wp: Workplace, sub_id: str) -> tuple[Any, ...]:
    """Everything a refused action must leave as it was (R-ERR-1)."""
    row = await subscriptions.by_id(pool, sub_id)
    assert row is not None
    kept = {k: v for k, v in dataclasses.asdict(row).items() if k != "updated_at"}
    entries = await audit.entries(pool, wp.id, limit=1000)
    return kept, entries, await courses(sub_id)


async def add_courses(sub_id: str, per_member: dict[str, list[str]]) -> None:
    """Members' courses at the sandbox partner, as members taking them would leave them."""
    partner = session_partner()
    for member, course_ids in per_member.items():
        for course in course_ids:
            await partner.add_learning_record(sub_id, member, course, "in_progress", 40)
    # A finished course is not "in progress" and is never touched by a plan change.
    await partner.add_learning_record(sub_id, next(iter(per_member)), "done-101", "completed", 100)


async def courses(sub_id: str) -> list[tuple[str, str, str, int]]:
    rows = await session_partner().learning_records(sub_id)
    return [(r["member_id"], r["course_id"], r["status"], r["progress"]) for r in rows]


async def at_month_start(env: WorkflowEnvironment, pool: Pool, sub_id: str) -> datetime:
    """Go to 00:00 Seoul on the next 1st and wait until the sub's month-close has landed."""
    first = oracle.first_of_next_month(await env.get_current_time())
    await advance_to(env, first)
    # A due scheduled change runs before the invoice (same task), so the invoice's audit entry
    # says both have landed.
    period = oracle.month_of(oracle.seoul_day(first) - timedelta(days=1))

    async def invoiced() -> bool:
        async with pool.connection() as conn:
            found = await (
                await conn.execute(
                    "SELECT 1 FROM audit_log WHERE subscription_id = %s AND"
                    " action IN ('invoice_issued', 'billing_closed') AND details->>'period' = %s",
                    (sub_id, period),
                )
            ).fetchone()
        return found is not None

    await eventually(invoiced, what=f"the invoice for {period}")
    return first


# ── R-PLAN-3, R-PLAN-2, R-PLAN-4: the window ─────────────────────────────────────────────────


async def test_r_plan_3_4_refused_on_the_application_day_allowed_from_the_next_midnight(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-3: no change on the Seoul day of the application; R-PLAN-4: the refusal names
    the next day's 00:00 Seoul, and so does the status; the next day it is allowed."""
    await advance_to(env, await upcoming(env, 23 * 3600 + 10 * 60, mid_month))
    applied = await apply(service, workplace)
    sub_id = applied.subscription_id
    next_midnight = oracle.seoul_midnight(oracle.seoul_day(applied.applied_at) + timedelta(1))
    assert applied.next_plan_change_at == next_midnight
    before = await snapshot(pool, workplace, sub_id)

    refusal = await refused(change(service, workplace, PREMIUM))
    assert refusal.code == "PLAN_CHANGE_WINDOW_CLOSED"
    assert refusal.details["reason"] == "application_day"
    assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == next_midnight
    assert refusal.details["next_plan_change_at"].endswith("+09:00")
    assert await snapshot(pool, workplace, sub_id) == before  # nothing changed, nothing audited

    await advance_to(env, next_midnight - timedelta(seconds=90))
    assert (await refused(change(service, workplace, PREMIUM))).code == "PLAN_CHANGE_WINDOW_CLOSED"
    await advance_to(env, next_midnight)
    now = await env.get_current_time()
    shown = await status(service, workplace)
    assert next_midnight <= shown.next_plan_change_at <= await env.get_current_time()
    assert shown.next_plan_change_at >= now
    changed = await change(service, workplace, PREMIUM)
    assert changed.plan_id == PREMIUM and changed.state == "active"
    assert (await actions(pool, workplace))[-2:] == ["plan_change_started", "plan_changed"]


async def test_r_plan_2_4_second_change_in_a_month_refused_until_the_1st(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-2: one change per Seoul calendar month; R-PLAN-4: the refusal (and the status)
    names 00:00 Seoul on the next 1st; on the 1st the next change is allowed."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    assert (await change(service, workplace, STANDARD)).plan_id == STANDARD
    first = oracle.first_of_next_month(await env.get_current_time())
    assert (await status(service, workplace)).next_plan_change_at == first
    await advance_to(env, await env.get_current_time() + timedelta(days=5))

    before = await snapshot(pool, workplace, sub_id)
    refusal = await refused(change(service, workplace, PREMIUM))
    assert refusal.code == "PLAN_CHANGE_WINDOW_CLOSED"
    assert refusal.details["reason"] == "monthly_limit"
    assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == first
    assert await snapshot(pool, workplace, sub_id) == before

    await at_month_start(env, pool, sub_id)
    assert (await status(service, workplace)).next_plan_change_at <= (await env.get_current_time())
    assert (await change(service, workplace, PREMIUM)).plan_id == PREMIUM
    assert (await actions(pool, workplace)).count("plan_changed") == 2


async def test_r_plan_8_a_partner_refusing_the_change_fails_it_at_once_with_its_reason(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-8, R-PARTNER-2: a partner that refuses the plan change (a 4xx over the protocol)
    ends it at once: PLAN_CHANGE_FAILED, the plan as it was, the partner's reason in the audit
    log, and the month not used up. It is not retried, which would hold the subscription in
    plan_changing (and every other action behind its lock) for good."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    await apply(service, workplace)
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    partner = session_partner()
    await partner.fault(
        "refuse", SVC, workplace_id=workplace.id, operation="change_plan", reason="계약 만료"
    )
    try:
        refusal = await refused(change(service, workplace, STANDARD))
    finally:
        await partner.clear_faults(service_id=SVC)
    assert refusal.code == "PLAN_CHANGE_FAILED"
    shown = await status(service, workplace)
    assert shown.state == "active" and shown.plan_id == BASIC
    failed = (await audit.entries(pool, workplace.id, SVC, limit=1000))[-1]
    assert failed.action == "plan_change_failed" and failed.outcome == "failed"
    assert failed.details["reason"] == "계약 만료"
    assert (await change(service, workplace, STANDARD)).plan_id == STANDARD  # month not used


async def test_r_plan_4_8_a_scheduled_change_takes_the_next_month_too(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-4, -8: with this month's change used and one scheduled for the 1st, the next
    possible change is the 1st of the month after, in the refusal and in the status."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    await apply(service, workplace)
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    await change(service, workplace, STANDARD)
    first = oracle.first_of_next_month(await env.get_current_time())
    scheduled = await change(service, workplace, PREMIUM, when="next_window")
    following = oracle.first_of_next_month(first)
    assert scheduled.next_plan_change_at == following
    refusal = await refused(change(service, workplace, BASIC))
    assert refusal.code == "PLAN_CHANGE_WINDOW_CLOSED"
    assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == following


async def test_r_plan_1_single_plan_services_have_no_window_in_their_status(
    service: SubscriptionService, workplace: Workplace
) -> None:
    """R-PLAN-1: a single-plan service never offers a plan change."""
    shown = await apply(service, workplace, "tudy")
    assert shown.next_plan_change_at is None


# ── R-PLAN-8: the next window ────────────────────────────────────────────────────────────────


async def test_r_plan_8_scheduled_change_fires_at_midnight_on_the_1st_and_counts(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-8: `next_window` takes effect at 00:00 Seoul on the 1st, by a durable timer, and
    is that month's change (a `now` change that month is refused); R-PLAN-9: the month before
    is billed at the old plan. Scheduling is allowed on the application day itself."""
    await advance_to(env, await upcoming(env, 14 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    first = oracle.first_of_next_month(await env.get_current_time())
    scheduled = await change(service, workplace, PREMIUM, when="next_window")
    assert scheduled.plan_id == BASIC
    assert scheduled.scheduled_plan_change.plan_id == PREMIUM
    assert scheduled.scheduled_plan_change.at == first
    assert (await actions(pool, workplace))[-1] == "plan_change_scheduled"

    await advance_to(env, first - timedelta(seconds=1))
    assert (await status(service, workplace)).plan_id == BASIC  # not a second early
    await at_month_start(env, pool, sub_id)
    shown = await status(service, workplace)
    assert shown.plan_id == PREMIUM and shown.scheduled_plan_change is None
    entries = await audit.entries(pool, workplace.id, SVC, limit=1000)
    fired = next(e for e in entries if e.action == "plan_changed")
    assert oracle.seoul_day(fired.at) == oracle.seoul_day(first)
    assert fired.at - first < timedelta(minutes=1)  # at once, not at some later wake-up
    assert fired.details["from_plan"] == BASIC and fired.details["to_plan"] == PREMIUM

    invoice = (await ledger.invoices_for(pool, workplace.id, SVC))[-1]
    assert {line["plan_id"] for line in invoice.lines} == {BASIC}

    following = oracle.first_of_next_month(first)
    assert shown.next_plan_change_at == following
    refusal = await refused(change(service, workplace, STANDARD))
    assert refusal.code == "PLAN_CHANGE_WINDOW_CLOSED"
    assert datetime.fromisoformat(refusal.details["next_plan_change_at"]) == following


async def test_r_plan_8_a_second_schedule_replaces_the_first(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-8: scheduling again replaces the scheduled change; only the last one fires."""
    await advance_to(env, await upcoming(env, 9 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    await change(service, workplace, STANDARD, when="next_window")
    await advance_to(env, await env.get_current_time() + timedelta(days=2))
    again = await change(service, workplace, PREMIUM, when="next_window")
    assert again.scheduled_plan_change.plan_id == PREMIUM
    row = await subscriptions.by_id(pool, sub_id)
    assert row is not None and row.scheduled_plan_change["plan_id"] == PREMIUM
    await at_month_start(env, pool, sub_id)
    assert (await status(service, workplace)).plan_id == PREMIUM
    assert (await actions(pool, workplace)).count("plan_changed") == 1


async def test_r_plan_8_withdraw_until_it_fires_and_nothing_to_withdraw(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-8: a scheduled change can be withdrawn; withdrawing when nothing is scheduled is
    refused with NO_SCHEDULED_PLAN_CHANGE and changes nothing."""
    await advance_to(env, await upcoming(env, 11 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    withdraw = {"workplace_id": workplace.id, "service_id": SVC, "actor_id": workplace.rep}
    before = await snapshot(pool, workplace, sub_id)
    nothing = await refused(service.withdraw_plan_change(**withdraw))
    assert nothing.code == "NO_SCHEDULED_PLAN_CHANGE"
    assert await snapshot(pool, workplace, sub_id) == before

    await change(service, workplace, STANDARD, when="next_window")
    withdrawn = await service.withdraw_plan_change(**withdraw)
    assert withdrawn.scheduled_plan_change is None
    assert (await actions(pool, workplace))[-1] == "plan_change_withdrawn"
    again = await refused(service.withdraw_plan_change(**withdraw))
    assert again.code == "NO_SCHEDULED_PLAN_CHANGE"

    await at_month_start(env, pool, sub_id)
    assert (await status(service, workplace)).plan_id == BASIC
    assert "plan_changed" not in await actions(pool, workplace)
    # The withdrawn change never counted: a change now, on the 1st, is allowed.
    assert (await change(service, workplace, PREMIUM)).plan_id == PREMIUM


async def test_r_plan_8_cancellation_drops_the_scheduled_change(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-8: cancelling drops a scheduled change; it never fires, the final invoice is
    billed at the plan in effect at cancellation."""
    await advance_to(env, await upcoming(env, 11 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    await change(service, workplace, PREMIUM, when="next_window")
    cancelled = await service.cancel(
        workplace_id=workplace.id, service_id=SVC, actor_id=workplace.rep
    )
    assert cancelled.state == "cancelled" and cancelled.scheduled_plan_change is None
    assert cancelled.next_plan_change_at is None
    entry = (await audit.entries(pool, workplace.id, SVC, limit=1000))[-1]
    assert entry.action == "cancelled"
    assert entry.details["dropped_plan_change"] == PREMIUM
    await at_month_start(env, pool, sub_id)
    row = await subscriptions.by_id(pool, sub_id)
    assert row is not None and row.plan_id == BASIC
    assert "plan_changed" not in await actions(pool, workplace)
    final = await ledger.invoices_for(pool, workplace.id, SVC)
    assert [line["plan_id"] for line in final[-1].lines] == [BASIC]


async def test_r_plan_8_scheduled_change_to_the_plan_already_in_effect_is_dropped(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-2, R-PLAN-8: changed `now` to the plan that was scheduled for the next window,
    the schedule has nothing left to do on the 1st. It is dropped (audited, shown) and does
    not use up that month: another change is allowed then."""
    await advance_to(env, await upcoming(env, 11 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    await change(service, workplace, PREMIUM, when="next_window")
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    assert (await change(service, workplace, PREMIUM)).plan_id == PREMIUM
    await at_month_start(env, pool, sub_id)
    shown = await status(service, workplace)
    assert shown.plan_id == PREMIUM and shown.scheduled_plan_change is None
    assert (await actions(pool, workplace)).count("plan_changed") == 1
    dropped = (await audit.entries(pool, workplace.id, SVC, limit=1000))[-2]
    assert dropped.action == "plan_change_dropped" and dropped.outcome == "dropped"
    assert dropped.details["reason"] == "scheduled_change_dropped_same_plan"
    assert shown.plan_change_notice == PlanChangeNotice(
        code="scheduled_change_dropped_same_plan", plan_id=PREMIUM
    )
    assert shown.next_plan_change_at <= await env.get_current_time()
    assert (await change(service, workplace, STANDARD)).plan_id == STANDARD


# ── R-PLAN-5, -6, -10: courses in progress ───────────────────────────────────────────────────


async def test_r_plan_5_10_courses_in_progress_refuse_an_unconfirmed_change(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-5, R-PLAN-10: COURSES_IN_PROGRESS with member and course counts and the list per
    member; the plan, the courses, the read model and the audit log stay as they were."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    a, b = workplace.members[0], workplace.members[2]
    await add_courses(sub_id, {a: ["java-201", "sql-101"], b: ["excel-301"]})
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    before = await snapshot(pool, workplace, sub_id)

    refusal = await refused(change(service, workplace, PREMIUM))
    assert refusal.code == "COURSES_IN_PROGRESS"
    assert refusal.details == {
        "member_count": 2,
        "course_count": 3,
        "members": [
            {"member_id": a, "courses": ["java-201", "sql-101"]},
            {"member_id": b, "courses": ["excel-301"]},
        ],
    }
    assert "2" in refusal.message and "3" in refusal.message
    assert await snapshot(pool, workplace, sub_id) == before
    # A refused change does not use up the month (R-PLAN-8): the confirmed one goes through.
    confirmed = await change(service, workplace, PREMIUM, confirm=True)
    assert confirmed.plan_id == PREMIUM


async def test_r_plan_6_a_confirmed_change_stops_every_course_in_progress(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-6: confirmed, the change stops each course in progress (status `stopped`,
    progress 0, so it starts again from the beginning) and changes the plan; finished courses
    are untouched."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    a, b = workplace.members[1], workplace.rep
    await add_courses(sub_id, {a: ["go-101"], b: ["k8s-201", "py-301"]})
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    changed = await change(service, workplace, STANDARD, confirm=True)
    assert changed.plan_id == STANDARD
    assert await courses(sub_id) == sorted(
        [
            (a, "done-101", "completed", 100),
            (a, "go-101", "stopped", 0),
            (b, "k8s-201", "stopped", 0),
            (b, "py-301", "stopped", 0),
        ]
    )
    entry = (await audit.entries(pool, workplace.id, SVC, limit=1000))[-1]
    assert entry.action == "plan_changed" and entry.details["stopped_courses"] == 3


async def test_r_plan_8_scheduled_change_with_courses_and_no_confirmation_is_dropped(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-8: if courses are in progress when a schedule fires and no confirmation was given
    when scheduling, the change is dropped, audited (`plan_change_dropped`) and shown in the
    status (`plan_change_notice`); the courses keep going and the month is not used up."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    await change(service, workplace, PREMIUM, when="next_window")
    member = workplace.members[0]
    await add_courses(sub_id, {member: ["ml-401"]})
    kept = await courses(sub_id)

    await at_month_start(env, pool, sub_id)
    shown = await status(service, workplace)
    assert shown.plan_id == BASIC and shown.scheduled_plan_change is None
    assert shown.plan_change_notice == PlanChangeNotice(
        code="scheduled_change_dropped_courses_in_progress", plan_id=PREMIUM
    )
    dropped = [
        e
        for e in await audit.entries(pool, workplace.id, SVC, limit=1000)
        if e.action == "plan_change_dropped"
    ]
    assert len(dropped) == 1
    assert dropped[0].outcome == "dropped" and dropped[0].actor == "system"
    assert dropped[0].details["plan_id"] == PREMIUM
    assert dropped[0].details["member_count"] == 1
    assert dropped[0].details["members"] == [{"member_id": member, "courses": ["ml-401"]}]
    assert await courses(sub_id) == kept
    assert shown.next_plan_change_at <= await env.get_current_time()


async def test_r_plan_5_8_confirmation_given_when_scheduling_carries_to_the_1st(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-5, R-PLAN-8: confirmed when scheduled, the change fires with courses in progress
    and stops them."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    sub_id = (await apply(service, workplace)).subscription_id
    await change(service, workplace, STANDARD, when="next_window", confirm=True)
    await add_courses(sub_id, {workplace.members[1]: ["ux-101"]})
    await at_month_start(env, pool, sub_id)
    assert (await status(service, workplace)).plan_id == STANDARD
    assert ("ux-101", "stopped", 0) in [c[1:] for c in await courses(sub_id)]


# ── refused input (R-PLAN-1, R-ERR-1) ────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("single_plan_service", "PLAN_CHANGE_NOT_SUPPORTED"),
        ("same_plan", "SAME_PLAN"),
        ("same_plan_next_window", "SAME_PLAN"),
        ("unknown_plan", "UNKNOWN_PLAN"),
        ("another_services_plan", "UNKNOWN_PLAN"),
        ("cancelled", "ALREADY_CANCELLED"),
        ("cancelled_next_window", "ALREADY_CANCELLED"),
        ("admin_without_permission", "FORBIDDEN"),
    ],
)
async def test_r_plan_1_err_1_bad_plan_changes_are_refused_and_change_nothing(
    service: SubscriptionService,
    env: WorkflowEnvironment,
    pool: Pool,
    workplace: Workplace,
    case: str,
    code: str,
) -> None:
    """R-PLAN-1, R-ERR-1, R-PERM-3: each refusal has its code and leaves everything as it was."""
    svc = "cartax" if case == "single_plan_service" else SVC
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    sub_id = (await apply(service, workplace, svc)).subscription_id
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    if case.startswith("cancelled"):
        await service.cancel(workplace_id=workplace.id, service_id=svc, actor_id=workplace.rep)
    plan = {
        "single_plan_service": "cartax-standard",
        "same_plan": BASIC,
        "same_plan_next_window": BASIC,
        "unknown_plan": "ubob-gold",
        "another_services_plan": "cartax-standard",
    }.get(case, PREMIUM)
    when = "next_window" if case.endswith("next_window") else "now"
    actor = workplace.admin if case == "admin_without_permission" else workplace.rep
    before = await snapshot(pool, workplace, sub_id)
    refusal = await refused(change(service, workplace, plan, when=when, svc=svc, actor=actor))
    assert refusal.code == code
    assert await snapshot(pool, workplace, sub_id) == before


# ── R-PLAN-7: one action at a time ───────────────────────────────────────────────────────────


async def test_r_plan_7_two_changes_at_once_one_wins_the_other_is_refused(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-2, R-PLAN-7: two changes at the same moment never both apply in one month; the
    other is refused (monthly limit) after the first finished; the audit shows each change as
    one uninterrupted run (started, then changed)."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    await apply(service, workplace)
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    results = await asyncio.gather(
        change(service, workplace, STANDARD),
        change(service, workplace, PREMIUM),
        change(service, workplace, STANDARD),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, SubscriptionOut)]
    losses = [r for r in results if isinstance(r, BizError)]
    assert len(wins) == 1 and len(losses) == 2, results
    assert {loss.code for loss in losses} <= {"PLAN_CHANGE_WINDOW_CLOSED", "SAME_PLAN"}
    shown = await status(service, workplace)
    assert shown.plan_id == wins[0].plan_id and shown.state == "active"
    plan_actions = [a for a in await actions(pool, workplace) if a.startswith("plan_change")]
    assert plan_actions == ["plan_change_started", "plan_changed"]


async def test_r_plan_7_cancel_during_a_change_waits_for_it(
    service: SubscriptionService, env: WorkflowEnvironment, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-7, R-LIFE: a cancellation asked for while a change is carried out waits for it;
    nothing interleaves, both outcomes are consistent and audited in order."""
    await advance_to(env, await upcoming(env, 10 * 3600, mid_month))
    await apply(service, workplace)
    await advance_to(env, await env.get_current_time() + timedelta(days=1))
    outcomes = await asyncio.gather(
        change(service, workplace, PREMIUM),
        service.cancel(workplace_id=workplace.id, service_id=SVC, actor_id=workplace.rep),
        return_exceptions=True,
    )
    changed, cancelled = outcomes
    assert isinstance(cancelled, SubscriptionOut) and cancelled.state == "cancelled"
    trail = await audit.entries(pool, workplace.id, SVC, limit=1000)
    names = [e.action for e in trail]
    if isinstance(changed, SubscriptionOut):
        assert names[-3:] == ["plan_change_started", "plan_changed", "cancelled"]
        assert trail[-3].details["state"] == "plan_changing"
        assert cancelled.plan_id == PREMIUM
    else:
        assert isinstance(changed, BizError) and changed.code == "ALREADY_CANCELLED"
        assert names[-1] == "cancelled" and "plan_change_started" not in names
