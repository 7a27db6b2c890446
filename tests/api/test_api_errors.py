"""Bad input and bad tokens get their documented answer in the error shape, never a 500 (R-ERR-1).

docs/rules.md, "HTTP contract": 400 malformed input (the framework's validation errors too),
401 missing, expired or forged token, 403 outside the caller's rights, 404 another workplace's
ids, 413 too large.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from api.limits import DEFAULT_BODY_LIMIT
from api.runtime import Runtime
from domain.tokens import mint_launch_token
from store.db import Pool
from tests.api.conftest import TERMS, bearer, system_token, token
from tests.conftest import Workplace


def error(answer: httpx.Response, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"] and body["error"]["message_ko"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def apply_url(wp: Workplace, svc: str = "cartax") -> str:
    return f"/v1/workplaces/{wp.id}/services/{svc}/subscription"


def rep(rt: Runtime, wp: Workplace) -> dict[str, str]:
    return bearer(token(rt, wp.id, wp.rep))


# ── malformed input → 400 ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"terms_version": "2026-01-01", "agree_terms": true',
        b"",
        b"[]",
        b'"text"',
        b"\xff\xfe\x00",
    ],
)
async def test_malformed_json_is_400(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, content: bytes
) -> None:
    headers = {**rep(api_runtime, workplace), "Content-Type": "application/json"}
    answer = await api.post(apply_url(workplace), content=content, headers=headers)
    error(answer, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "body, where",
    [
        ({"terms_version": TERMS, "agree_terms": [1]}, "agree_terms"),
        ({"terms_version": 20260101, "agree_terms": True}, "terms_version"),
        ({"terms_version": TERMS}, "agree_terms"),
        ({"terms_version": TERMS, "agree_terms": True, "plan_id": {"x": 1}}, "plan_id"),
        ({"terms_version": "", "agree_terms": True}, "terms_version"),
    ],
)
async def test_wrong_types_and_missing_fields_are_400(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, body: dict, where: str
) -> None:
    answer = await api.post(apply_url(workplace), json=body, headers=rep(api_runtime, workplace))
    err = error(answer, 400, "VALIDATION_ERROR")
    assert err["details"]["errors"][0]["loc"] == ["body", where]
    assert where in err["message"]


async def test_unknown_fields_are_400(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    body = {"terms_version": TERMS, "agree_terms": True, "agree_term": True}
    err = error(
        await api.post(apply_url(workplace), json=body, headers=rep(api_runtime, workplace)),
        400,
        "VALIDATION_ERROR",
    )
    assert err["details"]["errors"][0]["type"] == "extra_forbidden"
    system = bearer(system_token(api_runtime))
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/members/x",
        json={"login_id": "x", "name": "x", "role": "member", "is_admin": True},
        headers=system,
    )
    error(answer, 400, "VALIDATION_ERROR")
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/members/x",
        json={"login_id": "x", "name": "x", "role": "owner"},
        headers=system,
    )
    error(answer, 400, "VALIDATION_ERROR")


async def test_bad_query_and_header_values_are_400(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = rep(api_runtime, workplace)
    log = f"/v1/workplaces/{workplace.id}/audit-log"
    error(await api.get(log, params={"limit": 0}, headers=headers), 400, "VALIDATION_ERROR")
    error(await api.get(log, params={"limit": "many"}, headers=headers), 400, "VALIDATION_ERROR")
    keyed = {**headers, "Idempotency-Key": "x" * 300}
    body = {"terms_version": TERMS, "agree_terms": True}
    error(await api.post(apply_url(workplace), json=body, headers=keyed), 400, "VALIDATION_ERROR")
    bad_length = {**headers, "Content-Length": "abc", "Content-Type": "application/json"}
    answer = await api.post(apply_url(workplace), content=b"{}", headers=bad_length)
    error(answer, 400, "VALIDATION_ERROR")


async def test_refused_rules_are_422(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = rep(api_runtime, workplace)
    not_agreed = {"terms_version": TERMS, "agree_terms": False}
    error(
        await api.post(apply_url(workplace), json=not_agreed, headers=headers),
        422,
        "TERMS_NOT_AGREED",
    )
    old_terms = {"terms_version": "1999-01-01", "agree_terms": True}
    error(
        await api.post(apply_url(workplace), json=old_terms, headers=headers),
        422,
        "TERMS_VERSION_OUTDATED",
    )
    no_plan = {"terms_version": TERMS, "agree_terms": True}
    error(
        await api.post(apply_url(workplace, "ubob"), json=no_plan, headers=headers),
        422,
        "PLAN_REQUIRED",
    )
    bad_plan = {**no_plan, "plan_id": "ubob-gold"}
    error(
        await api.post(apply_url(workplace, "ubob"), json=bad_plan, headers=headers),
        422,
        "UNKNOWN_PLAN",
    )
    error(await api.get(f"{apply_url(workplace)}", headers=headers), 404, "NO_SUBSCRIPTION")


# ── too large → 413 ──────────────────────────────────────────────────────────────────────────


async def test_payload_over_the_limit_is_413(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = {**rep(api_runtime, workplace), "Content-Type": "application/json"}
    big = json.dumps({"terms_version": "x" * (DEFAULT_BODY_LIMIT + 10), "agree_terms": True})
    err = error(
        await api.post(apply_url(workplace), content=big.encode(), headers=headers),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert err["details"]["limit"] == DEFAULT_BODY_LIMIT

    async def chunks() -> AsyncIterator[bytes]:  # streamed, no Content-Length
        for _ in range(DEFAULT_BODY_LIMIT // 1024 + 2):
            yield b" " * 1024

    answer = await api.post(apply_url(workplace), content=chunks(), headers=headers)
    error(answer, 413, "PAYLOAD_TOO_LARGE")
    # unauthenticated callers are cut off the same way, before anything reads the body
    error(
        await api.post("/v1/sso/verify", content=big.encode(), headers=headers),
        413,
        "PAYLOAD_TOO_LARGE",
    )


# ── tokens → 401 ─────────────────────────────────────────────────────────────────────────────


async def test_missing_malformed_expired_and_forged_tokens_are_401(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    url = "/v1/me/menu"
    error(await api.get(url), 401, "UNAUTHENTICATED")
    error(await api.get(url, headers={"Authorization": "Bearer"}), 401, "UNAUTHENTICATED")
    error(await api.get(url, headers={"Authorization": "Basic dTpw"}), 401, "UNAUTHENTICATED")
    error(await api.get(url, headers=bearer("not.a.jwt")), 401, "UNAUTHENTICATED")

    past = datetime.now(UTC) - timedelta(hours=2)
    expired = token(api_runtime, workplace.id, workplace.rep, now=past)
    error(await api.get(url, headers=bearer(expired)), 401, "UNAUTHENTICATED")

    claims = {
        "typ": "access",
        "aud": "bizsupport",
        "sub": workplace.rep,
        "wp": workplace.id,
        "iat": datetime.now(UTC),
        "exp": datetime.now(UTC) + timedelta(hours=1),
    }
    forged = jwt.encode(claims, "not-the-secret-0123456789abcdef0123", algorithm="HS256")
    error(await api.get(url, headers=bearer(forged)), 401, "UNAUTHENTICATED")
    unsigned = jwt.encode(claims, None, algorithm="none")
    error(await api.get(url, headers=bearer(unsigned)), 401, "UNAUTHENTICATED")
    no_expiry = jwt.encode({"sub": workplace.rep, "wp": workplace.id}, api_runtime.secret)
    error(await api.get(url, headers=bearer(no_expiry)), 401, "UNAUTHENTICATED")

    # a role in the token is never read (R-TOKEN): a member claiming admin is still a member
    claiming = jwt.encode({**claims, "role": "representative_admin"}, api_runtime.secret)
    answer = await api.get(f"/v1/workplaces/{workplace.id}/services", headers=bearer(claiming))
    assert answer.status_code == 200  # the rep, by the directory
    as_member = jwt.encode(
        {**claims, "sub": workplace.members[0], "role": "representative_admin"}, api_runtime.secret
    )
    error(
        await api.get(f"/v1/workplaces/{workplace.id}/services", headers=bearer(as_member)),
        403,
        "FORBIDDEN",
    )


async def test_launch_and_bearer_tokens_are_not_interchangeable(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    launch, _jti, _exp = mint_launch_token(
        api_runtime.secret,
        member_id=workplace.rep,
        workplace_id=workplace.id,
        service_id="ubob",
        now=datetime.now(UTC),
    )
    error(await api.get("/v1/me/menu", headers=bearer(launch)), 401, "UNAUTHENTICATED")
    access = token(api_runtime, workplace.id, workplace.rep)
    error(await api.post("/v1/sso/verify", json={"token": access}), 401, "UNAUTHENTICATED")
    error(await api.post("/v1/sso/verify", json={"token": "garbage"}), 401, "UNAUTHENTICATED")
    error(await api.post("/v1/sso/verify", json={}), 400, "VALIDATION_ERROR")


# ── another workplace → 404, unknown routes ──────────────────────────────────────────────────


async def test_ids_of_another_workplace_are_404_without_revealing_anything(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    other = await Workplace(pool).create()
    mine = rep(api_runtime, workplace)
    paths = [
        ("GET", f"/v1/workplaces/{other.id}/services"),
        ("GET", f"/v1/workplaces/{other.id}/services/ubob/subscription"),
        ("POST", f"/v1/workplaces/{other.id}/services/ubob/subscription/cancel"),
        ("PUT", f"/v1/workplaces/{other.id}/services/tudy/usage-permissions/{other.members[0]}"),
        ("GET", f"/v1/workplaces/{other.id}/services/ubob/invoices"),
        ("GET", f"/v1/workplaces/{other.id}/management-permissions"),
        ("GET", f"/v1/workplaces/{other.id}/audit-log"),
    ]
    for method, path in paths:
        existing = await api.request(method, path, headers=mine)
        missing = await api.request(method, path.replace(other.id, "wp-missing"), headers=mine)
        assert error(existing, 404, "NOT_FOUND") == error(missing, 404, "NOT_FOUND"), path
    # a member of this workplace named in a path is still only this workplace's
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/services/tudy/usage-permissions/{other.members[0]}",
        headers=mine,
    )
    assert answer.status_code in (404, 422), answer.text


async def test_unknown_routes_and_methods(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    error(await api.get("/v1/nothing-here"), 404, "NOT_FOUND")
    error(await api.get("/nothing"), 404, "NOT_FOUND")
    answer = await api.patch(
        f"/v1/workplaces/{workplace.id}/services", headers=rep(api_runtime, workplace)
    )
    error(answer, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in answer.headers["allow"]
