"""Requests that survive the death of a process (issue 11), on the real servers.

An Idempotency-Key is a lease: a retry after its owner died takes it over and runs the request
again, and Temporal de-duplicates the change by an id derived from the key, so the effect exists
once and the retry gets the first success. A retry while the owner is alive, and any request while
Temporal is unreachable, gets 503 with Retry-After within seconds; the same key gets the first
outcome once the service is back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api import idempotency
from api.app import create_app
from api.idempotency import LeasePolicy
from api.runtime import Runtime
from services.root import build_services
from services.subscriptions import derived_subscription_id
from starter.temporal import binary
from store import audit, subscriptions
from store.audit import AuditRow
from store.db import Pool
from store.idempotency import IdempotencyStore
from store.subscriptions import SubscriptionRow
from tests.api.conftest import TERMS, bearer, token
from tests.conftest import Workplace


def rep(rt: Runtime, wp: Workplace) -> dict[str, str]:
    return bearer(token(rt, wp.id, wp.rep))


def scope(wp: Workplace) -> str:
    return f"{wp.id}/{wp.rep}"  # api.auth.Caller.scope of the representative admin


def base(wp: Workplace, svc: str) -> str:
    return f"/v1/workplaces/{wp.id}/services/{svc}"


APPLY = {"terms_version": TERMS, "agree_terms": True}


async def apply(api: httpx.AsyncClient, rt: Runtime, wp: Workplace, svc: str) -> dict:
    answer = await api.post(f"{base(wp, svc)}/subscription", json=APPLY, headers=rep(rt, wp))
    assert answer.status_code == 201, answer.text
    return answer.json()


async def actions(pool: Pool, wp: Workplace, action: str) -> list[AuditRow]:
    return [e for e in await audit.entries(pool, wp.id, limit=1000) if e.action == action]


async def slot_rows(pool: Pool, wp: Workplace, svc: str) -> list[SubscriptionRow]:
    return [r for r in await subscriptions.for_workplace(pool, wp.id) if r.service_id == svc]


@pytest_asyncio.fixture
async def policy(api_app: FastAPI) -> AsyncIterator[LeasePolicy]:
    """The app's lease policy, restored after the test."""
    saved = getattr(api_app.state, "idempotency_policy", None) or LeasePolicy()
    api_app.state.idempotency_policy = dataclasses.replace(saved)
    yield api_app.state.idempotency_policy
    api_app.state.idempotency_policy = saved


