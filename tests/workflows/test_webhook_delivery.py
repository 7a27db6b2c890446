"""R-EVENT-2: webhook delivery through the real engine, end to end.

Events are appended to the outbox (store.events.append), the dispatcher LISTENs and pokes the
endpoint workflows on the time-skipping server, their rounds send over HTTP to a real local
receiver (tests/webhook_receiver.py) that verifies every signature with the endpoint's secrets.
Endpoint and secret rows are inserted directly (the API that creates them is another piece).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.webhook_schedule import MAX_ATTEMPTS, RETRY_DELAYS
from services.webhook_dispatch import WebhookDispatcher
from starter.sandbox_runner import workflow_runner
from starter.temporal import binary, build_webhook_worker, connect
from store import deliveries, events
from store.db import Pool
from tests.conftest import advance, eventually, own_database
from tests.partner_sandbox import SandboxPartnerProcess, free_port
from tests.webhook_receiver import Receiver
from workflows.webhooks import WebhookEndpointWorkflow, endpoint_workflow_id

HISTORIES = Path(__file__).parent / "histories"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


@dataclass
class Hooks:
    env: WorkflowEnvironment
    pool: Pool
    dispatcher: WebhookDispatcher
    endpoints: list[str]

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def endpoint(self, workplace_id: str, url: str, secret: str) -> str:
        endpoint_id = f"we_{uuid.uuid4().hex[:12]}"
        created = await self.now()
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO webhook_endpoints (endpoint_id, workplace_id, url, created_by,"
                " created_at) VALUES (%s, %s, %s, 'test', %s)",
                (endpoint_id, workplace_id, url, created),
            )
            await conn.execute(
                "INSERT INTO webhook_secrets (endpoint_id, secret, created_at) VALUES (%s, %s, %s)",
                (endpoint_id, secret, created),
            )
        self.endpoints.append(endpoint_id)
        return endpoint_id

    async def rotate(self, endpoint_id: str, secret: str) -> None:
        """What the API's rotate-secret does: a new current secret, the old one retiring in 24 h."""
        now = await self.now()
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE webhook_secrets SET retires_at = %s"
                " WHERE endpoint_id = %s AND retires_at IS NULL",
                (now + timedelta(hours=24), endpoint_id),
            )
            await conn.execute(
                "INSERT INTO webhook_secrets (endpoint_id, secret, created_at) VALUES (%s, %s, %s)",
                (endpoint_id, secret, now),
            )

    async def emit(self, workplace_id: str, stream: str, n: int = 1) -> list[str]:
        """`n` events of a subscription `stream`, each committed on its own (as decisions are)."""
        ids = []
        for _ in range(n):
            key = f"test:{uuid.uuid4().hex}"
            async with self.pool.connection() as conn, conn.transaction():
                await events.append(
                    conn,
                    event_key=key,
                    type="subscription.plan_changed",
                    created_at=await self.now(),
                    workplace_id=workplace_id,
                    service_id="ubob",
                    subscription_id=stream,
                    data={"plan_id": "basic"},
                )
            ids.append(events.event_id(key))
        return ids

    async def deliveries(self, endpoint_id: str) -> list[dict]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.*, e.event_id FROM webhook_deliveries d JOIN events e USING (event_no)"
                " WHERE endpoint_id = %s ORDER BY d.stream, d.seq",
                (endpoint_id,),
            )
            return list(await cur.fetchall())

    async def all_succeeded(self, endpoint_id: str, n: int) -> bool:
        rows = await self.deliveries(endpoint_id)
        return len(rows) == n and all(r["status"] == "succeeded" for r in rows)

    async def delete(self, endpoint_ids: list[str], *, within: float = 60) -> None:
        """Delete endpoints as the API does and wait until their workflows have ended (each at
        its next round; terminating a run whose round is in flight would leave the
        time-skipping clock locked for the tests after it)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE webhook_endpoints SET status = 'deleted' WHERE endpoint_id = ANY(%s)",
                (endpoint_ids,),
            )
        await self.dispatcher.poke(endpoint_ids)
        for endpoint_id in endpoint_ids:
            handle = self.dispatcher.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))
            await eventually(
                partial(has_status, handle, WorkflowExecutionStatus.COMPLETED),
                within=within,
                what=f"{endpoint_id}'s workflow ended",
            )

    async def endpoint_row(self, endpoint_id: str) -> dict:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM webhook_endpoints WHERE endpoint_id = %s", (endpoint_id,)
            )
            row = await cur.fetchone()
            assert row is not None
            return row


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own: its long skips (25 h, days of retries) on
    the suite's shared server fired every timer the earlier tests' subscriptions had left, and
    the skip's RPC timed out in a full run."""
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    yield environment
    await environment.shutdown()


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str, partner_server: SandboxPartnerProcess) -> AsyncIterator[Pool]:
    """A database of this module's own (tests/conftest.py `own_database`): on the suite's shared
    one the dispatcher's sweep poked other tests' endpoints (to dead or unresolvable URLs), whose
    rounds ran in real time and held the time-skipping clock, so a 25 h skip timed out."""
    async with own_database(database_url, "hooks") as (_, own):
        yield own


