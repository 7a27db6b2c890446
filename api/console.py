"""The Korean admin console (server-rendered) and the sandbox partner's SSO landing page.

It calls the same service layer as the API, as the logged-in member: the session cookie holds a
bearer token, checked like the API's (role from the directory, wall-clock expiry). Actions are
plain form posts answered by a redirect (post/redirect/get) carrying a one-time flash message;
every refusal shows its Korean message. JavaScript only opens and closes the popups.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import Caller, authenticate, runtime_of
from api.runtime import Runtime
from api.v1 import fetch_invoices
from domain.calendar import SEOUL
from domain.catalog import Service
from domain.errors import BizError
from domain.subscription import DATA_RETENTION
from domain.tokens import mint_access_token
from store import directory

router = APIRouter(prefix="/console", include_in_schema=False)
sso_router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

SESSION_COOKIE = "bizsupport_console"
FLASH_COOKIE = "bizsupport_flash"
SESSION_SECONDS = 8 * 3600

STATE_KO = {
    "not_applied": "미신청",
    "applied": "신청 처리 중",
    "active": "이용 중",
    "plan_changing": "상품 변경 중",
    "cancelled": "해지됨",
    "purged": "데이터 삭제됨",
}
ROLE_KO = {"representative_admin": "대표 관리자", "admin": "관리자", "member": "구성원"}
PERMISSION_KO = {
    "usage.view": "사용 현황·이용 내역·요금 조회",
    "usage.grant": "사용 권한 부여",
    "plan.change": "신청 상품 변경",
    "subscription.cancel": "이용 해지",
}
ACTION_KO = {
    "applied": "서비스 신청",
    "activated": "이용 시작",
    "refused": "신청 거절(제휴사)",
    "cancelled": "이용 해지",
    "purged": "데이터 영구 삭제",
    "plan_change_started": "상품 변경 시작",
    "plan_changed": "신청 상품 변경",
    "plan_change_failed": "상품 변경 실패",
    "plan_change_scheduled": "상품 변경 예약",
    "plan_change_withdrawn": "상품 변경 예약 취소",
    "plan_change_dropped": "예약된 상품 변경 취소(수강 중인 과정)",
    "usage_granted": "사용 권한 부여",
    "usage_revoked": "사용 권한 회수",
    "learning_records_reset": "학습 기록 초기화",
    "invoice_issued": "청구서 발행",
    "billing_closed": "청구 종료",
    "management_permissions_changed": "관리 권한 변경",
    "management_permissions_dropped": "관리 권한 해제",
    "member_joined": "구성원 추가",
    "member_left": "구성원 탈퇴",
    "member_role_changed": "역할 변경",
    "member_renamed": "이름 변경",
    "login_id_changed": "로그인 아이디 변경",
    "representative_changed": "대표 관리자 변경",
    "workplace_created": "워크플레이스 생성",
    "workplace_renamed": "워크플레이스 이름 변경",
}
OUTCOME_KO = {"ok": "완료", "refused": "거절", "failed": "실패", "dropped": "취소"}
BUTTON_KO = {
    "apply": "서비스 신청",
    "browse": "서비스 둘러보기",
    "manage": "서비스 관리",
    "inquire": "문의하기",
}


# ── formatting for the templates ─────────────────────────────────────────────────────────────


def _as_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def fmt_time(value: Any) -> str:
    moment = _as_time(value)
    return "-" if moment is None else moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M")


def fmt_date(value: Any) -> str:
    moment = _as_time(value)
    return "-" if moment is None else moment.astimezone(SEOUL).strftime("%Y년 %m월 %d일")


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)")


def humanize(text: str) -> str:
    """A refusal's Korean text with its ISO instants written as Seoul local times."""
    return _ISO.sub(lambda m: fmt_time(m.group(0).replace("Z", "+00:00")), text)


