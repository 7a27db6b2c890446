"""Wakes the endpoint workflows when there is something to deliver (R-EVENT-2; docs/webhooks.md,
"Delivery"). Runs in the worker process beside the workers (worker.py).

- LISTEN on the events channel (store/events.py: every appended event notifies its workplace
  id, at commit). Notifications are gathered for `COALESCE` seconds, then every enabled endpoint
  of those workplaces, and every system-wide one, is poked: a signal-with-start of its workflow
  (workflows/webhooks.py), which starts it if it is not running. The API's resend notifies the
  same channel.
- Each time LISTEN is (re)established, and every `SWEEP_EVERY` seconds (wall time), every
  enabled endpoint with a due delivery or an event after its cursor is poked too. An event
  committed before LISTEN was up is found by the sweep that follows it, one committed after is
  announced: none waits for the periodic sweep. A lost notification, a dispatcher that was down
  or a LISTEN connection being reopened only delays a delivery, never loses it.

The dispatcher holds nothing that matters: the deliveries are in PostgreSQL, the waiting in
Temporal. Several worker processes may each run one; their pokes are merely redundant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import psycopg
from psycopg import sql
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from services.clock import Clock, wall_clock
from store import deliveries
from store.db import Pool
from store.events import EVENTS_CHANNEL
from workflows.webhooks import (
    ROUND_HEARTBEAT,
    EndpointInput,
    WebhookEndpointWorkflow,
    endpoint_workflow_id,
    webhook_queue,
)

log = logging.getLogger(__name__)

COALESCE = 0.2
SWEEP_EVERY = 30.0
POKES_AT_ONCE = 32
# Pokes per second, paced: a burst of events (a month-end: every workplace's invoice.issued at
# once) wakes its endpoints over a few minutes instead of all at once, so their rounds trail the
# month-close instead of taking its CPU (bench/webhook_month_close.py, bench/README.md).
POKES_PER_SECOND = 5.0


class WebhookDispatcher:
    def __init__(
        self,
        pool: Pool,
        client: Client,
        task_queue: str,
        *,
        clock: Clock = wall_clock,
        coalesce: float = COALESCE,
        sweep_every: float = SWEEP_EVERY,
        pokes_per_second: float | None = POKES_PER_SECOND,
        round_heartbeat: timedelta = ROUND_HEARTBEAT,
    ) -> None:
        if not isinstance(pool.conninfo, str):
            raise TypeError("WebhookDispatcher needs a pool made from a connection string")
        self.pool = pool
        self.client = client
        self.queue = webhook_queue(task_queue)
        self.clock = clock
        self.coalesce = coalesce
        self.sweep_every = sweep_every
        self.round_heartbeat = round_heartbeat  # for the workflows it starts (EndpointInput)
        self._workplaces: set[str] = set()
        self._noted = asyncio.Event()
        self._gate = asyncio.Semaphore(POKES_AT_ONCE)
        self._interval = 1.0 / pokes_per_second if pokes_per_second else 0.0
        self._next_slot = 0.0
        self._queued: set[str] = set()  # endpoints whose poke waits for its turn
        self.listening = asyncio.Event()  # set while LISTEN is up (tests wait for it)
        self._sweep_now = asyncio.Event()  # LISTEN was (re)established: sweep at once

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set."""
        tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._forward()),
            asyncio.create_task(self._sweep()),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def poke(self, endpoint_ids: list[str]) -> None:
        """Poke each endpoint's workflow, paced. An endpoint already waiting for its turn is not
        queued twice: its one poke, when sent, wakes it for everything noted until then."""
        fresh = [e for e in dict.fromkeys(endpoint_ids) if e not in self._queued]
        self._queued.update(fresh)
        await asyncio.gather(*(self._poke(e) for e in fresh))

    async def _poke(self, endpoint_id: str) -> None:
        try:
            await self._paced()
        finally:
            self._queued.discard(endpoint_id)  # from here on, a new event needs a new poke
        async with self._gate:
            try:
                await self.client.start_workflow(
                    WebhookEndpointWorkflow.run,
                    EndpointInput(endpoint_id=endpoint_id, round_heartbeat=self.round_heartbeat),
                    id=endpoint_workflow_id(endpoint_id),
                    task_queue=self.queue,
                    start_signal="poke",
                )
            except WorkflowAlreadyStartedError:
                # Two pokes raced to start it (seen on the time-skipping server): it runs now,
                # so a plain signal reaches it.
                await self._signal(endpoint_id)
            except Exception as err:  # Temporal unreachable: the next sweep pokes again
                log.warning("cannot poke webhook endpoint %s: %r", endpoint_id, err)

    async def _paced(self) -> None:
        """Wait for this poke's turn: one every `1 / pokes_per_second` seconds, no bursts."""
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _signal(self, endpoint_id: str) -> None:
        handle = self.client.get_workflow_handle(endpoint_workflow_id(endpoint_id))
        try:
            await handle.signal(WebhookEndpointWorkflow.poke)
        except Exception as err:
            log.warning("cannot poke webhook endpoint %s: %r", endpoint_id, err)

    async def _listen(self) -> None:
        assert isinstance(self.pool.conninfo, str)
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.pool.conninfo, autocommit=True, connect_timeout=5
                )
            except psycopg.Error as err:
                log.warning("cannot LISTEN for events (retrying): %r", err)
                await asyncio.sleep(1.0)
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_CHANNEL)))
                    self.listening.set()
                    self._sweep_now.set()  # what was committed before now is not announced
                    while True:
                        async for note in conn.notifies(timeout=1.0):
                            self._workplaces.add(note.payload)
                            self._noted.set()
            except psycopg.Error as err:
                log.warning("LISTEN connection for events lost (reopening): %r", err)
            finally:
                self.listening.clear()
            await asyncio.sleep(1.0)

    async def _forward(self) -> None:
        while True:
            await self._noted.wait()
            await asyncio.sleep(self.coalesce)
            self._noted.clear()
            workplaces, self._workplaces = self._workplaces, set()
            try:
                endpoint_ids = await deliveries.enabled_for(self.pool, sorted(workplaces))
            except Exception as err:  # the database is away: the sweep catches up
                log.warning("cannot find the endpoints to poke: %r", err)
                continue
            await self.poke(endpoint_ids)

    async def _sweep(self) -> None:
        while True:
            try:
                await self.poke(await deliveries.with_work(self.pool, now=await self.clock()))
            except Exception as err:  # the database is away: the next sweep tries again
                log.warning("cannot find the endpoints with work: %r", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), self.sweep_every)
            self._sweep_now.clear()
