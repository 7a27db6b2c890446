"""The console's pages (GET): 업무 지원 home, a service's 사용 안내 / 사용 현황, 이용 요금 조회,
이용 내역, 권한 관리, 웹훅, and the member's service menu. Each calls the service layer as the
member."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.labels import describe
from api.console.session import Flash, ServiceSession, Session, guarded, page, redirect
from domain.subscription import DATA_RETENTION
from statemachines.lifecycle import LIVE_STATES

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def home(request: Request, s: Session) -> Response:
    """업무 지원 home; a member without any management permission has their service menu."""
    menu = await s.rt.access.menu(s.workplace_id, s.member_id)
    if not menu.business_support_admin:
        return redirect("/console/me")

    async def render() -> Response:
        cards = await s.rt.access.home_cards(s.workplace_id, s.member_id)
        services = {svc.service_id: svc for svc in s.rt.catalog.services}
        notices = await s.rt.records.deletion_notices(s.workplace_id, s.member_id)
        return await page(
            request,
            "home.html",
            s,
            cards=cards,
            services=services,
            menu=menu,
            deletion_notices=notices,
        )

    return await guarded(request, s, render)


@router.get("/services")
async def services_page(request: Request, s: Session) -> Response:
    """업무 지원 > 업무 지원 서비스: the services and their state, the manual's second way in."""

    async def render() -> Response:
        cards = await s.rt.access.home_cards(s.workplace_id, s.member_id)
        return await page(request, "services.html", s, cards=cards)

    return await guarded(request, s, render)


@router.get("/services/{svc}")
async def service_page(request: Request, s: ServiceSession, tab: str = "guide") -> Response:
    async def render() -> Response:
        overview = await s.rt.access.service_overview(
            s.workplace_id, s.service.service_id, s.member_id
        )
        members = await s.rt.directory.present_members(s.workplace_id)
        now = await s.rt.business_now()
        status = overview.status
        svc = s.service.service_id
        notices = await s.rt.records.deletion_notices(s.workplace_id, s.member_id, svc)
        records = status is not None and await s.rt.records.downloadable(
            s.workplace_id, s.member_id, status
        )
        return await page(
            request,
            "service.html",
            s,
            service=s.service,
            tab="usage" if tab == "usage" else "guide",
            overview=overview,
            status=status,
            usage=overview.usage,
            live=status is not None and status.state in LIVE_STATES,
            members=members,
            names={m.member_id: m.name for m in members},
            holders={h.member_id for h in overview.usage.holders} if overview.usage else set(),
            plan_names={p.plan_id: p.name_ko for p in s.service.plans},
            deletion_preview=now + DATA_RETENTION,
            deletion_notices=notices,
            records_downloadable=records,
            business_now=now,
            open_dialog=request.query_params.get("open"),
        )

    return await guarded(request, s, render)


@router.get("/services/{svc}/invoices")
async def invoices_page(request: Request, s: ServiceSession) -> Response:
    async def render() -> Response:
        found = await s.rt.billing.invoices(
            workplace_id=s.workplace_id,
            service_id=s.service.service_id,
            actor_id=s.member_id,
        )
        return await page(
            request,
            "invoices.html",
            s,
            service=s.service,
            invoices=list(reversed(found.invoices)),
            estimate=found.estimate,
            final_charge=found.final_charge,
            plan_names={p.plan_id: p.name_ko for p in s.service.plans},
        )

    return await guarded(request, s, render)


async def _history(
    request: Request, s: Session, service_id: str | None, *, workplace_wide: bool
) -> Response:
    """이용 내역 (R-BILL-8), automatic grants included; the workplace-wide page can be filtered
    by service and by person."""
    person = request.query_params.get("member") or None

    async def render() -> Response:
        service = s.rt.authz.service(service_id) if service_id else None
        entries = await s.rt.access.audit_log(s.workplace_id, s.member_id, service_id, 1000)
        if person:
            entries = [
                e
                for e in entries
                if person in (e.actor, e.details.get("member_id"))
                or person in (e.details.get("usage_granted") or [])
            ]
        members = await s.rt.directory.present_members(s.workplace_id)
        names = {m.member_id: m.name for m in members}
        plans = {p.plan_id: p.name_ko for svc in s.rt.catalog.services for p in svc.plans}
        rows = [(e, describe(e.action, e.details, names, plans)) for e in reversed(entries[-300:])]
        return await page(
            request,
            "history.html",
            s,
            service=service,
            rows=rows,
            names=names,
            members=members,
            workplace_wide=workplace_wide,
            chosen_service=service_id or "",
            chosen_member=person or "",
        )

    return await guarded(request, s, render)


@router.get("/services/{svc}/history")
async def service_history(request: Request, s: ServiceSession) -> Response:
    return await _history(request, s, s.service.service_id, workplace_wide=False)


@router.get("/history")
async def workplace_history(request: Request, s: Session) -> Response:
    return await _history(
        request, s, request.query_params.get("service") or None, workplace_wide=True
    )


@router.get("/permissions")
async def permissions_page(request: Request, s: Session) -> Response:
    async def render() -> Response:
        listing = await s.rt.access.management_permissions(s.workplace_id, s.member_id)
        members = await s.rt.directory.present_members(s.workplace_id)
        held: dict[tuple[str, str], set[str]] = {}
        for entry in listing.services:
            for perm in entry.permissions:
                for holder in perm.holders:
                    if not holder.implicit:
                        key = (entry.service_id, holder.member_id)
                        held.setdefault(key, set()).add(perm.permission)
        return await page(
            request,
            "permissions.html",
            s,
            listing=listing.services,
            admins=[m for m in members if m.role == "admin"],
            held=held,
            services={svc.service_id: svc for svc in s.rt.catalog.services},
        )

    return await guarded(request, s, render)


@router.get("/me")
async def me_page(request: Request, s: Session) -> Response:
    async def render() -> Response:
        menu = await s.rt.access.menu(s.workplace_id, s.member_id)
        return await page(request, "me.html", s, menu=menu)

    return await guarded(request, s, render)


WEBHOOK_RECENT_DELIVERIES = 10


async def webhooks_view(
    request: Request,
    s: Session,
    *,
    shown: tuple[str, str] | None = None,
    flash: Flash | None = None,
) -> Response:
    """웹훅 (R-EVENT-2; representative admin): the endpoints with their recent deliveries.
    `shown`: an endpoint id and its secret, shown this once (a creation or a rotation), on a
    page that is not stored anywhere."""

    async def render() -> Response:
        listing = await s.rt.webhooks.endpoints(s.workplace_id, s.member_id)
        deliveries = {
            e.endpoint_id: await s.rt.webhooks.deliveries(
                s.workplace_id, s.member_id, e.endpoint_id, limit=WEBHOOK_RECENT_DELIVERIES
            )
            for e in listing.endpoints
        }
        extra: dict[str, Any] = {"flash": flash} if flash is not None else {}
        answer = await page(
            request,
            "webhooks.html",
            s,
            endpoints=listing.endpoints,
            deliveries=deliveries,
            shown=shown,
            **extra,
        )
        if shown is not None:
            answer.headers["Cache-Control"] = "no-store"
        return answer

    return await guarded(request, s, render)


@router.get("/webhooks")
async def webhooks_page(request: Request, s: Session) -> Response:
    return await webhooks_view(request, s)
