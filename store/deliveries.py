"""Webhook deliveries as the delivery engine reads and writes them (R-EVENT-2; docs/webhooks.md,
"Delivery"). Endpoints and secrets are created by the API (store/webhooks.py); this module
claims events into deliveries, picks what is due, and records attempts and endpoint health.

Every time here is business time handed in by the caller (the endpoint workflow's clock).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store import events
from store.db import Conn, Pool, columns, fetch_one
from store.events import EventRow, FeedCursor

_DELIVERY_IDS = uuid.UUID("0f7c2a54-3b8e-4d1a-9e62-71c5d8a4b093")


def delivery_id(endpoint_id: str, event_no: int) -> str:
    """The same endpoint and event, the same delivery: a repeated claim inserts nothing new."""
    return "dlv_" + uuid.uuid5(_DELIVERY_IDS, f"{endpoint_id}:{event_no}").hex


@dataclass(frozen=True, slots=True)
class EndpointRow:
    endpoint_id: str
    workplace_id: str | None  # None: system-wide, every workplace's events
    url: str
    types: list[str] | None  # None: every type
    status: str
    failing_since: datetime | None
    cursor_txid: int | None
    cursor_event_no: int | None

    @property
    def cursor(self) -> FeedCursor | None:
        if self.cursor_txid is None or self.cursor_event_no is None:
            return None
        return FeedCursor(self.cursor_txid, self.cursor_event_no)


_ENDPOINT = columns(EndpointRow).replace("cursor_txid", "cursor_txid::text::bigint AS cursor_txid")


async def endpoint(conn: Conn, endpoint_id: str) -> EndpointRow | None:
    return await fetch_one(
        conn,
        EndpointRow,
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE endpoint_id = %s",
        (endpoint_id,),
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    endpoint: EndpointRow | None  # None: no such endpoint
    read: int  # events read from the feed (matching or not)
    claimed: int  # deliveries made
    held_back: bool = False  # none read, but events after the cursor wait for older commits


async def claim(pool: Pool, endpoint_id: str, *, now: datetime, limit: int) -> Claimed:
    """Take the events after the endpoint's cursor that it subscribes to (its workplace, or every
    one; its types) into pending deliveries due at `now`, and move the cursor past every event
    read, in one transaction. Nothing is claimed for an endpoint that is not enabled.

    Two claims of one endpoint are serialized by a transaction-scoped advisory lock (a retried
    round may overlap the attempt it replaces); the lock assigns no transaction id, so this
    transaction does not hold back the feed it reads (store/events.py)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 8))", (f"webhook:{endpoint_id}",)
        )
        ep = await endpoint(conn, endpoint_id)
        if ep is None or ep.status != "enabled":
            return Claimed(ep, 0, 0)
        rows = await events.read_feed(
            conn, after=ep.cursor, limit=limit, workplace_id=ep.workplace_id
        )
        if not rows:
            return Claimed(ep, 0, 0, await _held_back(conn, ep))
        wanted = [r for r in rows if ep.types is None or r.type in ep.types]
        if wanted:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_no, stream,"
                    " seq, status, next_attempt_at, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s)"
                    " ON CONFLICT (endpoint_id, event_no) DO NOTHING",
                    [
                        (
                            delivery_id(endpoint_id, r.event_no),
                            endpoint_id,
                            r.event_no,
                            r.stream,
                            r.seq,
                            now,
                            now,
                        )
                        for r in wanted
                    ],
                )
        last = rows[-1]
        await conn.execute(
            "UPDATE webhook_endpoints SET cursor_txid = %s::text::xid8, cursor_event_no = %s"
            " WHERE endpoint_id = %s",
            (str(last.txid), last.event_no, endpoint_id),
        )
        return Claimed(ep, len(rows), len(wanted))


async def _held_back(conn: Conn, ep: EndpointRow) -> bool:
    """Events after the cursor that the feed does not show yet: committed while an older
    transaction still runs (store/events.py). They are claimed once it ends."""
    where: list[str] = ["TRUE"]
    params: list[object] = []
    if ep.workplace_id is not None:
        where.append("workplace_id = %s")
        params.append(ep.workplace_id)
    if ep.cursor is not None:
        where.append("(txid, event_no) > (%s::text::xid8, %s)")
        params += [str(ep.cursor.txid), ep.cursor.event_no]
    cur = await conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM events WHERE {' AND '.join(where)}) AS held",
        tuple(params),
    )
    row = await cur.fetchone()
    return bool(row and row["held"])


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending delivery with its event."""

    delivery_id: str
    attempts: int
    next_attempt_at: datetime
    event: EventRow

    @property
    def stream(self) -> str:
        return self.event.stream


_EVENT = columns(EventRow, "e").replace("e.txid", "e.txid::text::bigint AS txid")
_PENDING = (
    "SELECT d.delivery_id, d.attempts, d.next_attempt_at, "
    + _EVENT
    + " FROM webhook_deliveries d JOIN events e USING (event_no)"
    " WHERE d.endpoint_id = %s AND d.status = 'pending'"
)


def _pending(row: dict[str, Any]) -> Pending:
    event = EventRow(**{name: row[name] for name in EventRow.__dataclass_fields__})
    return Pending(row["delivery_id"], row["attempts"], row["next_attempt_at"], event)


async def stream_heads(pool: Pool, endpoint_id: str) -> list[Pending]:
    """Each stream's lowest-seq pending delivery: the only one of its stream that may be sent
    (a later event waits while an earlier one is retried)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT DISTINCT ON (stream) * FROM ({_PENDING}) p ORDER BY stream, seq",
            (endpoint_id,),
        )
        return [_pending(row) for row in await cur.fetchall()]


