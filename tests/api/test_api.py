"""The HTTP API (docs/rules.md) end to end, in-process over ASGI, on the real servers.

Each endpoint's happy path with its shape; Idempotency-Key replay and reuse (R-ERR-2); the
401/403/404 semantics of R-TOKEN; the sandbox clock making a month-end invoice visible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import re
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.runtime import Runtime
from domain.calendar import first_instant_of_next_month, period_of
from store.db import Pool
from tests.api.conftest import TERMS, bearer, console_login, system_token, token
from tests.conftest import Workplace
from tests.partner_sandbox import session_partner

OFFSET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+09:00$")


def rep(rt: Runtime, wp: Workplace) -> dict[str, str]:
    return bearer(token(rt, wp.id, wp.rep))


async def set_admin(
    api: httpx.AsyncClient, rt: Runtime, wp: Workplace, svc: str, permissions: list[str]
) -> None:
    """Give the workplace's delegated admin exactly these permissions on the service."""
    answer = await api.put(
        f"{base(wp, svc)}/management-permissions/{wp.admin}",
        json={"permissions": permissions},
        headers=rep(rt, wp),
    )
    assert answer.status_code == 200, answer.text


def base(wp: Workplace, svc: str) -> str:
    return f"/v1/workplaces/{wp.id}/services/{svc}"


async def apply(
    api: httpx.AsyncClient, rt: Runtime, wp: Workplace, svc: str, plan: str | None = None
) -> dict:
    body = {"terms_version": TERMS, "agree_terms": True}
    if plan:
        body["plan_id"] = plan
    answer = await api.post(f"{base(wp, svc)}/subscription", json=body, headers=rep(rt, wp))
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "active"
    return answer.json()


def error(answer: httpx.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "message_ko", "details"}
    assert body["error"]["code"] == code
    return body["error"]


# ── operations and catalog ───────────────────────────────────────────────────────────────────


