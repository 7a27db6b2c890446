"""SubscriptionWorkflow: one long-lived workflow per subscription (docs/architecture.md).

Only what must be workflow code lives here: the handlers and their validators, the timer loop,
the lock, the activity calls and continue-as-new. What a decision does to the data, what is due
next and which refusal applies are pure functions in domain/decisions.py, shared by every run.
Admin actions arrive as updates: the validator refuses on the workflow's own state before
anything is written to history (R-ERR-3), the handler runs under one lock so no two actions
interleave (R-PLAN-7), and the caller gets the resulting status. Timers are not separate
coroutines: the main loop sleeps until the earliest due instant (next invoice, scheduled plan
change, data deletion) or until an action changes what is due, then fires everything that is
due, under the same lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.effects import Effects
    from activities.legacy import LegacyActivities
    from domain import decisions as decide
    from domain.audit import AuditAction, AuditOutcome
    from domain.billing import Invoice, invoice_id
    from domain.effects import (
        ChangePartnerPlan,
        CoursesInProgress,
        DeleteSubscriptionData,
        EffectInput,
        PresentMembers,
        Provision,
        RecordApplication,
        ResetLearningRecords,
        SuspendPartnerAccount,
    )
    from domain.errors import BizError
    from domain.subscription import (
        CURRENT_VERSION,
        SYSTEM_ACTOR,
        ActorRequest,
        AuditEntry,
        MemberEvent,
        PlanChangeNotice,
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
    from workflows import search_attributes as sa

ACTIVITY_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
PROVISION_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), non_retryable_error_types=["PARTNER_REFUSED"]
)
In = TypeVar("In", bound=EffectInput)
R = TypeVar("R")


def refuse(error: BizError | None) -> None:
    """Raise a refusal (if any) as an ApplicationError typed with its code."""
    if error is not None:
        raise ApplicationError(error.message, error.details, type=error.code, non_retryable=True)


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
        # What the UI's search attributes say now: set at start, carried over by continue-as-new.
        self.indexed = (self.data.state, self.data.plan_id)
        self.lock = asyncio.Lock()
        self.wake = False
        # Versions 2 and 3: the decision's writes wait here for its one commit, and a
        # month-close sets when this run continues as new.
        self.pending_holders: tuple[list[str], datetime] | None = None
        self.pending_invoice: Invoice | None = None
        self.continue_as_new_at: datetime | None = None

    @property
    def commits_once(self) -> bool:
        """Version 2 on: one local-activity commit per decision (docs/architecture.md)."""
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
        if self.data.version >= 3:
            await workflow.wait_condition(workflow.all_handlers_finished)
        return decide.snapshot(self.data)

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
        due = decide.next_due(self.data, self.continue_as_new_at)
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
            self._end_run_after_month_close(closed, now)
        deletion = decide.deletion_due_at(self.data)
        if deletion is not None and deletion <= now:
            # R-CANCEL-2: 30 days after cancellation; invoices, audit and billing state stay.
            now = workflow.now()
            removed = await self._act(
                Effects.delete_subscription_data,
                DeleteSubscriptionData(subscription_id=self.data.subscription_id, at=now),
            )
            decide.purge(self.data, now)
            await self._publish("purged", SYSTEM_ACTOR, removed_objects=removed)

    def _end_run_after_month_close(self, period: str, now: datetime) -> None:
        """Continue-as-new once a month, some hours after the month-close at this subscription's
        own instant (docs/architecture.md, "Versions"). A version-1 run asks through a patch named
        after the closed month, so the month-closes already in its history replay unpatched."""
        if self.commits_once or workflow.patched(f"continue-as-new-after-{period}"):
            self.continue_as_new_at = now + continue_as_new_delay(self.data.subscription_id)

    # ── application (R-APPLY, R-LIFE-2) ──────────────────────────────────────────────────────

    async def _apply(self) -> None:
        app = self.data.application
        applied_at = self.data.applied_at = workflow.now()
        predecessor_cancelled_at = await self._act(
            Effects.record_application,
            RecordApplication(application=app, at=applied_at),
            local=True,
        )
        await self._publish("applied", app.applicant_id, terms_version=app.terms_version)
        try:
            await self._act(
                Effects.provision,
                Provision(application=app, at=applied_at),
                retry=PROVISION_RETRY,
            )
        except ActivityError as failure:
            cause = failure.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "PARTNER_REFUSED"):
                raise
            decide.refuse_application(self.data, workflow.now(), cause.message)
            await self._publish("refused", SYSTEM_ACTOR, outcome="refused", reason=cause.message)
            return
        activated_at = workflow.now()
        decide.activate(self.data, activated_at, predecessor_cancelled_at)
        granted: dict[str, Any] = {}
        if app.auto_grant_all_members:
            members = await self._act(
                Effects.present_members,
                PresentMembers(workplace_id=app.workplace_id),
                local=True,
            )
            await self._set_holders(sorted(members), activated_at)
            # 이용 내역 names the automatic grants (R-PERM-6).
            granted = {"usage_granted": sorted(members), "automatic": True}
        await self._publish("activated", SYSTEM_ACTOR, **granted)

    # ── cancellation (R-CANCEL) ──────────────────────────────────────────────────────────────

    @workflow.update
    async def cancel(self, request: ActorRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_cancel(request)
            now = workflow.now()
            dropped = decide.cancel(self.data, now)
            details: dict[str, Any] = {"dropped_plan_change": dropped.plan_id} if dropped else {}
            await self._publish("cancelled", request.actor, **details)
            await self._act(
                Effects.suspend_partner_account,
                SuspendPartnerAccount(subscription_id=self.data.subscription_id, at=now),
            )
            self.wake = True
            return decide.snapshot(self.data)

    @cancel.validator
    def _validate_cancel(self, request: ActorRequest) -> None:
        refuse(decide.cancel_refusal(self.data))

    # ── plan change (R-PLAN) ─────────────────────────────────────────────────────────────────

    @workflow.update
    async def change_plan(self, request: PlanChangeRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
            self._validate_change_plan(request)
            if request.when == "next_window":
                at = decide.schedule_plan_change(self.data, request, workflow.now()).at
                await self._publish(
                    "plan_change_scheduled",
                    request.actor,
                    plan_id=request.plan_id,
                    at=at.isoformat(),
                )
                self.wake = True
                return decide.snapshot(self.data)
            courses = await self._courses_in_progress()
            refuse(decide.courses_refusal(courses, request.confirm_course_reset))
            await self._change_plan_now(request.plan_id, request.actor, bool(courses))
            return decide.snapshot(self.data)

    @change_plan.validator
    def _validate_change_plan(self, request: PlanChangeRequest) -> None:
        refuse(decide.change_plan_refusal(self.data, request, workflow.now()))

    async def _courses_in_progress(self) -> list[dict[str, Any]]:
        """Who has which courses in progress, as the refusal and the audit entry name them."""
        courses: list[MemberCourses] = await self._act(
            Effects.courses_in_progress,
            CoursesInProgress(subscription_id=self.data.subscription_id),
        )
        return [c.model_dump() for c in courses]

    async def _change_plan_now(self, plan_id: str, actor: str, stop_courses: bool) -> None:
        decide.start_plan_change(self.data)
        await self._publish("plan_change_started", actor, plan_id=plan_id)
        try:
            stopped = await self._act(
                Effects.change_partner_plan,
                ChangePartnerPlan(
                    subscription_id=self.data.subscription_id,
                    plan_id=plan_id,
                    stop_courses=stop_courses,
                    at=workflow.now(),
                ),
            )
        except ActivityError as failure:
            decide.plan_change_failed(self.data)
            await self._publish("plan_change_failed", actor, outcome="failed", plan_id=plan_id)
            raise ApplicationError(
                "The partner could not change the plan.", type="PLAN_CHANGE_FAILED"
            ) from failure
        previous = decide.plan_changed(self.data, plan_id, workflow.now())
        await self._publish(
            "plan_changed", actor, from_plan=previous, to_plan=plan_id, stopped_courses=stopped
        )

    async def _run_scheduled_plan_change(self, scheduled: ScheduledPlanChange) -> None:
        plan_id = scheduled.plan_id
        dropped = decide.scheduled_change_dropped(self.data, scheduled, workflow.now())
        details: dict[str, Any] = {} if dropped is None else {"reason": dropped.code}
        if dropped is None:
            courses = await self._courses_in_progress()
            if courses and not scheduled.confirm_course_reset:
                dropped = PlanChangeNotice(
                    code="scheduled_change_dropped_courses_in_progress", plan_id=plan_id
                )
                details = decide.course_details(courses)
        if dropped is not None:
            self.data.plan_change_notice = dropped
            await self._publish(
                "plan_change_dropped", SYSTEM_ACTOR, outcome="dropped", plan_id=plan_id, **details
            )
            return
        try:
            await self._change_plan_now(plan_id, scheduled.requested_by, bool(courses))
        except ApplicationError:
            self.data.plan_change_notice = PlanChangeNotice(
                code="scheduled_change_failed", plan_id=plan_id
            )

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
            return decide.snapshot(self.data)

    @withdraw_plan_change.validator
    def _validate_withdraw(self, request: ActorRequest) -> None:
        refuse(decide.withdraw_refusal(self.data))

    # ── usage permissions and seats (R-PERM-2, -6, -7, -9; R-BILL-3) ─────────────────────────

    @workflow.update
    async def grant_usage(self, request: UsageRequest) -> StatusSnapshot:
        await self._application_started()
        async with self.lock:
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
        await self._application_started()
        async with self.lock:
            self._validate_revoke(request)
            holders = decide.without_holder(self.data, request.member_id)
            await self._set_holders(holders, workflow.now())
            await self._publish("usage_revoked", request.actor, member_id=request.member_id)
            return decide.snapshot(self.data)

    @revoke_usage.validator
    def _validate_revoke(self, request: UsageRequest) -> None:
        refuse(decide.usage_refusal(self.data, request.member_id, revoke=True))

    @workflow.signal
    async def member_joined(self, event: MemberEvent) -> None:
        await self._application_started()
        async with self.lock:
            holders = decide.with_holder(self.data, event.member_id)
            if not decide.grants_automatically(self.data) or holders is None:
                return
            await self._set_holders(holders, workflow.now())
            await self._publish(
                "usage_granted", SYSTEM_ACTOR, member_id=event.member_id, automatic=True
            )

    @workflow.signal
    async def member_left(self, event: MemberEvent) -> None:
        await self._application_started()
        async with self.lock:
            if event.member_id not in self.data.usage_holders or self.data.state == "purged":
                return
            holders = decide.without_holder(self.data, event.member_id)
            await self._set_holders(holders, workflow.now())
            await self._publish(
                "usage_revoked", SYSTEM_ACTOR, member_id=event.member_id, reason="member_left"
            )

    @workflow.signal
    async def login_id_changed(self, event: MemberEvent) -> None:
        """R-PERM-9: on ubob, a new login id resets every learning record of the member."""
        await self._application_started()
        async with self.lock:
            if not self.data.application.auto_grant_all_members or self.data.state == "purged":
                return
            reset = await self._act(
                Effects.reset_learning_records,
                ResetLearningRecords(
                    subscription_id=self.data.subscription_id, member_id=event.member_id
                ),
            )
            await self._publish(
                "learning_records_reset",
                SYSTEM_ACTOR,
                member_id=event.member_id,
                login_id=event.login_id,
                records=reset,
            )

    async def _set_holders(self, holders: list[str], at: datetime) -> None:
        decide.set_holders(self.data, holders, at)
        if self.commits_once:
            self.pending_holders = (holders, at)  # written by the decision's commit
            return
        await self._legacy(
            LegacyActivities.sync_usage_holders, self.data.subscription_id, holders, at
        )

    # ── billing (R-BILL) ─────────────────────────────────────────────────────────────────────

    async def _issue_invoice(self) -> None:
        period, invoice = decide.invoice_of_period(self.data)
        if invoice is not None:
            if self.commits_once:
                self.pending_invoice = invoice  # written by the decision's commit
                issued = invoice_id(self.data.subscription_id, period)
            else:
                issued = await self._legacy(
                    LegacyActivities.issue_invoice, self.data.application, invoice, workflow.now()
                )
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
            outcome=outcome,
            details={"state": self.data.state, "previous_state": previous, **details},
        )
        holders, holders_at = self.pending_holders or (None, None)  # None in version 1
        publication = Publication(
            snapshot=decide.snapshot(self.data),
            audit=audit,
            usage_holders=holders,
            holders_at=holders_at,
            invoice=self.pending_invoice,
        )
        self.pending_holders = self.pending_invoice = None
        if not self.commits_once:
            await self._legacy(LegacyActivities.publish, publication)
            return
        await workflow.execute_local_activity_method(
            Effects.commit,
            publication,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )

    async def _act(
        self,
        effect: Callable[[Any, In], Awaitable[R]],
        input: In,
        *,
        local: bool = False,
        retry: RetryPolicy = ACTIVITY_RETRY,
    ) -> R:
        """An effect. `local`: a short, keyed PostgreSQL read or write that is safe to repeat,
        a local activity from version 2 on (a marker in the history instead of an activity's
        three events and two workflow tasks). Versions 1 and 2 call the effect under its old
        name with positional arguments (activities/legacy.py); version 3 with its input model."""
        if self.data.version < 3:
            legacy = getattr(LegacyActivities, effect.__name__)
            result: R = await self._legacy(legacy, *input.args(), local=local, retry=retry)
            return result
        if local:
            return await workflow.execute_local_activity_method(
                effect, input, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
            )
        return await workflow.execute_activity_method(
            effect, input, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
        )

    async def _legacy(
        self,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        local: bool = False,
        retry: RetryPolicy = ACTIVITY_RETRY,
    ) -> Any:
        """A version-1/2 activity; `local` ones are local activities in version 2."""
        if local and self.commits_once:
            return await workflow.execute_local_activity_method(
                method, args=list(args), start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
            )
        return await workflow.execute_activity_method(
            method, args=list(args), start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
        )
