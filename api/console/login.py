"""Logging in and out of the console: a member's bearer token, or (the local dev stack only) a
member of the demo workplace picked from a list, with no password.

The demo login is a door with no lock, so it opens only when it was switched on
(BIZSUPPORT_DEMO_LOGIN, set by `make run` for its embedded stack), only to the demo workplace's
people, and only to a browser on this machine talking to a server listening on loopback.
Every login attempt counts against the client's rate limit.
"""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.auth import authenticate, runtime_of
from api.console.session import (
    LOGIN,
    LOGIN_CSRF_COOKIE,
    end_session,
    keep_login_csrf,
    login_csrf_token,
    ok,
    one,
    page,
    read_form,
    redirect,
    refusal_flash,
    start_session,
)
from api.ratelimit import rate_limit_of
from api.runtime import Runtime
from domain.errors import BizError
from services.models import MemberOut, WorkplaceInfo

router = APIRouter(prefix="/console", include_in_schema=False)


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_workplace(request: Request) -> str | None:
    """The workplace whose people the demo login offers, or None when it is closed here."""
    rt = runtime_of(request)
    server = request.scope.get("server")
    client = request.client.host if request.client else None
    if rt.demo_workplace is None or not server or not _loopback(server[0]):
        return None
    return rt.demo_workplace if _loopback(client) else None


@router.get("/login")
async def login_page(request: Request) -> Response:
    rt = runtime_of(request)
    demo = demo_workplace(request)
    members: list[MemberOut] = []
    workplace: WorkplaceInfo | None = None
    if demo is not None:
        workplace = await rt.directory.workplace(demo)
        members = await rt.directory.present_members(demo) if workplace else []
    csrf = login_csrf_token(request)
    response = await page(
        request,
        "login.html",
        None,
        csrf=csrf,
        demo=demo is not None,
        chosen=workplace,
        members=members,
    )
    keep_login_csrf(request, response, csrf)
    return response


async def _target(rt: Runtime, workplace_id: str, member_id: str) -> str:
    menu = await rt.access.menu(workplace_id, member_id)
    return "/console" if menu.business_support_admin else "/console/me"


@router.post("/login")
async def login_demo(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        rate_limit_of(request).check(request)
        form = await read_form(request, request.cookies.get(LOGIN_CSRF_COOKIE, ""))
        demo = demo_workplace(request)
        if demo is None:
            raise BizError("FORBIDDEN", needs="the demo login of a local stack")
        member_id = one(form, "member_id")
        if await rt.directory.member(demo, member_id) is None:
            raise BizError("UNKNOWN_MEMBER", member_id=member_id)
        return await start_session(request, rt, demo, member_id, await _target(rt, demo, member_id))
    except BizError as err:
        return redirect(LOGIN, refusal_flash(err))


@router.post("/login/token")
async def login_token(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        rate_limit_of(request).check(request)
        form = await read_form(request, request.cookies.get(LOGIN_CSRF_COOKIE, ""))
        who = await authenticate(rt, one(form, "token").strip())
        if who.system or who.workplace_id is None or who.member_id is None:
            raise BizError("FORBIDDEN", needs="a member token")
        target = await _target(rt, who.workplace_id, who.member_id)
        return await start_session(request, rt, who.workplace_id, who.member_id, target)
    except BizError as err:
        return redirect(LOGIN, refusal_flash(err))


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session on the server: the old cookie no longer opens anything."""
    response = redirect(LOGIN, ok("로그아웃했습니다."))
    await end_session(request, response)
    return response
