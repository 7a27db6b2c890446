"""SubscriptionWorkflow: one long-lived workflow per subscription (SPEC §3).

Decisions happen here (deterministic, replayable); effects happen in activities. Admin actions
arrive as updates: the validator refuses on the workflow's own state before anything is written to
history (R-ERR-3), the handler runs under one lock so no two actions interleave (R-PLAN-7), and
the caller gets the resulting status. Timers are not separate coroutines: the main loop sleeps
until the earliest due instant (next invoice, scheduled plan change, data deletion) or until an
action changes what is due, then fires everything that is due, under the same lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.subscription import SubscriptionActivities
    from domain.billing import BillingHistory, Invoice, PlanChange, compute_invoice, invoice_id
    from domain.billing import first_billable_day as billing_start_day
    from domain.calendar import (
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
        CURRENT_VERSION,
        SYSTEM_ACTOR,
        ActorRequest,
        AuditEntry,
        MemberEvent,
        PlanChangeRequest,
        Publication,
        ScheduledPlanChange,
        StatusSnapshot,
        SubscriptionData,
        SubscriptionInput,
        UsageRequest,
        continue_as_new_delay,
    )
    from partners.gateway import MemberCourses
    from statemachines.lifecycle import SubscriptionLifecycle
    from workflows import search_attributes as sa

ACTIVITY_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
PROVISION_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), non_retryable_error_types=["PARTNER_REFUSED"]
)


def refuse(code: str, **details: Any) -> NoReturn:
    """Raise a refusal the caller receives as an ApplicationError with the code as its type."""
    error = BizError(code, **details)
    raise ApplicationError(error.message, error.details, type=code, non_retryable=True)


def workflow_id(subscription_id: str) -> str:
    return f"subscription-{subscription_id}"


@workflow.defn
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, input: SubscriptionInput) -> None:
        self.data: SubscriptionData = input.data
        self.history_event_limit = input.history_event_limit
        # The machine keeps its state in `data.state` (model binding): one place for the state.
        self.machine = SubscriptionLifecycle.bound_to(self.data)
        # The state the read model and audit last saw (an audit entry names the one before).
        self.published_state = self.data.state
        # What the UI's search attributes say now: set at start, carried over by continue-as-new.
        self.indexed = (self.data.state, self.data.plan_id)
        self.lock = asyncio.Lock()
        self.wake = False
        # Version 2 (domain.subscription.CURRENT_VERSION): the decision's writes wait here for
        # its one commit, and a month-close sets when this run continues as new.
        self.pending_holders: tuple[list[str], datetime] | None = None
        self.pending_invoice: Invoice | None = None
        self.continue_as_new_at: datetime | None = None

    @property
    def commits_once(self) -> bool:
        """Version 2: one local-activity commit per decision (docs/architecture.md, Versions)."""
        return self.data.version >= 2

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
        return self._snapshot()

    async def _application_started(self) -> None:
        """Handlers delivered with the first task wait until run() holds the lock for _apply."""
        await workflow.wait_condition(lambda: self.data.applied_at is not None)

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            (self.continue_as_new_at is not None and self.continue_as_new_at <= workflow.now())
            or info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.history_event_limit
        )

    async def _sleep_until_due_or_woken(self) -> None:
        due = self._next_due()
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

    def _next_due(self) -> datetime | None:
        candidates = [
            self._invoice_due_at(),
            self.data.scheduled_plan_change.at if self.data.scheduled_plan_change else None,
            self._deletion_due_at(),
            self.continue_as_new_at,
        ]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def _invoice_due_at(self) -> datetime | None:
        period = self.data.next_invoice_period
        return None if period is None else self._invoice_time(period)

    def _invoice_time(self, period: str) -> datetime:
        """When the invoice of `period` is issued: 00:00 on the next 1st, plus this
        subscription's place in a spread-out month-end (0 unless configured at application)."""
        return period_start(next_period(period)) + timedelta(
            seconds=self.data.invoice_delay_seconds
        )

    def _deletion_due_at(self) -> datetime | None:
        return self.data.data_deletion_at if self.data.data_deleted_at is None else None

    async def _fire_due(self) -> None:
        now = workflow.now()
        scheduled = self.data.scheduled_plan_change
        if scheduled is not None and scheduled.at <= now:
            await self._run_scheduled_plan_change(scheduled)
        closed = None
        while (due := self._invoice_due_at()) is not None and due <= now:
            closed = self.data.next_invoice_period
            await self._issue_invoice()
        if closed is not None and not self.data.finished:
            self._end_run_after_month_close(closed, now)
        deletion = self._deletion_due_at()
        if deletion is not None and deletion <= now:
            await self._delete_data()

    # ── application (R-APPLY, R-LIFE-2) ──────────────────────────────────────────────────────

    def _end_run_after_month_close(self, period: str, now: datetime) -> None:
        """Continue-as-new once a month, so a run's history is about a month long and a replay
        stays cheap: at this subscription's own instant some hours after its month-close (a new
        run costs the worker a fresh instance; at 00:00 it would double the month-end herd).
        A version-1 run did not: it asks through a patch named after the closed month, so the
        month-closes already in its history replay unpatched and the first one after this code
        is deployed ends the run the same way (the next run is version 2)."""
        if self.commits_once or workflow.patched(f"continue-as-new-after-{period}"):
            self.continue_as_new_at = now + continue_as_new_delay(self.data.subscription_id)

    async def _apply(self) -> None:
        app = self.data.application
        applied_at = workflow.now()
        self.data.applied_at = applied_at
        predecessor_cancelled_at = await self._write(
            SubscriptionActivities.record_application, app, applied_at
        )
        await self._publish("applied", app.applicant_id, terms_version=app.terms_version)
        try:
            await workflow.execute_activity_method(
                SubscriptionActivities.provision,
                args=[app, applied_at],
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=PROVISION_RETRY,
            )
        except ActivityError as failure:
            cause = failure.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "PARTNER_REFUSED"):
                raise
            self.machine.refuse()
            self.data.cancelled_at = workflow.now()
            self.data.cancel_reason = cause.message
            await self._publish("refused", SYSTEM_ACTOR, outcome="refused", reason=cause.message)
            return
        self.machine.activate()
        activated_at = workflow.now()
        self.data.activated_at = activated_at
        first_day = billing_start_day(applied_at, predecessor_cancelled_at)
        self.data.billing = BillingHistory(
            first_billable_day=first_day,
            plan_changes=[PlanChange(at=applied_at, plan_id=self.data.plan_id)],
            seat_events=[],
        )
        self.data.next_invoice_period = period_of(first_day)
        granted: dict[str, Any] = {}
        if app.auto_grant_all_members:
            members = await self._write(SubscriptionActivities.present_members, app.workplace_id)
            await self._set_holders(sorted(members), activated_at)
            # 이용 내역 names the automatic grants (R-PERM-6). Only the audit entry's details
            # change, not the commands: histories recorded before this still replay.
            granted = {"usage_granted": sorted(members), "automatic": True}
        await self._publish("activated", SYSTEM_ACTOR, **granted)

    # ── cancellation (R-CANCEL) ──────────────────────────────────────────────────────────────

    @workflow.update
    async def cancel(self, request: ActorRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_cancel(request)
            now = workflow.now()
            self.machine.cancel()
            self.data.cancelled_at = now
            dropped = self.data.scheduled_plan_change
            self.data.scheduled_plan_change = None
            if self.data.billing is not None:
                self.data.billing = self.data.billing.ended(now)
            self._stop_invoicing_after(period_of(now))
            details = {"dropped_plan_change": dropped.plan_id} if dropped else {}
            await self._publish("cancelled", request.actor, **details)
            await self._act(
                SubscriptionActivities.suspend_partner_account, self.data.subscription_id, now
            )
            self.wake = True
            return self._snapshot()

    @cancel.validator
    def _validate_cancel(self, request: ActorRequest) -> None:
        # From plan_changing the cancellation waits for the change to finish (R-PLAN-7).
        if self.machine.is_ended:
            refuse("ALREADY_CANCELLED")

    def _stop_invoicing_after(self, last_period: str) -> None:
        period = self.data.next_invoice_period
        if period is not None and period > last_period:
            self.data.next_invoice_period = None

    async def _delete_data(self) -> None:
        """R-CANCEL-2: 30 days after cancellation; invoices, audit and billing state stay."""
        now = workflow.now()
        removed = await self._act(
            SubscriptionActivities.delete_subscription_data, self.data.subscription_id, now
        )
        self.data.data_deleted_at = now
        self.data.usage_holders = []
        self.machine.purge()
        await self._publish("purged", SYSTEM_ACTOR, removed_objects=removed)

    # ── plan change (R-PLAN) ─────────────────────────────────────────────────────────────────

    @workflow.update
    async def change_plan(self, request: PlanChangeRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_change_plan(request)
            if request.when == "next_window":
                at = period_start(next_period(period_of(workflow.now())))
                self.data.scheduled_plan_change = ScheduledPlanChange(
                    plan_id=request.plan_id,
                    at=at,
                    confirm_course_reset=request.confirm_course_reset,
                    requested_by=request.actor,
                )
                self.data.plan_change_notice = None
                await self._publish(
                    "plan_change_scheduled",
                    request.actor,
                    plan_id=request.plan_id,
                    at=at.isoformat(),
                )
                self.wake = True
                return self._snapshot()
            courses = await self._courses_in_progress()
            if courses and not request.confirm_course_reset:
                refuse("COURSES_IN_PROGRESS", **_course_details(courses))
            await self._change_plan_now(request.plan_id, request.actor, bool(courses))
            return self._snapshot()

    @change_plan.validator
    def _validate_change_plan(self, request: PlanChangeRequest) -> None:
        app = self.data.application
        self._require_live()
        if not app.has_plan_choice:
            refuse("PLAN_CHANGE_NOT_SUPPORTED", service_id=app.service_id)
        if request.plan_id not in app.fees:
            refuse("UNKNOWN_PLAN", plan_id=request.plan_id, service_id=app.service_id)
        if request.plan_id == self.data.plan_id:
            refuse("SAME_PLAN", plan_id=request.plan_id)
        if request.when == "now":
            self._require_window_open()

    def _require_live(self) -> None:
        if self.machine.is_ended:
            refuse("ALREADY_CANCELLED")
        if not self.machine.is_usable:
            refuse("NOT_ACTIVE", state=self.data.state)

    def _require_window_open(self) -> None:
        now = workflow.now()
        assert self.data.applied_at is not None
        why = plan_change_refusal(now, self.data.applied_at, self.data.last_plan_change_period)
        if why is None:
            return
        scheduled = self.data.scheduled_plan_change
        at = plan_change_available_at(
            now,
            self.data.applied_at,
            self.data.last_plan_change_period,
            scheduled.at if scheduled else None,
        )
        refuse("PLAN_CHANGE_WINDOW_CLOSED", **window_closed_details(why, at.isoformat()))

    async def _courses_in_progress(self) -> list[MemberCourses]:
        result: list[MemberCourses] = await self._act(
            SubscriptionActivities.courses_in_progress, self.data.subscription_id
        )
        return result

    async def _change_plan_now(self, plan_id: str, actor: str, stop_courses: bool) -> None:
        previous = self.data.plan_id
        self.machine.start_plan_change()
        await self._publish("plan_change_started", actor, plan_id=plan_id)
        try:
            stopped = await self._act(
                SubscriptionActivities.change_partner_plan,
                self.data.subscription_id,
                plan_id,
                stop_courses,
                workflow.now(),
            )
        except ActivityError as failure:
            # R-PLAN-8: a change that fails does not use up the month.
            self.machine.finish_plan_change()
            await self._publish("plan_change_failed", actor, outcome="failed", plan_id=plan_id)
            raise ApplicationError(
                "The partner could not change the plan.", type="PLAN_CHANGE_FAILED"
            ) from failure
        now = workflow.now()
        assert self.data.billing is not None
        self.data.billing = self.data.billing.with_plan_change(now, plan_id)
        self.data.plan_id = plan_id
        self.data.last_plan_change_period = period_of(now)
        self.machine.finish_plan_change()
        await self._publish(
            "plan_changed", actor, from_plan=previous, to_plan=plan_id, stopped_courses=stopped
        )

    async def _run_scheduled_plan_change(self, scheduled: ScheduledPlanChange) -> None:
        self.data.scheduled_plan_change = None
        if not self.machine.can("start_plan_change"):
            return
        # Nothing left to do (changed `now` to that plan since), or the month already had its
        # change (a `now` change handled in the same task as the timer): a change that does not
        # happen must not use up the month, and a month never gets two (R-PLAN-2).
        why = None
        if scheduled.plan_id == self.data.plan_id:
            why = "already on that plan"
        elif self.data.last_plan_change_period == period_of(workflow.now()):
            why = "this month's plan change was already made"
        if why is not None:
            self.data.plan_change_notice = (
                f"Scheduled change to {scheduled.plan_id} dropped: {why}."
            )
            await self._publish(
                "plan_change_dropped",
                SYSTEM_ACTOR,
                outcome="dropped",
                plan_id=scheduled.plan_id,
                reason=why,
            )
            return
        courses = await self._courses_in_progress()
        if courses and not scheduled.confirm_course_reset:
            self.data.plan_change_notice = (
                f"Scheduled change to {scheduled.plan_id} dropped: courses in progress."
            )
            await self._publish(
                "plan_change_dropped",
                SYSTEM_ACTOR,
                outcome="dropped",
                plan_id=scheduled.plan_id,
                **_course_details(courses),
            )
            return
        try:
            await self._change_plan_now(scheduled.plan_id, scheduled.requested_by, bool(courses))
        except ApplicationError:
            self.data.plan_change_notice = f"Scheduled change to {scheduled.plan_id} failed."

    @workflow.update
    async def withdraw_plan_change(self, request: ActorRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_withdraw(request)
            dropped = self.data.scheduled_plan_change
            assert dropped is not None
            self.data.scheduled_plan_change = None
            await self._publish("plan_change_withdrawn", request.actor, plan_id=dropped.plan_id)
            self.wake = True
            return self._snapshot()

    @withdraw_plan_change.validator
    def _validate_withdraw(self, request: ActorRequest) -> None:
        if self.data.scheduled_plan_change is None:
            refuse("NO_SCHEDULED_PLAN_CHANGE")

    # ── usage permissions and seats (R-PERM-2, -6, -7; R-BILL-3) ─────────────────────────────

    @workflow.update
    async def grant_usage(self, request: UsageRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_grant(request)
            if request.member_id not in self.data.usage_holders:
                holders = sorted({*self.data.usage_holders, request.member_id})
                await self._set_holders(holders, workflow.now())
                await self._publish("usage_granted", request.actor, member_id=request.member_id)
            return self._snapshot()

    @grant_usage.validator
    def _validate_grant(self, request: UsageRequest) -> None:
        self._require_manual_usage()

    @workflow.update
    async def revoke_usage(self, request: UsageRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_revoke(request)
            holders = [m for m in self.data.usage_holders if m != request.member_id]
            await self._set_holders(holders, workflow.now())
            await self._publish("usage_revoked", request.actor, member_id=request.member_id)
            return self._snapshot()

    @revoke_usage.validator
    def _validate_revoke(self, request: UsageRequest) -> None:
        self._require_manual_usage()
        if request.member_id not in self.data.usage_holders:
            refuse("PERMISSION_NOT_HELD", member_id=request.member_id)

    def _require_manual_usage(self) -> None:
        self._require_live()
        app = self.data.application
        if app.auto_grant_all_members:
            refuse("AUTO_GRANTED_SERVICE", service_id=app.service_id)

    @workflow.signal
    async def member_joined(self, event: MemberEvent) -> None:
        await self._application_started()
        async with self.lock:
            app = self.data.application
            if not (app.auto_grant_all_members and self.machine.is_usable):
                return
            if event.member_id in self.data.usage_holders:
                return
            await self._set_holders(
                sorted({*self.data.usage_holders, event.member_id}), workflow.now()
            )
            await self._publish(
                "usage_granted", SYSTEM_ACTOR, member_id=event.member_id, automatic=True
            )

    @workflow.signal
    async def member_left(self, event: MemberEvent) -> None:
        await self._application_started()
        async with self.lock:
            if event.member_id not in self.data.usage_holders or self.machine.purged.is_active:
                return
            holders = [m for m in self.data.usage_holders if m != event.member_id]
            await self._set_holders(holders, workflow.now())
            await self._publish(
                "usage_revoked", SYSTEM_ACTOR, member_id=event.member_id, reason="member_left"
            )

    @workflow.signal
    async def login_id_changed(self, event: MemberEvent) -> None:
        """R-PERM-9: on ubob, a new login id resets every learning record of the member."""
        await self._application_started()
        async with self.lock:
            if not self.data.application.auto_grant_all_members or self.machine.purged.is_active:
                return
            reset = await self._act(
                SubscriptionActivities.reset_learning_records,
                self.data.subscription_id,
                event.member_id,
            )
            await self._publish(
                "learning_records_reset",
                SYSTEM_ACTOR,
                member_id=event.member_id,
                login_id=event.login_id,
                records=reset,
            )

    async def _set_holders(self, holders: list[str], at: datetime) -> None:
        revoked = [m for m in self.data.usage_holders if m not in holders]
        granted = [m for m in holders if m not in self.data.usage_holders]
        self.data.usage_holders = holders
        if self.data.billing is not None and not self.machine.cancelled.is_active:
            # Revocations before grants at one instant (R-BILL-3).
            if revoked:
                self.data.billing = self.data.billing.with_seat_event(at, -len(revoked))
            if granted:
                self.data.billing = self.data.billing.with_seat_event(at, len(granted))
        if self.commits_once:
            self.pending_holders = (holders, at)  # written by the decision's commit
            return
        await self._act(
            SubscriptionActivities.sync_usage_holders, self.data.subscription_id, holders, at
        )

    # ── billing (R-BILL) ─────────────────────────────────────────────────────────────────────

    async def _issue_invoice(self) -> None:
        period = self.data.next_invoice_period
        billing = self.data.billing
        assert period is not None and billing is not None
        invoice = compute_invoice(billing, period, self.data.application.fees)
        if invoice is not None:
            if self.commits_once:
                self.pending_invoice = invoice  # written by the decision's commit
                issued = invoice_id(self.data.subscription_id, period)
            else:
                issued = await self._act(
                    SubscriptionActivities.issue_invoice,
                    self.data.application,
                    invoice,
                    workflow.now(),
                )
            await self._publish(
                "invoice_issued",
                SYSTEM_ACTOR,
                invoice_id=issued,
                period=period,
                total=str(invoice.total),
            )
        following = next_period(period)
        self.data.billing = billing.compacted(period_start_date(following))
        ended = self.data.cancelled_at is not None and period >= period_of(self.data.cancelled_at)
        self.data.next_invoice_period = None if ended else following
        if ended and invoice is None:
            await self._publish("billing_closed", SYSTEM_ACTOR, period=period)

    # ── queries and publication ──────────────────────────────────────────────────────────────

    @workflow.query
    def status(self) -> StatusSnapshot:
        return self._snapshot()

    @workflow.query
    def data_query(self) -> SubscriptionData:
        return self.data

    def _snapshot(self) -> StatusSnapshot:
        d = self.data
        final_invoice_at = None
        if d.cancelled_at is not None and d.billing is not None:
            # No final invoice when the cancellation day was never billable (R-BILL-2:
            # re-applied and cancelled on the predecessor's cancellation day).
            if d.billing.first_billable_day <= seoul_date(d.cancelled_at):
                final_invoice_at = self._invoice_time(period_of(d.cancelled_at))
        return StatusSnapshot(
            subscription_id=d.subscription_id,
            workplace_id=d.application.workplace_id,
            service_id=d.application.service_id,
            state=self.machine.state_name,
            plan_id=d.plan_id,
            applied_at=d.applied_at,
            activated_at=d.activated_at,
            cancelled_at=d.cancelled_at,
            cancel_reason=d.cancel_reason,
            last_plan_change_period=d.last_plan_change_period,
            scheduled_plan_change=d.scheduled_plan_change,
            plan_change_notice=d.plan_change_notice,
            data_deletion_at=d.data_deletion_at,
            final_invoice_at=final_invoice_at,
            purged_at=d.data_deleted_at,
            usage_permission_count=len(d.usage_holders),
            seq=d.event_seq,
        )

    async def _publish(
        self, action: str, actor: str, *, outcome: str = "ok", **details: Any
    ) -> None:
        """R-LIFE-4: every change reaches the read model, the audit log and the Temporal UI."""
        previous, self.published_state = self.published_state, self.data.state
        self.data.event_seq += 1
        indexed = (self.data.state, self.data.plan_id)
        if indexed != self.indexed:  # seat changes and invoices leave them as they are
            self.indexed = indexed
            workflow.upsert_search_attributes(
                [
                    sa.SUBSCRIPTION_STATE.value_set(self.data.state),
                    sa.PLAN_ID.value_set(self.data.plan_id),
                ]
            )
        audit = AuditEntry(
            at=workflow.now(),
            actor=actor,
            action=action,
            outcome=outcome,  # type: ignore[arg-type]
            details={"state": self.data.state, "previous_state": previous, **details},
        )
        if not self.commits_once:
            publication = Publication(snapshot=self._snapshot(), audit=audit)
            await self._act(SubscriptionActivities.publish, publication)
            return
        holders, holders_at = self.pending_holders or (None, None)
        publication = Publication(
            snapshot=self._snapshot(),
            audit=audit,
            usage_holders=holders,
            holders_at=holders_at,
            invoice=self.pending_invoice,
        )
        self.pending_holders = self.pending_invoice = None
        await self._write(SubscriptionActivities.commit, publication)

    async def _act(self, method: Callable[..., Any], *args: Any) -> Any:
        """An activity: a partner call, or (version 1) any effect."""
        return await workflow.execute_activity_method(
            method,
            args=list(args),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )

    async def _write(self, method: Callable[..., Any], *args: Any) -> Any:
        """A short, keyed PostgreSQL read or write that is safe to repeat: a local activity in
        version 2 (a marker in the history instead of an activity's three events and two
        workflow tasks; retried by the worker with the same policy), an activity in version 1."""
        if not self.commits_once:
            return await self._act(method, *args)
        return await workflow.execute_local_activity_method(
            method,
            args=list(args),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )


def _course_details(courses: list[MemberCourses]) -> dict[str, Any]:
    """R-PLAN-10: who has which courses in progress."""
    return {
        "member_count": len(courses),
        "course_count": sum(len(c.courses) for c in courses),
        "members": [c.model_dump() for c in courses],
    }