async def test_a_key_whose_owner_died_is_taken_over_and_the_change_exists_once(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    """The owner made the cancellation and died before answering: its lease runs out, the retry
    takes the key over, runs once more, and gets the first success; one cancellation."""
    await apply(api, api_runtime, workplace, "miricanvas")
    url = f"{base(workplace, 'miricanvas')}/subscription/cancel"
    key = "cancel-owner-died"
    store = IdempotencyStore(pool)
    dead = await store.claim(
        scope(workplace),
        key,
        idempotency.fingerprint("POST", url, b""),
        owner="dead-process",
        lease_seconds=0.3,
    )
    assert dead.owned
    await api_runtime.subscriptions.cancel(  # what the dead process did before it died
        workplace_id=workplace.id,
        service_id="miricanvas",
        actor_id=workplace.rep,
        request_id=idempotency.request_id(scope(workplace), key),
    )
    await asyncio.sleep(0.4)

    retry = await api.post(url, headers={**rep(api_runtime, workplace), "Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert retry.json()["state"] == "cancelled"
    assert "Idempotent-Replayed" not in retry.headers  # ran again (taken over), not replayed
    again = await api.post(url, headers={**rep(api_runtime, workplace), "Idempotency-Key": key})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == retry.json()

    assert len(await actions(pool, workplace, "cancelled")) == 1
    taken = await store.claim(
        scope(workplace),
        key,
        idempotency.fingerprint("POST", url, b""),
        owner="someone",
        lease_seconds=30,
    )
    assert not taken.owned and taken.answered and taken.attempts == 2


async def test_a_retry_while_the_owner_is_alive_gets_503_with_retry_after_within_seconds(
    api: httpx.AsyncClient,
    api_runtime: Runtime,
    workplace: Workplace,
    pool: Pool,
    policy: LeasePolicy,
) -> None:
    policy.wait_for_owner = 1.0
    await apply(api, api_runtime, workplace, "juju")
    url = f"{base(workplace, 'juju')}/subscription/cancel"
    store = IdempotencyStore(pool)
    fingerprint = idempotency.fingerprint("POST", url, b"")
    alive = await store.claim(
        scope(workplace), "cancel-busy", fingerprint, owner="alive", lease_seconds=30
    )
    assert alive.owned
    started = time.monotonic()
    busy = await api.post(
        url, headers={**rep(api_runtime, workplace), "Idempotency-Key": "cancel-busy"}
    )
    assert time.monotonic() - started < 3
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert int(busy.headers["Retry-After"]) >= 1
    # nothing ran: the subscription is live, and the owner's answer is still to come
    assert (await slot_rows(pool, workplace, "juju"))[0].state == "active"
    await store.answer(scope(workplace), "cancel-busy", 200, {"answered": "by the owner"})
    replay = await api.post(
        url, headers={**rep(api_runtime, workplace), "Idempotency-Key": "cancel-busy"}
    )
    assert replay.status_code == 200 and replay.json() == {"answered": "by the owner"}


async def test_a_cancel_whose_answer_was_lost_gets_the_first_success_not_409(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    """The API died after Temporal cancelled but before recording the answer: Temporal's update
    de-duplication gives the retry the first outcome instead of ALREADY_CANCELLED."""
    await apply(api, api_runtime, workplace, "tudy")
    url = f"{base(workplace, 'tudy')}/subscription/cancel"
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": "cancel-lost-answer"}
    first = await api.post(url, headers=headers)
    assert first.status_code == 200, first.text
    await IdempotencyStore(pool).forget_answer(scope(workplace), "cancel-lost-answer")

    retry = await api.post(url, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert len(await actions(pool, workplace, "cancelled")) == 1
    # without the key, a second cancellation is a new request, refused
    plain = await api.post(url, headers=rep(api_runtime, workplace))
    assert plain.status_code == 409 and plain.json()["error"]["code"] == "ALREADY_CANCELLED"


async def test_a_grant_whose_answer_was_lost_is_granted_once(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    await apply(api, api_runtime, workplace, "miricanvas")
    member = workplace.members[0]
    url = f"{base(workplace, 'miricanvas')}/usage-permissions/{member}"
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": "grant-lost-answer"}
    first = await api.put(url, headers=headers)
    assert first.status_code == 200, first.text
    await IdempotencyStore(pool).forget_answer(scope(workplace), "grant-lost-answer")
    retry = await api.put(url, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert len(await actions(pool, workplace, "usage_granted")) == 1


async def test_an_apply_retried_after_a_crash_between_reservation_and_start_is_one_subscription(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    """The first attempt reserved the slot under the id derived from its key and died before
    starting the workflow: the retry finds that reservation and starts its workflow."""
    key = "apply-crashed-before-start"
    sub = derived_subscription_id(
        idempotency.request_id(scope(workplace), key), workplace.id, "juju"
    )
    assert await subscriptions.reserve(
        pool,
        subscription_id=sub,
        workplace_id=workplace.id,
        service_id="juju",
        plan_id="juju-standard",
        applicant_id=workplace.rep,
        terms_version=TERMS,
    )
    url = f"{base(workplace, 'juju')}/subscription"
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": key}
    answer = await api.post(url, json=APPLY, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["subscription_id"] == sub
    assert answer.json()["state"] == "active"
    assert [r.subscription_id for r in await slot_rows(pool, workplace, "juju")] == [sub]
    resumed = await actions(pool, workplace, "reservation_resumed")
    assert [(e.subscription_id, e.details["by"]) for e in resumed] == [(sub, "retry")]

    # the answer lost after the start: the retry answers the same subscription
    await IdempotencyStore(pool).forget_answer(scope(workplace), key)
    again = await api.post(url, json=APPLY, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["subscription_id"] == sub
    assert len(await slot_rows(pool, workplace, "juju")) == 1
    assert len(await actions(pool, workplace, "activated")) == 1


async def test_temporal_unreachable_answers_503_with_retry_after_and_the_key_gets_the_outcome_later(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, pool: Pool
) -> None:
    """A Temporal server the API was connected to is killed: its client now meets a closed port."""
    gone = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    unreachable = gone.client
    await gone.shutdown()
    services = build_services(
        pool,
        unreachable,
        api_runtime.catalog,
        api_runtime.subscriptions.task_queue,
        secret=api_runtime.secret,
        clock=api_runtime.subscriptions.clock,
        temporal_deadline=2.0,
    )
    down = create_app(dataclasses.replace(api_runtime, services=services))
    transport = httpx.ASGITransport(app=down)
    url = f"{base(workplace, 'tudy')}/subscription"
    headers = {**rep(api_runtime, workplace), "Idempotency-Key": "apply-while-temporal-down"}
    async with httpx.AsyncClient(transport=transport, base_url="http://down.test") as down_api:
        started = time.monotonic()
        answer = await down_api.post(url, json=APPLY, headers=headers)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert int(answer.headers["Retry-After"]) >= 1
        assert elapsed < 8, elapsed

    # Temporal is back (the suite's app): the same key gets the application, once
    again = await api.post(url, json=APPLY, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["state"] == "active"
    assert len(await slot_rows(pool, workplace, "tudy")) == 1

    # an update while Temporal is down: 503 within seconds, then the first outcome
    cancel = f"{url}/cancel"
    keyed = {**rep(api_runtime, workplace), "Idempotency-Key": "cancel-while-temporal-down"}
    async with httpx.AsyncClient(transport=transport, base_url="http://down.test") as down_api:
        started = time.monotonic()
        answer = await down_api.post(cancel, headers=keyed)
        assert answer.status_code == 503 and "Retry-After" in answer.headers, answer.text
        assert time.monotonic() - started < 8
    done = await api.post(cancel, headers=keyed)
    assert done.status_code == 200 and done.json()["state"] == "cancelled", done.text


async def test_postgresql_unreachable_answers_503_with_retry_after_within_seconds(
    api_runtime: Runtime, workplace: Workplace
) -> None:
    """The API's pool waits briefly for a connection: a dead database is a 503, not a hang."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    dead: Pool = AsyncConnectionPool(
        f"postgresql://bizsupport@127.0.0.1:{port}/bizsupport",
        connection_class=AsyncConnection[DictRow],
        kwargs={"row_factory": dict_row, "autocommit": True, "connect_timeout": 1},
        timeout=1.0,
        open=False,
    )
    await dead.open(wait=False)
    services = build_services(
        dead,
        api_runtime.client,
        api_runtime.catalog,
        api_runtime.subscriptions.task_queue,
        secret=api_runtime.secret,
    )
    down = create_app(dataclasses.replace(api_runtime, services=services))
    transport = httpx.ASGITransport(app=down)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://down.test") as client:
            for method, url, headers in [
                ("GET", f"{base(workplace, 'juju')}/subscription", rep(api_runtime, workplace)),
                (
                    "POST",
                    f"{base(workplace, 'juju')}/subscription",
                    {**rep(api_runtime, workplace), "Idempotency-Key": "apply-while-pg-down"},
                ),
            ]:
                started = time.monotonic()
                answer = await client.request(method, url, json=APPLY, headers=headers)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
                assert int(answer.headers["Retry-After"]) >= 1
                assert time.monotonic() - started < 5
    finally:
        await dead.close()
