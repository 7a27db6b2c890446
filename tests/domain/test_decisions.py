"""The workflow's decisions as pure functions (domain/decisions.py, issue 22): what each does to
a subscription's data and which refusal applies, without Temporal. The workflow tests
(tests/workflows/) run the same functions inside the workflow; the recorded histories prove they
decide as the workflow did before they moved."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import decisions as decide
from domain.billing import PlanFees
from domain.calendar import next_period, period_of, period_start, seoul_date
from domain.subscription import (
    Application,
    PlanChangeNotice,
    PlanChangeRequest,
    ScheduledPlanChange,
    SubscriptionData,
)
from statemachines.lifecycle import TransitionNotAllowed

FEES = {
    "basic": PlanFees(base_fee=Decimal(10_000), seat_fee=Decimal(1_000)),
    "premium": PlanFees(base_fee=Decimal(30_000), seat_fee=Decimal(2_000)),
}
APPLIED = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 11:00 KST on 10 March
instants = st.datetimes(
    min_value=datetime(2026, 3, 11), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
members = st.lists(st.sampled_from([f"m{i}" for i in range(8)]), unique=True).map(sorted)


def subscription(*, auto: bool = False, fees: dict[str, PlanFees] = FEES) -> SubscriptionData:
    app = Application(
        subscription_id="s-1",
        workplace_id="wp",
        service_id="svc",
        plan_id="basic",
        applicant_id="rep",
        terms_version="t",
        fees=fees,
        auto_grant_all_members=auto,
    )
    return SubscriptionData(application=app, plan_id="basic")


def active(**kwargs: bool) -> SubscriptionData:
    data = subscription(**kwargs)
    data.applied_at = APPLIED
    decide.activate(data, APPLIED + timedelta(seconds=5), None)
    return data


def request(plan_id: str = "premium", when: str = "now") -> PlanChangeRequest:
    return PlanChangeRequest(plan_id=plan_id, when=when, actor="rep")  # type: ignore[arg-type]


# ── lifecycle ────────────────────────────────────────────────────────────────────────────────


def test_activation_starts_billing_on_the_application_day() -> None:
    data = active()
    assert data.state == "active" and data.activated_at is not None
    assert data.billing is not None and data.billing.first_billable_day == seoul_date(APPLIED)
    assert data.next_invoice_period == period_of(APPLIED)


def test_a_refused_application_ends_cancelled_and_cannot_activate() -> None:
    data = subscription()
    data.applied_at = APPLIED
    decide.refuse_application(data, APPLIED, "no")
    assert (data.state, data.cancel_reason, data.cancelled_at) == ("cancelled", "no", APPLIED)
    with pytest.raises(TransitionNotAllowed):
        decide.activate(data, APPLIED, None)


@given(instants)
def test_cancel_ends_billing_drops_the_schedule_and_bills_no_later_month(now: datetime) -> None:
    data = active()
    decide.schedule_plan_change(data, request(when="next_window"), now)
    assert decide.cancel(data, now) == {"dropped_plan_change": "premium"}
    assert data.state == "cancelled" and data.scheduled_plan_change is None
    assert data.billing is not None and data.billing.ended_at == now
    assert data.next_invoice_period is None or data.next_invoice_period <= period_of(now)
    assert decide.cancel_refusal(data) is not None
    decide.purge(data, now + timedelta(days=30))
    assert data.state == "purged" and data.usage_holders == []


@given(instants, st.integers(0, 40))
def test_month_closes_run_once_per_month_up_to_the_cancellation_month(
    cancelled: datetime, extra_days: int
) -> None:
    """R-BILL-1, -2: every month from the first billable one to the cancellation's is closed
    exactly once, in order, and then none (the run can finish)."""
    data = active()
    decide.cancel(data, cancelled)
    closed = []
    while data.next_invoice_period is not None:
        period, invoice = decide.invoice_of_period(data)
        assert invoice is not None and invoice.total > 0
        closed.append(period)
        ended = decide.close_period(data, period)
        assert ended == (data.next_invoice_period is None)
    assert closed[0] == period_of(APPLIED) and closed[-1] == period_of(cancelled)
    assert all(next_period(a) == b for a, b in itertools.pairwise(closed))
    assert data.billing_done and decide.invoice_due_at(data) is None


@given(st.lists(members, min_size=1, max_size=6), instants)
def test_seat_events_follow_the_holder_sets(sets: list[list[str]], start: datetime) -> None:
    """R-BILL-3: each new set of holders is billed as revocations then grants at its instant;
    the seat count billed is always the number of holders."""
    data = active()
    for i, holders in enumerate(sets):
        at = start + timedelta(hours=i)
        before = set(data.usage_holders)
        decide.set_holders(data, holders, at)
        assert data.usage_holders == holders
        assert data.billing is not None
        events = [e.delta for e in data.billing.seat_events if e.at == at]
        assert events == [d for d in (-len(before - set(holders)), len(set(holders) - before)) if d]
    assert data.billing is not None
    assert sum(e.delta for e in data.billing.seat_events) == len(data.usage_holders)


@given(members, st.sampled_from([f"m{i}" for i in range(10)]))
def test_grant_and_revoke_sets(holders: list[str], member: str) -> None:
    data = active()
    decide.set_holders(data, holders, APPLIED + timedelta(days=1))
    added = decide.with_holder(data, member)
    assert added is None if member in holders else added == sorted({*holders, member})
    assert member not in decide.without_holder(data, member)
    refusal = decide.usage_refusal(data, member, revoke=True)
    assert (refusal is None) == (member in holders)


# ── refusals ─────────────────────────────────────────────────────────────────────────────────


def code(error: object) -> str | None:
    return getattr(error, "code", None)


def test_refusals_name_the_rule() -> None:
    data = active()
    assert code(decide.change_plan_refusal(data, request("basic"), APPLIED)) == "SAME_PLAN"
    assert code(decide.change_plan_refusal(data, request("gold"), APPLIED)) == "UNKNOWN_PLAN"
    on_day = decide.change_plan_refusal(data, request(), APPLIED + timedelta(hours=1))
    assert code(on_day) == "PLAN_CHANGE_WINDOW_CLOSED"
    assert decide.change_plan_refusal(data, request(when="next_window"), APPLIED) is None
    single = active(fees={"basic": FEES["basic"]})
    assert code(decide.change_plan_refusal(single, request(), APPLIED)) == (
        "PLAN_CHANGE_NOT_SUPPORTED"
    )
    auto = active(auto=True)
    assert code(decide.usage_refusal(auto, "m1", revoke=False)) == "AUTO_GRANTED_SERVICE"
    assert decide.grants_automatically(auto) and not decide.grants_automatically(data)
    assert code(decide.withdraw_refusal(data)) == "NO_SCHEDULED_PLAN_CHANGE"
    applied = subscription()
    assert code(decide.usage_refusal(applied, "m1", revoke=False)) == "NOT_ACTIVE"
    members_courses = [{"member_id": "m1", "courses": ["a", "b"]}]
    assert decide.courses_refusal(members_courses, confirmed=True) is None
    refusal = decide.courses_refusal(members_courses, confirmed=False)
    assert refusal is not None and refusal.details["course_count"] == 2


@given(instants)
def test_a_change_now_is_refused_exactly_when_the_month_had_one(now: datetime) -> None:
    """R-PLAN-2: one change per Seoul month; after it, the next is allowed on the next 1st."""
    data = active()
    decide.start_plan_change(data)
    decide.plan_changed(data, "premium", now)
    assert data.state == "active" and data.plan_id == "premium"
    again = decide.change_plan_refusal(data, request("basic"), now)
    assert code(again) == "PLAN_CHANGE_WINDOW_CLOSED"
    assert again is not None and datetime.fromisoformat(
        again.details["next_plan_change_at"]
    ) == period_start(next_period(period_of(now)))
    assert (
        decide.change_plan_refusal(
            data, request("basic"), period_start(next_period(period_of(now)))
        )
        is None
    )


# ── scheduled plan changes (R-PLAN-8) ────────────────────────────────────────────────────────


@given(instants, st.booleans(), st.booleans())
def test_a_due_scheduled_change_is_taken_once_and_dropped_with_a_reason(
    now: datetime, changed_to_it: bool, month_used: bool
) -> None:
    data = active()
    scheduled = decide.schedule_plan_change(data, request(when="next_window"), now)
    assert scheduled.at == period_start(next_period(period_of(now))) > now
    assert decide.next_due(data, None) == min(
        scheduled.at, decide.invoice_time(data, period_of(APPLIED))
    )
    assert decide.take_due_plan_change(data, now) is None  # not due yet
    due = scheduled.at
    if changed_to_it:
        data.plan_id = "premium"
    if month_used:
        data.last_plan_change_period = period_of(due)
    taken = decide.take_due_plan_change(data, due)
    assert taken == scheduled and data.scheduled_plan_change is None
    assert decide.take_due_plan_change(data, due) is None
    dropped = decide.scheduled_change_dropped(data, scheduled, due)
    if changed_to_it:
        expected: str | None = "scheduled_change_dropped_same_plan"
    elif month_used:
        expected = "scheduled_change_dropped_month_used"
    else:
        expected = None
    assert (dropped.notice.code if dropped else None) == expected
    if dropped is not None:
        assert dropped.details() == {"plan_id": "premium", "reason": expected}
    # once the partner named courses in progress: dropped unless confirmed when scheduling
    courses = [{"member_id": "m1", "courses": ["ml-401"]}]
    with_courses = decide.scheduled_change_dropped(data, scheduled, due, courses)
    if expected is None:
        assert with_courses is not None and with_courses.notice.code == (
            "scheduled_change_dropped_courses_in_progress"
        )
        assert with_courses.details()["member_count"] == 1
        confirmed = scheduled.model_copy(update={"confirm_course_reset": True})
        assert decide.scheduled_change_dropped(data, confirmed, due, courses) is None
        assert decide.scheduled_change_dropped(data, scheduled, due, []) is None
    else:
        assert with_courses == dropped


def test_a_scheduled_change_is_dropped_silently_when_no_change_can_start() -> None:
    data = active()
    scheduled = decide.schedule_plan_change(data, request(when="next_window"), APPLIED)
    decide.start_plan_change(data)
    assert decide.take_due_plan_change(data, scheduled.at) is None
    assert data.scheduled_plan_change is None


# ── the plan-change notice: a code, read from older runs' English too ─────────────────────────

OLD_TEXT = {
    "scheduled_change_dropped_same_plan": "Scheduled change to {} dropped: already on that plan.",
    "scheduled_change_dropped_month_used": (
        "Scheduled change to {} dropped: this month's plan change was already made."
    ),
    "scheduled_change_dropped_courses_in_progress": (
        "Scheduled change to {} dropped: courses in progress."
    ),
    "scheduled_change_failed": "Scheduled change to {} failed.",
}
plan_ids = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@settings(max_examples=200)
@given(st.sampled_from(sorted(OLD_TEXT)), plan_ids)
def test_notices_written_as_english_by_older_runs_read_as_codes(code: str, plan_id: str) -> None:
    """Versions 1 and 2 kept the notice as these sentences (state and read-model rows)."""
    old = OLD_TEXT[code].format(plan_id)
    notice = PlanChangeNotice.model_validate(old)
    assert (notice.code, notice.plan_id) == (code, plan_id)
    data = subscription().model_dump(mode="json") | {"plan_change_notice": old}
    assert SubscriptionData.model_validate(data).plan_change_notice == notice
    assert PlanChangeNotice.model_validate(notice.model_dump()) == notice


@pytest.mark.parametrize("text", ["Scheduled change to x dropped: why not.", "hello"])
def test_other_text_is_not_a_notice(text: str) -> None:
    with pytest.raises(ValueError):
        PlanChangeNotice.model_validate(text)


def test_snapshot_carries_the_state_and_the_final_invoice() -> None:
    data = active()
    cancelled = datetime(2026, 5, 3, tzinfo=UTC)
    decide.cancel(data, cancelled)
    shown = decide.snapshot(data)
    assert shown.state == "cancelled" and shown.final_invoice_at == period_start("2026-06")
    assert shown.data_deletion_at == cancelled + timedelta(days=30)
    assert decide.next_due(data, None) == period_start("2026-04")
    same = ScheduledPlanChange(plan_id="basic", at=cancelled, requested_by="rep")
    dropped = decide.scheduled_change_dropped(data, same, cancelled)
    assert dropped is not None
    assert dropped.notice == PlanChangeNotice(
        code="scheduled_change_dropped_same_plan", plan_id="basic"
    )
    decide.scheduled_change_failed(data, same)
    assert data.plan_change_notice is not None
    assert data.plan_change_notice.code == "scheduled_change_failed"


def test_withdraw_and_leave() -> None:
    data = active()
    decide.schedule_plan_change(data, request(when="next_window"), APPLIED)
    assert decide.withdraw_refusal(data) is None
    assert decide.withdraw_plan_change(data).plan_id == "premium"
    assert data.scheduled_plan_change is None
    decide.set_holders(data, ["m1", "m2"], APPLIED)
    assert decide.after_leaving(data, "m1") == ["m2"]
    assert decide.after_leaving(data, "m3") is None
    decide.cancel(data, APPLIED + timedelta(days=1))
    decide.purge(data, APPLIED + timedelta(days=31))
    assert decide.after_leaving(data, "m2") is None
