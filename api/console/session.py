"""The console's plumbing: the session cookie, who is calling and in which scope, forms, flash
messages, and rendering pages.

A page or action declares its caller with `Session` (any logged-in member) or `ServiceSession`
(the same, plus the `{svc}` of its path resolved against the catalog): without a session the
browser goes to the login page; an unknown service is a Korean error page. Actions are plain form
posts answered by a redirect (post/redirect/get) carrying a one-time flash message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import Caller, authenticate, runtime_of
from api.console.labels import FILTERS, GLOBALS, humanize
from api.runtime import Runtime
from domain.catalog import Service
from domain.errors import BizError
from store import directory

templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
templates.env.filters.update(FILTERS)
templates.env.globals.update(GLOBALS)

SESSION_COOKIE = "bizsupport_console"
FLASH_COOKIE = "bizsupport_flash"
SESSION_SECONDS = 8 * 3600
LOGIN = "/console/login"

Form = dict[str, list[str]]
Flash = dict[str, Any]


# ── who is calling ───────────────────────────────────────────────────────────────────────────


async def session_caller(request: Request) -> Caller | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        who = await authenticate(runtime_of(request), token)
    except BizError:
        return None
    return None if who.system else who


class LoginRequired(Exception):
    """No console session: the browser is sent to the login page."""


class PageRefused(Exception):
    """A refusal while resolving a page's scope: answered with the Korean error page."""

    def __init__(self, who: Caller | None, error: BizError) -> None:
        super().__init__(error.code)
        self.who = who
        self.error = error


@dataclass(frozen=True)
class Scope:
    """A logged-in member of a workplace, and the runtime the console calls."""

    rt: Runtime
    who: Caller
    workplace_id: str
    member_id: str


@dataclass(frozen=True)
class ServiceScope(Scope):
    service: Service


async def member_scope(request: Request) -> Scope:
    who = await session_caller(request)
    if who is None or who.workplace_id is None or who.member_id is None:
        raise LoginRequired
    return Scope(runtime_of(request), who, who.workplace_id, who.member_id)


async def service_scope(svc: str, scope: Annotated[Scope, Depends(member_scope)]) -> ServiceScope:
    try:
        service = scope.rt.authz.service(svc)
    except BizError as err:
        raise PageRefused(scope.who, err) from err
    return ServiceScope(scope.rt, scope.who, scope.workplace_id, scope.member_id, service)


Session = Annotated[Scope, Depends(member_scope)]
ServiceSession = Annotated[ServiceScope, Depends(service_scope)]


def install(app: FastAPI) -> None:
    async def to_login(request: Request, exc: Exception) -> Response:
        return redirect(LOGIN)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        return await error_page(request, exc.who, exc.error)

    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(PageRefused, refused)


# ── flash messages, redirects, forms ─────────────────────────────────────────────────────────


def _encode_flash(flash: Flash) -> str:
    return base64.urlsafe_b64encode(json.dumps(flash, ensure_ascii=False).encode()).decode()


def take_flash(request: Request) -> Flash | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        flash: Flash = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    return flash


def redirect(url: str, flash: Flash | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash is not None:
        response.set_cookie(
            FLASH_COOKIE, _encode_flash(flash), max_age=60, httponly=True, samesite="strict"
        )
    return response


def ok(text: str) -> Flash:
    return {"level": "ok", "text": text}


def refusal_flash(err: BizError, **extra: Any) -> Flash:
    details = {k: v for k, v in err.details.items() if not isinstance(v, (list, dict))}
    return {
        "level": "error",
        "text": humanize(err.message_ko),
        "code": err.code,
        "details": details,
        **extra,
    }


async def read_form(request: Request) -> Form:
    """An urlencoded form body (the console's forms), checked to come from this site."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise BizError("FORBIDDEN", needs="a request from this console")
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=True)


def one(form: Form, name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


async def act(
    request: Request,
    back: str,
    action: Callable[[Form], Awaitable[Flash | None]],
    remember: Callable[[], Flash] = dict,
) -> Response:
    """A form action: run it, then back to `back` with the outcome (or the refusal, with what
    `remember` gives, e.g. the change to confirm) as a one-time flash message."""
    try:
        flash = await action(await read_form(request))
    except BizError as err:
        return redirect(back, refusal_flash(err, **remember()))
    return redirect(back, flash)


# ── pages ────────────────────────────────────────────────────────────────────────────────────


async def page(
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
            "flash": take_flash(request),
            "catalog": rt.catalog,
            **context,
        },
        status_code=code,
    )
    response.delete_cookie(FLASH_COOKIE)
    return response


async def error_page(request: Request, who: Caller | None, err: BizError) -> HTMLResponse:
    return await page(request, "error.html", who, code=err.status, error=err)


async def guarded(
    request: Request, who: Caller, render: Callable[[], Awaitable[Response]]
) -> Response:
    """A page whose refusals show as the Korean error page."""
    try:
        return await render()
    except BizError as err:
        return await error_page(request, who, err)
