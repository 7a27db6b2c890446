"""SubscriptionWorkflow: one long-lived workflow per subscription (docs/architecture.md).

Only workflow code lives here: handlers, validators, the timer loop, the lock, effect calls and
continue-as-new. The decisions are pure functions in domain/decisions.py, and how each version
calls its effects is workflows/calls.py; both are passed through the sandbox (shared by all
runs). Validators refuse before anything is recorded (R-ERR-3); handlers run under one lock
(R-PLAN-7); the main loop sleeps until the earliest due instant or an action, then fires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import domain.decisions as decide
    from domain.audit import AuditAction, AuditOutcome
    from domain.subscription import (
        CURRENT_VERSION,
        SYSTEM_ACTOR,
        ActorRequest,
        AuditEntry,
        MemberEvent,
        PlanChangeRequest,
        ScheduledPlanChange,
        StatusSnapshot,
        SubscriptionData,
        SubscriptionInput,
        UsageRequest,
        continue_as_new_delay,
    )
    from workflows.calls import RunEffects, refuse


def workflow_id(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


@workflow.defn
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, input: SubscriptionInput) -> None:
        self.data: SubscriptionData = input.data
        self.history_event_limit = input.history_event_limit
        # The state the read model and audit last saw (an audit entry names the one before).
        self.published_state = self.data.state
        self.lock = asyncio.Lock()
        self.wake = False
        self.effects = RunEffects(self.data)
        # Version 2 on: a month-close sets when this run continues as new.
        self.continue_as_new_at: datetime | None = None
        # R-EVENT-4's notices are due instants: version 4 on, or under the "deletion-notices" patch.
        self.deletion_notices = self.data.version >= 4

    # ── main loop ────────────────────────────────────────────────────────────────────────────

    @workflow.run
    async def run(self, input: SubscriptionInput) -> StatusSnapshot:
        if self.data.applied_at is None:
            async with self.lock:
                await self._apply()
        while not self.data.finished:
            if self._continue_as_new_due():
                await workflow.wait_condition(workflow.all_handlers_finished)
                # The next run starts at the current version, whatever this one ran.
                carried = self.data.model_copy(update={"version": CURRENT_VERSION})
                workflow.continue_as_new(
                    SubscriptionInput(data=carried, history_event_limit=self.history_event_limit)
                )
            await self._sleep_until_due_or_woken()
            async with self.lock:
                await self._fire_due()
        if self.data.version >= 3:  # older runs returned at once; their histories say so
            await workflow.wait_condition(workflow.all_handlers_finished)
        return decide.snapshot(self.data)

    @asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """A handler's turn: after the application (handlers delivered with the first task wait
        until run() holds the lock for _apply), then under the lock."""
        await workflow.wait_condition(lambda: self.data.applied_at is not None)
        async with self.lock:
            yield

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            (self.continue_as_new_at is not None and self.continue_as_new_at <= workflow.now())
            or info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.history_event_limit
        )

    async def _sleep_until_due_or_woken(self) -> None:
        due = decide.next_due(self.data, self.continue_as_new_at, notices=self.deletion_notices)
        self.wake = False
        if due is not None and due <= workflow.now():
            return
        timeout = None if due is None else due - workflow.now()
        try:
            await workflow.wait_condition(
                lambda: self.wake or self._continue_as_new_due(), timeout=timeout
            )
        except TimeoutError:
            pass

    async def _fire_due(self) -> None:
        now = workflow.now()
        scheduled = decide.take_due_plan_change(self.data, now)
        if scheduled is not None:
            await self._run_scheduled_plan_change(scheduled)
        closed = None
        while (due := decide.invoice_due_at(self.data)) is not None and due <= now:
            closed = self.data.next_invoice_period
            await self._issue_invoice()
        if closed is not None and not self.data.finished:
            # Continue-as-new hours after the month-close, at this subscription's own instant; a
            # version-1 run asks a patch named after the month (its history replays unpatched).
            if self.data.version >= 2 or workflow.patched(f"continue-as-new-after-{closed}"):
                self.continue_as_new_at = now + continue_as_new_delay(self.data.subscription_id)
        notice = decide.deletion_notice_due(self.data, now) if self.deletion_notices else None
        if notice is not None:  # R-EVENT-4
            decide.record_deletion_notice(self.data, notice)
            await self._publish("deletion_upcoming", SYSTEM_ACTOR, **notice.details())
        deletion = decide.deletion_due_at(self.data)
        if deletion is not None and deletion <= now:
            now = workflow.now()  # R-CANCEL-2: 30 days after cancellation
            removed = await self.effects.delete_subscription_data(now)
            decide.purge(self.data, now)
            await self._publish("purged", SYSTEM_ACTOR, removed_objects=removed)

    # ── application (R-APPLY, R-LIFE-2) ──────────────────────────────────────────────────────

    async def _apply(self) -> None:
        app = self.data.application
        applied_at = self.data.applied_at = workflow.now()
        await self.effects.record_application(app, applied_at)
        await self._publish("applied", app.applicant_id, terms_version=app.terms_version)
        refused = await self.effects.provision(app, applied_at)
        if refused is not None:
            decide.refuse_application(self.data, workflow.now(), refused)
            await self._publish("refused", SYSTEM_ACTOR, outcome="refused", reason=refused)
            return
        activated_at = workflow.now()
        decide.activate(self.data, activated_at, self.effects.predecessor_cancelled_at)
        granted: dict[str, Any] = {}
        if app.auto_grant_all_members:
            members = sorted(await self.effects.present_members(app.workplace_id))
            await self._set_holders(members, activated_at)
            granted = {"usage_granted": members, "automatic": True}  # named in 이용 내역 (R-PERM-6)
        await self._publish("activated", SYSTEM_ACTOR, **granted)

    # ── cancellation (R-CANCEL) ──────────────────────────────────────────────────────────────

    @workflow.update
    async def cancel(self, request: ActorRequest) -> StatusSnapshot:
        async with self._turn():
            self._validate_cancel(request)
            now = workflow.now()
            dropped = decide.cancel(self.data, now)
            # An older run asks only here, so histories without the patch replay unchanged.
            if not self.deletion_notices and self.data.data_deletion_at is not None:
                self.deletion_notices = workflow.patched("deletion-notices")
            await self._publish("cancelled", request.actor, **dropped)
            await self.effects.suspend_partner_account(now)
            self.wake = True
            return decide.snapshot(self.data)

    @cancel.validator
    def _validate_cancel(self, request: ActorRequest) -> None:
        refuse(decide.cancel_refusal(self.data))

    # ── plan change (R-PLAN) ─────────────────────────────────────────────────────────────────

    @workflow.update
    async def change_plan(self, request: PlanChangeRequest) -> StatusSnapshot:
        async with self._turn():
            self._validate_change_plan(request)
            if request.when == "next_window":
                at = decide.schedule_plan_change(self.data, request, workflow.now()).at.isoformat()
                await self._publish(
                    "plan_change_scheduled", request.actor, plan_id=request.plan_id, at=at
                )
                self.wake = True
                return decide.snapshot(self.data)
            courses = await self.effects.courses_in_progress()
            refuse(decide.courses_refusal(courses, request.confirm_course_reset))
            await self._change_plan_now(request.plan_id, request.actor, bool(courses))
            return decide.snapshot(self.data)

    @change_plan.validator
    def _validate_change_plan(self, request: PlanChangeRequest) -> None:
        refuse(decide.change_plan_refusal(self.data, request, workflow.now()))

    async def _change_plan_now(self, plan_id: str, actor: str, stop_courses: bool) -> None:
        decide.start_plan_change(self.data)
        await self._publish("plan_change_started", actor, plan_id=plan_id)
        try:
            stopped = await self.effects.change_partner_plan(plan_id, stop_courses, workflow.now())
        except ActivityError as failure:
            decide.plan_change_failed(self.data)
            why = {"reason": c.message} if isinstance(c := failure.cause, ApplicationError) else {}
            await self._publish(
                "plan_change_failed", actor, outcome="failed", plan_id=plan_id, **why
            )
            raise ApplicationError(
                "The partner could not change the plan.", type="PLAN_CHANGE_FAILED"
            ) from failure
        previous = decide.plan_changed(self.data, plan_id, workflow.now())
        await self._publish(
            "plan_changed", actor, from_plan=previous, to_plan=plan_id, stopped_courses=stopped
        )

    async def _run_scheduled_plan_change(self, scheduled: ScheduledPlanChange) -> None:
        now, courses = workflow.now(), None
        if decide.scheduled_change_dropped(self.data, scheduled, now) is None:
            courses = await self.effects.courses_in_progress()
        dropped = decide.scheduled_change_dropped(self.data, scheduled, now, courses)
        if dropped is not None:
            self.data.plan_change_notice = dropped.notice
            await self._publish(
                "plan_change_dropped", SYSTEM_ACTOR, outcome="dropped", **dropped.details()
            )
            return
        try:
            await self._change_plan_now(scheduled.plan_id, scheduled.requested_by, bool(courses))
        except ApplicationError:
            decide.scheduled_change_failed(self.data, scheduled)

    @workflow.update
    async def withdraw_plan_change(self, request: ActorRequest) -> StatusSnapshot:
        async with self._turn():
            self._validate_withdraw(request)
            dropped = decide.withdraw_plan_change(self.data)
            await self._publish("plan_change_withdrawn", request.actor, plan_id=dropped.plan_id)
            self.wake = True
            return decide.snapshot(self.data)

    @withdraw_plan_change.validator
    def _validate_withdraw(self, request: ActorRequest) -> None:
        refuse(decide.withdraw_refusal(self.data))

    # ── usage permissions and seats (R-PERM-2, -6, -7, -9; R-BILL-3) ─────────────────────────

    @workflow.update
    async def grant_usage(self, request: UsageRequest) -> StatusSnapshot:
        async with self._turn():
            self._validate_grant(request)
            holders = decide.with_holder(self.data, request.member_id)
            if holders is not None:
                await self._set_holders(holders, workflow.now())
                await self._publish("usage_granted", request.actor, member_id=request.member_id)
            return decide.snapshot(self.data)

    @grant_usage.validator
    def _validate_grant(self, request: UsageRequest) -> None:
        refuse(decide.usage_refusal(self.data, request.member_id, revoke=False))

    @workflow.update
    async def revoke_usage(self, request: UsageRequest) -> StatusSnapshot:
        async with self._turn():
            self._validate_revoke(request)
            await self._set_holders(
                decide.without_holder(self.data, request.member_id), workflow.now()
            )
            await self._publish("usage_revoked", request.actor, member_id=request.member_id)
            return decide.snapshot(self.data)

    @revoke_usage.validator
    def _validate_revoke(self, request: UsageRequest) -> None:
        refuse(decide.usage_refusal(self.data, request.member_id, revoke=True))

    @workflow.signal
    async def member_joined(self, event: MemberEvent) -> None:
        async with self._turn():
            holders = decide.with_holder(self.data, event.member_id)
            if decide.grants_automatically(self.data) and holders is not None:
                await self._set_holders(holders, workflow.now())
                await self._publish(
                    "usage_granted", SYSTEM_ACTOR, member_id=event.member_id, automatic=True
                )

    @workflow.signal
    async def member_left(self, event: MemberEvent) -> None:
        async with self._turn():
            holders = decide.after_leaving(self.data, event.member_id)
            if holders is not None:
                await self._set_holders(holders, workflow.now())
                await self._publish(
                    "usage_revoked", SYSTEM_ACTOR, member_id=event.member_id, reason="member_left"
                )

    @workflow.signal
    async def login_id_changed(self, event: MemberEvent) -> None:
        """R-PERM-9: on ubob, a new login id resets every learning record of the member."""
        async with self._turn():
            if not self.data.application.auto_grant_all_members or self.data.state == "purged":
                return
            reset = await self.effects.reset_learning_records(event.member_id)
            await self._publish(
                "learning_records_reset",
                SYSTEM_ACTOR,
                member_id=event.member_id,
                login_id=event.login_id,
                records=reset,
            )

    async def _set_holders(self, holders: list[str], at: datetime) -> None:
        decide.set_holders(self.data, holders, at)
        await self.effects.set_usage_holders(holders, at)

    # ── billing (R-BILL) ─────────────────────────────────────────────────────────────────────

    async def _issue_invoice(self) -> None:
        period, invoice = decide.invoice_of_period(self.data)
        if invoice is not None:
            issued = await self.effects.issue_invoice(period, invoice, workflow.now())
            total = str(invoice.total)
            await self._publish(
                "invoice_issued", SYSTEM_ACTOR, invoice_id=issued, period=period, total=total
            )
        if decide.close_period(self.data, period) and invoice is None:
            await self._publish("billing_closed", SYSTEM_ACTOR, period=period)

    # ── queries, publication and effects ─────────────────────────────────────────────────────

    @workflow.query
    def status(self) -> StatusSnapshot:
        return decide.snapshot(self.data)

    @workflow.query
    def data_query(self) -> SubscriptionData:
        return self.data

    async def _publish(
        self, action: AuditAction, actor: str, *, outcome: AuditOutcome = "ok", **details: Any
    ) -> None:
        """R-LIFE-4: every change reaches the read model, the audit log and the Temporal UI."""
        previous, self.published_state = self.published_state, self.data.state
        self.data.event_seq += 1
        details = {"state": self.data.state, "previous_state": previous, **details}
        at = workflow.now()
        audit = AuditEntry(at=at, actor=actor, action=action, outcome=outcome, details=details)
        await self.effects.publish(decide.snapshot(self.data), audit)
