"""이용 요금 조회 (R-BILL-7): issued invoices and the current month's estimate, per service.

The answer is `GET …/invoices`'s body, ready for JSON: money is a string of whole won, line
days are inclusive Asia/Seoul dates (`from`, `to`), instants are ISO 8601 in Seoul time.
Issued invoices come from the ledger (never recomputed: R-BILL-6); the estimate is computed from
the live subscription's own billing state, read from its workflow, with the same arithmetic the
workflow uses for the invoice it will issue.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from domain.billing import Invoice, compute_invoice, lines_json, whole_won
from domain.calendar import period_of
from domain.permissions import USAGE_VIEW
from domain.subscription import SubscriptionData
from services.models import EstimateOut, InvoiceOut, InvoicesOut
from services.subscriptions import SubscriptionService
from statemachines.lifecycle import ENDED_STATES, LIVE_STATES
from store import ledger, subscriptions
from store.ledger import InvoiceRow
from store.subscriptions import SubscriptionRow
from workflows.subscription import SubscriptionWorkflow


class BillingService:
    """Fees as an admin sees them: on the subscription service's pool, workflows and clock."""

    def __init__(self, subscriptions: SubscriptionService) -> None:
        self.subscriptions = subscriptions
        self.pool = subscriptions.pool

    async def invoices(self, *, workplace_id: str, service_id: str, actor_id: str) -> InvoicesOut:
        """Every issued invoice of every subscription of the workplace to the service, oldest
        period first, and the live subscription's estimate for the current month (or null)."""
        authz = self.subscriptions.authz
        authz.service(service_id)
        await authz.require(workplace_id, service_id, actor_id, USAGE_VIEW)
        rows = await ledger.invoices_for(self.pool, workplace_id, service_id)
        current = await subscriptions.current(self.pool, workplace_id, service_id)
        return InvoicesOut(
            invoices=[issued_invoice(row) for row in rows],
            estimate=await self.estimate(current),
            final_charge=await self.final_charge(current),
        )

    async def estimate(self, row: SubscriptionRow | None) -> EstimateOut | None:
        """R-BILL-7: the invoice this month would get if plan and seats stayed as they are, for
        the workplace's current subscription to the service (its read-model row).

        None when no subscription is live, when it has no billing state yet (not active), or
        when the month has no billable day for it (R-BILL-2: billing starts the next day).
        """
        if row is None or row.state not in LIVE_STATES:
            return None
        data = await self._data(row.subscription_id)
        if data.billing is None or data.state not in LIVE_STATES:
            return None
        return _charge(data, period_of(await self.subscriptions.clock()))

    async def final_charge(self, row: SubscriptionRow | None) -> EstimateOut | None:
        """R-CANCEL-3, R-BILL-2: after a cancellation, the final invoice still to come
        (prorated to the cancellation day) until it is issued; None otherwise."""
        if row is None or row.state not in ENDED_STATES or row.final_invoice_at is None:
            return None
        try:
            data = await self._data(row.subscription_id)
        except (RPCError, WorkflowQueryFailedError):  # finished: the final invoice was issued
            return None
        period = data.next_invoice_period
        if data.billing is None or data.cancelled_at is None or period is None:
            return None
        if await ledger.is_issued(self.pool, data.subscription_id, period):
            return None  # issued a moment ago; the workflow has not moved on yet
        return _charge(data, period)

    async def _data(self, subscription_id: str) -> SubscriptionData:
        """The subscription's own billing state, read from its workflow."""
        handle = self.subscriptions.handle(subscription_id)
        data = await handle.query(SubscriptionWorkflow.data_query)
        if not isinstance(data, SubscriptionData):  # a converter without type hints gives a dict
            data = SubscriptionData.model_validate(data)
        return data


def _charge(data: SubscriptionData, period: str) -> EstimateOut | None:
    """What the period's invoice comes to, with the arithmetic the workflow issues it with."""
    assert data.billing is not None
    invoice = compute_invoice(data.billing, period, data.application.fees)
    if invoice is None:
        return None
    return EstimateOut.model_validate(
        {"subscription_id": data.subscription_id, **_amounts(invoice)}
    )


def _amounts(invoice: Invoice) -> dict[str, Any]:
    return {
        "period": invoice.period,
        "lines": lines_json(line.model_dump() for line in invoice.lines),
        "subtotal": whole_won(invoice.subtotal),
        "vat": whole_won(invoice.vat),
        "total": whole_won(invoice.total),
    }


def issued_invoice(row: InvoiceRow) -> InvoiceOut:
    """An issued invoice as `…/invoices` shows it (and the invoice.issued event carries it)."""
    return InvoiceOut.model_validate(row.shown())
