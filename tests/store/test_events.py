"""store/events.py on the real PostgreSQL (R-EVENT-1, R-EVENT-3): an event exists exactly when
its decision committed, keeps its id when written again, and the feed gives every event exactly
once across pages while writers commit out of order."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from domain.subscription import Publication
from store import access, directory, events, ledger, subscriptions
from store.db import Conn, Pool
from store.events import EventRow, FeedCursor
from tests.conftest import Workplace, eventually
from tests.store.test_commit import _decision, _reserved
from tests.store.test_notify import publication

NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


async def _append(conn: Conn, wp: str, stream: str, key: str) -> bool:
    return await events.append(
        conn,
        event_key=key,
        type="usage_permission.granted",
        created_at=NOW,
        workplace_id=wp,
        service_id="cartax",
        subscription_id=stream,
        data={"key": key},
    )


def _invoiced(sub: str, wp: str, seq: int) -> Publication:
    """A month-close that issues October's invoice."""
    decided = _decision(sub, wp, seq)
    assert decided.audit is not None
    audit = decided.audit.model_copy(
        update={"action": "invoice_issued", "details": {"period": "2026-10", "total": "2200"}}
    )
    return decided.model_copy(update={"audit": audit})


async def _rows(pool: Pool, wp: str) -> list[EventRow]:
    """Every committed event of the workplace, through the feed in pages of 1000."""
    async with pool.connection() as conn:
        return await events.read_feed(conn, after=None, limit=1000, workplace_id=wp)


async def _drain(
    pool: Pool, wp: str, cursor: FeedCursor | None, seen: list[str]
) -> FeedCursor | None:
    """Read page after page (3 at a time) until the feed has nothing more; returns the cursor."""
    while True:
        async with pool.connection() as conn:
            page = await events.read_feed(conn, after=cursor, limit=3, workplace_id=wp)
            if not page:
                return cursor
            seen.extend(row.event_id for row in page)
            cursor = await events.cursor_of(conn, page[-1].event_id)


class _Writer:
    """One transaction appending `count` events to its own stream, open until released."""

    def __init__(self, pool: Pool, wp: str, index: int, count: int, roll_back: bool) -> None:
        self.pool, self.wp, self.count, self.roll_back = pool, wp, count, roll_back
        self.stream = f"{wp}-sub{index}"
        self.keys = [f"{self.stream}:{n}" for n in range(count)]
        self.written = asyncio.Event()
        self.release = asyncio.Event()
        self.done = asyncio.Event()

    async def run(self, pause: float = 0.0) -> None:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                for key in self.keys:
                    assert await _append(conn, self.wp, self.stream, key)
                    await asyncio.sleep(pause)
                self.written.set()
                await self.release.wait()
                if self.roll_back:
                    raise psycopg.Rollback
        self.done.set()

    def ids(self) -> list[str]:
        return [] if self.roll_back else [events.event_id(k) for k in self.keys]


async def _commit_in_order(
    pool: Pool, wp: str, writers: list[_Writer], order: list[_Writer]
) -> int:
    """Release the writers in `order`, draining the feed after each commit; returns how many
    committed behind an older writer still open."""
    seen: list[str] = []
    cursor: FeedCursor | None = None
    open_ = list(writers)
    held_back = 0
    for w in order:
        w.release.set()
        await w.done.wait()
        open_.remove(w)
        # Readable now: every committed writer older than the oldest one still open. A writer
        # that committed behind an open older one is never shown before that one ends.
        oldest_open = min((writers.index(o) for o in open_), default=len(writers))
        readable = {i for x in writers[:oldest_open] for i in x.ids()}
        held_back += writers.index(w) > oldest_open and bool(w.ids())

        async def caught_up(readable: set[str] = readable) -> bool:
            nonlocal cursor
            cursor = await _drain(pool, wp, cursor, seen)
            assert set(seen) <= readable, "an event shown while an older writer was open"
            return set(seen) == readable  # (another connection's open transaction may delay)

        await eventually(caught_up, what="the feed to show what has committed")
    assert len(seen) == len(set(seen))
    assert set(seen) == {i for w in writers for i in w.ids()}
    return held_back


