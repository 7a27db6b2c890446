"""Every partner protocol call over real HTTP, from the HTTP gateway to the sandbox partner
server running as a separate process (tests/conftest.py: partner_server). Nothing is mocked."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from partners.config import PartnerEndpoint
from partners.gateway import (
    OPERATOR_RETRY,
    PartnerMisconfigured,
    PartnerRefusal,
    PartnerUnavailable,
)
from partners.http import HttpPartner
from tests.partner_sandbox import SandboxPartnerProcess, free_port, new_secret


def gateway(server: SandboxPartnerProcess, **kwargs: Any) -> tuple[HttpPartner, dict[str, str]]:
    """A gateway to the server for every service; subscriptions' services from a dict."""
    owners: dict[str, str] = {}

    async def service_of(subscription_id: str) -> str | None:
        return owners.get(subscription_id)

    endpoints = {
        sid: PartnerEndpoint(sid, server.url(sid), server.secrets[sid]) for sid in server.services
    }
    return HttpPartner(endpoints, service_of, **kwargs), owners


def ids() -> tuple[str, str]:
    return f"sub-{uuid.uuid4().hex[:10]}", f"wp-{uuid.uuid4().hex[:10]}"


AT = "2026-03-02T09:00:00+09:00"


async def provisioned(
    partner: HttpPartner, owners: dict[str, str], service: str
) -> tuple[str, str]:
    sub, wp = ids()
    owners[sub] = service
    await partner.provision(
        subscription_id=sub, workplace_id=wp, service_id=service, plan_id=f"{service}-a", at_iso=AT
    )
    return sub, wp


async def test_each_call_over_http(partner_server: SandboxPartnerProcess) -> None:
    partner, owners = gateway(partner_server)
    sub, wp = await provisioned(partner, owners, "ubob")
    account = await partner_server.account(sub)
    assert account is not None
    assert (account["workplace_id"], account["plan_id"], account["status"]) == (
        wp,
        "ubob-a",
        "active",
    )

    assert [a.subscription_id for a in await partner.active_accounts(workplace_id=wp)] == [sub]

    await partner_server.add_learning_record(sub, "m1", "c-2", progress=40)
    await partner_server.add_learning_record(sub, "m1", "c-1", progress=10)
    await partner_server.add_learning_record(sub, "m2", "c-9", status="completed", progress=100)
    courses = await partner.courses_in_progress(subscription_id=sub)
    assert [(c.member_id, c.courses) for c in courses] == [("m1", ["c-1", "c-2"])]

    stopped = await partner.change_plan(
        subscription_id=sub, plan_id="ubob-b", stop_courses=True, at_iso=AT
    )
    assert stopped == 2
    assert (await partner_server.account(sub))["plan_id"] == "ubob-b"
    assert await partner.courses_in_progress(subscription_id=sub) == []
    records = await partner_server.learning_records(sub)
    assert {(r["course_id"], r["status"], r["progress"]) for r in records} == {
        ("c-1", "stopped", 0),
        ("c-2", "stopped", 0),
        ("c-9", "completed", 100),
    }

    assert await partner.reset_learning_records(subscription_id=sub, member_id="m1", at_iso=AT) == 2

    await partner_server.add_document(sub, "m2", "포스터")
    await partner.suspend(subscription_id=sub, at_iso=AT)
    assert (await partner_server.account(sub))["status"] == "suspended"
    assert await partner.active_accounts(workplace_id=wp) == []

    deleted = await partner.delete_data(subscription_id=sub)
    assert deleted.details == {"learning_records": 1, "documents": 1, "accounts": 1}
    assert deleted.partner_objects == 3
    assert await partner_server.objects(sub) == {
        "accounts": 0,
        "documents": 0,
        "learning_records": 0,
    }


async def test_every_service_is_served(partner_server: SandboxPartnerProcess) -> None:
    partner, owners = gateway(partner_server)
    assert len(partner_server.services) == 7
    for service in partner_server.services:
        sub, wp = await provisioned(partner, owners, service)
        found = await partner.active_accounts(workplace_id=wp)
        assert [(a.subscription_id, a.service_id) for a in found] == [(sub, service)]


# ── signatures ───────────────────────────────────────────────────────────────────────────────


def signed(secret: str, key: str, body: bytes, at: datetime) -> dict[str, str]:
    return {
        "webhook-id": key,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(key, at, body),
        "content-type": "application/json",
    }


