"""Invoices (R-BILL-6) and deletion records (R-CANCEL-2): written once, never changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict

from psycopg.types.json import Jsonb

from domain.billing import Invoice, invoice_id, issued_invoice_json
from store.db import Conn, Pool, columns, fetch_all, fetch_one


class InvoiceLineJson(TypedDict):
    """A line of `invoices.lines` (jsonb): `domain.billing.InvoiceLine` as JSON."""

    plan_id: str
    from_day: str
    to_day: str
    days: int
    seats: int
    amount: str


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """An issued invoice (R-BILL-6): whole won, VAT included in `total`."""

    invoice_id: str
    subscription_id: str
    workplace_id: str
    service_id: str
    period: str
    issued_at: datetime
    lines: list[InvoiceLineJson]
    subtotal: Decimal
    vat: Decimal
    total: Decimal

    def shown(self) -> dict[str, Any]:
        """As `GET …/invoices` lists it and an `invoice.issued` event carries it."""
        return issued_invoice_json(
            invoice_id=self.invoice_id,
            subscription_id=self.subscription_id,
            period=self.period,
            issued_at=self.issued_at,
            lines=self.lines,
            subtotal=self.subtotal,
            vat=self.vat,
            total=self.total,
        )


class DeletionRecord(TypedDict):
    """What the 30-day deletion removed (R-CANCEL-2). A TypedDict rather than a dataclass only
    because the deletion activity reads it by key (`record["partner_objects"]`); `details` is
    `{"partner": {kind: count}, "local": {table: rows}}`."""

    subscription_id: str
    deleted_at: datetime
    partner_objects: int
    local_rows: int
    details: dict[str, dict[str, int]]


INVOICE = columns(InvoiceRow)
DELETION = ", ".join(DeletionRecord.__annotations__)


async def issue_invoice(
    pool: Pool,
    *,
    subscription_id: str,
    workplace_id: str,
    service_id: str,
    invoice: Invoice,
    issued_at: datetime,
) -> str:
    """Insert the month's invoice once; a retry finds the first one and changes nothing."""
    async with pool.connection() as conn:
        return await insert_invoice(
            conn,
            subscription_id=subscription_id,
            workplace_id=workplace_id,
            service_id=service_id,
            invoice=invoice,
            issued_at=issued_at,
        )


async def insert_invoice(
    conn: Conn,
    *,
    subscription_id: str,
    workplace_id: str,
    service_id: str,
    invoice: Invoice,
    issued_at: datetime,
) -> str:
    """`issue_invoice` on a connection the caller holds (and may be in a transaction on)."""
    issued = invoice_id(subscription_id, invoice.period)
    await conn.execute(
        "INSERT INTO invoices (invoice_id, subscription_id, workplace_id, service_id, period,"
        " issued_at, lines, subtotal, vat, total) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        " ON CONFLICT (subscription_id, period) DO NOTHING",
        (
            issued,
            subscription_id,
            workplace_id,
            service_id,
            invoice.period,
            issued_at,
            Jsonb([line.model_dump(mode="json") for line in invoice.lines]),
            invoice.subtotal,
            invoice.vat,
            invoice.total,
        ),
    )
    return issued


async def invoices_for(pool: Pool, workplace_id: str, service_id: str) -> list[InvoiceRow]:
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            InvoiceRow,
            f"SELECT {INVOICE} FROM invoices WHERE workplace_id = %s AND service_id = %s"
            " ORDER BY period, issued_at",
            (workplace_id, service_id),
        )


async def invoice_of(conn: Conn, subscription_id: str, period: str) -> InvoiceRow | None:
    """The subscription's invoice for the period, on the caller's connection (and transaction)."""
    return await fetch_one(
        conn,
        InvoiceRow,
        f"SELECT {INVOICE} FROM invoices WHERE subscription_id = %s AND period = %s",
        (subscription_id, period),
    )


async def is_issued(pool: Pool, subscription_id: str, period: str) -> bool:
    """Whether the subscription's invoice for the period is in the ledger (one per period)."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT 1 FROM invoices WHERE subscription_id = %s AND period = %s",
                (subscription_id, period),
            )
        ).fetchone()
        return row is not None


async def delete_local_data(
    pool: Pool,
    *,
    subscription_id: str,
    deleted_at: datetime,
    partner_objects: int,
    partner_details: dict[str, int],
) -> DeletionRecord:
    """Delete the subscription's local service data and record it, in one transaction.

    Invoices and the audit log are kept (R-CANCEL-2). Idempotent: a retry returns the record.
    """
    async with pool.connection() as conn, conn.transaction():
        existing = await fetch_one(
            conn,
            DeletionRecord,
            f"SELECT {DELETION} FROM deletion_records WHERE subscription_id = %s",
            (subscription_id,),
        )
        if existing is not None:
            return existing
        cur = await conn.execute(
            "DELETE FROM usage_permissions WHERE subscription_id = %s", (subscription_id,)
        )
        local_rows = cur.rowcount
        record = await fetch_one(
            conn,
            DeletionRecord,
            "INSERT INTO deletion_records (subscription_id, deleted_at, partner_objects,"
            f" local_rows, details) VALUES (%s, %s, %s, %s, %s) RETURNING {DELETION}",
            (
                subscription_id,
                deleted_at,
                partner_objects,
                local_rows,
                Jsonb({"partner": partner_details, "local": {"usage_permissions": local_rows}}),
            ),
        )
        assert record is not None
        return record


async def deletion_record(pool: Pool, subscription_id: str) -> DeletionRecord | None:
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            DeletionRecord,
            f"SELECT {DELETION} FROM deletion_records WHERE subscription_id = %s",
            (subscription_id,),
        )
