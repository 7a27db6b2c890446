"""Idempotency keys (R-ERR-2): a key leased to the request answering it, then the answer it got
(migrations/003, 004).

A claimed key without an answer is a lease: an owner (one id per process) and an expiry the owner
renews while the request runs. A claim after the lease ran out takes the key over, so a key whose
owner died is never stuck. The HTTP side (which answers are kept, how long a retry waits for a
live owner) is api/idempotency.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypedDict

from psycopg.types.json import Jsonb

from store.db import Pool, fetch_one

RETENTION_SQL = "interval '24 hours'"
_SWEEP_EVERY = 600.0


class KeyState(TypedDict):
    """A key as it stands: its request's hash, the answer (`status` None: not answered yet; `body`
    is the answer's JSON, whatever the route answered) and the lease (seconds left, 0 when run
    out). A TypedDict because api/idempotency.py reads it by key."""

    request_hash: str
    status: int | None
    body: Any
    owner: str | None
    attempts: int
    lease_left: float | None


@dataclass(frozen=True)
class Claim:
    """What a claim found. `owned`: this request now answers the key (`attempts` > 1 when it took
    the key over from an owner whose lease ran out). Otherwise `row` is the key as it stands."""

    owned: bool
    attempts: int = 1
    row: KeyState | None = None

    @property
    def answered(self) -> bool:
        return self.row is not None and self.row["status"] is not None


class IdempotencyStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._last_sweep = 0.0

    async def claim(
        self, caller: str, key: str, request_hash: str, *, owner: str, lease_seconds: float
    ) -> Claim:
        """Take the key (new, or its lease ran out), else report it as it stands."""
        await self._sweep()
        lease = (caller, key, request_hash, owner, lease_seconds)
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE caller = %s AND key = %s"
                f" AND created_at < now() - {RETENTION_SQL}",
                (caller, key),
            )
            claimed = await (
                await conn.execute(
                    "INSERT INTO idempotency_keys (caller, key, request_hash, owner, lease_until)"
                    " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
                    " ON CONFLICT (caller, key) DO NOTHING RETURNING attempts",
                    lease,
                )
            ).fetchone()
            if claimed is not None:
                return Claim(owned=True, attempts=claimed["attempts"])
            taken = await (
                await conn.execute(
                    "UPDATE idempotency_keys SET owner = %s,"
                    " lease_until = now() + make_interval(secs => %s), attempts = attempts + 1"
                    " WHERE caller = %s AND key = %s AND request_hash = %s AND status IS NULL"
                    " AND (lease_until IS NULL OR lease_until < now()) RETURNING attempts",
                    (owner, lease_seconds, caller, key, request_hash),
                )
            ).fetchone()
            if taken is not None:
                return Claim(owned=True, attempts=taken["attempts"])
            row = await fetch_one(
                conn,
                KeyState,
                "SELECT request_hash, status, body, owner, attempts,"
                " greatest(extract(epoch FROM lease_until - now()), 0)::float AS lease_left"
                " FROM idempotency_keys WHERE caller = %s AND key = %s",
                (caller, key),
            )
        if row is None:  # answered and swept, or released, in between: try again
            return Claim(owned=False)
        return Claim(owned=False, attempts=row["attempts"], row=row)

    async def renew(self, caller: str, key: str, *, owner: str, lease_seconds: float) -> bool:
        """Extend the owner's lease; False when the key is no longer this owner's to answer."""
        async with self.pool.connection() as conn:
            renewed = await (
                await conn.execute(
                    "UPDATE idempotency_keys SET lease_until = now() + make_interval(secs => %s)"
                    " WHERE caller = %s AND key = %s AND owner = %s AND status IS NULL"
                    " RETURNING key",
                    (lease_seconds, caller, key, owner),
                )
            ).fetchone()
        return renewed is not None

    async def answer(self, caller: str, key: str, status: int, body: Any) -> None:
        """Record the answer. The first recorded answer stays: a request that lost its lease and
        one that took it over ran the same de-duplicated change."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = %s, body = %s, lease_until = NULL"
                " WHERE caller = %s AND key = %s AND status IS NULL",
                (status, Jsonb(body), caller, key),
            )

    async def release(self, caller: str, key: str, *, owner: str) -> None:
        """Give an unanswered key up (the retry runs again); only its owner may."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE caller = %s AND key = %s AND status IS NULL"
                " AND owner = %s",
                (caller, key, owner),
            )

    async def forget_answer(self, caller: str, key: str) -> None:
        """Drop a key and its answer (operators, and tests simulating an answer lost in a crash)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE caller = %s AND key = %s", (caller, key)
            )

    async def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < _SWEEP_EVERY:
            return
        self._last_sweep = now
        async with self.pool.connection() as conn:
            await conn.execute(
                f"DELETE FROM idempotency_keys WHERE created_at < now() - {RETENTION_SQL}"
            )
