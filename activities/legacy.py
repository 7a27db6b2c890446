"""Versions 1 and 2's activities, under the names and positional arguments their runs call.

A version-1 or version-2 run keeps calling these until its next continue-as-new moves it to the
current version (docs/architecture.md, "Versions"), and a worker deployed while one of them is in
flight must still run it: they stay registered until no version-1 or version-2 run remains. Each
is the current typed effect (activities/effects.py) called with its input model, except the
three only version 1 calls (`publish`, `sync_usage_holders`, `issue_invoice`), whose writes the
later versions make in `commit`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity

import domain.effects as fx
from activities.effects import Effects
from domain.billing import Invoice
from domain.subscription import Application, Publication
from partners.gateway import MemberCourses
from store import ledger, permissions, subscriptions


class LegacyActivities:
    def __init__(self, current: Effects) -> None:
        self.current = current
        self.pool = current.pool

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.record_application,
            self.provision,
            self.publish,
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
        return await self.current.record_application(fx.RecordApplication(application=app, at=at))

    @activity.defn
    async def provision(self, app: Application, at: datetime) -> None:
        await self.current.provision(fx.Provision(application=app, at=at))

    @activity.defn
    async def publish(self, publication: Publication) -> None:
        """Version 1: the snapshot and audit entry, after the decision's own effect activity."""
        await subscriptions.publish(self.pool, publication)

    @activity.defn
    async def present_members(self, workplace_id: str) -> list[str]:
        return await self.current.present_members(fx.PresentMembers(workplace_id=workplace_id))

    @activity.defn
    async def sync_usage_holders(
        self, subscription_id: str, holders: list[str], at: datetime
    ) -> None:
        await permissions.set_usage_holders(self.pool, subscription_id, holders, at)

    @activity.defn
    async def suspend_partner_account(self, subscription_id: str, at: datetime) -> None:
        await self.current.suspend_partner_account(
            fx.SuspendPartnerAccount(subscription_id=subscription_id, at=at)
        )

    @activity.defn
    async def courses_in_progress(self, subscription_id: str) -> list[MemberCourses]:
        return await self.current.courses_in_progress(
            fx.CoursesInProgress(subscription_id=subscription_id)
        )

    @activity.defn
    async def change_partner_plan(
        self, subscription_id: str, plan_id: str, stop_courses: bool, at: datetime
    ) -> int:
        return await self.current.change_partner_plan(
            fx.ChangePartnerPlan(
                subscription_id=subscription_id, plan_id=plan_id, stop_courses=stop_courses, at=at
            )
        )

    @activity.defn
    async def reset_learning_records(self, subscription_id: str, member_id: str) -> int:
        return await self.current.reset_learning_records(
            fx.ResetLearningRecords(subscription_id=subscription_id, member_id=member_id)
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
        return await self.current.delete_subscription_data(
            fx.DeleteSubscriptionData(subscription_id=subscription_id, at=at)
        )
