"""Webhook endpoints over HTTP (R-EVENT-2; docs/webhooks.md), on the real servers: create, list,
delete, rotate, who may, the URL rules, deliveries and resend (delivery rows inserted directly:
the dispatcher is not part of this API)."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

import services.webhook_targets
from api.runtime import Runtime
from domain.event_types import EVENT_TYPES
from store import webhooks
from store.db import Pool
from tests.api.conftest import bearer, system_token, token
from tests.conftest import Workplace
from tests.store.test_webhooks import T0, append_event, insert_delivery

HOOK = "http://127.0.0.1:8999/hook"  # loopback: the tests are a local stack


def rep(rt: Runtime, wp: Workplace) -> dict[str, str]:
    return bearer(token(rt, wp.id, wp.rep))


def path(wp: Workplace | None, rest: str = "") -> str:
    scope = f"/v1/workplaces/{wp.id}" if wp is not None else "/v1"
    return f"{scope}/webhook-endpoints{rest}"


def error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    found: dict[str, Any] = answer.json()["error"]
    assert found["code"] == code, found
    return found


async def create(
    api: httpx.AsyncClient, headers: dict[str, str], wp: Workplace | None, **body: Any
) -> dict[str, Any]:
    answer = await api.post(path(wp), json={"url": HOOK, **body}, headers=headers)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def audit_actions(pool: Pool, workplace_id: str, endpoint_id: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action FROM audit_log WHERE workplace_id = %s"
            " AND details->>'endpoint_id' = %s ORDER BY audit_id",
            (workplace_id, endpoint_id),
        )
        return [r["action"] for r in await cur.fetchall()]


async def test_the_representative_creates_lists_rotates_and_deletes(
    api: httpx.AsyncClient, api_runtime: Runtime, pool: Pool, workplace: Workplace
) -> None:
    headers = rep(api_runtime, workplace)
    made = await create(api, headers, workplace, types=["invoice.issued", "subscription.cancelled"])
    assert set(made) == {"endpoint_id", "url", "types", "secret", "created_at"}
    assert made["secret"].startswith("whsec_") and made["url"] == HOOK
    assert made["types"] == ["invoice.issued", "subscription.cancelled"]
    assert made["created_at"].endswith("+09:00")

    listed = await api.get(path(workplace), headers=headers)
    assert listed.status_code == 200
    assert made["secret"] not in listed.text and "secret" not in listed.text
    (entry,) = listed.json()["endpoints"]
    assert entry["endpoint_id"] == made["endpoint_id"] and entry["status"] == "enabled"

    one = path(workplace, f"/{made['endpoint_id']}")
    rotated = await api.post(f"{one}/rotate-secret", headers=headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != made["secret"]
    signing = [s.secret for s in await webhooks.secrets(pool, made["endpoint_id"])]
    assert signing == [rotated.json()["secret"], made["secret"]]
    assert made["secret"] not in (await api.get(path(workplace), headers=headers)).text

    assert (await api.delete(one, headers=headers)).status_code == 204
    assert (await api.get(path(workplace), headers=headers)).json() == {"endpoints": []}
    error(await api.delete(one, headers=headers), 404, "NOT_FOUND")
    error(await api.post(f"{one}/rotate-secret", headers=headers), 404, "NOT_FOUND")
    assert await audit_actions(pool, workplace.id, made["endpoint_id"]) == [
        "webhook_endpoint_created",
        "webhook_secret_rotated",
        "webhook_endpoint_deleted",
    ]


async def test_a_retry_with_the_same_key_gets_the_same_endpoint_and_secret(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": "hook-1"}
    first = await api.post(path(workplace), json={"url": HOOK}, headers=headers)
    again = await api.post(path(workplace), json={"url": HOOK}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    listed = await api.get(path(workplace), headers=rep(api_runtime, workplace))
    assert len(listed.json()["endpoints"]) == 1


async def test_only_the_representative_and_only_their_workplace(
    api: httpx.AsyncClient,
    api_runtime: Runtime,
    workplace: Workplace,
    other_workplace: Workplace,
) -> None:
    made = await create(api, rep(api_runtime, workplace), workplace)
    one = path(workplace, f"/{made['endpoint_id']}")
    # an admin holding a delegated management permission is still not the representative
    await api_runtime.access.set_management_permissions(
        workplace.id, "ubob", workplace.admin, ["usage.view"], workplace.rep
    )
    for member in (workplace.admin, workplace.members[0]):
        headers = bearer(token(api_runtime, workplace.id, member))
        error(await api.get(path(workplace), headers=headers), 403, "NOT_REPRESENTATIVE_ADMIN")
        error(
            await api.post(path(workplace), json={"url": HOOK}, headers=headers),
            403,
            "NOT_REPRESENTATIVE_ADMIN",
        )
        error(await api.delete(one, headers=headers), 403, "NOT_REPRESENTATIVE_ADMIN")
    # another workplace's representative: not found, on either path
    stranger = rep(api_runtime, other_workplace)
    error(await api.get(path(workplace), headers=stranger), 404, "NOT_FOUND")
    theirs = path(other_workplace, f"/{made['endpoint_id']}")
    error(await api.delete(theirs, headers=stranger), 404, "NOT_FOUND")
    error(await api.get(f"{theirs}/deliveries", headers=stranger), 404, "NOT_FOUND")
    # a system token does not act as a workplace, nor a member as the system
    system = bearer(system_token(api_runtime))
    error(await api.get(path(workplace), headers=system), 403, "FORBIDDEN")
    error(await api.get(path(None), headers=rep(api_runtime, workplace)), 403, "FORBIDDEN")
    error(
        await api.post(path(None), json={"url": HOOK}, headers=rep(api_runtime, workplace)),
        403,
        "FORBIDDEN",
    )
    assert (await api.get(path(workplace), headers=rep(api_runtime, workplace))).json()[
        "endpoints"
    ][0]["endpoint_id"] == made["endpoint_id"]


async def test_system_wide_endpoints_take_a_system_token(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    system = bearer(system_token(api_runtime))
    made = await create(api, system, None, description="the suite's billing")
    assert made["types"] is None
    listed = (await api.get(path(None), headers=system)).json()["endpoints"]
    assert made["endpoint_id"] in [e["endpoint_id"] for e in listed]
    # not one of a workplace's, and a workplace's path does not reach it
    workplace_list = await api.get(path(workplace), headers=rep(api_runtime, workplace))
    assert made["endpoint_id"] not in workplace_list.text
    error(
        await api.delete(
            path(workplace, f"/{made['endpoint_id']}"), headers=rep(api_runtime, workplace)
        ),
        404,
        "NOT_FOUND",
    )
    one = path(None, f"/{made['endpoint_id']}")
    assert (await api.post(f"{one}/rotate-secret", headers=system)).status_code == 200
    assert (await api.get(f"{one}/deliveries", headers=system)).json()["deliveries"] == []
    assert (await api.delete(one, headers=system)).status_code == 204


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://93.184.216.34/hook", "scheme"),  # http: loopback only
        ("ftp://127.0.0.1/hook", "scheme"),
        ("https://10.1.2.3/hook", "address"),
        ("https://192.168.0.10/hook", "address"),
        ("https://169.254.169.254/latest/meta-data", "address"),
        ("https://user:pw@127.0.0.1/hook", "credentials"),
    ],
)
async def test_urls_that_may_not_receive_webhooks_are_refused(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, url: str, reason: str
) -> None:
    answer = await api.post(path(workplace), json={"url": url}, headers=rep(api_runtime, workplace))
    found = error(answer, 422, "WEBHOOK_URL_REFUSED")
    assert found["details"]["reason"] == reason
    assert found["message_ko"].startswith("이 주소로는 웹훅을 보낼 수 없습니다")


async def test_a_name_is_judged_by_the_addresses_it_resolves_to(
    api: httpx.AsyncClient,
    api_runtime: Runtime,
    workplace: Workplace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "hooks.internal.example": ["93.184.216.34", "10.0.0.7"],  # one private address: no
        "hooks.public.example": ["93.184.216.34"],
    }

    async def resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(a) for a in answers.get(host, [])]

    monkeypatch.setattr(services.webhook_targets, "resolve", resolve)
    headers = rep(api_runtime, workplace)
    refused = await api.post(
        path(workplace), json={"url": "https://hooks.internal.example/in"}, headers=headers
    )
    assert "10.0.0.7" in error(refused, 422, "WEBHOOK_URL_REFUSED")["message"]
    unknown = await api.post(
        path(workplace), json={"url": "https://nowhere.example/in"}, headers=headers
    )
    assert error(unknown, 422, "WEBHOOK_URL_REFUSED")["details"]["reason"] == "unresolvable"
    made = await create(api, headers, workplace, url="https://hooks.public.example/in")
    assert made["url"] == "https://hooks.public.example/in"


async def test_types_descriptions_and_the_limit_of_ten(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = rep(api_runtime, workplace)
    unknown = await api.post(
        path(workplace), json={"url": HOOK, "types": ["invoice.paid"]}, headers=headers
    )
    assert error(unknown, 422, "UNKNOWN_EVENT_TYPE")["details"]["event_type"] == "invoice.paid"
    error(
        await api.post(path(workplace), json={"url": HOOK, "types": []}, headers=headers),
        400,
        "VALIDATION_ERROR",
    )
    error(
        await api.post(
            path(workplace), json={"url": HOOK, "description": "x" * 201}, headers=headers
        ),
        400,
        "VALIDATION_ERROR",
    )
    every = await create(api, headers, workplace, types=list(EVENT_TYPES), description="가" * 200)
    for _ in range(9):
        await create(api, headers, workplace)
    full = await api.post(path(workplace), json={"url": HOOK}, headers=headers)
    assert error(full, 422, "WEBHOOK_ENDPOINT_LIMIT")["details"]["limit"] == 10
    await api.delete(path(workplace, f"/{every['endpoint_id']}"), headers=headers)
    await create(api, headers, workplace)


async def test_deliveries_are_listed_newest_first_and_finished_ones_resent(
    api: httpx.AsyncClient, api_runtime: Runtime, pool: Pool, workplace: Workplace
) -> None:
    headers = rep(api_runtime, workplace)
    made = await create(api, headers, workplace)
    endpoint_id = made["endpoint_id"]
    event_no = await append_event(pool, workplace.id, "subscription.activated")
    succeeded = await insert_delivery(
        pool, endpoint_id, event_no, "succeeded", T0, attempts=1, last_status_code=204
    )
    failed = await insert_delivery(
        pool,
        endpoint_id,
        await append_event(pool, workplace.id),
        "failed",
        T0.replace(minute=7),
        attempts=8,
        last_status_code=503,
        last_error="HTTP 503",
    )
    pending = await insert_delivery(
        pool,
        endpoint_id,
        await append_event(pool, workplace.id),
        "pending",
        T0.replace(minute=8),
        attempts=2,
        last_error="timed out after 15 s",
        next_attempt_at=T0.replace(minute=38),
    )
    base = path(workplace, f"/{endpoint_id}/deliveries")
    listed = (await api.get(base, headers=headers)).json()
    assert [d["delivery_id"] for d in listed["deliveries"]] == [pending, failed, succeeded]
    assert listed["next_before"] is None
    first = listed["deliveries"][2]
    assert first["event_type"] == "subscription.activated" and first["event_id"].startswith("evt_")
    assert (first["status"], first["attempts"], first["last_status_code"]) == ("succeeded", 1, 204)
    assert listed["deliveries"][0]["next_attempt_at"].endswith("+09:00")

    only_failed = (await api.get(f"{base}?status=failed", headers=headers)).json()
    assert [d["delivery_id"] for d in only_failed["deliveries"]] == [failed]
    page = (await api.get(f"{base}?limit=2", headers=headers)).json()
    assert [d["delivery_id"] for d in page["deliveries"]] == [pending, failed]
    rest = (await api.get(f"{base}?limit=2&before={page['next_before']}", headers=headers)).json()
    assert [d["delivery_id"] for d in rest["deliveries"]] == [succeeded]
    error(await api.get(f"{base}?status=lost", headers=headers), 400, "VALIDATION_ERROR")

    for finished in (failed, succeeded):
        resent = await api.post(f"{base}/{finished}/resend", headers=headers)
        assert resent.status_code == 200, resent.text
        body = resent.json()
        assert (body["delivery_id"], body["status"], body["attempts"]) == (finished, "pending", 0)
        assert body["next_attempt_at"] is not None
    # the same event, so the same webhook-id goes out again
    assert body["event_id"] == first["event_id"]
    error(
        await api.post(f"{base}/{pending}/resend", headers=headers), 409, "WEBHOOK_DELIVERY_PENDING"
    )
    error(await api.post(f"{base}/dl_nothing/resend", headers=headers), 404, "NOT_FOUND")
    error(
        await api.post(
            f"{base}/{failed}/resend",
            headers=bearer(token(api_runtime, workplace.id, workplace.admin)),
        ),
        403,
        "NOT_REPRESENTATIVE_ADMIN",
    )

    # an endpoint disabled by failures is listed as such, and resends wait for a new one
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET status = 'disabled', status_changed_at = %s"
            " WHERE endpoint_id = %s",
            (T0, endpoint_id),
        )
    (entry,) = (await api.get(path(workplace), headers=headers)).json()["endpoints"]
    assert entry["status"] == "disabled"
    error(
        await api.post(f"{base}/{succeeded}/resend", headers=headers),
        409,
        "WEBHOOK_ENDPOINT_DISABLED",
    )
