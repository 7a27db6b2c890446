"""The console's actions (form posts): apply, change or withdraw a plan change, cancel, grant and
revoke usage permission, set management permissions, open a service, move the sandbox clock,
and the webhook endpoints (create, rotate, delete, resend a delivery).
Each calls the service layer as the member and answers with a redirect and a flash message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.labels import PERMISSION_KO, fmt_time
from api.console.pages import webhooks_view
from api.console.session import (
    Flash,
    Form,
    ServiceSession,
    Session,
    act,
    ok,
    one,
    read_form,
    redirect,
    refusal_flash,
    same_site_path,
    templates,
)
from domain.errors import BizError

router = APIRouter(prefix="/console", include_in_schema=False)


def _back(s: ServiceSession, tab: str = "usage") -> str:
    return f"/console/services/{quote(s.service.service_id)}?tab={tab}"


@router.post("/services/{svc}/apply")
async def apply(request: Request, s: ServiceSession) -> Response:
    async def action(form: Form) -> Flash:
        status = await s.rt.subscriptions.apply(
            workplace_id=s.workplace_id,
            service_id=s.service.service_id,
            actor_id=s.member_id,
            plan_id=one(form, "plan_id") or None,
            terms_version=one(form, "terms_version"),
            agree_terms=one(form, "agree_terms") == "on",
        )
        if status.state == "cancelled":
            return {
                "level": "error",
                "text": f"제휴사가 신청을 거절했습니다: {status.cancel_reason}",
            }
        return ok(f"{s.service.name_ko} 서비스를 신청했습니다.")

    # a refusal keeps the application popup open, with the reason in it
    return await act(request, s, _back(s), action, lambda: {"dialog": "apply-dialog"})


@router.post("/services/{svc}/plan-change")
async def change_plan(request: Request, s: ServiceSession) -> Response:
    pending: dict[str, Any] = {}

    async def action(form: Form) -> Flash:
        plan_id = one(form, "plan_id")
        when: Literal["now", "next_window"] = (
            "next_window" if one(form, "when") == "next_window" else "now"
        )
        pending.update(plan_id=plan_id, when=when)
        status = await s.rt.subscriptions.change_plan(
            workplace_id=s.workplace_id,
            service_id=s.service.service_id,
            actor_id=s.member_id,
            plan_id=plan_id,
            when=when,
            confirm_course_reset=one(form, "confirm_course_reset") == "1",
        )
        if when == "next_window" and status.scheduled_plan_change is not None:
            at = fmt_time(status.scheduled_plan_change.at)
            return ok(f"상품 변경을 예약했습니다({at} 적용).")
        return ok("신청 상품을 변경했습니다.")

    # a refusal for courses in progress reopens the popup to confirm this change (R-PLAN-5)
    return await act(request, s, _back(s), action, lambda: {"pending": pending})


@router.post("/services/{svc}/plan-change/withdraw")
async def withdraw_plan_change(request: Request, s: ServiceSession) -> Response:
    async def action(form: Form) -> Flash:
        await s.rt.subscriptions.withdraw_plan_change(
            workplace_id=s.workplace_id, service_id=s.service.service_id, actor_id=s.member_id
        )
        return ok("예약된 상품 변경을 취소했습니다.")

    return await act(request, s, _back(s), action)


@router.post("/services/{svc}/cancel")
async def cancel(request: Request, s: ServiceSession) -> Response:
    async def action(form: Form) -> Flash:
        status = await s.rt.subscriptions.cancel(
            workplace_id=s.workplace_id, service_id=s.service.service_id, actor_id=s.member_id
        )
        return ok(
            "이용을 해지했습니다. 모든 데이터는 "
            f"{fmt_time(status.data_deletion_at)}에 영구 삭제되며, "
            "현재까지의 사용 요금은 다음 달에 청구됩니다."
        )

    return await act(request, s, _back(s), action)


@router.post("/services/{svc}/usage/{member_id}")
async def set_usage(request: Request, s: ServiceSession, member_id: str) -> Response:
    async def action(form: Form) -> Flash:
        grant = one(form, "action") != "revoke"
        await s.rt.subscriptions.set_usage(
            workplace_id=s.workplace_id,
            service_id=s.service.service_id,
            actor_id=s.member_id,
            member_id=member_id,
            grant=grant,
        )
        return ok("사용 권한을 부여했습니다." if grant else "사용 권한을 회수했습니다.")

    return await act(request, s, _back(s), action)


@router.post("/permissions/{svc}/{member_id}")
async def set_permissions(request: Request, s: ServiceSession, member_id: str) -> Response:
    async def action(form: Form) -> Flash:
        wanted = [p for p in PERMISSION_KO if p in form.get("permission", [])]
        await s.rt.access.set_management_permissions(
            s.workplace_id, s.service.service_id, member_id, wanted, s.member_id
        )
        return ok("관리 권한을 저장했습니다.")

    return await act(request, s, "/console/permissions", action)


@router.post("/me/launch/{svc}")
async def launch(request: Request, s: ServiceSession) -> Response:
    """Open the partner service: the launch token travels in an auto-submitted POST form, never
    in a URL (URLs reach access logs and browser history)."""
    try:
        await read_form(request, s.csrf)
        opened = await s.rt.access.launch(
            s.workplace_id, s.member_id, s.service.service_id, datetime.now(UTC)
        )
    except BizError as err:
        return redirect("/console/me", refusal_flash(err))
    return templates.TemplateResponse(
        request,
        "launch.html",
        {"launch_url": _local(opened.launch_url), "token": opened.token, "service": s.service},
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _local(url: str) -> str:
    """The launch URL as a path on this host when it points at our own landing page."""
    parts = urlsplit(url)
    if parts.path == "/sso/launch":
        return f"{parts.path}?{parts.query}" if parts.query else parts.path
    return url


@router.post("/sandbox/advance")
async def sandbox_advance(request: Request, s: Session) -> Response:
    """The sandbox clock is shared by every tenant: like the API, only a system token moves it
    (POST /v1/sandbox/clock/advance). The console refuses, and says how."""

    async def action(form: Form) -> Flash:
        if s.rt.sandbox is None:
            raise BizError("SANDBOX_ONLY")
        raise BizError("FORBIDDEN", needs="a system token")

    return await act(request, s, same_site_path(request.headers.get("referer")), action)


# ── webhooks (R-EVENT-2) ─────────────────────────────────────────────────────────────────────

WEBHOOKS = "/console/webhooks"


@router.post("/webhooks")
async def create_webhook(request: Request, s: Session) -> Response:
    """The new endpoint's secret is shown on the answer itself, never in a cookie or a URL."""
    try:
        form = await read_form(request, s.csrf)
        made = await s.rt.webhooks.create(
            s.workplace_id,
            s.member_id,
            url=one(form, "url").strip(),
            types=form.get("type") or None,
            description=one(form, "description").strip(),
        )
    except BizError as err:
        return redirect(WEBHOOKS, refusal_flash(err))
    shown = (made.endpoint_id, made.secret)
    return await webhooks_view(request, s, shown=shown, flash=ok("웹훅 엔드포인트를 등록했습니다."))


