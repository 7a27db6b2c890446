"""Effects of the subscription workflow. Thin: each calls store/ or partners/, idempotently.

Every write is keyed by a business key (subscription id, period, event sequence) with a unique
constraint behind it, so a retried or replayed activity writes once. Business time comes in as
an argument (the workflow's clock); activities never read the wall clock for decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.billing import Invoice
from domain.subscription import Application, Publication
from partners.gateway import DeletionCount, MemberCourses, PartnerGateway, PartnerRefusal
from store import directory, ledger, permissions, subscriptions
from store.db import Pool


class SubscriptionActivities:
    def __init__(self, pool: Pool, partner: PartnerGateway) -> None:
        self.pool = pool
        self.partner = partner

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.record_application,
            self.provision,
            self.publish,
            self.commit,
            self.present_members,
            self.sync_usage_holders,
            self.suspend_partner_account,
            self.courses_in_progress,
            self.change_partner_plan,
            self.reset_learning_records,
            self.issue_invoice,
            self.delete_subscription_data,
        ]

    @activity.defn
    async def record_application(self, app: Application, at: datetime) -> datetime | None:
        """Store the terms agreement (R-APPLY-2) and the applicant's manager role (R-APPLY-4).

        Returns when the predecessor subscription was cancelled, for R-BILL-2.
        """
        await subscriptions.record_terms_agreement(
            self.pool,
            subscription_id=app.subscription_id,
            workplace_id=app.workplace_id,
            service_id=app.service_id,
            terms_version=app.terms_version,
            agreed_by=app.applicant_id,
            agreed_at=at,
        )
        await permissions.grant_manager(
            self.pool, app.workplace_id, app.service_id, app.applicant_id, by=app.applicant_id
        )
        found: datetime | None = await subscriptions.predecessor_cancelled_at(
            self.pool, app.subscription_id
        )
        return found

    @activity.defn
    async def provision(self, app: Application, at: datetime) -> None:
        """R-LIFE-2: create the partner account and register SSO; transient faults retry."""
        try:
            await self.partner.provision(
                subscription_id=app.subscription_id,
                workplace_id=app.workplace_id,
                service_id=app.service_id,
                plan_id=app.plan_id,
                at_iso=at.isoformat(),
            )
        except PartnerRefusal as refusal:
            raise ApplicationError(
                refusal.reason, type="PARTNER_REFUSED", non_retryable=True
            ) from refusal

    @activity.defn
    async def publish(self, publication: Publication) -> None:
        """Version 1: the snapshot and audit entry, after the decision's own effect activity."""
        await subscriptions.publish(self.pool, publication)

    @activity.defn
    async def commit(self, publication: Publication) -> None:
        """Version 2: all of one decision's database writes in one transaction; run as a local
        activity (short, keyed writes that are safe to repeat)."""
        await subscriptions.commit(self.pool, publication)

    @activity.defn
    async def present_members(self, workplace_id: str) -> list[str]:
        return await directory.present_member_ids(self.pool, workplace_id)

    @activity.defn
    async def sync_usage_holders(
        self, subscription_id: str, holders: list[str], at: datetime
    ) -> None:
        await permissions.set_usage_holders(self.pool, subscription_id, holders, at)

    @activity.defn
    async def suspend_partner_account(self, subscription_id: str, at: datetime) -> None:
        await self.partner.suspend(subscription_id=subscription_id, at_iso=at.isoformat())

    @activity.defn
    async def courses_in_progress(self, subscription_id: str) -> list[MemberCourses]:
        return await self.partner.courses_in_progress(subscription_id=subscription_id)

    @activity.defn
    async def change_partner_plan(
        self, subscription_id: str, plan_id: str, stop_courses: bool, at: datetime
    ) -> int:
        return await self.partner.change_plan(
            subscription_id=subscription_id,
            plan_id=plan_id,
            stop_courses=stop_courses,
            at_iso=at.isoformat(),
        )

    @activity.defn
    async def reset_learning_records(self, subscription_id: str, member_id: str) -> int:
        return await self.partner.reset_learning_records(
            subscription_id=subscription_id, member_id=member_id
        )

    @activity.defn
    async def issue_invoice(self, app: Application, invoice: Invoice, at: datetime) -> str:
        return await ledger.issue_invoice(
            self.pool,
            subscription_id=app.subscription_id,
            workplace_id=app.workplace_id,
            service_id=app.service_id,
            invoice=invoice,
            issued_at=at,
        )

    @activity.defn
    async def delete_subscription_data(self, subscription_id: str, at: datetime) -> int:
        """R-CANCEL-2: partner-side data, then local usage data and the deletion record."""
        done = await ledger.deletion_record(self.pool, subscription_id)
        if done is not None:
            return int(done["partner_objects"]) + int(done["local_rows"])
        partner: DeletionCount = await self.partner.delete_data(subscription_id=subscription_id)
        record = await ledger.delete_local_data(
            self.pool,
            subscription_id=subscription_id,
            deleted_at=at,
            partner_objects=partner.partner_objects,
            partner_details=partner.details,
        )
        return int(record["partner_objects"]) + int(record["local_rows"])
