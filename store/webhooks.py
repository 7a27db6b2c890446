"""Webhook endpoints, their signing secrets, and what the API shows of their deliveries
(R-EVENT-2; docs/webhooks.md). Delivering them is store/deliveries.py's.

- An endpoint belongs to a workplace, or with `workplace_id` None to the system (every
  workplace's events). Deleting one only marks it `deleted`: its deliveries keep their history.
- A new endpoint starts at the current end of the event feed (store/events.py): it receives the
  events committed from its creation on, not the history (the feed has that).
- Secrets: the newest signs; a rotation gives the one it replaces `retires_at` = now + overlap,
  and until then both sign. Secrets past their `retires_at` sign nothing and go at the next
  rotation.
- A resend puts a finished delivery back to `pending`, due now, with the same delivery and
  event, so the same `webhook-id` goes out again under a fresh signature.

Every change that gives the dispatcher something to do notifies EVENTS_CHANNEL in its
transaction (delivered at commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from store.db import Conn, Pool, columns, fetch_all, fetch_one
from store.events import EVENTS_CHANNEL

EndpointStatus = Literal["enabled", "disabled", "deleted"]
DeliveryStatus = Literal["pending", "succeeded", "failed"]
RESENDABLE: tuple[DeliveryStatus, ...] = ("succeeded", "failed")


@dataclass(frozen=True, slots=True)
class EndpointRow:
    endpoint_id: str
    workplace_id: str | None
    url: str
    types: list[str] | None  # None: every type
    description: str
    created_by: str
    created_at: datetime
    status: EndpointStatus
    status_changed_at: datetime | None
    failing_since: datetime | None


@dataclass(frozen=True, slots=True)
class SecretRow:
    secret: str
    created_at: datetime
    retires_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery as the API lists it, with its event's public id and type."""

    delivery_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    subscription_id: str | None
    seq: int
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime


_ENDPOINT = columns(EndpointRow)
_SECRET = columns(SecretRow)
# the delivery's own columns, and its event's public id, type and subscription
_DELIVERY = (
    "d.delivery_id, d.endpoint_id, e.event_id, e.type AS event_type, e.subscription_id, d.seq,"
    " d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at,"
    " d.next_attempt_at, d.created_at"
)


async def _notify(conn: Conn, workplace_id: str | None) -> None:
    """Wake the dispatcher (at commit): this scope has something new to deliver."""
    await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, workplace_id or ""))


async def create(
    pool: Pool,
    *,
    endpoint_id: str,
    workplace_id: str | None,
    url: str,
    types: list[str] | None,
    description: str,
    created_by: str,
    at: datetime,
    secret: str,
    limit: int,
) -> EndpointRow | None:
    """The new endpoint with its first secret, in one transaction; None when the scope (the
    workplace, or the system) already has `limit` endpoints that are not deleted."""
    async with pool.connection() as conn, conn.transaction():
        # one creation per scope at a time, so two at once cannot both take the last place
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 20))",
            (f"webhook-endpoints:{workplace_id or ''}",),
        )
        cur = await conn.execute(
            "SELECT count(*) AS n FROM webhook_endpoints"
            " WHERE workplace_id IS NOT DISTINCT FROM %s AND status <> 'deleted'",
            (workplace_id,),
        )
        counted = await cur.fetchone()
        assert counted is not None
        if counted["n"] >= limit:
            return None
        # Where the endpoint starts in the feed (store/events.py orders it by transaction id):
        # after every transaction that had begun writing when it was created. Events of
        # transactions given an id later, and only those, are its; this does not depend on
        # which earlier transactions happen to have committed yet.
        cur = await conn.execute(
            "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint - 1)::text AS txid,"
            " 9223372036854775807 AS event_no"
        )
        end = await cur.fetchone()
        row = await fetch_one(
            conn,
            EndpointRow,
            "INSERT INTO webhook_endpoints (endpoint_id, workplace_id, url, types, description,"
            " created_by, created_at, status, cursor_txid, cursor_event_no)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'enabled', %s::text::xid8, %s)"
            f" RETURNING {_ENDPOINT}",
            (
                endpoint_id,
                workplace_id,
                url,
                types,
                description,
                created_by,
                at,
                end["txid"] if end else None,
                end["event_no"] if end else None,
            ),
        )
        await conn.execute(
            "INSERT INTO webhook_secrets (endpoint_id, secret, created_at) VALUES (%s, %s, %s)",
            (endpoint_id, secret, at),
        )
        await _notify(conn, workplace_id)
        return row


async def endpoints(pool: Pool, workplace_id: str | None) -> list[EndpointRow]:
    """The workplace's endpoints (None: the system-wide ones), not deleted, oldest first."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            EndpointRow,
            f"SELECT {_ENDPOINT} FROM webhook_endpoints"
            " WHERE workplace_id IS NOT DISTINCT FROM %s AND status <> 'deleted'"
            " ORDER BY created_at, endpoint_id",
            (workplace_id,),
        )


async def endpoint(
    pool: Pool, endpoint_id: str, *, with_deleted: bool = False
) -> EndpointRow | None:
    """The endpoint, unless it does not exist or (without `with_deleted`) was deleted."""
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            EndpointRow,
            f"SELECT {_ENDPOINT} FROM webhook_endpoints"
            " WHERE endpoint_id = %s AND (%s OR status <> 'deleted')",
            (endpoint_id, with_deleted),
        )


async def delete(pool: Pool, endpoint_id: str, at: datetime) -> bool:
    """Mark the endpoint deleted (its deliveries stay, unsent ones are no longer sent); False
    when it was not there or already deleted."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE webhook_endpoints SET status = 'deleted', status_changed_at = %s"
            " WHERE endpoint_id = %s AND status <> 'deleted' RETURNING workplace_id",
            (at, endpoint_id),
        )
        found = await cur.fetchone()
        if found is None:
            return False
        await _notify(conn, found["workplace_id"])
        return True


