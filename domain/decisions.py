"""What each decision of a subscription's workflow does to its data, and which refusal applies.

Pure functions over `SubscriptionData` (issue 22): no clock (the workflow passes `now`), no I/O,
no Temporal. The workflow (workflows/subscription.py) keeps only what must be workflow code —
handlers, validators, timers, the lock, activity calls, continue-as-new — and asks these for the
rest. They are imported through the sandbox (passed through), so every run of every version
shares one copy; they decide exactly as the workflow did before they moved here, so the recorded
histories of versions 1 and 2 replay (tests/workflows/test_durability.py).

The lifecycle machine is built for the one transition a decision takes
(`SubscriptionLifecycle.bound_to(data)` writes `data.state`); the rest of the time a run holds no
machine, only its state in `data.state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.billing import BillingHistory, Invoice, PlanChange, compute_invoice
from domain.billing import first_billable_day as billing_start_day
from domain.calendar import (
    SEOUL,
    month_taken_by_schedule,
    next_period,
    period_of,
    period_start,
    period_start_date,
    plan_change_available_at,
    plan_change_refusal,
    seoul_date,
)
from domain.errors import BizError, window_closed_details
from domain.subscription import (
    DELETION_NOTICE_DAYS,
    PlanChangeNotice,
    PlanChangeNoticeCode,
    PlanChangeRequest,
    ScheduledPlanChange,
    StatusSnapshot,
    SubscriptionData,
)
from statemachines.lifecycle import ENDED_STATES, USABLE_STATES, SubscriptionLifecycle


def _machine(data: SubscriptionData) -> SubscriptionLifecycle:
    return SubscriptionLifecycle.bound_to(data)


# ── what is due ──────────────────────────────────────────────────────────────────────────────


def invoice_time(data: SubscriptionData, period: str) -> datetime:
    """When the invoice of `period` is issued: 00:00 on the next 1st, plus this subscription's
    place in a spread-out month-end (0 unless configured at application)."""
    return period_start(next_period(period)) + timedelta(seconds=data.invoice_delay_seconds)


def invoice_due_at(data: SubscriptionData) -> datetime | None:
    period = data.next_invoice_period
    return None if period is None else invoice_time(data, period)


def deletion_due_at(data: SubscriptionData) -> datetime | None:
    return data.data_deletion_at if data.data_deleted_at is None else None


def next_due(
    data: SubscriptionData, continue_as_new_at: datetime | None, *, notices: bool = False
) -> datetime | None:
    """The earliest of: the next invoice, a scheduled plan change, the data deletion, the run's
    continue-as-new and, when the run sends them (`notices`), the next deletion notice; None
    when nothing is due (the run waits for an action)."""
    scheduled = data.scheduled_plan_change
    notice = next_deletion_notice(data) if notices else None
    candidates = [
        invoice_due_at(data),
        scheduled.at if scheduled else None,
        deletion_due_at(data),
        continue_as_new_at,
        notice.at if notice else None,
    ]
    present = [c for c in candidates if c is not None]
    return min(present) if present else None


def snapshot(data: SubscriptionData) -> StatusSnapshot:
    """The read model's row (R-LIFE-4)."""
    final_invoice_at = None
    if data.cancelled_at is not None and data.billing is not None:
        # No final invoice when the cancellation day was never billable (R-BILL-2:
        # re-applied and cancelled on the predecessor's cancellation day).
        if data.billing.first_billable_day <= seoul_date(data.cancelled_at):
            final_invoice_at = invoice_time(data, period_of(data.cancelled_at))
    app = data.application
    return StatusSnapshot(
        subscription_id=data.subscription_id,
        workplace_id=app.workplace_id,
        service_id=app.service_id,
        state=data.state,
        plan_id=data.plan_id,
        applied_at=data.applied_at,
        activated_at=data.activated_at,
        cancelled_at=data.cancelled_at,
        cancel_reason=data.cancel_reason,
        last_plan_change_period=data.last_plan_change_period,
        scheduled_plan_change=data.scheduled_plan_change,
        plan_change_notice=data.plan_change_notice,
        data_deletion_at=data.data_deletion_at,
        final_invoice_at=final_invoice_at,
        purged_at=data.data_deleted_at,
        usage_permission_count=len(data.usage_holders),
        seq=data.event_seq,
    )


# ── refusals (R-ERR-3: the validators refuse before anything is recorded) ────────────────────


def cancel_refusal(data: SubscriptionData) -> BizError | None:
    # From plan_changing the cancellation waits for the change to finish (R-PLAN-7).
    return BizError("ALREADY_CANCELLED") if data.state in ENDED_STATES else None


