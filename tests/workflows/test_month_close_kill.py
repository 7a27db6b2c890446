"""Month-close through a worker kill (issue 11, R-BILL-5, R-BILL-6): a few hundred subscriptions
reach 00:00 Seoul on the 1st together, the worker is SIGKILLed mid-close and replaced, and every
subscription still gets exactly one invoice for the closed month and one `invoice_issued` entry.

How: N subscriptions (`MONTH_CLOSE_KILL_N`, e.g. 200; unset, skipped) are applied for through
SubscriptionService, served by worker A in a process of its own, with a workflow cache as in
production (version 2's local activities need one). The time-skipping clock is moved in one
sleep to exactly the next 1st 00:00 Seoul (one month boundary, as bench/month_close.py does).
Once some but not all invoices are in PostgreSQL, worker A gets SIGKILL and worker B, a new
process on the same task queue, takes over.

After the kill, the workflow tasks A held (started, or waiting on its sticky queue) usually
reach B when their 10 s timeouts pass: run alone, the close ended 12.6-13.0 s after the kill
(five runs of N=200, about 20 s for the whole test). In one full-suite run 2 of the 200 tasks
stayed on A's sticky queue for the whole 120 s: the time-skipping server does not always move
a task off a dead worker's sticky queue, which the real server does after its timeout. An
earlier version ran A without a cache, so without a sticky queue; with version 2 that made
every local activity wait out a task timeout (seeding 60 took over 180 s).

What it proves:
- a month-close interrupted anywhere (between the invoice insert and its publication, in the
  middle of a workflow task, with activities in flight on the dead worker) completes on another
  worker with no invoice missing and none issued twice: the invoice is keyed by (subscription,
  period) and the publication by (subscription, seq), so an activity retried after the kill
  writes once, and a workflow replayed on B takes the same decisions;
- no workflow fails on the way (every one is still running, waiting for the next month).

What it does not prove:
- recovery on the real server's matching service (task queue partitions, the real sticky queue
  expiry, history shards); tests/workflows/test_crash.py covers a kill on the dev server, for
  one application;
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

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.calendar import first_instant_of_next_month, period_of
from domain.catalog import default_catalog
from services.subscriptions import SubscriptionService
from starter.temporal import binary, ensure_search_attributes
from store import directory
from store.db import Pool
from tests.conftest import TERMS
from workflows.subscription import ACTIVITY_TIMEOUT

N = int(os.environ.get("MONTH_CLOSE_KILL_N", "0"))
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


async def spawn_worker(
    env: WorkflowEnvironment, queue: str, database_url: str, *options: str
) -> subprocess.Popen[bytes]:
    """A worker process (tests/workflows/worker_process.py), once it polls. A plain Popen: it is
    killed and reaped synchronously, which asyncio's child watcher did not always notice."""
    target = env.client.service_client.config.target_host
    module = "tests.workflows.worker_process"
    proc = start(
        [sys.executable, "-m", module, target, queue, database_url, "--pool", "10", *options]
    )
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
        tail = ", ".join(EventType.Name(e.event_type) for e in events[-4:])
        lines.append(f"{sub}: … {tail}")
    return "; ".join(lines)


# Opt-in (issue 11 stays open for it): alone it passed five runs in a row at N=200, but in the
# full suite from a fresh clone 2 of 200 workflow tasks stayed scheduled on the dead worker's
# sticky queue for 120 s (the time-skipping server does not always move them), so it would make
# `make test` flaky.
@pytest.mark.skipif(N == 0, reason="set MONTH_CLOSE_KILL_N (e.g. 200) to run it")
async def test_month_close_survives_a_worker_killed_mid_close(
    own_env: WorkflowEnvironment, pool: Pool, database_url: str
) -> None:
    env = own_env
    tag = uuid.uuid4().hex[:6]
    queue = f"month-close-kill-{tag}"
    like = f"mck-{tag}-%"
    service = SubscriptionService(
        pool, env.client, default_catalog(), queue, clock=env.get_current_time
    )
    first = await spawn_worker(env, queue, database_url)
    print("worker A ready", file=sys.stderr)
    second: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()

        async def subscribe(wp: str) -> str:
            rep = {"member_id": f"{wp}-rep", "login_id": f"{wp}@kill", "name": "대표"}
            await directory.put_workplace(pool, wp, wp, rep)
            status = await service.apply(
                workplace_id=wp,
                service_id="cartax",
                actor_id=f"{wp}-rep",
                plan_id=None,
                terms_version=TERMS,
                agree_terms=True,
                wait_seconds=0,  # all of them are awaited together below
            )
            return status.subscription_id

        subs = await bounded(subscribe, [f"mck-{tag}-{i:04d}" for i in range(N)], 50)
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
        second = await spawn_worker(env, queue, database_url)
        killed = time.perf_counter()
        # A month-close is one workflow task with a local activity (version 2): a task that was
        # on A reaches B after its 10 s timeout, in real time; skipping the clock past it
        # (env.sleep) let the server skip B's task timeouts too, under load.
        while await invoices() < N or await published() < N:
            if (waited := time.perf_counter() - killed) > ACTIVITY_TIMEOUT.total_seconds() + 90:
                raise AssertionError(
                    f"{waited:.0f} s after the kill: {await invoices()}/{N} invoices,"
                    f" {await published()}/{N} published; stuck: "
                    + await stuck(service, pool, like, subs)
                )
            await asyncio.sleep(0.05)
        print(f"closed {time.perf_counter() - killed:.1f} s after the kill", file=sys.stderr)
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
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                kill(proc)
