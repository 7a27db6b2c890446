"""Waiting for a subscription to settle without polling: PostgreSQL LISTEN/NOTIFY.

The commit that moves a subscription out of `applied` (activated or refused) sends
`NOTIFY subscription_settled, '<subscription id>'` in its transaction (store.subscriptions), so
the notification arrives exactly when the change is visible. One process keeps one LISTEN
connection for all its waiting requests, opened by the first waiter and closed once no one has
waited for `linger` seconds. A notification can be missed (the connection was being reopened,
PostgreSQL restarted), so a waiter also looks again on its own every few seconds: a missed
notification costs latency, never an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from psycopg import sql

from store.db import Pool
from store.subscriptions import SETTLED_CHANNEL

log = logging.getLogger(__name__)


class Waiter:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """True if notified within `seconds` (then ready for the next notification)."""
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class SettledListener:
    def __init__(self, pool: Pool, *, linger: float = 10.0) -> None:
        # The pool's database; the LISTEN connection is its own, not one of the pool's.
        if not isinstance(pool.conninfo, str):
            raise TypeError("SettledListener needs a pool made from a connection string")
        self.conninfo = pool.conninfo
        self.linger = linger
        self._waiters: dict[str, set[Waiter]] = {}
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watch(self, subscription_id: str) -> AsyncIterator[Waiter]:
        """A waiter for `subscription_id`'s settlement. Look at the row only after entering:
        a notification sent after that point reaches the waiter (once LISTEN is up, which this
        waits for briefly; when it cannot be, the caller's own periodic look still answers)."""
        waiter = Waiter()
        self._waiters.setdefault(subscription_id, set()).add(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), 1.0)
            yield waiter
        finally:
            waiting = self._waiters.get(subscription_id, set())
            waiting.discard(waiter)
            if not waiting:
                self._waiters.pop(subscription_id, None)

    async def _listen(self) -> None:
        idle_since = asyncio.get_running_loop().time()
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                )
            except psycopg.Error as err:
                if not self._waiters:
                    return
                log.warning("cannot LISTEN for settled subscriptions (retrying): %r", err)
                await asyncio.sleep(1.0)
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(SETTLED_CHANNEL)))
                    self._listening.set()
                    while True:
                        async for note in conn.notifies(timeout=1.0):
                            for waiter in list(self._waiters.get(note.payload, ())):
                                waiter.notify()
                        now = asyncio.get_running_loop().time()
                        if self._waiters:
                            idle_since = now
                        elif now - idle_since > self.linger:
                            return
            except psycopg.Error as err:
                log.warning("LISTEN connection lost (reopening): %r", err)
            finally:
                self._listening.clear()
