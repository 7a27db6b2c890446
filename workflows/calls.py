"""How a run of each version calls its effects (docs/architecture.md, "Versions").

Workflow code, passed through the sandbox (one copy per worker, not one per run): `RunEffects`
holds nothing but the run's data, and its calls go to the SDK's workflow functions, which act on
the run that is executing.

- Version 3 calls each effect (activities/effects.py) with its one input model (domain/effects.py).
- Versions 1 and 2 call the same effects under their old names with positional arguments
  (activities/legacy.py); version 1 also has the three activities the later versions fold into
  the one `commit` of each decision (`publish`, `sync_usage_holders`, `issue_invoice`).
- `local` effects are short, keyed PostgreSQL reads and writes that are safe to repeat: local
  activities from version 2 on (a marker in the history instead of an activity's three events
  and two workflow tasks; retried by the worker with the same policy), activities in version 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

import domain.effects as fx
from activities.effects import Effects
from activities.legacy import LegacyActivities
from domain.billing import Invoice, invoice_id
from domain.errors import BizError
from domain.subscription import (
    Application,
    AuditEntry,
    Publication,
    StatusSnapshot,
    SubscriptionData,
)
from partners.gateway import MemberCourses
from workflows.search_attributes import PLAN_ID, SUBSCRIPTION_STATE

ACTIVITY_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
PROVISION_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), non_retryable_error_types=["PARTNER_REFUSED"]
)
In = TypeVar("In", bound=fx.EffectInput)
Out = TypeVar("Out")


class RunEffects:
    """The effects of one run, called as its version calls them."""

    def __init__(self, data: SubscriptionData) -> None:
        self.data = data
        # Version 2 on: a decision's new seat holders and invoice wait here for its one commit.
        self.holders: tuple[list[str], datetime] | None = None
        self.invoice: Invoice | None = None
        # What the UI's search attributes say now: set at start, carried over by continue-as-new.
        self.indexed = (data.state, data.plan_id)
        # Version 5: the next publication (the "applied" one) waits here for `apply`.
        self.applying = False
        self.announcement: Publication | None = None
        self.predecessor_cancelled_at: datetime | None = None  # R-BILL-2, once recorded

    async def record_application(self, app: Application, at: datetime) -> None:
        """R-APPLY-2, -4; sets `predecessor_cancelled_at`. Version 5: recorded by `provision`'s
        one activity, with the announcement the next `publish` hands it."""
        if self.data.version >= 5:
            self.applying = True
            return
        input = fx.RecordApplication(application=app, at=at)
        self.predecessor_cancelled_at = await self._call(
            Effects.record_application, input, local=True
        )

    async def provision(self, app: Application, at: datetime) -> str | None:
        """R-LIFE-2: the partner account; transient faults retry. Returns the partner's reason
        when it refuses the account, None once the account exists. Version 5: one activity
        records the application and commits its announcement first (`Effects.apply`)."""
        try:
            if self.announcement is not None:
                input = fx.Apply(application=app, at=at, announcement=self.announcement)
                self.announcement = None  # a cached run keeps nothing it no longer needs
                self.predecessor_cancelled_at = await self._call(
                    Effects.apply, input, retry=PROVISION_RETRY
                )
            else:
                provision = fx.Provision(application=app, at=at)
                await self._call(Effects.provision, provision, retry=PROVISION_RETRY)
        except ActivityError as failure:
            cause = failure.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "PARTNER_REFUSED"):
                raise
            return cause.message
        return None

    async def present_members(self, workplace_id: str) -> list[str]:
        input = fx.PresentMembers(workplace_id=workplace_id)
        return await self._call(Effects.present_members, input, local=True)

    async def suspend_partner_account(self, at: datetime) -> None:
        input = fx.SuspendPartnerAccount(subscription_id=self.data.subscription_id, at=at)
        await self._call(Effects.suspend_partner_account, input)

    async def courses_in_progress(self) -> list[dict[str, Any]]:
        """Who has which courses in progress, as refusals and audit entries name them."""
        input = fx.CoursesInProgress(subscription_id=self.data.subscription_id)
        courses: list[MemberCourses] = await self._call(Effects.courses_in_progress, input)
        return [c.model_dump() for c in courses]

    async def change_partner_plan(self, plan_id: str, stop_courses: bool, at: datetime) -> int:
        """Returns how many courses in progress were stopped."""
        input = fx.ChangePartnerPlan(
            subscription_id=self.data.subscription_id,
            plan_id=plan_id,
            stop_courses=stop_courses,
            at=at,
        )
        return await self._call(Effects.change_partner_plan, input)

    async def reset_learning_records(self, member_id: str) -> int:
        input = fx.ResetLearningRecords(
            subscription_id=self.data.subscription_id, member_id=member_id
        )
        return await self._call(Effects.reset_learning_records, input)

    async def delete_subscription_data(self, at: datetime) -> int:
        input = fx.DeleteSubscriptionData(subscription_id=self.data.subscription_id, at=at)
        return await self._call(Effects.delete_subscription_data, input)

    async def set_usage_holders(self, holders: list[str], at: datetime) -> None:
        """The complete new set of seat holders, as of `at`: written by the decision's commit
        from version 2 on, by an activity of its own in version 1."""
        if self.data.version >= 2:
            self.holders = (holders, at)
            return
        sync = LegacyActivities.sync_usage_holders
        await self._legacy(sync, self.data.subscription_id, holders, at)

    async def issue_invoice(self, period: str, invoice: Invoice, at: datetime) -> str:
        """The month's invoice: written by the decision's commit from version 2 on, by an
        activity of its own in version 1. Returns its id."""
        if self.data.version >= 2:
            self.invoice = invoice
            return invoice_id(self.data.subscription_id, period)
        issue, app = LegacyActivities.issue_invoice, self.data.application
        issued: str = await self._legacy(issue, app, invoice, at)
        return issued

    async def publish(self, snapshot: StatusSnapshot, audit: AuditEntry) -> None:
        """R-LIFE-4: the decision reaches the Temporal UI (search attributes, when the state or
        plan changed) and the database: from version 2 on one local `commit` with the new holders
        and invoice; in version 1 the read model and audit entry alone."""
        indexed = (self.data.state, self.data.plan_id)
        if indexed != self.indexed:  # seat changes and invoices leave them as they are
            self.indexed = indexed
            workflow.upsert_search_attributes(
                [SUBSCRIPTION_STATE.value_set(indexed[0]), PLAN_ID.value_set(indexed[1])]
            )
        holders, holders_at = self.holders or (None, None)
        publication = Publication(
            snapshot=snapshot,
            audit=audit,
            usage_holders=holders,
            holders_at=holders_at,
            invoice=self.invoice,
        )
        self.holders = self.invoice = None
        if self.applying:  # version 5: committed by `provision`'s activity
            self.applying, self.announcement = False, publication
            return
        if self.data.version >= 2:
            await workflow.execute_local_activity_method(
                Effects.commit,
                publication,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
        else:
            await self._legacy(LegacyActivities.publish, publication)

    async def _call(
        self,
        method: Callable[[Any, In], Awaitable[Out]],
        input: In,
        *,
        local: bool = False,
        retry: RetryPolicy = ACTIVITY_RETRY,
    ) -> Out:
        if self.data.version < 3:
            old = getattr(LegacyActivities, method.__name__)  # the same name, positional args
            result: Out = await self._legacy(old, *input.args(), local=local, retry=retry)
            return result
        if local:
            return await workflow.execute_local_activity_method(
                method, input, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
            )
        return await workflow.execute_activity_method(
            method, input, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
        )

    async def _legacy(
        self,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        local: bool = False,
        retry: RetryPolicy = ACTIVITY_RETRY,
    ) -> Any:
        if local and self.data.version >= 2:
            return await workflow.execute_local_activity_method(
                method, args=list(args), start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
            )
        return await workflow.execute_activity_method(
            method, args=list(args), start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
        )


def refuse(error: BizError | None) -> None:
    """Raise a refusal (if any) as an ApplicationError typed with its code (R-ERR-3)."""
    if error is not None:
        raise ApplicationError(error.message, error.details, type=error.code, non_retryable=True)