@router.post("/webhooks/{endpoint_id}/rotate")
async def rotate_webhook_secret(request: Request, s: Session, endpoint_id: str) -> Response:
    try:
        await read_form(request, s.csrf)
        rotated = await s.rt.webhooks.rotate(s.workplace_id, s.member_id, endpoint_id)
    except BizError as err:
        return redirect(WEBHOOKS, refusal_flash(err))
    until = fmt_time(rotated.previous_secret_retires_at)
    return await webhooks_view(
        request,
        s,
        shown=(endpoint_id, rotated.secret),
        flash=ok(f"서명 키를 교체했습니다. 이전 키도 {until}까지 함께 서명합니다."),
    )


@router.post("/webhooks/{endpoint_id}/delete")
async def delete_webhook(request: Request, s: Session, endpoint_id: str) -> Response:
    async def action(form: Form) -> Flash:
        await s.rt.webhooks.delete(s.workplace_id, s.member_id, endpoint_id)
        return ok("웹훅 엔드포인트를 삭제했습니다.")

    return await act(request, s, WEBHOOKS, action)


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend")
async def resend_webhook(
    request: Request, s: Session, endpoint_id: str, delivery_id: str
) -> Response:
    async def action(form: Form) -> Flash:
        await s.rt.webhooks.resend(s.workplace_id, s.member_id, endpoint_id, delivery_id)
        return ok("다시 보내도록 예약했습니다. 곧 전송됩니다.")

    return await act(request, s, WEBHOOKS, action)
