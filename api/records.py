"""A cancelled subscription's records download (R-EVENT-4; docs/rules.md, "Deletion notices and
records download").

    GET /v1/workplaces/{wp}/services/{svc}/subscriptions/{subscription_id}/records?format=json|csv

`json` (the default): `{"subscription", "invoices", "usage_history", "audit"}` — the status as
`…/subscription` answers it, the issued invoices as `…/invoices`, the 이용 내역 rows as the console
words them, and the audit entries as `…/audit-log`. `csv`: a zip of `subscription.csv`,
`invoices.csv` (one row per invoice line), `usage_history.csv` (the page's Korean columns) and
`audit.csv` (details as JSON), each UTF-8 with a byte-order mark so that Excel reads the Korean.
The console's download links (`/console/services/{svc}/records/{subscription_id}?format=`, here
too) answer with the same files.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import Member
from api.console.labels import ACTION_KO, OUTCOME_KO, actor_ko, describe, fmt_time
from api.console.session import ServiceSession, guarded
from api.errors import responses
from api.v1 import PathId, Rt, actor_on_service
from domain.audit import AuditAction
from domain.catalog import Catalog
from services.models import AuditEntryOut, InvoiceOut, Out, SubscriptionOut, Time
from services.records import SubscriptionRecords

router = APIRouter()

RecordsFormat = Literal["json", "csv"]


class UsageHistoryEntryOut(Out):
    """One row of 이용 내역 as the console shows it (R-BILL-8)."""

    at: Time
    action: AuditAction
    action_ko: str
    actor: str
    actor_name: str
    outcome: str
    outcome_ko: str
    description: str


class RecordsOut(Out):
    subscription: SubscriptionOut
    invoices: list[InvoiceOut]
    usage_history: list[UsageHistoryEntryOut]
    audit: list[AuditEntryOut]


# invoices.csv: one row per invoice line, the invoice's own fields repeated on each.
INVOICE_COLUMNS = [
    "invoice_id",
    "subscription_id",
    "period",
    "issued_at",
    "plan_id",
    "from",
    "to",
    "days",
    "seats",
    "amount",
    "subtotal",
    "vat",
    "total",
]
# usage_history.csv: the 이용 내역 page's columns.
HISTORY_COLUMNS = ["일시(KST)", "내용", "처리자", "결과", "상세"]
ZIP_CONTENT = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


@router.get(
    "/v1/workplaces/{wp}/services/{svc}/subscriptions/{subscription_id}/records",
    response_model=None,
    tags=["business support"],
    responses={
        200: {
            "model": RecordsOut,
            "content": ZIP_CONTENT,
            "description": "The records: JSON, or with `format=csv` a zip of CSV files.",
        },
        **responses(403, 404),
    },
)
async def records(
    wp: PathId,
    svc: PathId,
    subscription_id: PathId,
    who: Member,
    rt: Rt,
    format: Annotated[RecordsFormat, Query()] = "json",
) -> Response:
    """A cancelled subscription's invoices, usage history and audit, from its cancellation until
    its data deletion (representative admin, or `subscription.cancel` on the service)."""
    actor = actor_on_service(rt, who, wp, svc)
    found = await rt.records.records(
        workplace_id=wp, service_id=svc, subscription_id=subscription_id, actor_id=actor
    )
    return download(found, rt.catalog, format)


@router.get("/console/services/{svc}/records/{subscription_id}", include_in_schema=False)
async def console_records(
    request: Request, s: ServiceSession, subscription_id: str, format: str = "json"
) -> Response:
    """The console's download links: the same file, as the logged-in member (a refusal shows
    the Korean error page)."""

    async def fetch() -> Response:
        found = await s.rt.records.records(
            workplace_id=s.workplace_id,
            service_id=s.service.service_id,
            subscription_id=subscription_id,
            actor_id=s.member_id,
        )
        return download(found, s.rt.catalog, "csv" if format == "csv" else "json")

    return await guarded(request, s, fetch)


def download(found: SubscriptionRecords, catalog: Catalog, format: RecordsFormat) -> Response:
    """The records as a file to save (Content-Disposition names it)."""
    body = records_body(found, catalog)
    status = found.subscription
    name = f"bizsupport-{status.service_id}-{status.subscription_id}-records"
    if format == "csv":
        content, media, name = csv_archive(body), "application/zip", f"{name}.zip"
    else:
        text = json.dumps(body.model_dump(mode="json", by_alias=True), ensure_ascii=False)
        content, media, name = text.encode(), "application/json", f"{name}.json"
    disposition = f'attachment; filename="{name}"'
    return Response(content, media_type=media, headers={"Content-Disposition": disposition})


def records_body(found: SubscriptionRecords, catalog: Catalog) -> RecordsOut:
    plans = {p.plan_id: p.name_ko for svc in catalog.services for p in svc.plans}
    history = [
        UsageHistoryEntryOut(
            at=e.at,
            action=e.action,
            action_ko=ACTION_KO.get(e.action, "기타"),
            actor=e.actor,
            actor_name=actor_ko(e.actor, found.names),
            outcome=e.outcome,
            outcome_ko=OUTCOME_KO.get(e.outcome, e.outcome),
            description=describe(e.action, e.details, found.names, plans),
        )
        for e in found.audit
    ]
    return RecordsOut(
        subscription=found.subscription,
        invoices=found.invoices,
        usage_history=history,
        audit=found.audit,
    )


def csv_archive(body: RecordsOut) -> bytes:
    """The zip of CSV files (module docstring)."""
    invoice_rows = []
    for invoice in body.invoices:
        whole = invoice.model_dump(mode="json", by_alias=True)
        lines = whole.pop("lines")
        for line in lines:
            invoice_rows.append({**whole, **line})
    history_rows = [
        dict(
            zip(
                HISTORY_COLUMNS,
                (fmt_time(e.at), e.action_ko, e.actor_name, e.outcome_ko, e.description),
                strict=True,
            )
        )
        for e in body.usage_history
    ]
    files = {
        "subscription.csv": [body.subscription.model_dump(mode="json", by_alias=True)],
        "invoices.csv": invoice_rows,
        "usage_history.csv": history_rows,
        "audit.csv": [e.model_dump(mode="json") for e in body.audit],
    }
    columns = {
        "invoices.csv": INVOICE_COLUMNS,
        "usage_history.csv": HISTORY_COLUMNS,
        "audit.csv": list(AuditEntryOut.model_fields),
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, rows in files.items():
            zipped.writestr(name, _csv(rows, columns.get(name)))
    return archive.getvalue()


def _csv(rows: list[dict[str, Any]], columns: list[str] | None) -> bytes:
    """A CSV file of `rows` (`columns`, else the first row's keys), UTF-8 with a BOM so that
    Excel reads it as UTF-8."""
    text = io.StringIO()
    names = columns if columns is not None else (list(rows[0]) if rows else [])
    writer = csv.DictWriter(text, fieldnames=names, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return ("\ufeff" + text.getvalue()).encode()


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value