@pytest_asyncio.fixture
async def hooks(env: WorkflowEnvironment, pool: Pool) -> AsyncIterator[Hooks]:
    queue = f"hooks-test-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    dispatcher = WebhookDispatcher(
        pool, env.client, queue, clock=env.get_current_time, sweep_every=2.0
    )
    found = Hooks(env, pool, dispatcher, [])
    async with build_webhook_worker(env.client, pool, queue, allow_loopback=True):
        running = asyncio.create_task(dispatcher.run(stop))
        await asyncio.wait_for(dispatcher.listening.wait(), 15)
        try:
            yield found
        finally:
            await found.delete(found.endpoints)
            stop.set()
            await running


def workplace() -> str:
    return f"wp-hook-{uuid.uuid4().hex[:8]}"


def check_received(receiver: Receiver, expected: dict[str, list[str]]) -> None:
    """The delivery contract (Receiver.problems: signed, each event once after dedup, in seq
    order), and more strictly: every attempt of a stream in seq order, and no event of a stream
    sent before the one before it had been answered 2xx."""
    assert receiver.problems(expected) == []
    for stream in expected:
        seen = [s for s in receiver.seen if s.stream == stream]
        assert [s.body["seq"] for s in seen] == sorted(s.body["seq"] for s in seen)
        for earlier, later in itertools.pairwise(seen):
            if later.webhook_id != earlier.webhook_id:
                assert 200 <= earlier.status < 300, "a later event was sent before a success"


async def test_each_event_once_in_seq_order_across_errors_and_an_outage(hooks: Hooks) -> None:
    wp, secret = workplace(), new_secret()
    receiver = await Receiver(secrets=[secret], status=500).up()
    endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
    try:
        a = await hooks.emit(wp, f"sub-a-{wp}", 3)
        b = await hooks.emit(wp, f"sub-b-{wp}", 2)
        # Answering 500: each stream's first event is tried and retried, the later ones wait.
        await eventually(lambda: _attempted(hooks, endpoint_id, 1), what="first attempts")
        await advance(hooks.env, RETRY_DELAYS[0])
        await eventually(lambda: _attempted(hooks, endpoint_id, 2), what="second attempts")
        assert {s.webhook_id for s in receiver.seen} == {a[0], b[0]}
        # Down: connection refused, retried on the schedule.
        await receiver.down()
        await advance(hooks.env, RETRY_DELAYS[1])
        await eventually(lambda: _attempted(hooks, endpoint_id, 3), what="attempts while down")
        rows = await hooks.deliveries(endpoint_id)
        assert {r["last_error"] for r in rows if r["attempts"] == 3} == {
            "unreachable (ConnectError)"
        }
        # Up and answering 200: everything arrives, once, in order.
        receiver.status = 200
        await receiver.up()
        await advance(hooks.env, RETRY_DELAYS[2])
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 5), what="all delivered")
        check_received(receiver, {f"sub-a-{wp}": a, f"sub-b-{wp}": b})
        assert (await hooks.endpoint_row(endpoint_id))["failing_since"] is None
    finally:
        await receiver.down()


