"""The console's plumbing: the session cookie, who is calling and in which scope, forms, flash
messages, and rendering pages.

Sessions live on the server (services/sessions.py): the cookie holds a random id, logout ends
the session, and each session has a CSRF token that every form must send back.

A page or action declares its caller with `Session` (any logged-in member) or `ServiceSession`
(the same, plus the `{svc}` of its path resolved against the catalog): without a session the
browser goes to the login page; an unknown service is a Korean error page. Actions are plain form
posts answered by a redirect (post/redirect/get) carrying a one-time flash message.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import Caller, runtime_of
from api.console.labels import FILTERS, GLOBALS, humanize
from api.runtime import Runtime
from domain.catalog import Service
from domain.errors import BizError
from services.models import MemberOut

templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
templates.env.filters.update(FILTERS)
templates.env.globals.update(GLOBALS)

SESSION_COOKIE = "bizsupport_session"
LOGIN_CSRF_COOKIE = "bizsupport_login_csrf"
FLASH_COOKIE = "bizsupport_flash"
SESSION_SECONDS = 8 * 3600
LOGIN = "/console/login"

Form = dict[str, list[str]]
Flash = dict[str, Any]


# ── who is calling ───────────────────────────────────────────────────────────────────────────


class LoginRequired(Exception):
    """No console session: the browser is sent to the login page."""


class PageRefused(Exception):
    """A refusal while resolving a page's scope: answered with the Korean error page."""

    def __init__(self, scope: Scope | None, error: BizError) -> None:
        super().__init__(error.code)
        self.scope = scope
        self.error = error


@dataclass(frozen=True)
class Scope:
    """A logged-in member of a workplace, the runtime the console calls, and the session's
    CSRF token that every form of it must send back."""

    rt: Runtime
    who: Caller
    workplace_id: str
    member_id: str
    csrf: str
    member: MemberOut  # as the directory says, read once per request


@dataclass(frozen=True)
class ServiceScope(Scope):
    service: Service


async def member_scope(request: Request) -> Scope:
    """The session behind the cookie (server-side, ended by logout), with the member's role
    read from the directory now: a member who left has no session."""
    rt = runtime_of(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise LoginRequired
    session = await rt.sessions.find(session_id)
    if session is None:
        raise LoginRequired
    member = session.member
    who = Caller(member_id=member.member_id, workplace_id=member.workplace_id, role=member.role)
    return Scope(rt, who, member.workplace_id, member.member_id, session.csrf_token, member)


async def service_scope(svc: str, scope: Annotated[Scope, Depends(member_scope)]) -> ServiceScope:
    try:
        service = scope.rt.authz.service(svc)
    except BizError as err:
        raise PageRefused(scope, err) from err
    fields = {f.name: getattr(scope, f.name) for f in dataclass_fields(scope)}
    return ServiceScope(**fields, service=service)


Session = Annotated[Scope, Depends(member_scope)]
ServiceSession = Annotated[ServiceScope, Depends(service_scope)]


async def start_session(
    request: Request, rt: Runtime, workplace_id: str, member_id: str, target: str
) -> RedirectResponse:
    """A new server-side session for a verified member; the cookie holds only its random id.
    Logging in again ends the session this browser had."""
    session_id = await rt.sessions.open(
        workplace_id,
        member_id,
        lifetime=timedelta(seconds=SESSION_SECONDS),
        replacing=request.cookies.get(SESSION_COOKIE),
    )
    response = redirect(target)
    _set_cookie(request, response, SESSION_COOKIE, session_id, SESSION_SECONDS)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


async def end_session(request: Request, response: Response) -> None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        await runtime_of(request).sessions.end(session_id)
    response.delete_cookie(SESSION_COOKIE)


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, and Secure whenever the console is served over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def login_csrf_token(request: Request) -> str:
    """The CSRF token of the login forms (no session yet): kept in a cookie the form echoes."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def keep_login_csrf(request: Request, response: Response, token: str) -> None:
    _set_cookie(request, response, LOGIN_CSRF_COOKIE, token, SESSION_SECONDS)


def install(app: FastAPI) -> None:
    async def to_login(request: Request, exc: Exception) -> Response:
        return redirect(LOGIN)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        return await error_page(request, exc.scope, exc.error)

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


async def read_form(request: Request, csrf: str) -> Form:
    """An urlencoded form body of this console: from this site, carrying the CSRF token of the
    session (or of the login page). Anything else changes nothing."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise BizError("FORBIDDEN", needs="a request from this console")
    body = (await request.body()).decode("utf-8", errors="replace")
    form = parse_qs(body, keep_blank_values=True)
    if not csrf or not hmac.compare_digest(one(form, "csrf").encode(), csrf.encode()):
        raise BizError("FORBIDDEN", needs="a form of this console")
    return form


def same_site_path(url: str | None, default: str = "/console") -> str:
    """A redirect target taken from a request (e.g. Referer) as a path of this console only:
    never another origin, never a scheme-relative `//host` path."""
    if not url:
        return default
    parts = urlsplit(url)
    path = parts.path
    if not path.startswith("/console") or path.startswith("//") or "\\" in path:
        return default
    return path + (f"?{parts.query}" if parts.query else "")


def one(form: Form, name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0] if values else default


async def act(
    request: Request,
    scope: Scope,
    back: str,
    action: Callable[[Form], Awaitable[Flash | None]],
    remember: Callable[[], Flash] = dict,
) -> Response:
    """A form action: run it, then back to `back` with the outcome (or the refusal, with what
    `remember` gives, e.g. the change to confirm) as a one-time flash message."""
    try:
        flash = await action(await read_form(request, scope.csrf))
    except BizError as err:
        return redirect(back, refusal_flash(err, **remember()))
    return redirect(back, flash)


# ── pages ────────────────────────────────────────────────────────────────────────────────────


async def page(
    request: Request, template: str, scope: Scope | None, code: int = 200, **context: Any
) -> HTMLResponse:
    rt = runtime_of(request)
    who = scope.who if scope is not None else None
    workplace = menu = None
    if scope is not None:
        workplace = await rt.directory.workplace(scope.workplace_id)
        # the top bar's service buttons; a page that has the menu already passes it
        menu = context.pop("menu", None) or await rt.access.menu(
            scope.workplace_id, scope.member_id
        )
    clock = await rt.sandbox.now() if rt.sandbox is not None else None
    response = templates.TemplateResponse(
        request,
        template,
        {
            "who": who,
            "me": scope.member if scope is not None else None,
            "menu": menu,
            "workplace": workplace,
            "sandbox_now": clock,
            "flash": take_flash(request),
            "catalog": rt.catalog,
            "csrf": scope.csrf if scope is not None else context.pop("csrf", ""),
            **context,
        },
        status_code=code,
    )
    response.delete_cookie(FLASH_COOKIE)
    return response


async def error_page(request: Request, scope: Scope | None, err: BizError) -> HTMLResponse:
    return await page(request, "error.html", scope, code=err.status, error=err)


async def guarded(
    request: Request, scope: Scope, render: Callable[[], Awaitable[Response]]
) -> Response:
    """A page whose refusals show as the Korean error page."""
    try:
        return await render()
    except BizError as err:
        return await error_page(request, scope, err)