def _not_live(data: SubscriptionData) -> BizError | None:
    if data.state in ENDED_STATES:
        return BizError("ALREADY_CANCELLED")
    if data.state not in USABLE_STATES:
        return BizError("NOT_ACTIVE", state=data.state)
    return None


def change_plan_refusal(
    data: SubscriptionData, request: PlanChangeRequest, now: datetime
) -> BizError | None:
    """R-PLAN-1..4: a live subscription, a service with a choice, another known plan, and for a
    change `now`, an open window."""
    app = data.application
    if (refusal := _not_live(data)) is not None:
        return refusal
    if not app.has_plan_choice:
        return BizError("PLAN_CHANGE_NOT_SUPPORTED", service_id=app.service_id)
    if request.plan_id not in app.fees:
        return BizError("UNKNOWN_PLAN", plan_id=request.plan_id, service_id=app.service_id)
    if request.plan_id == data.plan_id:
        return BizError("SAME_PLAN", plan_id=request.plan_id)
    if request.when != "now":
        return None
    assert data.applied_at is not None
    why = plan_change_refusal(now, data.applied_at, data.last_plan_change_period)
    if why is None:
        return None
    scheduled = data.scheduled_plan_change
    scheduled_at = scheduled.at if scheduled else None
    last = data.last_plan_change_period
    at = plan_change_available_at(now, data.applied_at, last, scheduled_at)
    # R-PLAN-8: a pending scheduled change takes its month; the refusal names it.
    taken = month_taken_by_schedule(now, data.applied_at, last, scheduled_at)
    held = scheduled_at.isoformat() if taken and scheduled_at else None
    return BizError("PLAN_CHANGE_WINDOW_CLOSED", window_closed_details(why, at.isoformat(), held))


def courses_refusal(members: list[dict[str, Any]], confirmed: bool) -> BizError | None:
    """R-PLAN-5, -10: courses in progress stop only with the admin's confirmation."""
    return (
        None
        if confirmed or not members
        else BizError("COURSES_IN_PROGRESS", **course_details(members))
    )


def course_details(members: list[dict[str, Any]]) -> dict[str, Any]:
    """R-PLAN-10: who has which courses in progress (`members`: member_id and courses each)."""
    return {
        "member_count": len(members),
        "course_count": sum(len(m["courses"]) for m in members),
        "members": members,
    }


def withdraw_refusal(data: SubscriptionData) -> BizError | None:
    return BizError("NO_SCHEDULED_PLAN_CHANGE") if data.scheduled_plan_change is None else None


def usage_refusal(data: SubscriptionData, member_id: str, *, revoke: bool) -> BizError | None:
    """R-PERM-2, -6: a live subscription whose seats are handed out by hand; a revocation only
    of a seat held."""
    app = data.application
    if (refusal := _not_live(data)) is not None:
        return refusal
    if app.auto_grant_all_members:
        return BizError("AUTO_GRANTED_SERVICE", service_id=app.service_id)
    if revoke and member_id not in data.usage_holders:
        return BizError("PERMISSION_NOT_HELD", member_id=member_id)
    return None


# ── application (R-APPLY, R-LIFE-2) ──────────────────────────────────────────────────────────


def refuse_application(data: SubscriptionData, now: datetime, reason: str) -> None:
    """The partner refused the account: the application ends cancelled."""
    _machine(data).refuse()
    data.cancelled_at = now
    data.cancel_reason = reason


def activate(
    data: SubscriptionData, now: datetime, predecessor_cancelled_at: datetime | None
) -> None:
    """The partner account exists: billing starts (R-BILL-2 for a re-application)."""
    assert data.applied_at is not None
    _machine(data).activate()
    data.activated_at = now
    first_day = billing_start_day(data.applied_at, predecessor_cancelled_at)
    data.billing = BillingHistory(
        first_billable_day=first_day,
        plan_changes=[PlanChange(at=data.applied_at, plan_id=data.plan_id)],
        seat_events=[],
    )
    data.next_invoice_period = period_of(first_day)


# ── cancellation and deletion (R-CANCEL) ─────────────────────────────────────────────────────


def cancel(data: SubscriptionData, now: datetime) -> dict[str, Any]:
    """Cancelled at `now`: billing ends today, no invoice after this month's, and a scheduled
    plan change is dropped (named in the audit entry's details, returned)."""
    _machine(data).cancel()
    data.cancelled_at = now
    dropped = data.scheduled_plan_change
    data.scheduled_plan_change = None
    if data.billing is not None:
        data.billing = data.billing.ended(now)
    last_period = period_of(now)
    if data.next_invoice_period is not None and data.next_invoice_period > last_period:
        data.next_invoice_period = None
    return {"dropped_plan_change": dropped.plan_id} if dropped else {}