async def test_health_docs_and_openapi_document_errors(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    assert (await api.get("/docs")).status_code == 200
    spec = (await api.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path == "/healthz":
                continue
            documented = set(operation["responses"])
            assert {"400", "401", "413"} <= documented, (method, path)
            for status in documented - {"200", "201", "204"}:  # 204: no body
                ref = operation["responses"][status]["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_catalog(api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace) -> None:
    """R-CAT-1..4: seven services; money as strings; ubob alone has several plans."""
    headers = rep(api_runtime, workplace)
    services = (await api.get("/v1/services", headers=headers)).json()
    assert [s["service_id"] for s in services] == [
        "cartax",
        "wishket",
        "miricanvas",
        "loai",
        "juju",
        "ubob",
        "tudy",
    ]
    ubob = (await api.get("/v1/services/ubob", headers=headers)).json()
    assert ubob["name"] == "유밥" and ubob["terms_version"] == TERMS
    assert [p["plan_id"] for p in ubob["plans"]] == ["ubob-basic", "ubob-standard", "ubob-premium"]
    assert ubob["plans"][0]["base_fee"] == "50000" and ubob["plans"][0]["seat_fee"] == "3000"
    assert [a["label"] for a in ubob["how_to_use"]] == [
        "유밥 서비스 이용",
        "유밥 서비스 이용 내역 및 문의",
        "이용 요금 조회",
    ]
    error(await api.get("/v1/services/nope", headers=headers), 404, "UNKNOWN_SERVICE")


# ── directory sync ───────────────────────────────────────────────────────────────────────────


async def test_directory_sync_with_system_token(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    system = bearer(system_token(api_runtime))
    wp = f"{workplace.id}-sync"
    created = await api.put(
        f"/v1/workplaces/{wp}",
        json={
            "name": "동기화 회사",
            "representative_admin": {"member_id": "boss", "login_id": "boss@x", "name": "대표"},
        },
        headers=system,
    )
    assert created.status_code == 200, created.text
    assert created.json()["workplace"]["name"] == "동기화 회사"
    assert created.json()["representative_admin"]["role"] == "representative_admin"

    put = await api.put(
        f"/v1/workplaces/{wp}/members/kim",
        json={"login_id": "kim@x", "name": "김", "role": "admin"},
        headers=system,
    )
    assert put.status_code == 200, put.text
    assert put.json()["member"]["role"] == "admin" and put.json()["changes"] == ["joined"]
    assert OFFSET_TIME.match(put.json()["member"]["joined_at"])

    gone = await api.delete(f"/v1/workplaces/{wp}/members/kim", headers=system)
    assert gone.status_code == 200 and gone.json()["member"]["left_at"] is not None
    error(
        await api.delete(f"/v1/workplaces/{wp}/members/kim", headers=system), 404, "UNKNOWN_MEMBER"
    )

    # only a system token syncs the directory; a member token is a valid token without the right
    member = rep(api_runtime, workplace)
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/members/x",
        json={"login_id": "x@x", "name": "x", "role": "member"},
        headers=member,
    )
    error(answer, 403, "FORBIDDEN")


# ── business support ─────────────────────────────────────────────────────────────────────────


async def test_apply_status_cards_usage_and_cancel(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """R-APPLY, R-APPLY-5 cards, R-PERM-2 usage permissions, R-CANCEL shapes."""
    headers = rep(api_runtime, workplace)
    status = await apply(api, api_runtime, workplace, "miricanvas")
    assert set(status) >= {
        "subscription_id",
        "service_id",
        "state",
        "plan_id",
        "applied_at",
        "cancelled_at",
        "usage_permission_count",
        "managers",
        "next_plan_change_at",
        "scheduled_plan_change",
        "data_deletion_at",
        "final_invoice_at",
        "purged_at",
    }
    assert status["plan_id"] == "miricanvas-standard" and status["managers"] == [workplace.rep]
    assert OFFSET_TIME.match(status["applied_at"])

    got = await api.get(f"{base(workplace, 'miricanvas')}/subscription", headers=headers)
    assert got.status_code == 200 and got.json()["subscription_id"] == status["subscription_id"]

    cards = (await api.get(f"/v1/workplaces/{workplace.id}/services", headers=headers)).json()
    by_id = {c["service_id"]: c for c in cards}
    assert by_id["miricanvas"]["state"] == "active"
    assert by_id["miricanvas"]["buttons"] == ["browse", "manage", "inquire"]
    assert by_id["cartax"]["buttons"] == ["apply", "browse", "inquire"]

    member = workplace.members[0]
    granted = await api.put(
        f"{base(workplace, 'miricanvas')}/usage-permissions/{member}", headers=headers
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["count"] == 1
    assert granted.json()["holders"][0]["member_id"] == member
    listed = await api.get(f"{base(workplace, 'miricanvas')}/usage-permissions", headers=headers)
    assert listed.json()["count"] == 1
    revoked = await api.delete(
        f"{base(workplace, 'miricanvas')}/usage-permissions/{member}", headers=headers
    )
    assert revoked.status_code == 200 and revoked.json()["count"] == 0
    error(
        await api.delete(
            f"{base(workplace, 'miricanvas')}/usage-permissions/{member}", headers=headers
        ),
        409,
        "PERMISSION_NOT_HELD",
    )

    seat = f"{base(workplace, 'miricanvas')}/usage-permissions/{member}"
    assert (await api.put(seat, headers=headers)).status_code == 200
    cancelled = await api.post(
        f"{base(workplace, 'miricanvas')}/subscription/cancel", headers=headers
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["state"] == "cancelled"
    # a cancelled subscription holds no seats, here as on the console's usage page
    after = await api.get(f"{base(workplace, 'miricanvas')}/usage-permissions", headers=headers)
    assert (after.json()["count"], after.json()["holders"]) == (0, [])
    assert body["usage_permission_count"] == 0
    deletion = datetime.fromisoformat(body["data_deletion_at"])
    assert deletion - datetime.fromisoformat(body["cancelled_at"]) == timedelta(days=30)
    assert body["final_invoice_at"].endswith("T00:00:00+09:00")
    error(
        await api.post(f"{base(workplace, 'miricanvas')}/subscription/cancel", headers=headers),
        409,
        "ALREADY_CANCELLED",
    )
    cards = (await api.get(f"/v1/workplaces/{workplace.id}/services", headers=headers)).json()
    card = next(c for c in cards if c["service_id"] == "miricanvas")
    assert card["state"] == "cancelled" and card["buttons"] == [
        "apply",
        "browse",
        "manage",
        "inquire",
    ]

    log = await api.get(
        f"/v1/workplaces/{workplace.id}/audit-log",
        params={"service": "miricanvas", "limit": 50},
        headers=headers,
    )
    actions = [e["action"] for e in log.json()["entries"]]
    assert actions[:2] == ["applied", "activated"] and "cancelled" in actions


async def test_plan_change_rules_over_http(
    api: httpx.AsyncClient, api_runtime: Runtime, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-3/4 refusal with the next date, R-PLAN-8 scheduling and withdrawal, R-PLAN-5/10."""
    headers = rep(api_runtime, workplace)
    status = await apply(api, api_runtime, workplace, "ubob", "ubob-basic")
    assert status["usage_permission_count"] == 5  # R-PERM-6: everyone, admins included
    url = f"{base(workplace, 'ubob')}/subscription/plan-change"

    refused = error(
        await api.post(url, json={"plan_id": "ubob-standard"}, headers=headers),
        422,
        "PLAN_CHANGE_WINDOW_CLOSED",
    )
    assert refused["message_ko"].startswith("신청 당일에는 상품을 변경할 수 없습니다.")
    assert OFFSET_TIME.match(refused["details"]["next_plan_change_at"])

    scheduled = await api.post(
        url, json={"plan_id": "ubob-premium", "when": "next_window"}, headers=headers
    )
    assert scheduled.status_code == 200, scheduled.text
    change = scheduled.json()["scheduled_plan_change"]
    assert change["plan_id"] == "ubob-premium" and change["at"].endswith("-01T00:00:00+09:00")
    withdrawn = await api.delete(url, headers=headers)
    assert withdrawn.status_code == 200 and withdrawn.json()["scheduled_plan_change"] is None
    error(await api.delete(url, headers=headers), 409, "NO_SCHEDULED_PLAN_CHANGE")

    system = bearer(system_token(api_runtime))
    moved = await api.post("/v1/sandbox/clock/advance", json={"seconds": 86_400}, headers=system)
    assert moved.status_code == 200, moved.text
    await session_partner().add_learning_record(
        status["subscription_id"], workplace.members[0], "safety-101", "in_progress", 40
    )
    courses = error(
        await api.post(url, json={"plan_id": "ubob-standard"}, headers=headers),
        422,
        "COURSES_IN_PROGRESS",
    )
    assert courses["details"]["member_count"] == 1 and courses["details"]["course_count"] == 1
    changed = await api.post(
        url, json={"plan_id": "ubob-standard", "confirm_course_reset": True}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["plan_id"] == "ubob-standard" and changed.json()["state"] == "active"
    error(
        await api.put(
            f"{base(workplace, 'ubob')}/usage-permissions/{workplace.members[0]}", headers=headers
        ),
        422,
        "AUTO_GRANTED_SERVICE",
    )


async def test_management_permissions_menu_and_sso(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """R-PERM-3/4/5 delegation, R-PERM-8 menu and single sign-on (a launch token works once)."""
    headers = rep(api_runtime, workplace)
    await apply(api, api_runtime, workplace, "tudy")
    admin = bearer(token(api_runtime, workplace.id, workplace.admin))
    error(await api.get(f"/v1/workplaces/{workplace.id}/services", headers=admin), 403, "FORBIDDEN")
    assert (await api.get("/v1/me/menu", headers=admin)).json()["business_support_admin"] is False

    put = await api.put(
        f"{base(workplace, 'tudy')}/management-permissions/{workplace.admin}",
        json={"permissions": ["usage.view", "usage.grant"]},
        headers=headers,
    )
    assert put.status_code == 200, put.text
    holders = {
        p["permission"]: [h["member_id"] for h in p["holders"]] for p in put.json()["permissions"]
    }
    assert holders["usage.grant"] == [workplace.rep, workplace.admin]
    assert holders["plan.change"] == [workplace.rep]
    listing = await api.get(
        f"/v1/workplaces/{workplace.id}/management-permissions", headers=headers
    )
    assert {s["service_id"] for s in listing.json()["services"]} >= {"tudy", "ubob"}
    error(
        await api.get(f"/v1/workplaces/{workplace.id}/management-permissions", headers=admin),
        403,
        "NOT_REPRESENTATIVE_ADMIN",
    )

    member = workplace.members[1]
    grant = await api.put(f"{base(workplace, 'tudy')}/usage-permissions/{member}", headers=admin)
    assert grant.status_code == 200, grant.text
    error(
        await api.post(f"{base(workplace, 'tudy')}/subscription/cancel", headers=admin),
        403,
        "FORBIDDEN",
    )
    assert (await api.get("/v1/me/menu", headers=admin)).json()["business_support_admin"] is True

    as_member = bearer(token(api_runtime, workplace.id, member))
    menu = (await api.get("/v1/me/menu", headers=as_member)).json()
    assert menu == {
        "services": [{"service_id": "tudy", "name": "투디", "name_en": "Tudy"}],
        "business_support_admin": False,
        "notices": [],
    }
    launched = await api.post("/v1/me/services/tudy/launch", headers=as_member)
    assert launched.status_code == 200, launched.text
    sso = launched.json()
    assert OFFSET_TIME.match(sso["expires_at"])
    assert "token" not in parse_qs(urlsplit(sso["launch_url"]).query)  # never in a URL
    verified = await api.post("/v1/sso/verify", json={"token": sso["token"]})
    assert verified.status_code == 200, verified.text
    assert verified.json()["member_id"] == member and verified.json()["service_id"] == "tudy"
    error(await api.post("/v1/sso/verify", json={"token": sso["token"]}), 401, "UNAUTHENTICATED")
    other = bearer(token(api_runtime, workplace.id, workplace.members[2]))
    error(await api.post("/v1/me/services/tudy/launch", headers=other), 403, "FORBIDDEN")


async def test_an_admin_holding_only_usage_grant_gets_the_grants_outcome(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """usage.grant without usage.view: the grant and the revoke answer 200 with the holders
    after the change (the console shows them to anyone managing the service), never a 403 for
    a change that was made; the separate listing still needs usage.view (docs/rules.md)."""
    await apply(api, api_runtime, workplace, "tudy")
    put = await api.put(
        f"{base(workplace, 'tudy')}/management-permissions/{workplace.admin}",
        json={"permissions": ["usage.grant"]},
        headers=rep(api_runtime, workplace),
    )
    assert put.status_code == 200, put.text
    admin = bearer(token(api_runtime, workplace.id, workplace.admin))
    member = workplace.members[1]
    grant = await api.put(f"{base(workplace, 'tudy')}/usage-permissions/{member}", headers=admin)
    assert grant.status_code == 200, grant.text
    assert member in [h["member_id"] for h in grant.json()["holders"]]
    revoke = await api.delete(
        f"{base(workplace, 'tudy')}/usage-permissions/{member}", headers=admin
    )
    assert revoke.status_code == 200, revoke.text
    assert member not in [h["member_id"] for h in revoke.json()["holders"]]
    error(
        await api.get(f"{base(workplace, 'tudy')}/usage-permissions", headers=admin),
        403,
        "FORBIDDEN",
    )


# ── idempotency (R-ERR-2) ────────────────────────────────────────────────────────────────────


async def test_idempotency_key_replays_the_first_answer_and_refuses_reuse(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": "apply-juju-1"}
    url = f"{base(workplace, 'juju')}/subscription"
    body = {"terms_version": TERMS, "agree_terms": True}
    first = await api.post(url, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await api.post(url, json={"agree_terms": True, "terms_version": TERMS}, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    # without the key, the same request is a second application: refused
    plain = rep(api_runtime, workplace)
    error(await api.post(url, json=body, headers=plain), 409, "ALREADY_SUBSCRIBED")

    reused = await api.post(url, json={**body, "plan_id": "juju-standard"}, headers=headers)
    error(reused, 422, "IDEMPOTENCY_KEY_REUSED")

    # keys are scoped to the caller: the admin's same key is their own (and refused on its own)
    admin = {
        **bearer(token(api_runtime, workplace.id, workplace.admin)),
        "Idempotency-Key": "apply-juju-1",
    }
    error(await api.post(url, json=body, headers=admin), 403, "NOT_REPRESENTATIVE_ADMIN")

    cancel = f"{base(workplace, 'juju')}/subscription/cancel"
    keyed = {**plain, "Idempotency-Key": "cancel-juju-1"}
    done = await api.post(cancel, headers=keyed)
    assert done.status_code == 200
    replay = await api.post(cancel, headers=keyed)  # the first answer, not ALREADY_CANCELLED
    assert replay.status_code == 200 and replay.json() == done.json()
    error(await api.post(cancel, headers=plain), 409, "ALREADY_CANCELLED")


# ── 401 / 403 / 404 (R-TOKEN, R-PERM-10) ─────────────────────────────────────────────────────


async def test_token_and_tenant_semantics(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    url = f"/v1/workplaces/{workplace.id}/services"
    error(await api.get(url), 401, "UNAUTHENTICATED")
    ghost = bearer(token(api_runtime, workplace.id, "nobody"))
    error(await api.get(url, headers=ghost), 401, "UNAUTHENTICATED")

    system = bearer(system_token(api_runtime))
    leaver = workplace.members[2]
    assert (
        await api.delete(f"/v1/workplaces/{workplace.id}/members/{leaver}", headers=system)
    ).status_code == 200
    error(
        await api.get("/v1/me/menu", headers=bearer(token(api_runtime, workplace.id, leaver))),
        401,
        "UNAUTHENTICATED",
    )

    error(await api.get(url, headers=system), 403, "FORBIDDEN")  # system token: directory only
    member = bearer(token(api_runtime, workplace.id, workplace.members[0]))
    error(await api.get(url, headers=member), 403, "FORBIDDEN")
    answer = await api.post(
        f"{base(workplace, 'cartax')}/subscription",
        json={"terms_version": TERMS, "agree_terms": True},
        headers=bearer(token(api_runtime, workplace.id, workplace.admin)),
    )
    error(answer, 403, "NOT_REPRESENTATIVE_ADMIN")

    other = await Workplace(pool).create()
    mine = rep(api_runtime, workplace)
    existing = await api.get(
        f"/v1/workplaces/{other.id}/services/cartax/subscription", headers=mine
    )
    missing = await api.get("/v1/workplaces/wp-nowhere/services/cartax/subscription", headers=mine)
    assert error(existing, 404, "NOT_FOUND") == error(missing, 404, "NOT_FOUND")


# ── sandbox clock ────────────────────────────────────────────────────────────────────────────


async def test_sandbox_clock_advance_shows_the_month_end_invoice(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """R-BILL-5 through the API: after the advance answers, the invoice is there (no polling)."""
    headers = rep(api_runtime, workplace)
    system = bearer(system_token(api_runtime))
    status = await apply(api, api_runtime, workplace, "cartax")
    now = datetime.fromisoformat((await api.get("/v1/sandbox/clock", headers=system)).json()["now"])
    period = period_of(now)
    before = (await api.get(f"{base(workplace, 'cartax')}/invoices", headers=headers)).json()
    assert before["invoices"] == [] and before["estimate"]["period"] == period

    seconds = (first_instant_of_next_month(now) - now).total_seconds() + 1
    moved = await api.post("/v1/sandbox/clock/advance", json={"seconds": seconds}, headers=system)
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["now"]) >= first_instant_of_next_month(now)

    after = (await api.get(f"{base(workplace, 'cartax')}/invoices", headers=headers)).json()
    (invoice,) = after["invoices"]
    assert invoice["period"] == period and invoice["subscription_id"] == status["subscription_id"]
    assert invoice["total"] == str(int(invoice["subtotal"]) + int(invoice["vat"]))
    line = invoice["lines"][0]
    assert set(line) == {"plan_id", "from", "to", "days", "seats", "amount"}
    assert after["estimate"]["period"] != period


async def test_sandbox_clock_one_advance_at_a_time(
    api: httpx.AsyncClient, api_runtime: Runtime
) -> None:
    system = bearer(system_token(api_runtime))
    answers = await asyncio.gather(
        *(
            api.post("/v1/sandbox/clock/advance", json={"seconds": 1}, headers=system)
            for _ in range(2)
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409]
    busy = next(a for a in answers if a.status_code == 409)
    error(busy, 409, "CLOCK_BUSY")


@pytest.fixture
def production_app(api_runtime: Runtime) -> FastAPI:
    return create_app(dataclasses.replace(api_runtime, sandbox=None))


async def test_sandbox_clock_is_absent_outside_sandbox(
    production_app: FastAPI, api_runtime: Runtime
) -> None:
    system = bearer(system_token(api_runtime))
    transport = httpx.ASGITransport(app=production_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        error(await client.get("/v1/sandbox/clock", headers=system), 404, "SANDBOX_ONLY")
        answer = await client.post(
            "/v1/sandbox/clock/advance", json={"seconds": 60}, headers=system
        )
        error(answer, 404, "SANDBOX_ONLY")


async def test_concurrent_retries_with_one_key_get_one_answer(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """R-ERR-2: a retry arriving while the first request runs waits for its answer."""
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": "apply-loai-twice"}
    body = {"terms_version": TERMS, "agree_terms": True}
    url = f"{base(workplace, 'loai')}/subscription"
    first, second = await asyncio.gather(
        api.post(url, json=body, headers=headers), api.post(url, json=body, headers=headers)
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json() == second.json()
    assert {
        first.headers.get("Idempotent-Replayed"),
        second.headers.get("Idempotent-Replayed"),
    } == {
        None,
        "true",
    }


async def test_factory_builds_the_production_runtime_in_its_lifespan(
    env: WorkflowEnvironment,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`uvicorn api.app:create_app --factory`: settings → pool, Temporal client, secret file."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BIZSUPPORT_AUTH_SECRET", raising=False)
    monkeypatch.delenv("SANDBOX", raising=False)
    app = create_app()
    assert gc.get_freeze_count() == 0
    try:
        async with app.router.lifespan_context(app):
            runtime: Runtime = app.state.runtime
            # start-up is done: its objects are out of every later collection's walk
            assert gc.get_freeze_count() > 0
            await _serves_in_production(app, runtime, tmp_path)
    finally:
        gc.unfreeze()
    assert runtime.pool.closed


async def _serves_in_production(app: FastAPI, runtime: Runtime, tmp_path: Path) -> None:
    assert runtime.sandbox is None and runtime.demo_workplace is None
    assert (tmp_path / "auth-secret").read_text().strip() == runtime.secret
    system = bearer(system_token(runtime))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert len((await client.get("/v1/services", headers=system)).json()) == 7
        error(await client.get("/v1/sandbox/clock", headers=system), 404, "SANDBOX_ONLY")


# ── console (server-rendered; the browser walk-through is in test_browser.py) ────────────────


async def test_console_asks_to_confirm_a_change_that_stops_courses(
    api: httpx.AsyncClient, api_runtime: Runtime, pool: Pool, workplace: Workplace
) -> None:
    """R-PLAN-5: the refusal shows the counts and offers the confirmation, which then works."""
    status = await apply(api, api_runtime, workplace, "ubob", "ubob-basic")
    system = bearer(system_token(api_runtime))
    moved = await api.post("/v1/sandbox/clock/advance", json={"seconds": 86_400}, headers=system)
    assert moved.status_code == 200
    for member, course in ((workplace.members[0], "a"), (workplace.members[1], "b")):
        await session_partner().add_learning_record(
            status["subscription_id"], member, course, "in_progress", 10
        )
    csrf = await console_login(api, api_runtime, workplace.id, workplace.rep)
    form = {"csrf": csrf, "plan_id": "ubob-premium", "when": "now"}
    page = await api.post("/console/services/ubob/plan-change", data=form, follow_redirects=True)
    assert "구성원 2명이 수강 중인 교육 과정 2개가 있습니다" in page.text
    assert 'name="confirm_course_reset" value="1"' in page.text
    assert "교육 과정 중단하고 변경" in page.text
    page = await api.post(
        "/console/services/ubob/plan-change",
        data={**form, "confirm_course_reset": "1"},
        follow_redirects=True,
    )
    assert "신청 상품을 변경했습니다." in page.text and "유밥 프리미엄" in page.text
    foreign = await api.post(
        "/console/services/ubob/cancel",
        data={"csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 303  # refused (not from this console), nothing cancelled
    got = await api.get(
        f"{base(workplace, 'ubob')}/subscription", headers=rep(api_runtime, workplace)
    )
    assert got.json()["state"] == "active"
