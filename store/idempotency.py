"""Idempotency keys (R-ERR-2): a claimed key, then the answer it got (migrations/003).

The HTTP side (which answers are kept, waiting for a first request) is api/idempotency.py.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg.types.json import Jsonb

from store.db import Pool

RETENTION_SQL = "interval '24 hours'"
_SWEEP_EVERY = 600.0


class IdempotencyStore:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._last_sweep = 0.0

    async def claim(self, caller: str, key: str, request_hash: str) -> dict[str, Any] | None:
        """None when this request now owns the key, else the existing row."""
        await self._sweep()
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE caller = %s AND key = %s"
                f" AND created_at < now() - {RETENTION_SQL}",
                (caller, key),
            )
            claimed = await (
                await conn.execute(
                    "INSERT INTO idempotency_keys (caller, key, request_hash) VALUES (%s, %s, %s)"
                    " ON CONFLICT (caller, key) DO NOTHING RETURNING key",
                    (caller, key, request_hash),
                )
            ).fetchone()
            if claimed is not None:
                return None
            row: dict[str, Any] | None = await (
                await conn.execute(
                    "SELECT request_hash, status, body FROM idempotency_keys"
                    " WHERE caller = %s AND key = %s",
                    (caller, key),
                )
            ).fetchone()
        return row or {"request_hash": request_hash, "status": None, "body": None}

    async def answer(self, caller: str, key: str, status: int, body: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = %s, body = %s WHERE caller = %s AND key = %s",
                (status, Jsonb(body), caller, key),
            )

    async def release(self, caller: str, key: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE caller = %s AND key = %s AND status IS NULL",
                (caller, key),
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
