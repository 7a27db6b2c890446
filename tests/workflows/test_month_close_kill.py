"""Month-close through a worker kill (issue 11, R-BILL-5, R-BILL-6): a few hundred subscriptions
reach 00:00 Seoul on the 1st together, the worker is SIGKILLed mid-close and replaced, and every
subscription still gets exactly one invoice for the closed month and one `invoice_issued` entry.

How: N subscriptions (`MONTH_CLOSE_KILL_N`, default 200) are applied for through
SubscriptionService, served by worker A in a process of its own, with a workflow cache as in
production (version 2's local activities need one). The time-skipping clock is moved in one
sleep to exactly the next 1st 00:00 Seoul (one month boundary, as bench/month_close.py does).
Once some but not all invoices are in PostgreSQL, worker A gets SIGKILL and worker B, a new
process on the same task queue, takes over.

A's workflow tasks then reach B in two ways. One A had started times out after 10 s (the
workflow task timeout, in real time) and is scheduled again on the normal queue. One still
waiting on A's sticky queue would wait for good on the time-skipping server, which has no
sticky schedule-to-start timeout (the real server moves it after 10 s): in one full-suite run,
before the drainer, 2 of 200 did. tests/workflows/sticky.py reads A's sticky queue name from
its traffic and plays the real server's part (fails those tasks with RESET_STICKY_TASK_QUEUE
so they move to the normal queue); test_a_task_on_a_dead_workers_sticky_queue_reaches_the_
replacement checks that drainer on one task it must move. With ten workflow task slots per
worker (starter/temporal.py) A has taken few of the 200 tasks when it dies: the drainer moves
about 145 of them, and the close ends about 9 s after the kill, with both cores kept busy by
other processes too (three runs). With 200 slots A had taken nearly all of them and B's
replays of ~150 runs at once outlasted the 10 s task timeout under load, and the test server
then lost a rescheduled task in 3 of 7 loaded runs.

What it proves:
- a month-close interrupted anywhere (between the invoice insert and its publication, in the
  middle of a workflow task, with activities in flight on the dead worker) completes on another
  worker with no invoice missing and none issued twice: the invoice is keyed by (subscription,
  period) and the publication by (subscription, seq), so an activity retried after the kill
  writes once, and a workflow replayed on B takes the same decisions;
- no workflow fails on the way (every one is still running, waiting for the next month).

What it does not prove:
- recovery on the real server's matching service (task queue partitions, its own sticky queue
  timeout rather than the drainer's imitation, history shards); tests/workflows/test_crash.py
  covers a kill on the dev server, for one application;
- a kill of PostgreSQL or of Temporal itself, or a network partition (a worker cut off but alive
  keeps its activities running: at-least-once execution still holds, it is not exercised here);
- throughput: see bench/month_close.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.calendar import first_instant_of_next_month, period_of
from domain.catalog import default_catalog
from services.root import build_services
from services.subscriptions import SubscriptionService
from starter.temporal import binary, ensure_search_attributes
from store import directory
from store.db import Pool
from tests.conftest import TERMS
from tests.workflows.sticky import StickySpy, drain_sticky
from workflows.calls import ACTIVITY_TIMEOUT

N = int(os.environ.get("MONTH_CLOSE_KILL_N", "200"))
T = TypeVar("T")


@pytest_asyncio.fixture(scope="module")
async def own_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own: this test moves the clock a month, which would make
    every other test's subscriptions close a month too."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    await asyncio.wait_for(ensure_search_attributes(env.client), 30)
    yield env
    await env.shutdown()


async def spawn_worker(target: str, queue: str, database_url: str) -> subprocess.Popen[bytes]:
    """A worker process (tests/workflows/worker_process.py) connected to `target`, once it polls.
    A plain Popen: it is killed and reaped synchronously, which asyncio's child watcher did not
    always notice."""
    module = "tests.workflows.worker_process"
    proc = start([sys.executable, "-m", module, target, queue, database_url, "--pool", "10"])
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30)
    assert line.strip() == b"ready"
    return proc


def start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


async def bounded(action: Callable[[str], Awaitable[T]], items: Iterable[str], n: int) -> list[T]:
    gate = asyncio.Semaphore(n)

    async def one(item: str) -> T:
        async with gate:
            return await action(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def count(pool: Pool, sql: str, *params: Any) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return int(row["n"])


async def subscribe(
    service: SubscriptionService, pool: Pool, wp: str, *, wait_seconds: float
) -> str:
    """A new workplace `wp` whose representative applies for cartax; its subscription id."""
    rep = {"member_id": f"{wp}-rep", "login_id": f"{wp}@kill", "name": "대표"}
    await directory.put_workplace(pool, wp, wp, rep)
    status = await service.apply(
        workplace_id=wp,
        service_id="cartax",
        actor_id=f"{wp}-rep",
        plan_id=None,
        terms_version=TERMS,
        agree_terms=True,
        wait_seconds=wait_seconds,
    )
    return status.subscription_id


async def idle(service: SubscriptionService, sub: str) -> None:
    """Until the run waits for something outside it: every workflow task it was given is closed
    and no activity is in flight (the task that ends an application comes after its commit)."""
    closed = {
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    }
    while True:
        events = [e.event_type async for e in service.handle(sub).fetch_history_events()]
        scheduled = events.count(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)
        pending = (await service.handle(sub).describe()).raw_description.pending_activities
        if scheduled == sum(e in closed for e in events) and not pending:
            return
        await asyncio.sleep(0.1)


async def stuck(service: SubscriptionService, pool: Pool, like: str, subs: list[str]) -> str:
    """For a failure message: the last history events of a few subscriptions not yet closed."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT subscription_id FROM audit_log WHERE action = 'invoice_issued'"
                " AND workplace_id LIKE %s",
                (like,),
            )
        ).fetchall()
    done = {r["subscription_id"] for r in rows}
    lines = []
    for sub in [s for s in subs if s not in done][:3]:
        events = [e async for e in service.handle(sub).fetch_history_events()]
        tail = ", ".join(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
            + (
                f" by {e.workflow_task_started_event_attributes.identity}"
                if e.HasField("workflow_task_started_event_attributes")
                else ""
            )
            + f" at {e.event_time.ToDatetime():%H:%M:%S.%f}"
            for e in events[-6:]
        )
        lines.append(f"{sub}: … {tail}")
    return "; ".join(lines)


