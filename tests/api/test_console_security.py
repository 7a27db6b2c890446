"""The console's doors (security review): demo login, sessions, CSRF, redirects, single sign-on,
the shared sandbox clock, and rate limits. Each test failed before its fix."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

from api.app import create_app
from api.ratelimit import RateLimit
from api.runtime import Runtime
from tests.api.conftest import TERMS, bearer, console_login, csrf_of, token
from tests.conftest import Workplace


@asynccontextmanager
async def client_of(
    app: FastAPI, base_url: str = "http://127.0.0.1:8000", client: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(client, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http


def app_with(runtime: Runtime, **changes: object) -> FastAPI:
    app = create_app(dataclasses.replace(runtime, **changes))  # type: ignore[arg-type]
    app.state.rate_limit = RateLimit(attempts=100_000)
    return app


async def apply(http: httpx.AsyncClient, runtime: Runtime, wp: Workplace, svc: str) -> None:
    answer = await http.post(
        f"/v1/workplaces/{wp.id}/services/{svc}/subscription",
        json={
            "terms_version": TERMS,
            "agree_terms": True,
            **({"plan_id": "ubob-basic"} if svc == "ubob" else {}),
        },
        headers=bearer(token(runtime, wp.id, wp.rep)),
    )
    assert answer.status_code == 201, answer.text


async def state_of(http: httpx.AsyncClient, runtime: Runtime, wp: Workplace, svc: str) -> str:
    got = await http.get(
        f"/v1/workplaces/{wp.id}/services/{svc}/subscription",
        headers=bearer(token(runtime, wp.id, wp.rep)),
    )
    state: str = got.json()["state"]
    return state


# ── 3. the demo login ────────────────────────────────────────────────────────────────────────


async def test_demo_login_is_closed_unless_switched_on(
    api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(app_with(api_runtime, demo_workplace=None)) as http:
        page = await http.get("/console/login")
        assert workplace.rep not in page.text and 'data-testid="demo-warning"' not in page.text
        answer = await http.post(
            "/console/login", data={"csrf": csrf_of(page.text), "member_id": workplace.rep}
        )
        assert answer.headers["location"] == "/console/login"
        assert "bizsupport_session" not in answer.headers.get("set-cookie", "")


async def test_demo_login_offers_only_the_demo_workplace_and_only_on_loopback(
    api_runtime: Runtime, workplace: Workplace, other_workplace: Workplace
) -> None:
    app = app_with(api_runtime, demo_workplace=workplace.id)
    async with client_of(app) as http:
        page = await http.get("/console/login")
        assert f'data-testid="login-{workplace.rep}"' in page.text
        assert 'data-testid="demo-warning"' in page.text
        assert other_workplace.id not in page.text and other_workplace.rep not in page.text
        csrf = csrf_of(page.text)
        # another tenant's member is not reachable through the demo door
        refused = await http.post(
            "/console/login", data={"csrf": csrf, "member_id": other_workplace.rep}
        )
        assert "bizsupport_session" not in refused.headers.get("set-cookie", "")
        entered = await http.post("/console/login", data={"csrf": csrf, "member_id": workplace.rep})
        assert "bizsupport_session" in entered.headers.get("set-cookie", "")
    for base, client in (
        ("http://10.0.0.8:8000", "10.0.0.9"),
        ("http://127.0.0.1:8000", "10.0.0.9"),
    ):
        async with client_of(app, base_url=base, client=client) as http:
            page = await http.get("/console/login")
            assert workplace.rep not in page.text
            answer = await http.post(
                "/console/login", data={"csrf": csrf_of(page.text), "member_id": workplace.rep}
            )
            assert "bizsupport_session" not in answer.headers.get("set-cookie", "")


# ── 4. logout ends the session; 5. CSRF ──────────────────────────────────────────────────────


async def test_logout_ends_the_session_on_the_server(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(api_app) as http:
        csrf = await console_login(http, api_runtime, workplace.id, workplace.rep)
        cookie = http.cookies.get("bizsupport_session")
        assert cookie and (await http.get("/console")).status_code == 200
        out = await http.post("/console/logout", data={"csrf": csrf})
        assert out.status_code == 303
    async with client_of(api_app) as replay:  # the old cookie, kept by an attacker
        replay.cookies.set("bizsupport_session", cookie)
        again = await replay.get("/console")
        assert again.status_code == 303 and again.headers["location"] == "/console/login"


async def test_session_cookie_is_secure_over_https(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(api_app, base_url="https://console.example") as http:
        page = await http.get("/console/login")
        answer = await http.post(
            "/console/login/token",
            data={
                "csrf": csrf_of(page.text),
                "token": token(api_runtime, workplace.id, workplace.rep),
            },
        )
        cookie = answer.headers["set-cookie"]
        assert "bizsupport_session=" in cookie
        assert "secure" in cookie.lower() and "httponly" in cookie.lower()


async def test_state_changing_forms_need_the_sessions_csrf_token(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(api_app) as http:
        await apply(http, api_runtime, workplace, "miricanvas")
        csrf = await console_login(http, api_runtime, workplace.id, workplace.rep)
        for form in ({}, {"csrf": "forged"}, {"csrf": csrf[:-1]}):  # and no Origin header
            answer = await http.post("/console/services/miricanvas/cancel", data=form)
            assert answer.status_code == 303
            assert await state_of(http, api_runtime, workplace, "miricanvas") == "active"
        done = await http.post("/console/services/miricanvas/cancel", data={"csrf": csrf})
        assert done.status_code == 303
        assert await state_of(http, api_runtime, workplace, "miricanvas") == "cancelled"


# ── 6. no open redirect; 9. the shared sandbox clock ─────────────────────────────────────────


async def test_no_open_redirect_and_the_console_cannot_move_the_shared_clock(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    assert api_runtime.sandbox is not None
    async with client_of(api_app) as http:
        csrf = await console_login(http, api_runtime, workplace.id, workplace.rep)
        before = await api_runtime.sandbox.now()
        for referer in (
            "http://127.0.0.1:8000//evil.example/x",
            "https://evil.example/console",
            "/\\evil.example",
        ):
            answer = await http.post(
                "/console/sandbox/advance",
                data={"csrf": csrf, "days": "30"},
                headers={"Referer": referer},
            )
            location = answer.headers["location"]
            assert location.startswith("/console") and not location.startswith("//"), location
            assert urlsplit(location).netloc == ""
        assert (await api_runtime.sandbox.now()) - before < timedelta(days=1)
        page = await http.get("/console")
        assert "/console/sandbox/advance" not in page.text  # no button that can only fail


# ── 8. launch tokens never in a URL ──────────────────────────────────────────────────────────


async def test_launch_token_travels_in_a_post_body_only(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(api_app) as http:
        await apply(http, api_runtime, workplace, "ubob")
        csrf = await console_login(http, api_runtime, workplace.id, workplace.members[0])
        opened = await http.post("/console/me/launch/ubob", data={"csrf": csrf})
        assert opened.status_code == 200 and "location" not in opened.headers
        assert opened.headers["cache-control"] == "no-store"
        assert 'method="post" action="/sso/launch?service=ubob"' in opened.text
        launch_token = opened.text.split('name="token" value="')[1].split('"')[0]
        assert launch_token not in opened.text.split('action="')[1].split('"')[0]
        assert (await http.get(f"/sso/launch?service=ubob&token={launch_token}")).status_code == 405
        landed = await http.post("/sso/launch?service=ubob", data={"token": launch_token})
        assert landed.status_code == 200 and f"{workplace.members[0]}/ubob" in landed.text
        replayed = await http.post("/sso/launch?service=ubob", data={"token": launch_token})
        assert replayed.status_code == 401


# ── 10. rate limits ──────────────────────────────────────────────────────────────────────────


async def test_login_and_sso_verify_are_rate_limited_per_client(
    api_runtime: Runtime, workplace: Workplace
) -> None:
    app = create_app(api_runtime)
    app.state.rate_limit = RateLimit(attempts=3, window=60)
    async with client_of(app, client="192.0.2.10") as http:
        page = await http.get("/console/login")
        csrf = csrf_of(page.text)
        for _ in range(3):
            bad = await http.post("/console/login/token", data={"csrf": csrf, "token": "x"})
            assert "bizsupport_session" not in bad.headers.get("set-cookie", "")
        good = token(api_runtime, workplace.id, workplace.rep)
        limited = await http.post("/console/login/token", data={"csrf": csrf, "token": good})
        assert "bizsupport_session" not in limited.headers.get("set-cookie", "")
        flash = await http.get("/console/login")
        assert "시도가 너무 많습니다" in flash.text
        verify = await http.post("/v1/sso/verify", json={"token": "x"})
        assert verify.status_code == 429 and int(verify.headers["retry-after"]) >= 1
        assert verify.json()["error"]["code"] == "RATE_LIMITED"
    async with client_of(app, client="192.0.2.11") as other:  # per client: others are not held
        answer = await other.post("/v1/sso/verify", json={"token": "x"})
        assert answer.status_code == 401
        assert answer.json()["error"]["details"] == {}
