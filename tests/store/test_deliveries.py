"""store/deliveries.py: claiming moves the cursor past every event read and takes only the
endpoint's own; the sweep finds exactly the endpoints with unclaimed events or due deliveries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from store import deliveries, events
from store.db import Pool

NOW = datetime(2027, 1, 1, tzinfo=UTC)


async def _endpoint(pool: Pool, workplace_id: str | None, types: list[str] | None = None) -> str:
    endpoint_id = f"we_{uuid.uuid4().hex[:12]}"
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO webhook_endpoints (endpoint_id, workplace_id, url, types, created_by,"
            " created_at) VALUES (%s, %s, 'https://example.com/h', %s, 't', %s)",
            (endpoint_id, workplace_id, types, NOW),
        )
    return endpoint_id


async def _emit(pool: Pool, workplace_id: str, type: str, stream: str) -> None:
    async with pool.connection() as conn, conn.transaction():
        await events.append(
            conn,
            event_key=f"t:{uuid.uuid4().hex}",
            type=type,
            created_at=NOW,
            workplace_id=workplace_id,
            service_id=None,
            subscription_id=stream,
            data={},
        )


async def test_claim_and_sweep(pool: Pool) -> None:
    wp, other = f"wp-{uuid.uuid4().hex[:8]}", f"wp-{uuid.uuid4().hex[:8]}"
    mine = await _endpoint(pool, wp, ["invoice.issued"])
    theirs = await _endpoint(pool, other)
    await _emit(pool, wp, "invoice.issued", f"s1-{wp}")
    await _emit(pool, wp, "subscription.cancelled", f"s1-{wp}")
    await _emit(pool, wp, "invoice.issued", f"s2-{wp}")
    assert mine in await deliveries.with_work(pool, now=NOW)

    claimed = await deliveries.claim(pool, mine, now=NOW, limit=10)
    assert (claimed.read, claimed.claimed) == (3, 2)  # the cancelled one is not its type
    again = await deliveries.claim(pool, mine, now=NOW, limit=10)
    assert (again.read, again.claimed) == (0, 0)
    heads = await deliveries.stream_heads(pool, mine)
    assert sorted(h.event.type for h in heads) == ["invoice.issued", "invoice.issued"]

    # Claimed and due: swept; not yet due: not; the other workplace's endpoint saw nothing.
    assert mine in await deliveries.with_work(pool, now=NOW)
    assert mine not in await deliveries.with_work(pool, now=NOW - timedelta(seconds=1))
    assert theirs not in await deliveries.with_work(pool, now=NOW)
