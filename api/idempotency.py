"""Idempotency-Key on POSTs (R-ERR-2), kept in PostgreSQL (store/idempotency.py).

The key is scoped to the caller. The first request with a key leases it (a row without an answer,
an owner: this process, and an expiry renewed while the request runs) and stores its answer when
done; a retry with the same request gets that answer replayed (with `Idempotent-Replayed: true`),
even across processes and restarts. The same key with another request is refused with
IDEMPOTENCY_KEY_REUSED. Answers that mean "nothing was executed" (400, 401, 413), transient ones
(CLOCK_BUSY) and server failures (5xx) are not kept, so the retry runs again. Keys are kept for
24 hours.

Crashes (issue 11): a retry while the owner is alive waits a few seconds for its answer, then gets
503 SERVICE_UNAVAILABLE with `Retry-After`. A retry after the owner died (its lease ran out) takes
the key over and runs the request again. That is safe because the action receives a request id
derived from the caller and the key, and the service layer makes it the Temporal update id (and
the subscription id of an application): Temporal answers a repeated update with the first
outcome, so a change made before a crash is neither made twice nor refused on retry. A process
that could not record a key's answer or give the key up because PostgreSQL went down during the
request keeps trying in the background, so once the database is back the retry gets the answer
or runs again within a second, instead of 503 until the lease runs out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from api.errors import RETRY_AFTER_SECONDS
from domain.errors import BizError
from store.idempotency import IdempotencyStore

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_NOT_KEPT = {400, 401, 413}
_TRANSIENT = {"CLOCK_BUSY", "SERVICE_UNAVAILABLE"}  # a retry should run again


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class LeasePolicy:
    """How keys are leased. `owner` names this process; a lease not renewed for `lease_seconds`
    (the owner died) may be taken over; a retry waits at most `wait_for_owner` seconds for a live
    owner's answer before it is answered 503."""

    lease_seconds: float = 30.0
    wait_for_owner: float = 5.0
    owner: str = field(default_factory=_process_id)

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3


def _canonical(body: bytes) -> bytes:
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        return body


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same request": method, path and canonical body."""
    digest = hashlib.sha256()
    digest.update(method.encode() + b" " + path.encode() + b"\n")
    digest.update(_canonical(body))
    return digest.hexdigest()


async def request_hash(request: Request) -> str:
    return fingerprint(request.method, request.url.path, await request.body())


def request_id(caller: str, key: str) -> str:
    """The id the service layer derives Temporal ids from: the same for every retry of a request."""
    return hashlib.sha256(f"{caller}\n{key}".encode()).hexdigest()[:40]


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


def policy_of(request: Request) -> LeasePolicy:
    """This process's lease policy (create_app sets it)."""
    policy: LeasePolicy = request.app.state.idempotency_policy
    return policy


async def respond(
    request: Request,
    store: IdempotencyStore,
    caller: str,
    status: int,
    action: Callable[[str | None], Awaitable[Any]],
) -> JSONResponse:
    """Run `action` once per (caller, Idempotency-Key); its result is answered with `status`.

    `action` gets the request id (None without a key) to pass to the service layer."""
    key = read_key(request)
    if key is None:
        return JSONResponse(jsonable_encoder(await action(None)), status_code=status)
    policy = policy_of(request)
    fingerprint = await request_hash(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.wait_for_owner
    while True:
        claim = await store.claim(
            caller, key, fingerprint, owner=policy.owner, lease_seconds=policy.lease_seconds
        )
        if claim.owned:
            break
        row = claim.row
        if row is not None:
            if row["request_hash"] != fingerprint:
                raise BizError("IDEMPOTENCY_KEY_REUSED")
            if row["status"] is not None:
                replay = JSONResponse(row["body"], status_code=row["status"])
                replay.headers["Idempotent-Replayed"] = "true"
                return replay
        if loop.time() >= deadline:  # the owner is alive and still answering
            raise BizError("SERVICE_UNAVAILABLE", retry_after=RETRY_AFTER_SECONDS)
        await asyncio.sleep(0.1)
    if claim.attempts > 1:
        log.warning(
            "Idempotency-Key of %s taken over after its owner's lease ran out (attempt %d)",
            caller,
            claim.attempts,
        )
    renewing = asyncio.create_task(_keep_lease(store, caller, key, policy))
    try:
        body = jsonable_encoder(await action(request_id(caller, key)))
    except BizError as refusal:
        renewing.cancel()
        if refusal.status in _NOT_KEPT or refusal.status >= 500 or refusal.code in _TRANSIENT:
            await _release(store, caller, key, policy)
        else:
            await _answer(store, caller, key, refusal.status, refusal.body(), policy)
        raise
    except BaseException:
        renewing.cancel()
        await _release(store, caller, key, policy)
        raise
    renewing.cancel()
    # The change is made: the caller gets its answer even if it cannot be recorded right now.
    await _answer(store, caller, key, status, body, policy)
    return JSONResponse(body, status_code=status)


async def _keep_lease(store: IdempotencyStore, caller: str, key: str, policy: LeasePolicy) -> None:
    """Renew the lease while the request runs; a failed renewal is retried, and if the owner
    dies the lease simply runs out."""
    while True:
        await asyncio.sleep(policy.renew_every)
        try:
            if not await store.renew(
                caller, key, owner=policy.owner, lease_seconds=policy.lease_seconds
            ):
                return  # taken over or answered: no longer ours to renew
        except Exception as err:  # database unreachable: try again at the next tick
            log.warning("could not renew an Idempotency-Key lease: %r", err)


async def _answer(
    store: IdempotencyStore, caller: str, key: str, status: int, body: Any, policy: LeasePolicy
) -> None:
    """Record the answer a retry gets replayed."""
    kept = jsonable_encoder(body)
    await _settle("answer", partial(store.answer, caller, key, status, kept), policy)


async def _release(store: IdempotencyStore, caller: str, key: str, policy: LeasePolicy) -> None:
    """Give the key up so a retry runs again."""
    await _settle("release", partial(store.release, caller, key, owner=policy.owner), policy)


_settling: set[asyncio.Task[None]] = set()  # background writes, kept until they end
SETTLE_RETRY_EVERY = 0.5  # seconds between attempts of a write that failed


async def _settle(what: str, write: Callable[[], Awaitable[None]], policy: LeasePolicy) -> None:
    """Record what became of a key (its answer, or its release). When PostgreSQL is what just
    failed (it went down during the request), keep trying in the background for half a lease:
    without that, the key would stay leased to this live process until the lease ran out, and
    every retry would get 503 for up to `lease_seconds` though the database was back within
    seconds (the kill matrix's postgres scenario, docs/faults.md). Half a lease is safe: the
    lease was renewed at least every third of one while the request ran, so it still holds and
    no other request can have taken the key over; and the first recorded answer always stays."""
    try:
        await write()
        return
    except Exception as err:
        log.warning("could not %s an Idempotency-Key now, trying again: %r", what, err)
    task = asyncio.create_task(_retry(what, write, policy.lease_seconds / 2))
    _settling.add(task)
    task.add_done_callback(_settling.discard)


async def _retry(what: str, write: Callable[[], Awaitable[None]], within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    failure: Exception | None = None
    while loop.time() < deadline:
        await asyncio.sleep(SETTLE_RETRY_EVERY)
        try:
            await write()
            return
        except Exception as err:
            failure = err
    log.warning("could not %s an Idempotency-Key (its lease will run out): %r", what, failure)
