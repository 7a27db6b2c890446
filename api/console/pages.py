"""The console's pages (GET): 업무 지원 home, a service's 사용 안내 / 사용 현황, 이용 요금 조회,
이용 내역, 권한 관리, and the member's service menu. Each calls the service layer as the member."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.session import ServiceSession, Session, guarded, page
from domain.errors import BizError
from domain.subscription import DATA_RETENTION
from services import billing
from statemachines.lifecycle import LIVE_STATES
from store import directory

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("")
async def home(request: Request, s: Session) -> Response:
    async def render() -> Response:
        cards = await s.rt.access.home_cards(s.workplace_id, s.member_id)
        services = {svc.service_id: svc for svc in s.rt.catalog.services}
        return await page(request, "home.html", s, cards=cards, services=services)

    return await guarded(request, s, render)


async def _usage_context(s: ServiceSession) -> dict[str, Any]:
    context: dict[str, Any] = {"status": None, "usage": None, "usage_error": None}
    service_id = s.service.service_id
    try:
        status = await s.rt.subscriptions.status(
            workplace_id=s.workplace_id, service_id=service_id, actor_id=s.member_id
        )
        usage = await s.rt.access.usage_permissions(s.workplace_id, service_id, s.member_id)
    except BizError as err:
        if err.code != "NO_SUBSCRIPTION":
            context["usage_error"] = err
        return context
    context.update(status=status, usage=usage)
    return context


@router.get("/services/{svc}")
async def service_page(request: Request, s: ServiceSession, tab: str = "guide") -> Response:
    async def render() -> Response:
        context = await _usage_context(s)
        status = context["status"]
        live = status is not None and status.state in LIVE_STATES
        members = await directory.present_members(s.rt.pool, s.workplace_id)
        usage = context["usage"]
        now = await s.rt.business_now()
        return await page(
            request,
            "service.html",
            s,
            service=s.service,
            tab="usage" if tab == "usage" else "guide",
            live=live,
            can_apply=not live,
            members=members,
            names={m["member_id"]: m["name"] for m in members},
            holders={h.member_id for h in usage.holders} if usage else set(),
            plan_names={p.plan_id: p.name_ko for p in s.service.plans},
            deletion_preview=now + DATA_RETENTION,
            business_now=now,
            open_dialog=request.query_params.get("open"),
            **context,
        )

    return await guarded(request, s, render)


@router.get("/services/{svc}/invoices")
async def invoices_page(request: Request, s: ServiceSession) -> Response:
    async def render() -> Response:
        found = await billing.invoices(
            s.rt.subscriptions,
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
            plan_names={p.plan_id: p.name_ko for p in s.service.plans},
        )

    return await guarded(request, s, render)


async def _history(request: Request, s: Session, service_id: str | None) -> Response:
    async def render() -> Response:
        service = s.rt.authz.service(service_id) if service_id else None
        entries = await s.rt.access.audit_log(s.workplace_id, s.member_id, service_id, 300)
        members = await directory.present_members(s.rt.pool, s.workplace_id)
        return await page(
            request,
            "history.html",
            s,
            service=service,
            entries=list(reversed(entries)),
            names={m["member_id"]: m["name"] for m in members},
        )

    return await guarded(request, s, render)


@router.get("/services/{svc}/history")
async def service_history(request: Request, s: ServiceSession) -> Response:
    return await _history(request, s, s.service.service_id)


@router.get("/history")
async def workplace_history(request: Request, s: Session) -> Response:
    return await _history(request, s, None)


@router.get("/permissions")
async def permissions_page(request: Request, s: Session) -> Response:
    async def render() -> Response:
        listing = await s.rt.access.management_permissions(s.workplace_id, s.member_id)
        members = await directory.present_members(s.rt.pool, s.workplace_id)
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
            admins=[m for m in members if m["role"] == "admin"],
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