async def test_an_answer_later_than_15_seconds_is_retried(hooks: Hooks) -> None:
    wp, secret = workplace(), new_secret()
    receiver = await Receiver(secrets=[secret], script=[(200, 16.0)]).up()
    endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
    try:
        ids = await hooks.emit(wp, f"sub-{wp}", 2)
        # The first answer comes after 16 s: a failed attempt (the sender gave up at 15 s),
        # retried 5 s after it ended, not 5 s after it began (10 s before it ended).
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 2), within=60, what="delivered")
        first, second = await hooks.deliveries(endpoint_id)
        assert (first["attempts"], second["attempts"]) == (2, 1)
        assert first["last_attempt_at"] - first["created_at"] >= timedelta(seconds=15 + 5)
        assert [(s.webhook_id, s.status) for s in receiver.seen] == [
            (ids[0], 0),
            (ids[0], 200),
            (ids[1], 200),
        ]
        check_received(receiver, {f"sub-{wp}": ids})
    finally:
        await receiver.down()


async def test_a_429_with_retry_after_waits_as_long_as_the_receiver_asks(hooks: Hooks) -> None:
    """A receiver that answers 429 with `Retry-After: 120` is tried again 120 s later, not at
    the schedule's 5 s; the attempt still counts."""
    wp, secret = workplace(), new_secret()
    receiver = await Receiver(
        secrets=[secret], script=[(429, 0.0)], headers={"retry-after": "120"}
    ).up()
    endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
    try:
        ids = await hooks.emit(wp, f"sub-{wp}")
        await eventually(lambda: _attempted(hooks, endpoint_id, 1), what="the 429")
        row = (await hooks.deliveries(endpoint_id))[0]
        assert (row["status"], row["last_status_code"]) == ("pending", 429)
        assert "Retry-After 120 s" in row["last_error"]
        waited = row["next_attempt_at"] - row["last_attempt_at"]
        assert timedelta(seconds=120) <= waited < timedelta(seconds=122)
        await advance(hooks.env, RETRY_DELAYS[0])  # the schedule's delay alone: not yet
        await asyncio.sleep(0.5)
        assert (await hooks.deliveries(endpoint_id))[0]["attempts"] == 1
        await advance(hooks.env, timedelta(seconds=120))
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 1), what="the retry")
        check_received(receiver, {f"sub-{wp}": ids})
    finally:
        await receiver.down()


async def test_a_secret_rotation_signs_with_both_until_the_old_one_retires(hooks: Hooks) -> None:
    wp, old, new = workplace(), new_secret(), new_secret()
    receiver = await Receiver(secrets=[old, new]).up()
    endpoint_id = await hooks.endpoint(wp, receiver.url, old)
    stream = f"sub-{wp}"
    try:
        first = await hooks.emit(wp, stream)
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 1), what="before rotation")
        await hooks.rotate(endpoint_id, new)
        during = await hooks.emit(wp, stream)
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 2), what="during overlap")
        await advance(hooks.env, timedelta(hours=25))
        after = await hooks.emit(wp, stream)
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 3), what="after retirement")
        by_id = {s.webhook_id: s for s in receiver.seen}
        assert by_id[first[0]].verified_by == [old]
        assert by_id[during[0]].verified_by == [old, new]
        assert len(by_id[during[0]].signatures) == 2
        assert by_id[after[0]].verified_by == [new]
        check_received(receiver, {stream: first + during + after})
    finally:
        await receiver.down()


