"""The subscription's own data: what its workflow holds and hands over on continue-as-new.

One model (`SubscriptionData`) carries the whole state, so continue-as-new passes it in one
argument and a replay rebuilds everything from it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.audit import AuditAction, AuditOutcome
from domain.billing import BillingHistory, Invoice, PlanFees, stable_offset
from statemachines.lifecycle import StateName

DATA_RETENTION = timedelta(days=30)  # R-CANCEL-2
# R-EVENT-4: the admins are told this many days before the data deletion, earliest first.
DELETION_NOTICE_DAYS: tuple[int, ...] = (7, 1)
SYSTEM_ACTOR = "system"

# How a run of the subscription's workflow makes its effects (docs/architecture.md, "Versions").
#   1: each decision runs its effect activity, then a separate `publish` activity.
#   2: each decision commits its database writes (invoice, usage holders, read model, audit) in
#      one local activity, and the run continues-as-new once a month, some hours after its
#      month-close (continue_as_new_delay).
#   3: as 2, with typed effects: each activity takes one input model (domain/effects.py) under
#      a name of its own (activities/effects.py; versions 1 and 2 call the same effects by their
#      old names with positional arguments, activities/legacy.py; workflows/calls.py chooses),
#      and a run returns only once every update and signal handler has finished.
#   4: as 3, and a cancelled subscription's admins are told 7 days and 1 day before its data
#      deletion (R-EVENT-4, `deletion_upcoming`); a version-3 run cancelled under this code asks
#      `workflow.patched("deletion-notices")` and sends them too.
#   5: as 4, and the application's effects are one activity (`apply.v5`): the terms agreement,
#      the manager role and the "applied" announcement in one transaction, then the partner
#      account; versions 1–4 ran them as two local activities and an activity. A cached run
#      holds the SDK's state for every command it ran until its next continue-as-new, so a
#      version-5 subscription holds two commands fewer while it waits (issue 22).
# A run keeps the version it started with: histories recorded under 1 replay under 1. New
# subscriptions start at CURRENT_VERSION; an older run moves to it at its next continue-as-new.
CURRENT_VERSION = 5


# A new run costs a fresh workflow instance on the worker; made at 00:00 on the 1st, it would
# double the month-end herd. Each subscription starts its next run at its own instant in this
# window after its month-close instead.
CONTINUE_AS_NEW_WINDOW = (timedelta(hours=1), timedelta(hours=6))


def continue_as_new_delay(subscription_id: str) -> timedelta:
    """How long after its month-close a version-2 run continues as new: fixed by the id."""
    earliest, width = CONTINUE_AS_NEW_WINDOW
    return earliest + stable_offset(f"continue-as-new\n{subscription_id}", width)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Application(_Model):
    """What the representative admin asked for; fixed for the subscription's life."""

    subscription_id: str
    workplace_id: str
    service_id: str
    plan_id: str
    applicant_id: str
    terms_version: str
    # Fees of every plan of the service as they were on application, so the invoice never
    # depends on a later catalog edit and replays stay deterministic.
    fees: dict[str, PlanFees]
    auto_grant_all_members: bool = False

    @property
    def has_plan_choice(self) -> bool:
        return len(self.fees) > 1


class ScheduledPlanChange(_Model):
    plan_id: str
    at: datetime
    confirm_course_reset: bool = False
    requested_by: str


PlanChangeNoticeCode = Literal[
    "scheduled_change_dropped_same_plan",  # already on that plan (changed `now` to it since)
    "scheduled_change_dropped_month_used",  # this month's plan change was already made
    "scheduled_change_dropped_courses_in_progress",  # R-PLAN-8, no confirmation to stop them
    "scheduled_change_failed",  # the partner could not change the plan
]
# The English sentences versions 1 and 2 kept in their state and the read model before notices
# were codes: "Scheduled change to <plan> dropped: <why>." or "… failed."
_OLD_NOTICE = re.compile(r"Scheduled change to (?P<plan>\S+) (?:dropped: (?P<why>.+)|failed)\.")
_OLD_REASONS: dict[str, PlanChangeNoticeCode] = {
    "already on that plan": "scheduled_change_dropped_same_plan",
    "this month's plan change was already made": "scheduled_change_dropped_month_used",
    "courses in progress": "scheduled_change_dropped_courses_in_progress",
}