def provision_body(wp: str) -> bytes:
    return json.dumps(
        {"workplace_id": wp, "service_id": "cartax", "plan_id": "cartax-a", "at": AT}
    ).encode()


@pytest.mark.parametrize("how", ["unsigned", "forged", "six_minutes_old", "other_service_secret"])
async def test_unsigned_forged_and_stale_requests_get_401(
    partner_server: SandboxPartnerProcess, how: str
) -> None:
    sub, wp = ids()
    body = provision_body(wp)
    now = datetime.now(UTC)
    secret = partner_server.secrets["cartax"]
    headers = {
        "unsigned": {"content-type": "application/json"},
        "forged": signed(new_secret(), f"provision:{sub}", body, now),
        "six_minutes_old": signed(secret, f"provision:{sub}", body, now - timedelta(minutes=6)),
        "other_service_secret": signed(
            partner_server.secrets["ubob"], f"provision:{sub}", body, now
        ),
    }[how]
    async with httpx.AsyncClient() as client:
        answer = await client.put(
            f"{partner_server.url('cartax')}/accounts/{sub}", content=body, headers=headers
        )
    assert answer.status_code == 401
    assert "signature" in answer.json()["reason"]
    assert await partner_server.account(sub) is None
    # the same request, signed now, goes through: only the signature made the difference
    async with httpx.AsyncClient() as client:
        good = await client.put(
            f"{partner_server.url('cartax')}/accounts/{sub}",
            content=body,
            headers=signed(secret, f"provision:{sub}", body, datetime.now(UTC)),
        )
    assert good.status_code == 201


async def test_a_tampered_body_gets_401(partner_server: SandboxPartnerProcess) -> None:
    sub, wp = ids()
    headers = signed(
        partner_server.secrets["cartax"], f"provision:{sub}", provision_body(wp), datetime.now(UTC)
    )
    async with httpx.AsyncClient() as client:
        answer = await client.put(
            f"{partner_server.url('cartax')}/accounts/{sub}",
            content=provision_body("wp-someone-else"),
            headers=headers,
        )
    assert answer.status_code == 401


async def test_a_repeated_webhook_id_creates_nothing_twice(
    partner_server: SandboxPartnerProcess,
) -> None:
    sub, wp = ids()
    secret = partner_server.secrets["cartax"]
    url = f"{partner_server.url('cartax')}/accounts/{sub}"
    async with httpx.AsyncClient() as client:
        first = await client.put(
            url,
            content=provision_body(wp),
            headers=signed(secret, f"provision:{sub}", provision_body(wp), datetime.now(UTC)),
        )
        again = await client.put(
            url,
            content=provision_body(wp),
            headers=signed(secret, f"provision:{sub}", provision_body(wp), datetime.now(UTC)),
        )
        # another key for the same account: the account is still the same one
        other = await client.put(
            url,
            content=provision_body(wp),
            headers=signed(secret, f"provision:{sub}:x", provision_body(wp), datetime.now(UTC)),
        )
    assert first.status_code == 201 and again.status_code == 201  # the first answer, repeated
    assert first.json() == again.json() == other.json()
    assert other.status_code == 200
    assert len(await partner_server.accounts(subscription_id=sub)) == 1

    # a deletion repeated with its key answers what it deleted the first time
    partner, owners = gateway(partner_server)
    owners[sub] = "cartax"
    await partner_server.add_document(sub, "m1", "계약서")
    first_count = await partner.delete_data(subscription_id=sub)
    assert first_count.partner_objects == 2
    assert await partner.delete_data(subscription_id=sub) == first_count


# ── outcomes ─────────────────────────────────────────────────────────────────────────────────