@pytest.mark.parametrize("seed", range(4))
async def test_the_feed_gives_every_event_once_while_writers_commit_out_of_order(
    pool: Pool, seed: int
) -> None:
    """Writers start one after another (so their transaction ids rise) and commit in a random
    order, some rolling back; the reader drains the feed after every commit. An event that
    commits behind an older transaction still open is held back until that one ends, so the
    reader, never going back, still sees every committed event exactly once."""
    rng = random.Random(seed)
    wp = f"wp-{uuid.uuid4().hex[:10]}"
    writers = [_Writer(pool, wp, i, rng.randint(1, 3), rng.random() < 0.25) for i in range(8)]
    tasks = []
    try:
        for w in writers:
            tasks.append(asyncio.create_task(w.run()))
            await w.written.wait()
        held_back = await _commit_in_order(pool, wp, writers, rng.sample(writers, len(writers)))
    finally:
        for w in writers:  # a failed check must not leave transactions open
            w.release.set()
        await asyncio.gather(*tasks)
    assert held_back, "this order committed nothing behind an open writer: a weak example"


async def test_the_feed_is_exactly_once_with_free_running_writers(pool: Pool) -> None:
    """The same with no choreography: 12 writers of different speeds and a reader polling all
    the while; afterwards the reader has every committed event once, in seq order per stream."""
    rng = random.Random(7)
    wp = f"wp-{uuid.uuid4().hex[:10]}"
    writers = [_Writer(pool, wp, i, rng.randint(1, 4), rng.random() < 0.2) for i in range(12)]
    for w in writers:
        w.release.set()
    finished = asyncio.Event()

    async def write_all() -> None:
        await asyncio.gather(*(w.run(pause=rng.choice([0, 0, 0.001, 0.02])) for w in writers))
        finished.set()

    seen: list[str] = []
    cursor: FeedCursor | None = None
    writing = asyncio.create_task(write_all())
    while not finished.is_set():
        cursor = await _drain(pool, wp, cursor, seen)
        await asyncio.sleep(0.002)
    await writing
    await _drain(pool, wp, cursor, seen)
    assert len(seen) == len(set(seen))
    assert set(seen) == {i for w in writers for i in w.ids()}
    rows = {r.event_id: r for r in await _rows(pool, wp)}
    for w in writers:
        assert [rows[i].seq for i in w.ids()] == list(range(1, len(w.ids()) + 1))


async def test_a_rolled_back_decision_leaves_no_event(pool: Pool) -> None:
    sub, wp = await _reserved(pool)
    async with pool.connection() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await subscriptions.write_publication(
                    conn, publication(sub, wp, "active", 1, "applied")
                )
                assert len(await _uncommitted(conn, sub)) == 1  # written, in this transaction
                raise RuntimeError("the decision fails after its writes")
    assert await _rows(pool, wp) == []


async def _uncommitted(conn: Conn, sub: str) -> list[str]:
    cur = await conn.execute("SELECT event_id FROM events WHERE subscription_id = %s", (sub,))
    return [row["event_id"] for row in await cur.fetchall()]


async def test_a_repeated_commit_keeps_one_event_with_its_id(pool: Pool) -> None:
    sub, wp = await _reserved(pool)
    first = publication(sub, wp, "active", 1, "applied")
    await subscriptions.commit(pool, first)
    (event,) = await _rows(pool, wp)
    await subscriptions.commit(pool, first)  # a retried local activity
    await subscriptions.publish(pool, first)  # or version 1's publish of the same decision
    assert await _rows(pool, wp) == [event]
    assert event.event_id == events.event_id(f"{sub}:1")
    body = event.body()
    assert body["type"] == "subscription.activated" and body["seq"] == 1
    assert body["created_at"].endswith("+09:00")


async def test_events_of_a_subscription_count_one_two_three(pool: Pool) -> None:
    sub, wp = await _reserved(pool)
    await subscriptions.commit(pool, publication(sub, wp, "applied", 1, "applied"))
    await subscriptions.commit(pool, publication(sub, wp, "active", 2, "applied"))
    await subscriptions.commit(pool, _invoiced(sub, wp, 3))
    await subscriptions.commit(pool, publication(sub, wp, "cancelled", 4, "active"))
    rows = await _rows(pool, wp)
    assert [(r.seq, r.type) for r in rows] == [
        (1, "subscription.applied"),
        (2, "subscription.activated"),
        (3, "invoice.issued"),
        (4, "subscription.cancelled"),
    ]


async def test_an_invoice_event_is_the_invoice_as_the_ledger_shows_it(pool: Pool) -> None:
    sub, wp = await _reserved(pool)
    await subscriptions.commit(pool, _invoiced(sub, wp, 1))
    (event,) = await _rows(pool, wp)
    async with pool.connection() as conn:
        row = await ledger.invoice_of(conn, sub, "2026-10")
    assert row is not None
    assert event.data == row.shown()
    assert event.data["total"] == "2200" and event.data["issued_at"].endswith("+09:00")