async def rotate(
    pool: Pool, endpoint_id: str, secret: str, at: datetime, overlap: timedelta
) -> datetime | None:
    """Make `secret` the endpoint's current one; the one it replaces signs alongside until
    `at + overlap`, and secrets retired by `at` are removed. Answers the new secret's
    `created_at`, or None when the endpoint does not exist or was deleted."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT 1 FROM webhook_endpoints WHERE endpoint_id = %s AND status <> 'deleted'"
            " FOR UPDATE",
            (endpoint_id,),
        )
        if await cur.fetchone() is None:
            return None
        await conn.execute(
            "DELETE FROM webhook_secrets WHERE endpoint_id = %s AND retires_at <= %s",
            (endpoint_id, at),
        )
        await conn.execute(
            "UPDATE webhook_secrets SET retires_at = %s"
            " WHERE endpoint_id = %s AND retires_at IS NULL",
            (at + overlap, endpoint_id),
        )
        # created_at is the key with the endpoint: two rotations at one business instant (the
        # sandbox clock stands still between advances) get distinct, ordered instants
        cur = await conn.execute(
            "INSERT INTO webhook_secrets (endpoint_id, secret, created_at)"
            " SELECT %s, %s, greatest(%s::timestamptz, max(created_at) + interval '1 microsecond')"
            " FROM webhook_secrets WHERE endpoint_id = %s RETURNING created_at",
            (endpoint_id, secret, at, endpoint_id),
        )
        created = await cur.fetchone()
        assert created is not None
        created_at: datetime = created["created_at"]
        return created_at


async def secrets(pool: Pool, endpoint_id: str) -> list[SecretRow]:
    """Every secret the endpoint has, newest first (retired ones until the next rotation)."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SecretRow,
            f"SELECT {_SECRET} FROM webhook_secrets WHERE endpoint_id = %s"
            " ORDER BY created_at DESC",
            (endpoint_id,),
        )


async def signing_secrets(conn: Conn, endpoint_id: str, at: datetime) -> list[str]:
    """The secrets that sign an attempt made at `at`, newest first: the current one and any
    replaced one whose overlap has not run out (a `webhook-signature` carries one per secret)."""
    cur = await conn.execute(
        "SELECT secret FROM webhook_secrets WHERE endpoint_id = %s"
        " AND (retires_at IS NULL OR retires_at > %s) ORDER BY created_at DESC",
        (endpoint_id, at),
    )
    return [row["secret"] for row in await cur.fetchall()]


async def deliveries(
    pool: Pool,
    endpoint_id: str,
    *,
    status: DeliveryStatus | None,
    limit: int,
    before: str | None = None,
) -> list[DeliveryRow]:
    """The endpoint's deliveries, newest first, at most `limit`; `before`: only those older
    than that delivery (the next page); `status`: only those in it."""
    where = ["d.endpoint_id = %s"]
    params: list[Any] = [endpoint_id]
    if status is not None:
        where.append("d.status = %s")
        params.append(status)
    if before is not None:
        where.append(
            "(d.created_at, d.event_no) < (SELECT created_at, event_no FROM webhook_deliveries"
            " WHERE delivery_id = %s AND endpoint_id = %s)"
        )
        params += [before, endpoint_id]
    params.append(limit)
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            DeliveryRow,
            f"SELECT {_DELIVERY} FROM webhook_deliveries d JOIN events e USING (event_no)"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY d.created_at DESC, d.event_no DESC LIMIT %s",
            tuple(params),
        )


async def delivery(pool: Pool, endpoint_id: str, delivery_id: str) -> DeliveryRow | None:
    async with pool.connection() as conn:
        return await fetch_one(
            conn,
            DeliveryRow,
            f"SELECT {_DELIVERY} FROM webhook_deliveries d JOIN events e USING (event_no)"
            " WHERE d.endpoint_id = %s AND d.delivery_id = %s",
            (endpoint_id, delivery_id),
        )


async def resend(pool: Pool, endpoint_id: str, delivery_id: str, at: datetime) -> bool:
    """Put a succeeded or failed delivery back to `pending`, due at `at`, with a fresh count of
    attempts (its last status code and error stay until the next attempt). False when it is not
    one of the endpoint's finished deliveries (pending, or no such delivery)."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE webhook_deliveries d SET status = 'pending', attempts = 0,"
            " next_attempt_at = %s"
            " FROM webhook_endpoints w"
            " WHERE d.endpoint_id = w.endpoint_id AND d.endpoint_id = %s"
            " AND d.delivery_id = %s AND d.status = ANY(%s)"
            " RETURNING w.workplace_id",
            (at, endpoint_id, delivery_id, list(RESENDABLE)),
        )
        found = await cur.fetchone()
        if found is None:
            return False
        await _notify(conn, found["workplace_id"])
        return True
