"""The workflow's effects as version 3 calls them: one input model each (domain/effects.py).

Thin: each calls store/ or partners/, idempotently. Every write is keyed by a business key
(subscription id, period, event sequence) with a unique constraint behind it, so a retried or
replayed activity writes once. Business time comes in with the input (the workflow's clock);
activities never read the wall clock for decisions.

The names end in `.v3`: versions 1 and 2 call the same effects under their old names with
positional arguments (activities/legacy.py), and both kinds stay registered while such runs live.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.effects import (
    Apply,
    ChangePartnerPlan,
    CoursesInProgress,
    DeleteSubscriptionData,
    PresentMembers,
    Provision,
    RecordApplication,
    ResetLearningRecords,
    SuspendPartnerAccount,
)
from domain.subscription import SYSTEM_ACTOR, Publication
from partners.gateway import (
    OPERATOR_RETRY,
    DeletionCount,
    MemberCourses,
    PartnerGateway,
    PartnerRefusal,
    PartnerRefusalUnsettled,
)
from store import audit, directory, ledger, subscriptions
from store.db import Pool

log = logging.getLogger(__name__)


@asynccontextmanager
async def refusal_awaits_operator(
    pool: Pool, operation: str, subscription_id: str, at: datetime
) -> AsyncIterator[None]:
    """A partner's refusal for good of a call an ended subscription cannot do without (the
    suspension, the deletion; docs/partners.md, "A refusal after the account exists"): an ALERT
    in the worker's log, `bizsupport_partner_calls{outcome="refused"}` (the gateway counts every
    call), one `partner_refused` audit entry per subscription and call with the partner's
    reason, and a slow retry (PartnerRefusalUnsettled) until an operator has settled it with
    the partner. The workflow sees only the call succeed in the end, as before."""
    try:
        yield
    except PartnerRefusal as refusal:
        log.error(
            "ALERT the partner refused %s of subscription %s for good: %s. The call is retried"
            " every %s until it succeeds: settle it with the partner.",
            operation,
            subscription_id,
            refusal.reason,
            OPERATOR_RETRY,
        )
        row = await subscriptions.by_id(pool, subscription_id)
        if row is not None:
            async with pool.connection() as conn:
                await audit.write(
                    conn,
                    event_key=f"{subscription_id}:partner_refused:{operation}",
                    at=at,
                    workplace_id=row.workplace_id,
                    service_id=row.service_id,
                    subscription_id=subscription_id,
                    actor=SYSTEM_ACTOR,
                    action="partner_refused",
                    outcome="refused",
                    details={"operation": operation, "reason": refusal.reason},
                )
        raise PartnerRefusalUnsettled(
            f"the partner refused {operation} of {subscription_id}: {refusal.reason}"
        ) from refusal


@contextmanager
def refusal_is_final() -> Iterator[None]:
    """A partner's refusal for good fails the activity at once, with the partner's reason, as
    PARTNER_REFUSED (not retried); the workflow decides what the refused step means."""
    try:
        yield
    except PartnerRefusal as refusal:
        raise ApplicationError(
            refusal.reason, type="PARTNER_REFUSED", non_retryable=True
        ) from refusal


class Effects:
    def __init__(self, pool: Pool, partner: PartnerGateway) -> None:
        self.pool = pool
        self.partner = partner

    def effects(self) -> list[Callable[..., Any]]:
        return [
            self.apply,
            self.record_application,
            self.provision,
            self.commit,
            self.present_members,
            self.suspend_partner_account,
            self.courses_in_progress,
            self.change_partner_plan,
            self.reset_learning_records,
            self.delete_subscription_data,
        ]

    @activity.defn(name="apply.v5")
    async def apply(self, input: Apply) -> datetime | None:
        """Version 5: the application's effects in one activity. First, in one transaction, the
        terms agreement (R-APPLY-2), the applicant's management role (R-APPLY-4) and the
        announcement that the subscription is applied for (R-LIFE-4: read model, audit entry,
        event); then the partner account (R-LIFE-2). Every write is keyed, so a retry after a
        partner fault repeats them harmlessly; a refusal fails it as PARTNER_REFUSED, after the
        announcement. Returns when the predecessor subscription was cancelled (R-BILL-2)."""
        async with self.pool.connection() as conn, conn.transaction():
            found = await subscriptions.record_application(conn, input.application, input.at)
            await subscriptions.commit_on(conn, input.announcement)
        await self.provision(Provision(application=input.application, at=input.at))
        return found

    @activity.defn(name="record_application.v3")
    async def record_application(self, input: RecordApplication) -> datetime | None:
        """Versions 1–4: the terms agreement (R-APPLY-2) and the applicant's management role
        (R-APPLY-4), in one transaction. Returns when the predecessor subscription was cancelled,
        for R-BILL-2."""
        async with self.pool.connection() as conn, conn.transaction():
            return await subscriptions.record_application(conn, input.application, input.at)

    @activity.defn(name="provision.v3")
    async def provision(self, input: Provision) -> None:
        """R-LIFE-2: create the partner account and register SSO; transient faults retry.
        Versions 1–4 call it as an activity of its own; version 5 from `apply`."""
        app = input.application
        with refusal_is_final():
            await self.partner.provision(
                subscription_id=app.subscription_id,
                workplace_id=app.workplace_id,
                service_id=app.service_id,
                plan_id=app.plan_id,
                at_iso=input.at.isoformat(),
            )

    @activity.defn
    async def commit(self, publication: Publication) -> None:
        """Versions 2 and 3: all of one decision's database writes in one transaction; run as a
        local activity (short, keyed writes that are safe to repeat). One name for both: its
        one argument was a model from the start."""
        await subscriptions.commit(self.pool, publication)

    @activity.defn(name="present_members.v3")
    async def present_members(self, input: PresentMembers) -> list[str]:
        return await directory.present_member_ids(self.pool, input.workplace_id)

    @activity.defn(name="suspend_partner_account.v3")
    async def suspend_partner_account(self, input: SuspendPartnerAccount) -> None:
        """R-CANCEL-1; transient faults retry, a refusal waits for an operator."""
        async with refusal_awaits_operator(self.pool, "suspend", input.subscription_id, input.at):
            await self.partner.suspend(
                subscription_id=input.subscription_id, at_iso=input.at.isoformat()
            )

    @activity.defn(name="courses_in_progress.v3")
    async def courses_in_progress(self, input: CoursesInProgress) -> list[MemberCourses]:
        return await self.partner.courses_in_progress(subscription_id=input.subscription_id)

    @activity.defn(name="change_partner_plan.v3")
    async def change_partner_plan(self, input: ChangePartnerPlan) -> int:
        """R-PLAN-8, R-PARTNER-2: a partner's refusal ends the change at once (the workflow
        audits it as failed with the partner's reason, the month not used up); transient faults
        retry."""
        with refusal_is_final():
            return await self.partner.change_plan(
                subscription_id=input.subscription_id,
                plan_id=input.plan_id,
                stop_courses=input.stop_courses,
                at_iso=input.at.isoformat(),
            )

    @activity.defn(name="reset_learning_records.v3")
    async def reset_learning_records(self, input: ResetLearningRecords) -> int:
        return await self.partner.reset_learning_records(
            subscription_id=input.subscription_id, member_id=input.member_id
        )

    @activity.defn(name="delete_subscription_data.v3")
    async def delete_subscription_data(self, input: DeleteSubscriptionData) -> int:
        """R-CANCEL-2: partner-side data, then local usage data and the deletion record;
        transient faults retry, a refusal waits for an operator."""
        done = await ledger.deletion_record(self.pool, input.subscription_id)
        if done is not None:
            return int(done["partner_objects"]) + int(done["local_rows"])
        async with refusal_awaits_operator(
            self.pool, "delete_data", input.subscription_id, input.at
        ):
            partner: DeletionCount = await self.partner.delete_data(
                subscription_id=input.subscription_id
            )
        record = await ledger.delete_local_data(
            self.pool,
            subscription_id=input.subscription_id,
            deleted_at=input.at,
            partner_objects=partner.partner_objects,
            partner_details=partner.details,
        )
        return int(record["partner_objects"]) + int(record["local_rows"])