async def test_a_version_1_invoice_is_read_from_the_ledger(pool: Pool) -> None:
    """Version 1 issues the invoice in an activity of its own, then publishes without it."""
    sub, wp = await _reserved(pool)
    decided = _invoiced(sub, wp, 1)
    assert decided.invoice is not None
    await ledger.issue_invoice(
        pool,
        subscription_id=sub,
        workplace_id=wp,
        service_id="cartax",
        invoice=decided.invoice,
        issued_at=NOW,
    )
    v1 = Publication(snapshot=decided.snapshot, audit=decided.audit)
    await subscriptions.publish(pool, v1)
    (event,) = await _rows(pool, wp)
    assert event.type == "invoice.issued" and event.data["period"] == "2026-10"


async def test_management_changes_are_announced_on_the_workplace_stream(pool: Pool) -> None:
    wp = await Workplace(pool).create()
    for permissions in (
        ["usage.view"],
        ["usage.view", "plan.change"],
        ["usage.view", "plan.change"],
    ):
        await access.set_management(
            pool,
            workplace_id=wp.id,
            service_id="cartax",
            member_id=wp.admin,
            permissions=permissions,
            by=wp.rep,
            at=NOW,
        )
    await directory.leave(pool, wp.id, wp.admin, at=NOW)
    rows = await _rows(pool, wp.id)
    assert [(r.seq, r.type, r.subscription_id) for r in rows] == [
        (1, "management_permission.changed", None),
        (2, "management_permission.changed", None),
        (3, "management_permission.changed", None),  # the third set changed nothing: no event
    ]
    assert [r.data["reason"] for r in rows] == ["set", "set", "member_left"]
    assert rows[2].data["removed"] == ["plan.change", "usage.view"]
    assert {r.stream for r in rows} == {f"workplace:{wp.id}"}
    async with pool.connection() as conn:
        keys = await (
            await conn.execute(
                "SELECT e.event_key, a.action FROM events e JOIN audit_log a"
                " ON e.event_key = 'audit:' || a.audit_id WHERE e.workplace_id = %s",
                (wp.id,),
            )
        ).fetchall()
    assert len(keys) == 3  # each event is its audit entry's, written together


async def test_a_refused_management_change_announces_nothing(pool: Pool) -> None:
    wp = await Workplace(pool).create()
    with pytest.raises(Exception, match="NOT_AN_ADMIN"):
        await access.set_management(
            pool,
            workplace_id=wp.id,
            service_id="cartax",
            member_id=wp.members[0],
            permissions=["usage.view"],
            by=wp.rep,
            at=NOW,
        )
    assert await _rows(pool, wp.id) == []


async def test_a_workplaces_concurrent_changes_read_back_in_seq_order(pool: Pool) -> None:
    """Management changes of one workplace, made at once: the feed shows them 1, 2, 3… (the
    stream is taken before the transaction's first write, so seq order is commit order)."""
    wp = await Workplace(pool).create()
    services = ["cartax", "wishket", "miricanvas", "loai", "juju", "tudy"]
    await asyncio.gather(
        *(
            access.set_management(
                pool,
                workplace_id=wp.id,
                service_id=svc,
                member_id=wp.admin,
                permissions=["usage.view"],
                by=wp.rep,
                at=NOW,
            )
            for svc in services
        )
    )
    rows = await _rows(pool, wp.id)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert sorted(r.service_id or "" for r in rows) == sorted(services)


async def test_an_event_is_announced_once_and_only_when_committed(
    pool: Pool, database_url: str
) -> None:
    """The webhook dispatcher wakes on EVENTS_CHANNEL: one NOTIFY per event written, none for a
    repeated write (the event is already there) or a rolled-back one."""
    wp = f"wp-{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {events.EVENTS_CHANNEL}")
        async with pool.connection() as conn:
            async with conn.transaction():
                assert await _append(conn, wp, f"{wp}-s", "first")
            async with conn.transaction():
                assert not await _append(conn, wp, f"{wp}-s", "first")  # written again
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    assert await _append(conn, wp, f"{wp}-s", "rolled-back")
                    raise RuntimeError("the decision fails after its write")
            async with conn.transaction():
                assert await _append(conn, wp, f"{wp}-s", "second")
        heard = [note.payload async for note in listener.notifies(timeout=1.0)]
    assert [payload for payload in heard if payload == wp] == [wp, wp]  # others' are not ours