async def stream_head(pool: Pool, endpoint_id: str, stream: str) -> Pending | None:
    """The stream's lowest-seq pending delivery, if any."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            _PENDING + " AND d.stream = %s ORDER BY d.seq LIMIT 1", (endpoint_id, stream)
        )
        row = await cur.fetchone()
        return _pending(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt of a delivery came to."""

    at: datetime  # business time of the attempt
    ok: bool
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None  # when not ok: the retry, or None when it was the last


async def record_attempt(pool: Pool, endpoint_id: str, delivery_id: str, attempt: Attempt) -> None:
    """The delivery's outcome and the endpoint's health, in one transaction: `failing_since` is
    set by the first failure after a success and cleared by a success."""
    status = "succeeded" if attempt.ok else ("pending" if attempt.next_attempt_at else "failed")
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE webhook_deliveries SET status = %s, attempts = attempts + 1,"
            " last_status_code = %s, last_error = %s, last_attempt_at = %s, next_attempt_at = %s"
            " WHERE delivery_id = %s",
            (
                status,
                attempt.status_code,
                attempt.error,
                attempt.at,
                attempt.next_attempt_at,
                delivery_id,
            ),
        )
        await conn.execute(
            "UPDATE webhook_endpoints SET failing_since ="
            " CASE WHEN %s THEN NULL ELSE coalesce(failing_since, %s) END"
            " WHERE endpoint_id = %s",
            (attempt.ok, attempt.at, endpoint_id),
        )


async def disable(conn: Conn, endpoint_id: str, *, at: datetime) -> bool:
    """Disable an enabled endpoint, on the caller's transaction (with its audit entry); False
    when it was not enabled."""
    cur = await conn.execute(
        "UPDATE webhook_endpoints SET status = 'disabled', status_changed_at = %s"
        " WHERE endpoint_id = %s AND status = 'enabled'",
        (at, endpoint_id),
    )
    return cur.rowcount == 1


async def oldest_pending(pool: Pool, endpoint_id: str) -> datetime | None:
    """When the endpoint's oldest pending delivery was claimed (None: nothing pending)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT min(created_at) AS at FROM webhook_deliveries"
            " WHERE endpoint_id = %s AND status = 'pending'",
            (endpoint_id,),
        )
        row = await cur.fetchone()
        return row["at"] if row is not None else None


async def enabled_for(pool: Pool, workplace_ids: list[str]) -> list[str]:
    """The enabled endpoints that receive events of these workplaces (system-wide ones always)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT endpoint_id FROM webhook_endpoints WHERE status = 'enabled'"
            " AND (workplace_id IS NULL OR workplace_id = ANY(%s)) ORDER BY endpoint_id",
            (workplace_ids,),
        )
        return [row["endpoint_id"] for row in await cur.fetchall()]


async def with_work(pool: Pool, *, now: datetime) -> list[str]:
    """The enabled endpoints with a delivery due at `now` or an event after their cursor: what
    the dispatcher's periodic sweep pokes, so that a lost notification only delays. (Each
    test is an index probe: a workplace's endpoint looks in its workplace's feed only.)"""
    unclaimed = (
        "SELECT 1 FROM events e WHERE {workplace}"
        " (w.cursor_txid IS NULL OR (e.txid, e.event_no) > (w.cursor_txid, w.cursor_event_no))"
        " AND e.txid < pg_snapshot_xmin(pg_current_snapshot())"
    )
    due = (
        "SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = w.endpoint_id"
        " AND d.status = 'pending' AND d.next_attempt_at <= %(now)s"
    )
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT w.endpoint_id FROM webhook_endpoints w"
            " WHERE w.status = 'enabled' AND w.workplace_id IS NOT NULL"
            f" AND (EXISTS ({due}) OR EXISTS ("
            + unclaimed.format(workplace="e.workplace_id = w.workplace_id AND")
            + "))"
            " UNION SELECT w.endpoint_id FROM webhook_endpoints w"
            " WHERE w.status = 'enabled' AND w.workplace_id IS NULL"
            f" AND (EXISTS ({due}) OR EXISTS (" + unclaimed.format(workplace="") + "))"
            " ORDER BY endpoint_id",
            {"now": now},
        )
        return [row["endpoint_id"] for row in await cur.fetchall()]
