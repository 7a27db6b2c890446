"""The kill matrix's webhook receiver (issue 20; docs/faults.md, "Webhooks"): one real receiver
(tests/webhook_receiver.py) in the test process, so it outlives every kill, the launcher's too,
registered once per stack as a system-wide endpoint through the stack's HTTP API, as a user
would. It answers slowly while a scenario's kills are to come, so deliveries queue up and the
kills fall while some are under way; after each scenario's recovery, every event of the
matrix's workplaces must have arrived signed, once after dedup by `webhook-id`, and per stream
first in `seq` order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.faults.burst import access_token
from tests.faults.stack import DevStack
from tests.webhook_receiver import Receiver

# Seconds the receiver holds each delivery until a scenario's last kill: a stream's events go
# one at a time, so while the burst makes events they queue up behind the held ones. (Well under
# the 15 s after which the sender counts an answer as none.)
SLOW_ANSWER = 1.0
COLUMNS = ("events", "delivered", "redelivered", "pending_at_kill", "held_at_kill", "hooks_s")


@dataclass(frozen=True)
class AtKill:
    """The deliveries under way at the instant of a kill."""

    pending: int  # events of the matrix's workplaces committed, not yet answered by the receiver
    held: int  # of them, deliveries the receiver was holding (received, not answered yet)


@dataclass(frozen=True)
class Delivered:
    """The state of delivery once the receiver has every event (or the bound ran out)."""

    outbox: Outbox  # the events of the matrix's workplaces
    unsettled: dict[str, int]  # the endpoint's deliveries not succeeded, by status
    seconds: float


@dataclass
class MatrixHooks:
    receiver: Receiver
    endpoint_id: str

    @classmethod
    async def register(cls, stack: DevStack) -> MatrixHooks:
        """Start the receiver and register it as a system-wide endpoint for every event type,
        with a system token as `python -m starter.cli token --system` makes it."""
        receiver = await Receiver().up()
        token = access_token(stack.auth_secret(), None, None)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
            answer = await http.post(
                "/v1/webhook-endpoints",
                json={"url": receiver.url, "description": "kill matrix receiver"},
                headers={
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": f"faults-hooks-{uuid.uuid4().hex}",
                },
            )
        answer.raise_for_status()
        made = answer.json()
        receiver.secrets.append(made["secret"])
        return cls(receiver, made["endpoint_id"])

    def slow(self, on: bool) -> None:
        self.receiver.delay = SLOW_ANSWER if on else 0.0

    async def at_kill(self, stack: DevStack, workplaces: list[str]) -> AtKill:
        """Read just before a kill (PostgreSQL is up then, in every scenario)."""
        outbox = await read_outbox(stack.info()["database_url"], workplaces)
        held = self.receiver.answering
        return AtKill(len(outbox.ids() - set(self.receiver.ids())) + held, held)

    async def wait_delivered(
        self, stack: DevStack, workplaces: list[str], bound: float
    ) -> Delivered:
        """Poll until the receiver has every event of `workplaces` and none of the endpoint's
        deliveries is pending, or `bound` seconds have passed."""
        began = time.monotonic()
        while True:
            try:
                database_url = stack.info()["database_url"]
                outbox = await read_outbox(database_url, workplaces)
                unsettled = await self._unsettled(database_url)
            except (psycopg.OperationalError, OSError, ValueError) as err:
                if time.monotonic() - began > bound:
                    raise
                print(f"webhook check: stack not reachable yet: {err!r}")
            else:
                arrived = outbox.ids() <= set(self.receiver.ids())
                if (arrived and "pending" not in unsettled) or time.monotonic() - began > bound:
                    return Delivered(outbox, unsettled, time.monotonic() - began)
            await asyncio.sleep(0.5)

    def row(self, delivered: Delivered, mine: list[str], kills: list[AtKill]) -> dict[str, Any]:
        """The scenario's columns: its own workplaces' events (`mine`), and the kill instants."""
        ids = delivered.outbox.ids(mine)
        return {
            "events": len(ids),
            "delivered": len(ids & set(self.receiver.ids())),
            "redelivered": self.receiver.redelivered(ids),
            "pending_at_kill": sum(k.pending for k in kills),
            "held_at_kill": sum(k.held for k in kills),
            "deliveries_at_each_kill": [f"{k.pending} pending, {k.held} held" for k in kills],
            "hooks_s": round(delivered.seconds, 1),
        }

    def problems(self, delivered: Delivered, kills: list[AtKill]) -> list[str]:
        """The delivery contract over every workplace of the matrix (a later kill must not
        resend an earlier scenario's events out of order, nor lose any), no delivery left
        pending or failed, and every kill fell while deliveries were under way."""
        found = [f"webhooks: {p}" for p in self.receiver.problems(delivered.outbox.streams())]
        found += [
            f"webhooks: kill {n} fell while no delivery was under way"
            for n, k in enumerate(kills, start=1)
            if not k.pending
        ]
        found += [
            f"webhooks: {n} deliveries {status} at the endpoint"
            for status, n in sorted(delivered.unsettled.items())
        ]
        return found

    async def _unsettled(self, database_url: str) -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(
            database_url, row_factory=dict_row, connect_timeout=5
        ) as conn:
            cur = await conn.execute(
                "SELECT status, count(*) AS n FROM webhook_deliveries"
                " WHERE endpoint_id = %s AND status <> 'succeeded' GROUP BY status",
                (self.endpoint_id,),
            )
            return {row["status"]: row["n"] for row in await cur.fetchall()}


@dataclass(frozen=True)
class Outbox:
    """Events in the stack's `events` table: (workplace, stream, event id), in stream and seq
    order."""

    rows: list[tuple[str, str, str]]

    def streams(self) -> dict[str, list[str]]:
        """Per stream, its events' ids in seq order."""
        found: dict[str, list[str]] = {}
        for _, stream, event_id in self.rows:
            found.setdefault(stream, []).append(event_id)
        return found

    def ids(self, workplaces: list[str] | None = None) -> set[str]:
        return {i for wp, _, i in self.rows if workplaces is None or wp in workplaces}


async def read_outbox(database_url: str, workplaces: list[str]) -> Outbox:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cur = await conn.execute(
            "SELECT workplace_id, stream, event_id FROM events WHERE workplace_id = ANY(%s)"
            " ORDER BY stream, seq",
            (workplaces,),
        )
        return Outbox([(wp, stream, i) for wp, stream, i in await cur.fetchall()])