def won(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{int(Decimal(str(value))):,}원"


templates.env.filters.update(time=fmt_time, date=fmt_date, won=won, humanize=humanize)
templates.env.globals.update(
    STATE_KO=STATE_KO,
    ROLE_KO=ROLE_KO,
    PERMISSION_KO=PERMISSION_KO,
    ACTION_KO=ACTION_KO,
    OUTCOME_KO=OUTCOME_KO,
    BUTTON_KO=BUTTON_KO,
)


# ── session, flash, forms ────────────────────────────────────────────────────────────────────


async def _session(request: Request) -> Caller | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        who = await authenticate(runtime_of(request), token)
    except BizError:
        return None
    return None if who.system else who


def _encode_flash(flash: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(flash, ensure_ascii=False).encode()).decode()


def _take_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        flash: dict[str, Any] = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    return flash


def _redirect(url: str, flash: dict[str, Any] | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash is not None:
        response.set_cookie(
            FLASH_COOKIE, _encode_flash(flash), max_age=60, httponly=True, samesite="strict"
        )
    return response


def _refusal_flash(err: BizError, **extra: Any) -> dict[str, Any]:
    details = {k: v for k, v in err.details.items() if not isinstance(v, (list, dict))}
    text = humanize(err.message_ko)
    return {"level": "error", "text": text, "code": err.code, "details": details, **extra}


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (the console's forms), checked to come from this site."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise BizError("FORBIDDEN", needs="a request from this console")
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=True)


def _one(form: dict[str, list[str]], name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


async def _page(
    request: Request, template: str, who: Caller | None, code: int = 200, **context: Any
) -> HTMLResponse:
    rt = runtime_of(request)
    me = None
    if who is not None and who.workplace_id and who.member_id:
        me = await directory.member(rt.pool, who.workplace_id, who.member_id)
    workplace = None
    if who is not None and who.workplace_id:
        workplace = await directory.workplace(rt.pool, who.workplace_id)
    clock = await rt.sandbox.now() if rt.sandbox is not None else None
    response = templates.TemplateResponse(
        request,
        template,
        {
            "who": who,
            "me": me,
            "workplace": workplace,
            "sandbox_now": clock,
            "flash": _take_flash(request),
            "catalog": rt.catalog,
            **context,
        },
        status_code=code,
    )
    response.delete_cookie(FLASH_COOKIE)
    return response


async def _error_page(request: Request, who: Caller | None, err: BizError) -> HTMLResponse:
    return await _page(request, "error.html", who, code=err.status, error=err)


async def _guarded(request: Request, render: Callable[[Caller], Awaitable[Response]]) -> Response:
    """A page for a logged-in member: login when needed, refusals as a Korean error page."""
    who = await _session(request)
    if who is None:
        return _redirect("/console/login")
    try:
        return await render(who)
    except BizError as err:
        return await _error_page(request, who, err)


async def _act(
    request: Request,
    back: str,
    action: Callable[[Caller, dict[str, list[str]]], Awaitable[dict[str, Any] | None]],
    remember: Callable[[], dict[str, Any]] = dict,
) -> Response:
    """A form action: run it, then back to `back` with the outcome (or the refusal, with what
    `remember` gives, e.g. the change to confirm) as a one-time flash message."""
    who = await _session(request)
    if who is None:
        return _redirect("/console/login")
    try:
        form = await _form(request)
        flash = await action(who, form)
    except BizError as err:
        return _redirect(back, _refusal_flash(err, **remember()))
    return _redirect(back, flash)


def _ids(who: Caller) -> tuple[str, str]:
    assert who.workplace_id is not None and who.member_id is not None
    return who.workplace_id, who.member_id


def _ok(text: str) -> dict[str, Any]:
    return {"level": "ok", "text": text}


# ── login ────────────────────────────────────────────────────────────────────────────────────


@router.get("/login")
async def login_page(request: Request, wp: str | None = None) -> Response:
    rt = runtime_of(request)
    members: list[dict[str, Any]] = []
    workplaces: list[dict[str, Any]] = []
    chosen = None
    if rt.demo_login:
        workplaces = await directory.recent_workplaces(rt.pool)
        if wp:
            chosen = await directory.workplace(rt.pool, wp)
            members = await directory.present_members(rt.pool, wp) if chosen else []
    return await _page(
        request,
        "login.html",
        None,
        demo=rt.demo_login,
        workplaces=workplaces,
        chosen=chosen,
        wanted=wp or "",
        members=members,
    )


async def _start_session(rt: Runtime, token: str, who: Caller) -> RedirectResponse:
    wp, member_id = _ids(who)
    menu = await rt.access.menu(wp, member_id)
    target = "/console" if menu["business_support_admin"] else "/console/me"
    response = _redirect(target)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict"
    )
    return response


@router.post("/login")
async def login_demo(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        form = await _form(request)
        if not rt.demo_login:
            raise BizError("FORBIDDEN", needs="demo login enabled")
        wp, member_id = _one(form, "workplace_id"), _one(form, "member_id")
        if await directory.member(rt.pool, wp, member_id) is None:
            raise BizError("UNKNOWN_MEMBER", member_id=member_id)
        token = mint_access_token(
            rt.secret,
            member_id=member_id,
            workplace_id=wp,
            ttl_seconds=SESSION_SECONDS,
            now=datetime.now(UTC),
        )
        return await _start_session(rt, token, await authenticate(rt, token))
    except BizError as err:
        return _redirect("/console/login", _refusal_flash(err))


@router.post("/login/token")
async def login_token(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        token = _one(await _form(request), "token").strip()
        who = await authenticate(rt, token)
        if who.system:
            raise BizError("FORBIDDEN", needs="a member token")
        return await _start_session(rt, token, who)
    except BizError as err:
        return _redirect("/console/login", _refusal_flash(err))


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = _redirect("/console/login", _ok("로그아웃했습니다."))
    response.delete_cookie(SESSION_COOKIE)
    return response


# ── 업무 지원 home ───────────────────────────────────────────────────────────────────────────


@router.get("")
async def home(request: Request) -> Response:
    rt = runtime_of(request)

    async def render(who: Caller) -> Response:
        wp, member_id = _ids(who)
        cards = await rt.access.home_cards(wp, member_id)
        services = {s.service_id: s for s in rt.catalog.services}
        return await _page(request, "home.html", who, cards=cards, services=services)

    return await _guarded(request, render)


# ── a service: 사용 안내 / 사용 현황 ─────────────────────────────────────────────────────────


async def _usage_context(rt: Runtime, who: Caller, service: Service) -> dict[str, Any]:
    wp, member_id = _ids(who)
    context: dict[str, Any] = {"status": None, "usage": None, "usage_error": None}
    try:
        status = await rt.subscriptions.status(
            workplace_id=wp, service_id=service.service_id, actor_id=member_id
        )
        usage = await rt.access.usage_permissions(wp, service.service_id, member_id)
    except BizError as err:
        if err.code != "NO_SUBSCRIPTION":
            context["usage_error"] = err
        return context
    context.update(status=status, usage=usage)
    return context


@router.get("/services/{svc}")
async def service_page(request: Request, svc: str, tab: str = "guide") -> Response:
    rt = runtime_of(request)

    async def render(who: Caller) -> Response:
        service = rt.subscriptions.service(svc)
        wp, _member = _ids(who)
        context = await _usage_context(rt, who, service)
        status = context["status"]
        live = status is not None and status["state"] in ("applied", "active", "plan_changing")
        members = await directory.present_members(rt.pool, wp)
        names = {m["member_id"]: m["name"] for m in members}
        holders = {h["member_id"] for h in (context["usage"] or {}).get("holders", [])}
        now = await rt.business_now()
        return await _page(
            request,
            "service.html",
            who,
            service=service,
            tab="usage" if tab == "usage" else "guide",
            live=live,
            can_apply=not live,
            members=members,
            names=names,
            holders=holders,
            plan_names={p.plan_id: p.name_ko for p in service.plans},
            deletion_preview=now + DATA_RETENTION,
            business_now=now,
            open_dialog=request.query_params.get("open"),
            **context,
        )

    return await _guarded(request, render)


def _back(svc: str, tab: str = "usage") -> str:
    return f"/console/services/{quote(svc)}?tab={tab}"


@router.post("/services/{svc}/apply")
async def apply(request: Request, svc: str) -> Response:
    rt = runtime_of(request)

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        wp, member_id = _ids(who)
        service = rt.subscriptions.service(svc)
        status = await rt.subscriptions.apply(
            workplace_id=wp,
            service_id=svc,
            actor_id=member_id,
            plan_id=_one(form, "plan_id") or None,
            terms_version=_one(form, "terms_version"),
            agree_terms=_one(form, "agree_terms") == "on",
        )
        if status["state"] == "cancelled":
            return {
                "level": "error",
                "text": f"제휴사가 신청을 거절했습니다: {status['cancel_reason']}",
            }
        return _ok(f"{service.name_ko} 서비스를 신청했습니다.")

    return await _act(request, _back(svc), action)


@router.post("/services/{svc}/plan-change")
async def change_plan(request: Request, svc: str) -> Response:
    rt = runtime_of(request)
    pending: dict[str, Any] = {}

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        wp, member_id = _ids(who)
        plan_id = _one(form, "plan_id")
        when: Literal["now", "next_window"] = (
            "next_window" if _one(form, "when") == "next_window" else "now"
        )
        pending.update(plan_id=plan_id, when=when)
        status = await rt.subscriptions.change_plan(
            workplace_id=wp,
            service_id=svc,
            actor_id=member_id,
            plan_id=plan_id,
            when=when,
            confirm_course_reset=_one(form, "confirm_course_reset") == "1",
        )
        if when == "next_window" and status["scheduled_plan_change"]:
            at = fmt_time(status["scheduled_plan_change"]["at"])
            return _ok(f"상품 변경을 예약했습니다({at} 적용).")
        return _ok("신청 상품을 변경했습니다.")

    # a refusal for courses in progress reopens the popup to confirm this change (R-PLAN-5)
    return await _act(request, _back(svc), action, lambda: {"pending": pending})


@router.post("/services/{svc}/plan-change/withdraw")
async def withdraw_plan_change(request: Request, svc: str) -> Response:
    rt = runtime_of(request)

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        wp, member_id = _ids(who)
        await rt.subscriptions.withdraw_plan_change(
            workplace_id=wp, service_id=svc, actor_id=member_id
        )
        return _ok("예약된 상품 변경을 취소했습니다.")

    return await _act(request, _back(svc), action)


@router.post("/services/{svc}/cancel")
async def cancel(request: Request, svc: str) -> Response:
    rt = runtime_of(request)

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        wp, member_id = _ids(who)
        status = await rt.subscriptions.cancel(workplace_id=wp, service_id=svc, actor_id=member_id)
        return _ok(
            "이용을 해지했습니다. 모든 데이터는 "
            f"{fmt_time(status['data_deletion_at'])}에 영구 삭제되며, "
            "현재까지의 사용 요금은 다음 달에 청구됩니다."
        )

    return await _act(request, _back(svc), action)


@router.post("/services/{svc}/usage/{member_id}")
async def set_usage(request: Request, svc: str, member_id: str) -> Response:
    rt = runtime_of(request)

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        wp, actor = _ids(who)
        grant = _one(form, "action") != "revoke"
        await rt.subscriptions.set_usage(
            workplace_id=wp, service_id=svc, actor_id=actor, member_id=member_id, grant=grant
        )
        return _ok("사용 권한을 부여했습니다." if grant else "사용 권한을 회수했습니다.")

    return await _act(request, _back(svc), action)


# ── 이용 요금 조회 · 이용 내역 ────────────────────────────────────────────────────────────────


@router.get("/services/{svc}/invoices")
async def invoices_page(request: Request, svc: str) -> Response:
    rt = runtime_of(request)

    async def render(who: Caller) -> Response:
        wp, member_id = _ids(who)
        service = rt.subscriptions.service(svc)
        found = await fetch_invoices(rt, wp, svc, member_id)
        return await _page(
            request,
            "invoices.html",
            who,
            service=service,
            invoices=list(reversed(found["invoices"])),
            estimate=found["estimate"],
            plan_names={p.plan_id: p.name_ko for p in service.plans},
        )

    return await _guarded(request, render)


async def _history(request: Request, svc: str | None) -> Response:
    rt = runtime_of(request)

    async def render(who: Caller) -> Response:
        wp, member_id = _ids(who)
        service = rt.subscriptions.service(svc) if svc else None
        entries = await rt.access.audit_log(wp, member_id, svc, 300)
        members = await directory.present_members(rt.pool, wp)
        return await _page(
            request,
            "history.html",
            who,
            service=service,
            entries=list(reversed(entries)),
            names={m["member_id"]: m["name"] for m in members},
        )

    return await _guarded(request, render)


@router.get("/services/{svc}/history")
async def service_history(request: Request, svc: str) -> Response:
    return await _history(request, svc)


@router.get("/history")
async def workplace_history(request: Request) -> Response:
    return await _history(request, None)


# ── 권한 관리 ────────────────────────────────────────────────────────────────────────────────


@router.get("/permissions")
async def permissions_page(request: Request) -> Response:
    rt = runtime_of(request)

    async def render(who: Caller) -> Response:
        wp, member_id = _ids(who)
        listing = await rt.access.management_permissions(wp, member_id)
        members = await directory.present_members(rt.pool, wp)
        admins = [m for m in members if m["role"] == "admin"]
        held: dict[tuple[str, str], set[str]] = {}
        for entry in listing["services"]:
            for perm in entry["permissions"]:
                for holder in perm["holders"]:
                    if not holder["implicit"]:
                        key = (entry["service_id"], holder["member_id"])
                        held.setdefault(key, set()).add(perm["permission"])
        return await _page(
            request,
            "permissions.html",
            who,
            listing=listing["services"],
            admins=admins,
            held=held,
            services={s.service_id: s for s in rt.catalog.services},
        )

    return await _guarded(request, render)


@router.post("/permissions/{svc}/{member_id}")
async def set_permissions(request: Request, svc: str, member_id: str) -> Response:
    rt = runtime_of(request)

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        wp, actor = _ids(who)
        wanted = [p for p in PERMISSION_KO if p in form.get("permission", [])]
        await rt.access.set_management_permissions(wp, svc, member_id, wanted, actor)
        return _ok("관리 권한을 저장했습니다.")

    return await _act(request, "/console/permissions", action)


# ── member view: the top service menu and single sign-on ─────────────────────────────────────


@router.get("/me")
async def me_page(request: Request) -> Response:
    rt = runtime_of(request)

    async def render(who: Caller) -> Response:
        wp, member_id = _ids(who)
        menu = await rt.access.menu(wp, member_id)
        return await _page(request, "me.html", who, menu=menu)

    return await _guarded(request, render)


@router.post("/me/launch/{svc}")
async def launch(request: Request, svc: str) -> Response:
    rt = runtime_of(request)
    who = await _session(request)
    if who is None:
        return _redirect("/console/login")
    try:
        await _form(request)
        wp, member_id = _ids(who)
        opened = await rt.access.launch(wp, member_id, svc, datetime.now(UTC))
    except BizError as err:
        return _redirect("/console/me", _refusal_flash(err))
    return _redirect(_local(opened["launch_url"]))


def _local(url: str) -> str:
    """The launch URL as a path on this host when it points at our own landing page."""
    parts = urlsplit(url)
    if parts.path == "/sso/launch":
        return f"{parts.path}?{parts.query}"
    return url


@sso_router.get("/sso/launch")
async def sso_landing(request: Request, token: str = "", service: str = "") -> Response:
    """The sandbox partner: verifies the launch token (once) and shows who is logged in."""
    rt = runtime_of(request)
    try:
        verified = await rt.access.verify_launch(token, datetime.now(UTC))
    except BizError as err:
        return templates.TemplateResponse(
            request, "sso.html", {"error": err, "verified": None}, status_code=err.status
        )
    found = rt.catalog.service(verified["service_id"])
    member = await directory.member(rt.pool, verified["workplace_id"], verified["member_id"])
    return templates.TemplateResponse(
        request,
        "sso.html",
        {"error": None, "verified": verified, "service": found, "member": member},
    )


# ── sandbox clock (rehearsals) ───────────────────────────────────────────────────────────────


@router.post("/sandbox/advance")
async def sandbox_advance(request: Request) -> Response:
    rt = runtime_of(request)
    back = request.headers.get("referer") or "/console"
    back = urlsplit(back).path + (f"?{urlsplit(back).query}" if urlsplit(back).query else "")

    async def action(who: Caller, form: dict[str, list[str]]) -> dict[str, Any]:
        if rt.sandbox is None:
            raise BizError("SANDBOX_ONLY")
        if who.role != "representative_admin":
            raise BizError("NOT_REPRESENTATIVE_ADMIN")
        try:
            days = int(_one(form, "days", "1"))
        except ValueError:
            raise BizError("VALIDATION_ERROR", problem="days must be a whole number") from None
        if not 1 <= days <= 400:
            raise BizError("VALIDATION_ERROR", problem="days must be 1..400")
        now = await rt.sandbox.advance(days * 86_400)
        return _ok(f"샌드박스 시계를 {days}일 앞으로 옮겼습니다. 현재: {fmt_time(now)}")

    return await _act(request, back or "/console", action)
