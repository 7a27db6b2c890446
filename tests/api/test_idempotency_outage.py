"""An Idempotency-Key whose outcome could not be written because PostgreSQL went down during the
request (issue 11, the kill matrix's postgres scenario): the live API process writes it once the
database is back, instead of leaving the key leased to itself until the lease runs out and
answering every retry 503 meanwhile. On a PostgreSQL of its own, since it is stopped and started
again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest_asyncio
from psycopg_pool import PoolTimeout

from api import idempotency
from api.idempotency import LeasePolicy
from devstack.embedded import EmbeddedPostgres
from store.db import Pool, migrate, open_pool
from store.idempotency import Claim, IdempotencyStore
from tests.conftest import eventually

CALLER, FINGERPRINT = "wp-outage/rep", "POST /v1/x\n{}"


@pytest_asyncio.fixture
async def outage() -> AsyncIterator[tuple[EmbeddedPostgres, Pool]]:
    folder = Path(tempfile.mkdtemp(prefix="bizsupport-outage-pg-"))
    server = EmbeddedPostgres(folder / "pgdata")
    try:
        url = server.start()
        migrate(url)
        pool = await open_pool(url, max_size=2, wait_seconds=1)
        try:
            yield server, pool
        finally:
            await pool.close()
    finally:
        server.destroy()
        shutil.rmtree(folder, ignore_errors=True)


async def leased(store: IdempotencyStore, key: str, policy: LeasePolicy) -> None:
    claim = await store.claim(
        CALLER, key, FINGERPRINT, owner=policy.owner, lease_seconds=policy.lease_seconds
    )
    assert claim.owned


async def test_outcomes_that_could_not_be_written_are_written_once_postgres_is_back(
    outage: tuple[EmbeddedPostgres, Pool],
) -> None:
    server, pool = outage
    store = IdempotencyStore(pool)
    policy = LeasePolicy(lease_seconds=60)  # far longer than this test waits
    await leased(store, "released", policy)
    await leased(store, "answered", policy)

    server.stop()  # PostgreSQL dies while both requests run
    await idempotency._release(store, CALLER, "released", policy)  # a 503: give the key up
    await idempotency._answer(store, CALLER, "answered", 200, {"state": "cancelled"}, policy)
    server.start()  # back, on the same port

    async def claimed(key: str) -> Claim | None:
        """A retry's claim, from another process, once it runs again or gets the answer (a
        retry that finds the pool still reconnecting is a retry that comes again later)."""
        try:
            claim = await store.claim(CALLER, key, FINGERPRINT, owner="retry", lease_seconds=60)
        except (PoolTimeout, psycopg.OperationalError):
            return None
        return claim if claim.owned or claim.answered else None

    # the retries run again, or get the first answer, long before the 60 s lease would run out
    await eventually(lambda: claimed("released"), within=20, what="the key given up")
    await eventually(lambda: claimed("answered"), within=20, what="the answer recorded")
    replay = await store.claim(CALLER, "answered", FINGERPRINT, owner="x", lease_seconds=60)
    assert replay.row is not None and replay.row["body"] == {"state": "cancelled"}
