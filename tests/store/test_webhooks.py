"""store/webhooks.py on the real PostgreSQL (R-EVENT-2): which secrets sign when, where a new
endpoint starts in the feed, and what a resend changes (delivery rows inserted directly: the
dispatcher that writes them is not this module's)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.webhooks import SECRET_OVERLAP, new_secret
from store import events, webhooks
from store.db import Pool
from tests.conftest import Workplace, eventually

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)


async def make_endpoint(pool: Pool, workplace_id: str | None, secret: str) -> str:
    endpoint_id = f"ep_test_{uuid.uuid4().hex[:12]}"
    made = await webhooks.create(
        pool,
        endpoint_id=endpoint_id,
        workplace_id=workplace_id,
        url="http://127.0.0.1:9/hook",
        types=None,
        description="",
        created_by="tester",
        at=T0,
        secret=secret,
        limit=10,
    )
    assert made is not None
    return endpoint_id


async def append_event(pool: Pool, workplace_id: str, type: str = "invoice.issued") -> int:
    """One committed event of a subscription of its own; its event_no."""
    key = f"test:{uuid.uuid4().hex}"
    async with pool.connection() as conn, conn.transaction():
        assert await events.append(
            conn,
            event_key=key,
            type=type,
            created_at=T0,
            workplace_id=workplace_id,
            service_id="ubob",
            subscription_id=f"sub-{uuid.uuid4().hex[:8]}",
            data={},
        )
        cur = await conn.execute("SELECT event_no FROM events WHERE event_key = %s", (key,))
        row = await cur.fetchone()
        assert row is not None
        event_no: int = row["event_no"]
        return event_no


async def signing(pool: Pool, endpoint_id: str, at: datetime) -> list[str]:
    async with pool.connection() as conn:
        return await webhooks.signing_secrets(conn, endpoint_id, at)


def test_secrets_are_standard_webhooks_secrets() -> None:
    import base64

    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert new_secret() != secret


async def test_a_rotated_secret_keeps_signing_for_24_hours(
    pool: Pool, workplace: Workplace
) -> None:
    first, second, third = new_secret(), new_secret(), new_secret()
    endpoint_id = await make_endpoint(pool, workplace.id, first)
    assert await signing(pool, endpoint_id, T0) == [first]

    rotated_at = T0 + timedelta(hours=1)
    assert await webhooks.rotate(pool, endpoint_id, second, rotated_at, SECRET_OVERLAP)
    retires = rotated_at + timedelta(hours=24)
    # newest first: receivers try each signature; both verify during the overlap
    assert await signing(pool, endpoint_id, rotated_at) == [second, first]
    assert await signing(pool, endpoint_id, retires - timedelta(seconds=1)) == [second, first]
    assert await signing(pool, endpoint_id, retires) == [second]

    # a second rotation at the same instant (a sandbox clock standing still): three sign
    assert await webhooks.rotate(pool, endpoint_id, third, rotated_at, SECRET_OVERLAP)
    assert await signing(pool, endpoint_id, rotated_at) == [third, second, first]

    # a rotation after the overlap removes the secrets that stopped signing
    later = retires + timedelta(hours=1)
    fourth = new_secret()
    assert await webhooks.rotate(pool, endpoint_id, fourth, later, SECRET_OVERLAP)
    kept = await webhooks.secrets(pool, endpoint_id)
    assert [s.secret for s in kept] == [fourth, third]
    assert await signing(pool, endpoint_id, later) == [fourth, third]

    assert await webhooks.delete(pool, endpoint_id, later)
    assert await webhooks.rotate(pool, endpoint_id, new_secret(), later, SECRET_OVERLAP) is None


async def test_a_new_endpoint_starts_at_the_end_of_the_feed(
    pool: Pool, workplace: Workplace
) -> None:
    before = await append_event(pool, workplace.id)

    async def visible() -> bool:  # other tests may hold the horizon back
        async with pool.connection() as conn:
            feed = await events.read_feed(
                conn, after=None, limit=100_000, workplace_id=workplace.id
            )
        return before in [e.event_no for e in feed]

    await eventually(visible, what="the event before the endpoint in the feed")
    endpoint_id = await make_endpoint(pool, workplace.id, new_secret())
    after = await append_event(pool, workplace.id)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT cursor_txid::text::bigint AS txid, cursor_event_no FROM webhook_endpoints"
            " WHERE endpoint_id = %s",
            (endpoint_id,),
        )
        row = await cur.fetchone()
        assert row is not None and row["cursor_event_no"] is not None
        cursor = events.FeedCursor(txid=row["txid"], event_no=row["cursor_event_no"])
        feed = await events.read_feed(conn, after=cursor, limit=1000, workplace_id=workplace.id)
    seen = [e.event_no for e in feed]
    assert before not in seen  # history stays in the feed, not in the new endpoint's deliveries
    assert after in seen


async def insert_delivery(
    pool: Pool, endpoint_id: str, event_no: int, status: str, at: datetime, **fields: object
) -> str:
    delivery_id = f"dl_{uuid.uuid4().hex[:16]}"
    values = {
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        "last_attempt_at": None,
        "next_attempt_at": at if status == "pending" else None,  # a pending one is due (009)
        **fields,
    }
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_no, stream, seq,"
            " status, attempts, last_status_code, last_error, last_attempt_at, next_attempt_at,"
            " created_at) SELECT %s, %s, event_no, stream, seq, %s, %s, %s, %s, %s, %s, %s"
            " FROM events WHERE event_no = %s",
            (
                delivery_id,
                endpoint_id,
                status,
                values["attempts"],
                values["last_status_code"],
                values["last_error"],
                values["last_attempt_at"],
                values["next_attempt_at"],
                at,
                event_no,
            ),
        )
    return delivery_id


async def test_resend_puts_a_finished_delivery_back_to_pending_and_wakes_the_dispatcher(
    pool: Pool, database_url: str, workplace: Workplace
) -> None:
    endpoint_id = await make_endpoint(pool, workplace.id, new_secret())
    failed = await insert_delivery(
        pool,
        endpoint_id,
        await append_event(pool, workplace.id),
        "failed",
        T0,
        attempts=8,
        last_status_code=500,
        last_error="HTTP 500",
        last_attempt_at=T0,
    )
    pending = await insert_delivery(
        pool, endpoint_id, await append_event(pool, workplace.id), "pending", T0
    )
    listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    async with listener:
        await listener.execute(f"LISTEN {events.EVENTS_CHANNEL}")
        now = T0 + timedelta(days=4)
        assert await webhooks.resend(pool, endpoint_id, failed, now)
        woken = [n.payload async for n in listener.notifies(timeout=5, stop_after=1)]
    assert woken == [workplace.id]

    again = await webhooks.delivery(pool, endpoint_id, failed)
    assert again is not None
    assert (again.status, again.attempts, again.next_attempt_at) == ("pending", 0, now)
    assert again.last_status_code == 500  # shown until the next attempt answers
    # a pending delivery is not resent, nor a delivery of another endpoint
    assert not await webhooks.resend(pool, endpoint_id, pending, now)
    assert not await webhooks.resend(pool, endpoint_id, failed, now)
    other = await make_endpoint(pool, workplace.id, new_secret())
    assert not await webhooks.resend(pool, other, failed, now)


async def test_a_pending_delivery_always_has_its_due_time(pool: Pool, workplace: Workplace) -> None:
    """Migration 009: the database refuses a pending delivery without `next_attempt_at` (a round
    compares it with the clock; such a row, written by hand, once stalled an endpoint's rounds)."""
    endpoint_id = await make_endpoint(pool, workplace.id, new_secret())
    event_no = await append_event(pool, workplace.id)
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        await insert_delivery(pool, endpoint_id, event_no, "pending", T0, next_attempt_at=None)
    assert refused.value.diag.constraint_name == "webhook_deliveries_pending_is_due"
    failed = await insert_delivery(pool, endpoint_id, event_no, "failed", T0, attempts=8)
    row = await webhooks.delivery(pool, endpoint_id, failed)
    assert row is not None and row.next_attempt_at is None  # finished ones have none
