"""Logging in and out of the console: a member's bearer token, or (local stacks) a demo member."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from api.auth import Caller, authenticate, runtime_of
from api.console.session import (
    LOGIN,
    SESSION_COOKIE,
    SESSION_SECONDS,
    ok,
    one,
    page,
    read_form,
    redirect,
    refusal_flash,
)
from api.runtime import Runtime
from domain.errors import BizError
from domain.tokens import mint_access_token
from store import directory

router = APIRouter(prefix="/console", include_in_schema=False)


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
    return await page(
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
    assert who.workplace_id is not None and who.member_id is not None
    menu = await rt.access.menu(who.workplace_id, who.member_id)
    response = redirect("/console" if menu.business_support_admin else "/console/me")
    response.set_cookie(
        SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict"
    )
    return response


@router.post("/login")
async def login_demo(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        form = await read_form(request)
        if not rt.demo_login:
            raise BizError("FORBIDDEN", needs="demo login enabled")
        wp, member_id = one(form, "workplace_id"), one(form, "member_id")
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
        return redirect(LOGIN, refusal_flash(err))


@router.post("/login/token")
async def login_token(request: Request) -> Response:
    rt = runtime_of(request)
    try:
        token = one(await read_form(request), "token").strip()
        who = await authenticate(rt, token)
        if who.system:
            raise BizError("FORBIDDEN", needs="a member token")
        return await _start_session(rt, token, who)
    except BizError as err:
        return redirect(LOGIN, refusal_flash(err))


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = redirect(LOGIN, ok("로그아웃했습니다."))
    response.delete_cookie(SESSION_COOKIE)
    return response