async def test_attempts_and_deliveries_are_counted_on_the_workers_metrics(
    env: WorkflowEnvironment, pool: Pool
) -> None:
    """The worker's /metrics (its Temporal runtime's Prometheus endpoint, as production serves
    it): one failed attempt and its retry, the delivery that then succeeded, and the age of the
    endpoint's oldest pending delivery, back to 0 once nothing is pending."""
    port = free_port()
    target = env.client.service_client.config.target_host
    client = await connect(target, metrics_address=f"127.0.0.1:{port}")
    queue = f"hooks-metrics-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    dispatcher = WebhookDispatcher(pool, client, queue, clock=env.get_current_time, sweep_every=2.0)
    hooks = Hooks(env, pool, dispatcher, [])
    wp, secret = workplace(), new_secret()
    receiver = await Receiver(secrets=[secret], script=[(500, 0.0)]).up()
    async with build_webhook_worker(client, pool, queue, allow_loopback=True):
        running = asyncio.create_task(dispatcher.run(stop))
        try:
            await asyncio.wait_for(dispatcher.listening.wait(), 15)
            endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
            await hooks.emit(wp, f"sub-{wp}")
            await eventually(lambda: _attempted(hooks, endpoint_id, 1), what="the failed attempt")
            await advance(env, RETRY_DELAYS[0])
            await eventually(lambda: hooks.all_succeeded(endpoint_id, 1), what="the retry")

            async def scraped() -> dict[str, float] | None:
                async with httpx.AsyncClient() as http:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                values = {
                    line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("bizsupport_webhook_")
                }
                ok = 'bizsupport_webhook_attempts{result="ok"}'
                return values if any(k.startswith(ok[:-1]) for k in values) else None

            values = await eventually(scraped, what="the webhook metrics")
            assert _series(values, "bizsupport_webhook_attempts", 'result="status"') == 1
            assert _series(values, "bizsupport_webhook_attempts", 'result="ok"') == 1
            assert _series(values, "bizsupport_webhook_deliveries", 'outcome="succeeded"') == 1
            assert _series(values, "bizsupport_webhook_oldest_pending_age", endpoint_id) == 0
            await hooks.delete([endpoint_id])
        finally:
            stop.set()
            await running
            await receiver.down()


def _series(values: dict[str, float], name: str, label: str) -> float:
    """The one sample of metric `name` whose labels include `label` (the runtime adds its own
    labels, such as the service name, beside ours)."""
    found = [
        v for k, v in values.items() if k.split("{")[0] in (name, f"{name}_total") and label in k
    ]
    assert len(found) == 1, (name, label, values)
    return found[0]