async def test_month_close_survives_a_worker_killed_mid_close(
    own_env: WorkflowEnvironment, pool: Pool, database_url: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await month_close_through_a_kill(own_env, pool, database_url, stack)


async def month_close_through_a_kill(
    env: WorkflowEnvironment, pool: Pool, database_url: str, stack: contextlib.AsyncExitStack
) -> None:
    tag = uuid.uuid4().hex[:6]
    queue = f"month-close-kill-{tag}"
    like = f"mck-{tag}-%"
    service = build_services(
        pool, env.client, default_catalog(), queue, clock=env.get_current_time
    ).subscriptions
    server = env.client.service_client.config.target_host
    spy = await stack.enter_async_context(StickySpy(server, queue))  # for the drainer
    first = await spawn_worker(spy.address, queue, database_url)
    print("worker A ready", file=sys.stderr)
    second: subprocess.Popen[bytes] | None = None
    drainers: list[asyncio.Task[None]] = []
    moved: list[str] = []
    try:
        started = time.perf_counter()

        async def one(wp: str) -> str:
            return await subscribe(service, pool, wp, wait_seconds=0)  # awaited together below

        subs = await bounded(one, [f"mck-{tag}-{i:04d}" for i in range(N)], 50)
        active = "SELECT count(*) AS n FROM subscriptions WHERE state = 'active'"
        while await count(pool, f"{active} AND workplace_id LIKE %s", like) < N:
            assert time.perf_counter() - started < 180, "seeding took over 180 s"
            await asyncio.sleep(0.1)
        print(f"seeded {N} in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        # Exactly one month boundary: the next 1st 00:00 Seoul after the clock's now.
        now = await env.get_current_time()
        target = first_instant_of_next_month(now)
        period = period_of(now)

        def invoices() -> Awaitable[int]:
            return count(
                pool,
                "SELECT count(*) AS n FROM invoices WHERE period = %s AND workplace_id LIKE %s",
                period,
                like,
            )

        def published() -> Awaitable[int]:
            return count(
                pool,
                "SELECT count(*) AS n FROM audit_log WHERE action = 'invoice_issued'"
                " AND details->>'period' = %s AND workplace_id LIKE %s",
                period,
                like,
            )

        # The server may hold the sleep's answer until the timers' work is done; it runs beside.
        sleeping = asyncio.create_task(env.sleep(target - now))
        close_started = time.perf_counter()
        while (issued := await invoices()) < N // 4:
            assert time.perf_counter() - close_started < 60, f"{issued}/{N} after 60 s"
            await asyncio.sleep(0.01)
        kill(first)
        at_kill = await invoices()
        print(f"killed at {at_kill}/{N} invoices", file=sys.stderr)
        assert 0 < at_kill < N, f"the kill came too late to be mid-close: {at_kill}/{N}"
        assert spy.names, "worker A's sticky queue name was not seen"
        # The real server's sticky schedule-to-start timeout, which the test server lacks.
        drainers = [
            asyncio.create_task(drain_sticky(env.client, name, queue, moved)) for name in spy.names
        ]
        second = await spawn_worker(server, queue, database_url)
        killed = time.perf_counter()
        # A month-close is one workflow task with a local activity (version 2). A task waiting
        # on A's sticky queue reaches B through the drainer; one A had started reaches B after
        # its 10 s timeout, in real time (skipping the clock past it, with env.sleep, let the
        # server skip B's task timeouts too, under load).
        while await invoices() < N or await published() < N:
            if (waited := time.perf_counter() - killed) > ACTIVITY_TIMEOUT.total_seconds() + 90:
                raise AssertionError(
                    f"{waited:.0f} s after the kill: {await invoices()}/{N} invoices,"
                    f" {await published()}/{N} published; stuck: "
                    + await stuck(service, pool, like, subs)
                )
            await asyncio.sleep(0.05)
        print(
            f"closed {time.perf_counter() - killed:.1f} s after the kill;"
            f" {len(moved)} tasks moved off A's sticky queue",
            file=sys.stderr,
        )
        # The sleep to the 1st may still be waiting for the server; the rows tell the story.
        with contextlib.suppress(RPCError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(sleeping), 5)
        sleeping.cancel()

        async with pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT subscription_id, period FROM invoices WHERE workplace_id LIKE %s",
                    (like,),
                )
            ).fetchall()
            entries = await (
                await conn.execute(
                    "SELECT subscription_id, details->>'period' AS period FROM audit_log"
                    " WHERE action = 'invoice_issued' AND workplace_id LIKE %s",
                    (like,),
                )
            ).fetchall()
        assert {r["period"] for r in rows} == {period}  # one boundary: no other month billed
        per_sub = Counter(r["subscription_id"] for r in rows)
        assert Counter(per_sub[s] for s in subs) == Counter({1: N})  # R-BILL-6
        per_entry = Counter(e["subscription_id"] for e in entries)
        assert Counter(per_entry[s] for s in subs) == Counter({1: N})
        assert {e["period"] for e in entries} == {period}

        async def status(sub: str) -> WorkflowExecutionStatus | None:
            described = await service.handle(sub).describe(rpc_timeout=timedelta(seconds=10))
            return described.status

        print("checked the ledger; describing the workflows", file=sys.stderr)
        statuses = Counter(await bounded(status, subs, 20))
        assert statuses == Counter({WorkflowExecutionStatus.RUNNING: N})  # none failed
    finally:
        for drainer in drainers:
            drainer.cancel()
        await asyncio.gather(*drainers, return_exceptions=True)
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                kill(proc)