def purge(data: SubscriptionData, now: datetime) -> None:
    """R-CANCEL-2: the data is gone; invoices, audit and billing state stay."""
    data.data_deleted_at = now
    data.usage_holders = []
    _machine(data).purge()


@dataclass(frozen=True)
class DeletionNotice:
    """R-EVENT-4: the notice `days_left` days before the data deletion at `deletion_at`."""

    days_left: int
    deletion_at: datetime

    @property
    def at(self) -> datetime:
        return self.deletion_at - timedelta(days=self.days_left)

    def details(self) -> dict[str, Any]:
        """What the audit entry (`deletion_upcoming`) and its event say."""
        return {
            "days_left": self.days_left,
            "data_deletion_at": self.deletion_at.astimezone(SEOUL).isoformat(),
        }


def _unsent_deletion_notices(data: SubscriptionData) -> list[DeletionNotice]:
    """The notices still to send, earliest first: none without a pending deletion; a notice is
    done once it or a later one (fewer days left) was sent."""
    deletion = deletion_due_at(data)
    if deletion is None:
        return []
    sent = min(data.deletion_notices_sent, default=None)
    return [
        DeletionNotice(days, deletion)
        for days in DELETION_NOTICE_DAYS
        if sent is None or days < sent
    ]


def next_deletion_notice(data: SubscriptionData) -> DeletionNotice | None:
    """The next deletion notice to send (its instant may have passed already), or None."""
    unsent = _unsent_deletion_notices(data)
    return unsent[0] if unsent else None


def deletion_notice_due(data: SubscriptionData, now: datetime) -> DeletionNotice | None:
    """The notice to send at `now`, or None. Of the unsent notices whose instant has come, the
    latest: a worker that wakes late (or a clock that jumped) sends one notice, not a burst, and
    a notice whose instant passed is sent late rather than skipped. Never at or after the
    deletion instant: the deletion comes instead."""
    deletion = deletion_due_at(data)
    if deletion is None or now >= deletion:
        return None
    due = [n for n in _unsent_deletion_notices(data) if n.at <= now]
    return due[-1] if due else None


def record_deletion_notice(data: SubscriptionData, notice: DeletionNotice) -> None:
    data.deletion_notices_sent = [*data.deletion_notices_sent, notice.days_left]


# ── plan change (R-PLAN) ─────────────────────────────────────────────────────────────────────


def schedule_plan_change(
    data: SubscriptionData, request: PlanChangeRequest, now: datetime
) -> ScheduledPlanChange:
    """R-PLAN-8: the change waits for 00:00 on the next 1st (and replaces one scheduled)."""
    scheduled = ScheduledPlanChange(
        plan_id=request.plan_id,
        at=period_start(next_period(period_of(now))),
        confirm_course_reset=request.confirm_course_reset,
        requested_by=request.actor,
    )
    data.scheduled_plan_change = scheduled
    data.plan_change_notice = None
    return scheduled


def withdraw_plan_change(data: SubscriptionData) -> ScheduledPlanChange:
    """The scheduled change, taken off the schedule (withdraw_refusal said there is one)."""
    dropped = data.scheduled_plan_change
    assert dropped is not None
    data.scheduled_plan_change = None
    return dropped


def start_plan_change(data: SubscriptionData) -> None:
    _machine(data).start_plan_change()


def plan_change_failed(data: SubscriptionData) -> None:
    """R-PLAN-8: a change that fails does not use up the month."""
    _machine(data).finish_plan_change()


def plan_changed(data: SubscriptionData, plan_id: str, now: datetime) -> str:
    """The partner changed the plan at `now`: billed from now, the month used (R-PLAN-2).
    Returns the plan before."""
    previous = data.plan_id
    assert data.billing is not None
    data.billing = data.billing.with_plan_change(now, plan_id)
    data.plan_id = plan_id
    data.last_plan_change_period = period_of(now)
    _machine(data).finish_plan_change()
    return previous


def take_due_plan_change(data: SubscriptionData, now: datetime) -> ScheduledPlanChange | None:
    """The scheduled change whose time has come, off the schedule; None when none is due or the
    subscription can no longer change plans (it is dropped without a word then)."""
    scheduled = data.scheduled_plan_change
    if scheduled is None or scheduled.at > now:
        return None
    data.scheduled_plan_change = None
    return scheduled if _machine(data).can("start_plan_change") else None