async def test_a_refusal_carries_the_partners_reason(partner_server: SandboxPartnerProcess) -> None:
    partner, owners = gateway(partner_server)
    sub, wp = ids()
    await partner_server.fault("refuse", "juju", workplace_id=wp, reason="사업자 정보 확인 불가")
    try:
        with pytest.raises(PartnerRefusal) as refused:
            await partner.provision(
                subscription_id=sub, workplace_id=wp, service_id="juju", plan_id="p", at_iso=AT
            )
        assert refused.value.reason == "사업자 정보 확인 불가"
    finally:
        await partner_server.clear_faults(workplace_id=wp)
    # not a refusal any more once the partner says yes
    await partner.provision(
        subscription_id=sub, workplace_id=wp, service_id="juju", plan_id="p", at_iso=AT
    )
    # an unknown account is a refusal too (404 with a reason)
    owners["sub-unknown"] = "juju"
    with pytest.raises(PartnerRefusal, match="no juju account"):
        await partner.suspend(subscription_id="sub-unknown", at_iso=AT)


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_transient_answers_are_retryable(
    partner_server: SandboxPartnerProcess, status: int
) -> None:
    partner, _ = gateway(partner_server)
    sub, wp = ids()
    await partner_server.fault("transient", "tudy", workplace_id=wp, status=status, remaining=2)
    for _ in range(2):
        with pytest.raises(PartnerUnavailable) as failed:
            await partner.provision(
                subscription_id=sub, workplace_id=wp, service_id="tudy", plan_id="p", at_iso=AT
            )
        assert not failed.value.non_retryable and failed.value.next_retry_delay is None
    await partner.provision(
        subscription_id=sub, workplace_id=wp, service_id="tudy", plan_id="p", at_iso=AT
    )
    assert len(await partner_server.accounts(subscription_id=sub)) == 1


async def test_429_is_retried_after_its_retry_after(partner_server: SandboxPartnerProcess) -> None:
    partner, _ = gateway(partner_server)
    sub, wp = ids()
    await partner_server.fault("rate_limit", "wishket", workplace_id=wp, retry_after=7, remaining=1)
    with pytest.raises(PartnerUnavailable) as limited:
        await partner.provision(
            subscription_id=sub, workplace_id=wp, service_id="wishket", plan_id="p", at_iso=AT
        )
    assert limited.value.next_retry_delay == timedelta(seconds=7)
    assert not limited.value.non_retryable


async def test_a_slow_partner_times_out_as_transient(partner_server: SandboxPartnerProcess) -> None:
    partner, _ = gateway(partner_server, answer_timeout=1.0)
    sub, wp = ids()
    await partner_server.fault("slow", "loai", workplace_id=wp, seconds=3)
    try:
        with pytest.raises(PartnerUnavailable, match="in time"):
            await partner.provision(
                subscription_id=sub, workplace_id=wp, service_id="loai", plan_id="p", at_iso=AT
            )
    finally:
        await partner_server.clear_faults(workplace_id=wp)


async def test_a_dead_partner_is_transient() -> None:
    port = free_port()  # nothing listens here
    endpoint = PartnerEndpoint("cartax", f"http://127.0.0.1:{port}/cartax", new_secret())

    async def service_of(subscription_id: str) -> str | None:
        return "cartax"

    partner = HttpPartner({"cartax": endpoint}, service_of)
    with pytest.raises(PartnerUnavailable, match="unreachable"):
        await partner.suspend(subscription_id="sub-1", at_iso=AT)


async def test_a_wrong_secret_alerts_and_retries_slowly(
    partner_server: SandboxPartnerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The partner's wrong-secret mode: 401 to everything, which is an operator alert (log
    and metric) and a slow retry, never a refusal; the secret is not in the log."""
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    partner, _ = gateway(partner_server, meter=runtime.metric_meter)
    sub, wp = ids()
    await partner_server.fault("wrong_secret", "miricanvas")
    try:
        with pytest.raises(PartnerMisconfigured) as failed:
            await partner.provision(
                subscription_id=sub,
                workplace_id=wp,
                service_id="miricanvas",
                plan_id="p",
                at_iso=AT,
            )
    finally:
        await partner_server.clear_faults(service_id="miricanvas")
    assert not isinstance(failed.value, PartnerRefusal)
    assert not failed.value.non_retryable
    assert failed.value.next_retry_delay == OPERATOR_RETRY
    alert = [r.getMessage() for r in caplog.records if "ALERT" in r.getMessage()]
    assert alert and "BIZSUPPORT_PARTNER_SECRET_MIRICANVAS" in alert[0]
    assert partner_server.secrets["miricanvas"] not in caplog.text
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    lines = [line for line in metrics.splitlines() if "bizsupport_partner_calls" in line]
    assert any(
        'outcome="unauthorized"' in line and 'service="miricanvas"' in line for line in lines
    ), metrics[-3000:]
    assert "bizsupport_partner_call_latency" in metrics
