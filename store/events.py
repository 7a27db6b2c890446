"""The event outbox and its feed (R-EVENT-1, R-EVENT-3; docs/events.md).

`append` writes one event on the caller's transaction, the one that commits the decision: an
event exists exactly when its decision does. It is keyed by the decision's business key, so a
repeated commit (a retried activity, a replayed workflow) writes nothing new and the event keeps
its id. `seq` counts per stream (a subscription, or "workplace:{id}").

`read_feed` pages through events in (txid, event_no) order, returning only rows whose
transaction id is below the oldest one still running. Rows are numbered when inserted but become
visible when their transaction commits, possibly out of number order; ordering by transaction id
and holding back everything at or above the oldest running transaction means nothing can commit
behind a cursor a reader has passed, so every event is seen exactly once across pages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from domain.events import shown_time
from store.db import Conn, columns, fetch_all, fetch_one

# Wakes whatever delivers events (the webhook dispatcher): payload = the workplace id.
EVENTS_CHANNEL = "bizsupport_events"

_ID_NAMESPACE = uuid.UUID("5b0e3f8a-6c1d-4f5e-9a39-2f0c6b7d9e11")


def event_id(event_key: str) -> str:
    """The event's public id, derived from its business key: the same decision, the same id."""
    return "evt_" + uuid.uuid5(_ID_NAMESPACE, event_key).hex


def stream_of(subscription_id: str | None, workplace_id: str) -> str:
    return subscription_id if subscription_id is not None else f"workplace:{workplace_id}"


@dataclass(frozen=True, slots=True)
class EventRow:
    event_no: int
    txid: int
    event_id: str
    type: str
    created_at: datetime
    workplace_id: str
    service_id: str | None
    subscription_id: str | None
    stream: str
    seq: int
    data: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The event as the feed and every webhook delivery show it (API.md)."""
        return {
            "id": self.event_id,
            "type": self.type,
            "created_at": shown_time(self.created_at),
            "workplace_id": self.workplace_id,
            "service_id": self.service_id,
            "subscription_id": self.subscription_id,
            "seq": self.seq,
            "data": self.data,
        }


# txid is xid8; psycopg has no loader for it, so it is read as text and turned into an int.
_ROW = columns(EventRow).replace("txid", "txid::text::bigint AS txid")


async def append(
    conn: Conn,
    *,
    event_key: str,
    type: str,
    created_at: datetime,
    workplace_id: str,
    service_id: str | None,
    subscription_id: str | None,
    data: dict[str, Any],
) -> bool:
    """Write the decision's event on the caller's transaction; False when it is already there.

    The stream's next seq is taken under a transaction-scoped advisory lock on the stream, so two
    transactions of one stream never draw the same number (a workflow commits one decision at a
    time, but workplace streams have several writers).
    """
    stream = stream_of(subscription_id, workplace_id)
    await lock_stream(conn, stream)
    # The insert and its NOTIFY in one statement (one round trip per event): the NOTIFY is sent
    # only for a row inserted, and, like the row, only if the transaction commits.
    cur = await conn.execute(
        "WITH written AS ("
        " INSERT INTO events (event_id, event_key, type, created_at, workplace_id, service_id,"
        "  subscription_id, stream, seq, data)"
        " SELECT %s, %s, %s, %s, %s, %s, %s, %s,"
        "  coalesce((SELECT max(seq) FROM events WHERE stream = %s), 0) + 1, %s"
        " ON CONFLICT (event_key) DO NOTHING RETURNING workplace_id)"
        " SELECT pg_notify(%s, workplace_id) FROM written",
        (
            event_id(event_key),
            event_key,
            type,
            created_at,
            workplace_id,
            service_id,
            subscription_id,
            stream,
            stream,
            Jsonb(data),
            EVENTS_CHANNEL,
        ),
    )
    return cur.rowcount == 1


async def lock_stream(conn: Conn, stream: str) -> None:
    """Hold the stream's seq counter until the caller's transaction ends.

    `append` takes it; a transaction with several writers per stream (a workplace's) takes it
    first thing, before its first write gives it a transaction id: then the transaction that
    draws the lower seq also has the lower id, and the feed (in transaction-id order) shows the
    stream in seq order."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (stream,))


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """A position in the feed: after the event with this (txid, event_no)."""

    txid: int
    event_no: int


async def cursor_of(
    conn: Conn, event_id: str, workplace_id: str | None = None
) -> FeedCursor | None:
    """The feed position just after `event_id`, or None when there is no such event (of that
    workplace, when one is given: another workplace's event is no cursor of its feed)."""
    return await fetch_one(
        conn,
        FeedCursor,
        "SELECT txid::text::bigint AS txid, event_no FROM events WHERE event_id = %s"
        " AND (%s::text IS NULL OR workplace_id = %s)",
        (event_id, workplace_id, workplace_id),
    )


async def read_feed(
    conn: Conn,
    *,
    after: FeedCursor | None,
    limit: int,
    workplace_id: str | None = None,
    types: list[str] | None = None,
) -> list[EventRow]:
    """Committed events after the cursor, oldest first, at most `limit` (module docstring).

    `workplace_id` None: every workplace's. `types`: only those types (None: all)."""
    where = ["txid < pg_snapshot_xmin(pg_current_snapshot())"]
    params: list[Any] = []
    if after is not None:
        where.append("(txid, event_no) > (%s::text::xid8, %s)")
        params += [str(after.txid), after.event_no]
    if workplace_id is not None:
        where.append("workplace_id = %s")
        params.append(workplace_id)
    if types:
        where.append("type = ANY(%s)")
        params.append(types)
    params.append(limit)
    return await fetch_all(
        conn,
        EventRow,
        f"SELECT {_ROW} FROM events WHERE {' AND '.join(where)} ORDER BY txid, event_no LIMIT %s",
        tuple(params),
    )