@dataclass(frozen=True)
class DroppedChange:
    """A due scheduled change that does not happen: the notice shown with the status, and what
    the audit entry (`plan_change_dropped`) says."""

    notice: PlanChangeNotice
    courses: list[dict[str, Any]] | None = None

    def details(self) -> dict[str, Any]:
        why = {"reason": self.notice.code} if self.courses is None else course_details(self.courses)
        return {"plan_id": self.notice.plan_id, **why}


def scheduled_change_dropped(
    data: SubscriptionData,
    scheduled: ScheduledPlanChange,
    now: datetime,
    courses: list[dict[str, Any]] | None = None,
) -> DroppedChange | None:
    """Why a due scheduled change does not happen, or None: go ahead (R-PLAN-8).

    Nothing left to do (changed `now` to that plan since), or the month already had its change
    (a `now` change handled in the same task as the timer): a change that does not happen must
    not use up the month, and a month never gets two (R-PLAN-2). Then, once the partner has said
    who has `courses` in progress: courses the admin did not agree to stop when scheduling."""
    code: PlanChangeNoticeCode
    if scheduled.plan_id == data.plan_id:
        code = "scheduled_change_dropped_same_plan"
    elif data.last_plan_change_period == period_of(now):
        code = "scheduled_change_dropped_month_used"
    elif courses and not scheduled.confirm_course_reset:
        notice = PlanChangeNotice(
            code="scheduled_change_dropped_courses_in_progress", plan_id=scheduled.plan_id
        )
        return DroppedChange(notice, courses)
    else:
        return None
    return DroppedChange(PlanChangeNotice(code=code, plan_id=scheduled.plan_id))


def scheduled_change_failed(data: SubscriptionData, scheduled: ScheduledPlanChange) -> None:
    """The partner could not make the scheduled change: shown with the status."""
    data.plan_change_notice = PlanChangeNotice(
        code="scheduled_change_failed", plan_id=scheduled.plan_id
    )


# ── usage permissions and seats (R-PERM-2, -6, -7; R-BILL-3) ─────────────────────────────────


def with_holder(data: SubscriptionData, member_id: str) -> list[str] | None:
    """The holders with `member_id` added, or None when it already holds a seat."""
    if member_id in data.usage_holders:
        return None
    return sorted({*data.usage_holders, member_id})


def without_holder(data: SubscriptionData, member_id: str) -> list[str]:
    return [m for m in data.usage_holders if m != member_id]


def after_leaving(data: SubscriptionData, member_id: str) -> list[str] | None:
    """The holders once `member_id` left the workplace, or None when that changes nothing (it
    held no seat, or the data is gone)."""
    if member_id not in data.usage_holders or data.state == "purged":
        return None
    return without_holder(data, member_id)


def grants_automatically(data: SubscriptionData) -> bool:
    """R-PERM-6: every present member holds a seat of a usable auto-grant service."""
    return data.application.auto_grant_all_members and data.state in USABLE_STATES


def set_holders(data: SubscriptionData, holders: list[str], at: datetime) -> None:
    """The new set of seat holders, billed from `at` (not after cancellation)."""
    revoked = [m for m in data.usage_holders if m not in holders]
    granted = [m for m in holders if m not in data.usage_holders]
    data.usage_holders = holders
    if data.billing is not None and data.state != "cancelled":
        # Revocations before grants at one instant (R-BILL-3).
        if revoked:
            data.billing = data.billing.with_seat_event(at, -len(revoked))
        if granted:
            data.billing = data.billing.with_seat_event(at, len(granted))


# ── billing (R-BILL) ─────────────────────────────────────────────────────────────────────────


def invoice_of_period(data: SubscriptionData) -> tuple[str, Invoice | None]:
    """The month to close now and its invoice (None: nothing billable in it)."""
    period, billing = data.next_invoice_period, data.billing
    assert period is not None and billing is not None
    return period, compute_invoice(billing, period, data.application.fees)


def close_period(data: SubscriptionData, period: str) -> bool:
    """After `period`'s invoice: its events folded into the billing state (R-LIFE-5), the next
    month due, or none once the cancellation's month is closed. True when billing has ended."""
    assert data.billing is not None
    following = next_period(period)
    data.billing = data.billing.compacted(period_start_date(following))
    ended = data.cancelled_at is not None and period >= period_of(data.cancelled_at)
    data.next_invoice_period = None if ended else following
    return ended