class PlanChangeNotice(_Model):
    """Why a scheduled plan change did not happen (shown with the status until the next one)."""

    code: PlanChangeNoticeCode
    plan_id: str

    @model_validator(mode="before")
    @classmethod
    def _from_old_text(cls, value: Any) -> Any:
        """A notice written as English text (older runs' state, older read-model rows)."""
        if not isinstance(value, str):
            return value
        found = _OLD_NOTICE.fullmatch(value)
        if found is None:
            raise ValueError(f"not a plan-change notice: {value!r}")
        why = found["why"]
        code = "scheduled_change_failed" if why is None else _OLD_REASONS.get(why)
        if code is None:
            raise ValueError(f"not a plan-change notice: {value!r}")
        return {"code": code, "plan_id": found["plan"]}


class SubscriptionData(_Model):
    application: Application
    state: StateName = "applied"
    plan_id: str
    applied_at: datetime | None = None
    activated_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    last_plan_change_period: str | None = None
    scheduled_plan_change: ScheduledPlanChange | None = None
    plan_change_notice: PlanChangeNotice | None = None
    usage_holders: list[str] = Field(default_factory=list)
    billing: BillingHistory | None = None
    next_invoice_period: str | None = None
    data_deleted_at: datetime | None = None
    event_seq: int = 0
    # Absent from data recorded before versions existed: those runs are version 1.
    version: int = 1
    # Seconds after 00:00 on the 1st at which this subscription issues its invoice (month-end
    # spread, domain.billing.invoice_delay); fixed at application.
    invoice_delay_seconds: int = 0
    # Version 4 (R-EVENT-4): the deletion notices sent, by days left (absent from older data).
    deletion_notices_sent: list[int] = Field(default_factory=list)

    @property
    def subscription_id(self) -> str:
        return self.application.subscription_id

    @property
    def data_deletion_at(self) -> datetime | None:
        if self.cancelled_at is None or self.activated_at is None:
            return None
        return self.cancelled_at + DATA_RETENTION

    @property
    def billing_done(self) -> bool:
        """Every billable month has its invoice (only possible once the billing has ended)."""
        if self.billing is None:
            return self.cancelled_at is not None
        return self.cancelled_at is not None and self.next_invoice_period is None

    @property
    def finished(self) -> bool:
        """R-LIFE: the workflow completes when deletion and final invoice are both done."""
        if self.activated_at is None:
            return self.state == "cancelled"
        return self.state == "purged" and self.billing_done


class SubscriptionInput(_Model):
    data: SubscriptionData
    # Continue-as-new once the run's history grows past this many events (R-LIFE-5); the server
    # may suggest it earlier. Small values let tests force it.
    history_event_limit: int = 2_000


class PlanChangeRequest(_Model):
    plan_id: str
    when: Literal["now", "next_window"] = "now"
    confirm_course_reset: bool = False
    actor: str


class ActorRequest(_Model):
    actor: str


class UsageRequest(_Model):
    member_id: str
    actor: str


class MemberEvent(_Model):
    member_id: str
    login_id: str | None = None


class StatusSnapshot(_Model):
    """The read model's row for this subscription, published after every change."""

    subscription_id: str
    workplace_id: str
    service_id: str
    state: StateName
    plan_id: str
    applied_at: datetime | None
    activated_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    last_plan_change_period: str | None
    scheduled_plan_change: ScheduledPlanChange | None
    plan_change_notice: PlanChangeNotice | None
    data_deletion_at: datetime | None
    final_invoice_at: datetime | None
    purged_at: datetime | None
    usage_permission_count: int
    seq: int


class AuditEntry(_Model):
    at: datetime
    actor: str
    action: AuditAction
    outcome: AuditOutcome = "ok"
    details: dict[str, object] = Field(default_factory=dict)


class Publication(_Model):
    """One decision's database writes, committed together (version 2 carries them all; version 1
    wrote the holders and the invoice in their own activities first)."""

    snapshot: StatusSnapshot
    audit: AuditEntry | None = None
    usage_holders: list[str] | None = None  # the complete new set, as of `holders_at`
    holders_at: datetime | None = None
    invoice: Invoice | None = None
