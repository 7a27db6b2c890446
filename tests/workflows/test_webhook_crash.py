"""A webhook worker SIGKILLed in the middle of a delivery (R-EVENT-2: never lost when any process
dies): the attempt in flight was never recorded, so the next worker sends it again, and the
receiver, deduplicating by webhook-id, sees every event once, in seq order.

On the real dev server (tests/workflows/conftest.py `dev_env`), the worker in a process of its
own (tests/workflows/worker_process.py --webhooks)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from services.webhook_dispatch import WebhookDispatcher
from store.db import Pool
from tests.conftest import eventually, own_database
from tests.webhook_receiver import Receiver
from tests.workflows.test_webhook_delivery import (
    Hooks,
    check_received,
    new_secret,
    workplace,
)
from tests.workflows.worker_process import spawn_worker

ROUND_HEARTBEAT = timedelta(seconds=10)


@pytest_asyncio.fixture
async def hooks_db(database_url: str) -> AsyncIterator[tuple[str, Pool]]:
    """A database of its own: on the suite's shared one the dispatcher's start-up sweep poked
    every other test's endpoint with work, and their rounds (one stalled by a row a store test
    wrote by hand) held the worker's round slots past the 30 s this test waits."""
    async with own_database(database_url, "hooks_crash") as own:
        yield own


async def test_a_worker_killed_mid_delivery_loses_nothing(
    dev_env: WorkflowEnvironment, hooks_db: tuple[str, Pool]
) -> None:
    database_url, pool = hooks_db
    queue = f"hooks-crash-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    # A round's heartbeat timeout of 10 s, not production's 30 s: the kill is noticed sooner,
    # and the round still heartbeats six times in it (once the SDK's throttle, 80 %, allows).
    dispatcher = WebhookDispatcher(
        pool, dev_env.client, queue, pokes_per_second=None, round_heartbeat=ROUND_HEARTBEAT
    )
    hooks = Hooks(dev_env, pool, dispatcher, [])
    wp, secret = workplace(), new_secret()
    # The first answer takes 8 s: the worker is killed while it waits for it.
    receiver = await Receiver(secrets=[secret], script=[(200, 8.0)]).up()
    first = await spawn_worker(dev_env, queue, database_url, "--webhooks")
    running = asyncio.create_task(dispatcher.run(stop))
    second = None
    try:
        endpoint_id = await hooks.endpoint(wp, receiver.url, secret)
        stream = f"sub-{wp}"
        ids = await hooks.emit(wp, stream, 3)

        async def in_flight() -> bool:
            return len(receiver.seen) == 1

        await eventually(in_flight, within=30, what="the first attempt in flight")
        first.kill()
        await first.wait()
        second = await spawn_worker(dev_env, queue, database_url, "--webhooks")
        # The round's heartbeat times out (10 s) and the round runs again on the new worker.
        await eventually(partial(hooks.all_succeeded, endpoint_id, 3), within=120, what="all")
        assert receiver.seen[0].webhook_id == receiver.seen[1].webhook_id == ids[0]
        check_received(receiver, {stream: ids})
        await hooks.delete([endpoint_id], within=30)  # its workflow ends at its next round
    finally:
        stop.set()
        await running
        await receiver.down()
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