async def test_a_task_on_a_dead_workers_sticky_queue_reaches_the_replacement(
    own_env: WorkflowEnvironment, pool: Pool, database_url: str
) -> None:
    """The drainer's own check. Worker A serves a subscription until it is active, so the run's
    next task goes to A's sticky queue; A is killed, B starts, and the representative cancels:
    the cancellation's task is scheduled on A's sticky queue, where the time-skipping server
    would leave it for good. The drainer moves exactly that task and B completes the cancel."""
    env = own_env
    queue = f"sticky-{uuid.uuid4().hex[:6]}"
    service = build_services(
        pool, env.client, default_catalog(), queue, clock=env.get_current_time
    ).subscriptions
    server = env.client.service_client.config.target_host
    moved: list[str] = []
    async with StickySpy(server, queue) as spy:
        first = await spawn_worker(spy.address, queue, database_url)
        try:
            wp = f"{queue}-wp"
            sub = await subscribe(service, pool, wp, wait_seconds=30)
            await asyncio.wait_for(idle(service, sub), 30)
        finally:
            kill(first)
    assert len(spy.names) == 1
    second = await spawn_worker(server, queue, database_url)
    drainer = asyncio.create_task(drain_sticky(env.client, spy.names.pop(), queue, moved))
    try:
        cancelled = await asyncio.wait_for(
            service.cancel(workplace_id=wp, service_id="cartax", actor_id=f"{wp}-rep"), 60
        )
        # A run left waiting on a queue with no worker would hold this server's clock back.
        await service.handle(sub).terminate("test over")
    finally:
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
        kill(second)
    assert cancelled.state == "cancelled"
    assert moved == [service.handle(sub).id]
