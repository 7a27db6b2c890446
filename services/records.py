"""A cancelled subscription's records and its deletion notice (R-EVENT-4, R-CANCEL-2).

From the cancellation until the data deletion, the representative admin and admins holding
`subscription.cancel` on the service can download the subscription's records: its status, its
issued invoices (as `…/invoices` shows them) and its audit entries (as `…/audit-log` shows
them; the API words them as 이용 내역 too). From 7 days before the deletion the console shows
them a notice naming what will be deleted and when. When each is offered is domain/records.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from domain.errors import BizError
from domain.permissions import SUBSCRIPTION_CANCEL, holds
from domain.records import days_left, deletion_notice_shown, records_refusal
from services.billing import issued_invoice
from services.models import AuditEntryOut, InvoiceOut, Out, SubscriptionOut, Time
from services.subscriptions import SubscriptionService
from store import audit, directory, ledger, permissions, subscriptions
from store.subscriptions import SubscriptionRow


@dataclass(frozen=True)
class SubscriptionRecords:
    """What the download holds, before the API words and formats it."""

    subscription: SubscriptionOut
    invoices: list[InvoiceOut]
    audit: list[AuditEntryOut]
    names: dict[str, str]  # present members' names by id (the usage history names people)


class DeletionNoticeOut(Out):
    """A cancelled subscription whose data is deleted within 7 days (the console's notice)."""

    subscription_id: str
    service_id: str
    cancelled_at: Time | None
    data_deletion_at: Time
    days_left: int


class RecordsService:
    def __init__(self, subscriptions: SubscriptionService) -> None:
        self.subscriptions = subscriptions
        self.pool = subscriptions.pool
        self.authz = subscriptions.authz

    async def records(
        self, *, workplace_id: str, service_id: str, subscription_id: str, actor_id: str
    ) -> SubscriptionRecords:
        """The subscription's records, while they can be downloaded (domain.records): 404
        NO_SUBSCRIPTION for another service's or workplace's id, RECORDS_NOT_YET_AVAILABLE
        before the cancellation, RECORDS_DELETED from the deletion on."""
        self.authz.service(service_id)
        await self.authz.require(workplace_id, service_id, actor_id, SUBSCRIPTION_CANCEL)
        row = await subscriptions.by_id(self.pool, subscription_id)
        if row is None or (row.workplace_id, row.service_id) != (workplace_id, service_id):
            raise BizError("NO_SUBSCRIPTION", service_id=service_id)
        refusal = await self._refusal(row)
        if refusal is not None:
            raise refusal
        invoices = await ledger.invoices_for(self.pool, workplace_id, service_id)
        entries = await audit.entries(
            self.pool, workplace_id, service_id, subscription_id, limit=None
        )
        members = await directory.present_members(self.pool, workplace_id)
        return SubscriptionRecords(
            subscription=await self.subscriptions.view(row),
            invoices=[issued_invoice(i) for i in invoices if i.subscription_id == subscription_id],
            audit=[AuditEntryOut.model_validate(e) for e in entries],
            names={m.member_id: m.name for m in members},
        )

    async def downloadable(
        self, workplace_id: str, actor_id: str, row: SubscriptionRow | SubscriptionOut
    ) -> bool:
        """Whether the caller may download the subscription's records now (the console's
        links): the same rule and permission `records` checks."""
        may_cancel = await self._may_cancel(workplace_id, actor_id)
        if not may_cancel(row.service_id):
            return False
        return await self._refusal(row) is None

    async def deletion_notices(
        self, workplace_id: str, actor_id: str, service_id: str | None = None
    ) -> list[DeletionNoticeOut]:
        """The cancelled subscriptions (of `service_id`, or all) whose data is deleted within
        7 days, for a caller holding `subscription.cancel` on their service; none for others."""
        may_cancel = await self._may_cancel(workplace_id, actor_id)
        now = await self.subscriptions.clock()
        return [
            DeletionNoticeOut(
                subscription_id=row.subscription_id,
                service_id=row.service_id,
                cancelled_at=row.cancelled_at,
                data_deletion_at=row.data_deletion_at,
                days_left=days_left(row.data_deletion_at, now),
            )
            for row in await subscriptions.for_workplace(self.pool, workplace_id)
            if (service_id is None or row.service_id == service_id)
            and row.data_deletion_at is not None
            and may_cancel(row.service_id)
            and deletion_notice_shown(
                state=row.state,
                data_deletion_at=row.data_deletion_at,
                purged_at=row.purged_at,
                now=now,
            )
        ]

    async def _may_cancel(self, workplace_id: str, actor_id: str) -> Callable[[str], bool]:
        """Whether the caller holds `subscription.cancel` on a service (R-PERM-3)."""
        member = await self.authz.actor(workplace_id, actor_id)
        held = await permissions.management_of(self.pool, workplace_id, actor_id)
        return lambda svc: holds(member.role, held.get(svc, set()), SUBSCRIPTION_CANCEL)

    async def _refusal(self, row: SubscriptionRow | SubscriptionOut) -> BizError | None:
        return records_refusal(
            subscription_id=row.subscription_id,
            state=row.state,
            data_deletion_at=row.data_deletion_at,
            purged_at=row.purged_at,
            now=await self.subscriptions.clock(),
        )