async def test_an_event_committed_before_listen_is_up_is_poked_without_the_periodic_sweep(
    env: WorkflowEnvironment, pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between the dispatcher's start-up sweep and its LISTEN: an event committed
    there is never announced to it. The sweep that follows LISTEN finds it; before, it waited
    for the periodic sweep (30 s), and the crash test's first attempt timed out in a CI run.
    Here LISTEN takes 0.5 s to connect, the event is committed just after the start-up sweep's
    read, and the periodic sweep is an hour away."""
    connect = psycopg.AsyncConnection.connect

    async def slow_connect(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.5)
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", slow_connect)
    queue = f"hooks-window-{uuid.uuid4().hex[:8]}"
    dispatcher = WebhookDispatcher(pool, env.client, queue, clock=env.get_current_time)
    dispatcher.sweep_every = 3600.0
    hooks = Hooks(env, pool, dispatcher, [])
    wp = workplace()
    endpoint_id = await hooks.endpoint(wp, "http://127.0.0.1:9/hook", new_secret())
    with_work = deliveries.with_work
    swept_listening: list[bool] = []

    async def sweep_then_commit(pool: Pool, *, now: datetime) -> list[str]:
        found = await with_work(pool, now=now)
        swept_listening.append(dispatcher.listening.is_set())
        if len(swept_listening) == 1:
            await hooks.emit(wp, f"sub-{wp}")  # after the start-up sweep's read
        return found

    monkeypatch.setattr(deliveries, "with_work", sweep_then_commit)
    stop = asyncio.Event()
    handle = env.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))

    async def poked() -> bool:
        try:
            await handle.describe()
        except RPCError:
            return False
        return True

    # A worker runs what the poke starts (a workflow task nobody takes would hold the
    # time-skipping clock for the tests after this one, even once terminated).
    async with build_webhook_worker(env.client, pool, queue, allow_loopback=True):
        running = asyncio.create_task(dispatcher.run(stop))
        try:
            await eventually(poked, within=10, what="the endpoint poked")
            assert swept_listening[0] is False and True in swept_listening
            await hooks.delete([endpoint_id])
        finally:
            stop.set()
            await running


async def test_a_dead_endpoint_does_not_delay_another(hooks: Hooks) -> None:
    wp = workplace()
    dead = await Receiver(status=503).up()
    live_secret, dead_secret = new_secret(), new_secret()
    dead.secrets = [dead_secret]
    live = await Receiver(secrets=[live_secret]).up()
    dead_id = await hooks.endpoint(wp, dead.url, dead_secret)
    live_id = await hooks.endpoint(wp, live.url, live_secret)
    try:
        dead.delay = 10.0  # and slow: each of its attempts holds its round for 10 s
        ids = await hooks.emit(wp, f"sub-{wp}", 4)
        # Every event reaches the live endpoint while the dead one has not got past its first.
        await eventually(lambda: hooks.all_succeeded(live_id, 4), what="the live endpoint")
        assert {r["attempts"] for r in await hooks.deliveries(dead_id)} <= {0, 1}
        check_received(live, {f"sub-{wp}": ids})
    finally:
        await dead.down()
        await live.down()


async def test_failed_after_the_last_attempt_and_disabled_after_three_days(hooks: Hooks) -> None:
    wp, secret = workplace(), new_secret()
    receiver = await Receiver(secrets=[secret], status=500).up()
    endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
    try:
        started = await hooks.now()
        await hooks.emit(wp, f"sub-1-{wp}")
        await eventually(lambda: _attempted(hooks, endpoint_id, 1), what="first attempt")
        # The whole schedule (about 28 h) on the time-skipping clock: each retry runs when the
        # business clock reaches it, then the delivery is failed.
        for n, delay in enumerate(RETRY_DELAYS, start=2):
            row = (await hooks.deliveries(endpoint_id))[0]
            # counted from when the attempt ended (its answer took milliseconds)
            waited = row["next_attempt_at"] - row["last_attempt_at"]
            assert delay <= waited < delay + timedelta(seconds=2)
            await advance(hooks.env, delay)
            await eventually(partial(_attempted, hooks, endpoint_id, n), what=f"attempt {n}")
        row = (await hooks.deliveries(endpoint_id))[0]
        assert (row["status"], row["attempts"], row["next_attempt_at"]) == (
            "failed",
            MAX_ATTEMPTS,
            None,
        )
        assert row["last_status_code"] == 500
        ep = await hooks.endpoint_row(endpoint_id)
        assert ep["status"] == "enabled" and ep["failing_since"] <= started + timedelta(seconds=5)
        # Keep failing: new events, each retried and failing, until three days after the first
        # failure the endpoint is disabled, audited, and its workflow ends.
        for n in range(2, 5):
            await hooks.emit(wp, f"sub-{n}-{wp}")
            await eventually(partial(_claimed, hooks, endpoint_id, n), what=f"event {n}")
            await advance(hooks.env, timedelta(hours=28))
            if (await hooks.endpoint_row(endpoint_id))["status"] == "disabled":
                break
        ep = await hooks.endpoint_row(endpoint_id)
        assert ep["status"] == "disabled"
        assert ep["status_changed_at"] - ep["failing_since"] >= timedelta(days=3)
        async with hooks.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM audit_log WHERE action = 'webhook_endpoint_disabled'"
                " AND workplace_id = %s",
                (wp,),
            )
            entries = await cur.fetchall()
        assert len(entries) == 1 and entries[0]["details"]["endpoint_id"] == endpoint_id
        handle = hooks.env.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))
        await eventually(
            lambda: has_status(handle, WorkflowExecutionStatus.COMPLETED), what="workflow ended"
        )
        assert all(s.verified_by for s in receiver.seen)
    finally:
        await receiver.down()


async def _attempted(hooks: Hooks, endpoint_id: str, attempts: int) -> bool:
    rows = await hooks.deliveries(endpoint_id)
    heads: dict[str, dict] = {}
    for row in rows:
        heads.setdefault(row["stream"], row)
    return bool(heads) and all(r["attempts"] >= attempts for r in heads.values())


async def _claimed(hooks: Hooks, endpoint_id: str, n: int) -> bool:
    """The endpoint has `n` deliveries and the newest was attempted once."""
    rows = await hooks.deliveries(endpoint_id)
    return len(rows) == n and all(r["attempts"] >= 1 for r in rows)


async def has_status(handle: object, status: WorkflowExecutionStatus) -> bool:
    described = await handle.describe()  # type: ignore[attr-defined]
    return bool(described.status == status)


# ── recorded histories of the endpoint workflow ──────────────────────────────────────────────
# `webhook_v1_run*.json`: an endpoint's life (a failed attempt, its retry on the schedule, later
# events, then deleted), recorded by the code of its first release. A change to
# WebhookEndpointWorkflow must replay them; never re-record one to make a change pass
# (docs/architecture.md, "Versions"). `BIZSUPPORT_RECORD_HISTORIES=1` records a new version.

WEBHOOK_HISTORIES = "webhook_v*_run*.json"
WEBHOOK_VERSION = 1


async def test_recorded_endpoint_histories_replay() -> None:
    files = sorted(HISTORIES.glob(WEBHOOK_HISTORIES))
    assert files, f"no recorded endpoint histories in {HISTORIES}"
    replayer = Replayer(
        workflows=[WebhookEndpointWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    for path in files:
        await replayer.replay_workflow(WorkflowHistory.from_json(path.stem, path.read_text()))


@pytest.mark.skipif(not os.environ.get("BIZSUPPORT_RECORD_HISTORIES"), reason="recording only")
async def test_record_endpoint_history(hooks: Hooks) -> None:
    wp, secret = workplace(), new_secret()
    receiver = await Receiver(secrets=[secret], script=[(500, 0.0)]).up()
    endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
    handle = hooks.env.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))
    try:
        ids = await hooks.emit(wp, f"sub-{wp}", 2)
        await eventually(lambda: _attempted(hooks, endpoint_id, 1), what="the first attempt")
        await advance(hooks.env, RETRY_DELAYS[0])
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 2), what="delivered")
        ids += await hooks.emit(wp, f"sub-{wp}", 1)
        await eventually(lambda: hooks.all_succeeded(endpoint_id, 3), what="a later event")
        check_received(receiver, {f"sub-{wp}": ids})
        await hooks.delete([endpoint_id])
    finally:
        await receiver.down()
    runs = []
    run_id: str | None = (await handle.describe()).run_id
    while run_id:  # from the last run back to the first, through continue-as-new
        history = await hooks.env.client.get_workflow_handle(
            handle.id, run_id=run_id
        ).fetch_history()
        runs.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    for number, history in enumerate(reversed(runs), start=1):
        path = HISTORIES / f"webhook_v{WEBHOOK_VERSION}_run{number}.json"
        assert not path.exists(), f"{path.name} is recorded already: never re-record a version"
        path.write_text(history.to_json())
