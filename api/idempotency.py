"""Idempotency-Key on POSTs (R-ERR-2), kept in PostgreSQL (store/migrations/003_idempotency.sql).

The key is scoped to the caller. The first request with a key claims it (a row without an answer)
and stores its answer when done; a retry with the same request gets that answer replayed (with
`Idempotent-Replayed: true`), even across processes and restarts. The same key with another
request is refused with IDEMPOTENCY_KEY_REUSED. A retry arriving while the first is still running
waits for its answer. Answers that mean "nothing was executed" (400, 401, 413), transient ones
(CLOCK_BUSY) and server failures (5xx) are not kept, so the retry runs again. Keys are kept for
24 hours.

Temporal's own update ids are not enough: they are deduplicated only within one run (SPEC R-ERR-2).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from domain.errors import BizError
from store.idempotency import IdempotencyStore

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_NOT_KEPT = {400, 401, 413}
_TRANSIENT = {"CLOCK_BUSY", "SERVICE_UNAVAILABLE"}  # a retry should run again
_WAIT_FOR_FIRST = 30.0


def _canonical(body: bytes) -> bytes:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


async def request_hash(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b" " + request.url.path.encode() + b"\n")
    digest.update(_canonical(await request.body()))
    return digest.hexdigest()


def read_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise BizError(
            "VALIDATION_ERROR",
            problem=f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
        )
    return key


async def respond(
    request: Request,
    store: IdempotencyStore,
    caller: str,
    status: int,
    action: Callable[[], Awaitable[Any]],
) -> JSONResponse:
    """Run `action` once per (caller, Idempotency-Key); its result is answered with `status`."""
    key = read_key(request)
    if key is None:
        return JSONResponse(jsonable_encoder(await action()), status_code=status)
    fingerprint = await request_hash(request)
    deadline = asyncio.get_running_loop().time() + _WAIT_FOR_FIRST
    while (row := await store.claim(caller, key, fingerprint)) is not None:
        if row["request_hash"] != fingerprint:
            raise BizError("IDEMPOTENCY_KEY_REUSED")
        if row["status"] is not None:
            replay = JSONResponse(row["body"], status_code=row["status"])
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        if asyncio.get_running_loop().time() > deadline:
            raise BizError("SERVICE_UNAVAILABLE")
        await asyncio.sleep(0.1)
    try:
        body = jsonable_encoder(await action())
    except BizError as refusal:
        if refusal.status in _NOT_KEPT or refusal.status >= 500 or refusal.code in _TRANSIENT:
            await store.release(caller, key)
        else:
            await store.answer(caller, key, refusal.status, jsonable_encoder(refusal.body()))
        raise
    except BaseException:
        await store.release(caller, key)
        raise
    await store.answer(caller, key, status, body)
    return JSONResponse(body, status_code=status)
