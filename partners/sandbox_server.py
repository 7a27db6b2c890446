"""The sandbox partner: a server of its own that answers the partner protocol for every service
in the catalog, as a real partner would, with faults an operator or a test can script.

    python -m partners.sandbox_server --port 8700 --database-url postgresql://...

Each service is served under its own base path (`http://127.0.0.1:8700/cartax`), checking the
signatures with that service's secret, `BIZSUPPORT_PARTNER_SECRET_<SERVICE>` (the same setting
bizsupport signs with). Its state lives in a PostgreSQL schema of its own (`sandbox_partner` by
default), which no bizsupport code reads; tests and operators look at it through the admin
endpoint under `/sandbox/` (loopback only, `Authorization: Bearer $SANDBOX_PARTNER_ADMIN_TOKEN`).

Scripted faults (`PUT /sandbox/faults`), for one service and optionally one workplace or one
operation: `refuse` (a refusal with a reason, until cleared), `transient` (answer `status`, 503
by default, `remaining` times or until cleared), `slow` (answer after `seconds`), `rate_limit`
(429 with Retry-After `retry_after`, `remaining` times) and `wrong_secret` (check signatures with
another secret: every request gets 401). docs/partners.md describes the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import psycopg
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.catalog import default_catalog
from partners.config import check_secret, secret_setting
from partners.gateway import MemberCourses, PartnerAccount
from partners.wire import (
    OPERATIONS,
    AccountAnswer,
    AccountsAnswer,
    AtRequest,
    CoursesAnswer,
    DeletionAnswer,
    PlanAnswer,
    PlanRequest,
    ProvisionRequest,
    Refusal,
    ResetAnswer,
    SuspendAnswer,
)

log = logging.getLogger("sandbox_partner")

ADMIN_TOKEN_SETTING = "SANDBOX_PARTNER_ADMIN_TOKEN"
DATABASE_URL_SETTING = "SANDBOX_PARTNER_DATABASE_URL"
DEFAULT_SCHEMA = "sandbox_partner"
OPENAPI_SERVER = "https://partner.example.com/bizsupport"

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    service_id      text NOT NULL,
    subscription_id text NOT NULL,
    workplace_id    text NOT NULL,
    plan_id         text NOT NULL,
    account_id      text NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'suspended')),
    sso_registered  boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    suspended_at    timestamptz,
    PRIMARY KEY (service_id, subscription_id)
);
CREATE TABLE IF NOT EXISTS {schema}.learning_records (
    record_id       bigserial PRIMARY KEY,
    service_id      text NOT NULL,
    subscription_id text NOT NULL,
    member_id       text NOT NULL,
    course_id       text NOT NULL,
    status          text NOT NULL CHECK (status IN ('in_progress', 'completed', 'stopped')),
    progress        integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.documents (
    document_id     bigserial PRIMARY KEY,
    service_id      text NOT NULL,
    subscription_id text NOT NULL,
    member_id       text NOT NULL,
    title           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Answers to requests, by webhook-id: a repeated request gets the first answer.
CREATE TABLE IF NOT EXISTS {schema}.requests (
    service_id      text NOT NULL,
    webhook_id      text NOT NULL,
    status          integer NOT NULL,
    body            jsonb NOT NULL,
    answered_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, webhook_id)
);
"""


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# ── scripted faults ──────────────────────────────────────────────────────────────────────────


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["refuse", "transient", "slow", "rate_limit", "wrong_secret"]
    service_id: str
    workplace_id: str | None = None
    operation: str | None = Field(default=None, description=f"one of {', '.join(OPERATIONS)}")
    reason: str = "refused by the sandbox partner"
    status: int = Field(default=503, description="refuse: 400-422, transient: 408 or 5xx")
    remaining: int | None = Field(default=None, description="answers left; None: until cleared")
    seconds: float = Field(default=0.0, ge=0, le=600)
    retry_after: int = Field(default=1, ge=0)


@dataclass
class Faults:
    scripted: list[Fault] = field(default_factory=list)

    def matching(self, service_id: str, operation: str, workplace_id: str | None) -> list[Fault]:
        return [
            f
            for f in self.scripted
            if f.service_id == service_id
            and f.operation in (None, operation)
            and (f.workplace_id is None or f.workplace_id == workplace_id)
        ]

    def wrong_secret(self, service_id: str) -> bool:
        return any(f.kind == "wrong_secret" and f.service_id == service_id for f in self.scripted)

    def spend(self, fault: Fault) -> None:
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.scripted.remove(fault)

    async def answer(
        self, service_id: str, operation: str, workplace_id: str | None
    ) -> Response | None:
        """The scripted answer for this request, if any (a slow fault only delays it)."""
        for fault in self.matching(service_id, operation, workplace_id):
            if fault.kind == "slow":
                self.spend(fault)
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "transient":
                self.spend(fault)
                return JSONResponse({"reason": "scripted transient fault"}, fault.status)
            elif fault.kind == "rate_limit":
                self.spend(fault)
                return JSONResponse(
                    {"reason": "slow down"}, 429, headers={"Retry-After": str(fault.retry_after)}
                )
            elif fault.kind == "refuse":
                status = fault.status if 400 <= fault.status < 500 else 422
                return JSONResponse({"reason": fault.reason}, status)
        return None


# ── state ────────────────────────────────────────────────────────────────────────────────────


class Store:
    """The sandbox partner's own tables (schema `schema`)."""

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str) -> None:
        self.pool = pool
        self.s = schema

    async def workplace_of(self, service_id: str, subscription_id: str) -> str | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT workplace_id FROM {self.s}.accounts"
                    " WHERE service_id = %s AND subscription_id = %s",
                    (service_id, subscription_id),
                )
            ).fetchone()
        return row["workplace_id"] if row else None

    @contextlib.asynccontextmanager
    async def once(
        self, service_id: str, webhook_id: str
    ) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], dict[str, Any] | None]]:
        """A transaction holding the request's key: the stored answer if it was answered."""
        async with self.pool.connection() as conn, conn.transaction():
            digest = hashlib.sha256(f"{service_id}\0{webhook_id}".encode()).digest()
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s)",
                (int.from_bytes(digest[:8], "big", signed=True),),
            )
            row = await (
                await conn.execute(
                    f"SELECT status, body FROM {self.s}.requests"
                    " WHERE service_id = %s AND webhook_id = %s",
                    (service_id, webhook_id),
                )
            ).fetchone()
            yield conn, row

    async def remember(
        self,
        conn: psycopg.AsyncConnection[Any],
        service_id: str,
        webhook_id: str,
        status: int,
        body: dict[str, Any],
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self.s}.requests (service_id, webhook_id, status, body)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (service_id, webhook_id, status, json.dumps(body)),
        )


Action = Callable[[psycopg.AsyncConnection[Any]], Awaitable[tuple[int, BaseModel]]]


@dataclass
class Sandbox:
    store: Store
    signers: dict[str, Webhook]
    admin_token: str
    faults: Faults = field(default_factory=Faults)
    calls: dict[str, int] = field(default_factory=dict)

    async def serve_account(
        self,
        request: Request,
        service_id: str,
        operation: str,
        subscription_id: str,
        action: Action,
        *,
        remembered: bool = True,
    ) -> Response:
        """`serve` for a call on one account (its workplace picks the scripted faults)."""
        workplace = await self.store.workplace_of(service_id, subscription_id)
        return await self.serve(
            request, service_id, operation, workplace, action, remembered=remembered
        )

    async def serve(
        self,
        request: Request,
        service_id: str,
        operation: str,
        workplace_id: str | None,
        action: Action,
        *,
        remembered: bool = True,
    ) -> Response:
        """Scripted faults, then the stored answer to a repeated request, then the action."""
        name = f"{service_id}.{operation}"
        self.calls[name] = self.calls.get(name, 0) + 1
        scripted = await self.faults.answer(service_id, operation, workplace_id)
        if scripted is not None:
            return scripted
        webhook_id = request.headers["webhook-id"]
        async with self.store.once(service_id, webhook_id) as (conn, stored):
            if stored is not None and remembered:
                return JSONResponse(stored["body"], stored["status"])
            try:
                status, answer = await action(conn)
            except Refused as refused:
                return JSONResponse({"reason": refused.reason}, refused.status)
            body = answer.model_dump(mode="json")
            if remembered:
                await self.store.remember(conn, service_id, webhook_id, status, body)
        return JSONResponse(body, status)


# ── the protocol, for one service ────────────────────────────────────────────────────────────

REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"model": Refusal, "description": what}
    for status, what in (
        (400, "Malformed request: refused for good"),
        (401, "Unsigned, forged or stale request (bizsupport's configuration is wrong)"),
        (404, "No such account: refused for good"),
        (409, "Conflicts with the account as it is: refused for good"),
        (422, "Refused for good, with the reason shown to the admin"),
        (429, "Too many requests: try again after Retry-After seconds"),
        (503, "Unavailable for now: try again with backoff"),
    )
}


def signed_headers(
    webhook_id: str = Header(
        alias="webhook-id", description="Idempotency key naming the action, e.g. provision:sub-1"
    ),
    webhook_timestamp: str = Header(
        alias="webhook-timestamp", description="Unix seconds when signed"
    ),
    webhook_signature: str = Header(
        alias="webhook-signature",
        description='"v1,<base64 HMAC-SHA256 of {webhook-id}.{webhook-timestamp}.{body}>"',
    ),
) -> str:
    """The Standard Webhooks headers every request carries (checked before the route runs)."""
    return webhook_id


def partner_app(sandbox: Sandbox | None, service_id: str) -> FastAPI:
    """The partner protocol as one service's partner serves it, at its base URL."""
    app = FastAPI(
        title="bizsupport partner protocol",
        version="1",
        description=(
            "What a partner implements so bizsupport can run its service's subscriptions."
            " Every request is JSON signed the Standard Webhooks way; see docs/partners.md."
        ),
        servers=[{"url": OPENAPI_SERVER}],
        dependencies=[Depends(signed_headers)],
        responses=REFUSALS,
    )

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, err: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        return JSONResponse({"reason": f"malformed request: {problems}"}, 400)

    app.add_exception_handler(StarletteHTTPException, as_refusal)  # type: ignore[arg-type]

    def live() -> Sandbox:
        if sandbox is None:
            raise HTTPException(503, "schema only")
        return sandbox

    @app.middleware("http")
    async def verify_signature(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if sandbox is None:
            return await call_next(request)
        body = await request.body()
        signer = sandbox.signers[service_id]
        if sandbox.faults.wrong_secret(service_id):
            signer = Webhook(secrets.token_bytes(32))
        try:
            signer.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError as err:
            return JSONResponse({"reason": f"signature not accepted: {err}"}, 401)
        if _has_nul(request, body):  # PostgreSQL text cannot hold it
            return JSONResponse({"reason": "malformed request: NUL characters"}, 400)
        return await call_next(request)

    async def account(
        conn: psycopg.AsyncConnection[Any], subscription_id: str, *, lock: bool = False
    ) -> dict[str, Any]:
        s = live().store.s
        row = await (
            await conn.execute(
                f"SELECT * FROM {s}.accounts WHERE service_id = %s AND subscription_id = %s"
                + (" FOR UPDATE" if lock else ""),
                (service_id, subscription_id),
            )
        ).fetchone()
        if row is None:
            raise Refused(404, f"no {service_id} account for subscription {subscription_id}")
        return dict(row)

    @app.put(
        "/accounts/{subscription_id}",
        response_model=AccountAnswer,
        responses={200: {"model": AccountAnswer, "description": "The account existed already"}},
        status_code=201,
        summary="Create the workplace's account and register single sign-on (idempotent)",
    )
    async def provision(subscription_id: str, body: ProvisionRequest, request: Request) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            if body.service_id != service_id:
                raise Refused(400, f"this base URL serves {service_id}, not {body.service_id}")
            s = live().store.s
            made = await (
                await conn.execute(
                    f"INSERT INTO {s}.accounts (service_id, subscription_id, workplace_id,"
                    " plan_id, account_id, status, sso_registered, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, 'active', true, %s)"
                    " ON CONFLICT DO NOTHING RETURNING account_id",
                    (
                        service_id,
                        subscription_id,
                        body.workplace_id,
                        body.plan_id,
                        f"{service_id}-{uuid.uuid4().hex[:12]}",
                        _at(body.at),
                    ),
                )
            ).fetchone()
            if made is not None:
                return 201, AccountAnswer(account_id=made["account_id"])
            found = await account(conn, subscription_id)
            if found["workplace_id"] != body.workplace_id:
                raise Refused(409, "this subscription's account belongs to another workplace")
            return 200, AccountAnswer(account_id=found["account_id"])

        return await live().serve(request, service_id, "provision", body.workplace_id, act)

    @app.post(
        "/accounts/{subscription_id}/suspend",
        response_model=SuspendAnswer,
        summary="Suspend the account at once (idempotent)",
    )
    async def suspend(subscription_id: str, body: AtRequest, request: Request) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            await account(conn, subscription_id)
            await conn.execute(
                f"UPDATE {live().store.s}.accounts SET status = 'suspended', suspended_at = %s"
                " WHERE service_id = %s AND subscription_id = %s AND status = 'active'",
                (_at(body.at), service_id, subscription_id),
            )
            return 200, SuspendAnswer(subscription_id=subscription_id, status="suspended")

        return await live().serve_account(request, service_id, "suspend", subscription_id, act)

    @app.get(
        "/accounts",
        response_model=AccountsAnswer,
        summary="The accounts of a workplace (or all), by status",
    )
    async def accounts(
        request: Request,
        workplace_id: str | None = Query(default=None),
        status: Literal["active", "suspended"] = Query(default="active"),
    ) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            rows = await (
                await conn.execute(
                    "SELECT subscription_id, workplace_id, service_id"
                    f" FROM {live().store.s}.accounts"
                    " WHERE service_id = %s AND status = %s"
                    " AND (%s::text IS NULL OR workplace_id = %s) ORDER BY subscription_id",
                    (service_id, status, workplace_id, workplace_id),
                )
            ).fetchall()
            return 200, AccountsAnswer(accounts=[PartnerAccount(**r) for r in rows])

        return await live().serve(
            request, service_id, "accounts", workplace_id, act, remembered=False
        )

    @app.get(
        "/accounts/{subscription_id}/courses",
        response_model=CoursesAnswer,
        summary="Members' courses, by status (ubob's learning records)",
    )
    async def courses(
        subscription_id: str,
        request: Request,
        status: Literal["in_progress", "completed", "stopped"] = Query(default="in_progress"),
    ) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            await account(conn, subscription_id)
            rows = await (
                await conn.execute(
                    "SELECT member_id, array_agg(course_id ORDER BY course_id) AS courses"
                    f" FROM {live().store.s}.learning_records"
                    " WHERE service_id = %s AND subscription_id = %s AND status = %s"
                    " GROUP BY member_id ORDER BY member_id",
                    (service_id, subscription_id, status),
                )
            ).fetchall()
            return 200, CoursesAnswer(members=[MemberCourses(**r) for r in rows])

        return await live().serve_account(
            request, service_id, "courses", subscription_id, act, remembered=False
        )

    @app.post(
        "/accounts/{subscription_id}/plan",
        response_model=PlanAnswer,
        summary="Switch the plan; with stop_courses, stop every course in progress",
    )
    async def change_plan(subscription_id: str, body: PlanRequest, request: Request) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            await account(conn, subscription_id, lock=True)
            s = live().store.s
            stopped = 0
            if body.stop_courses:
                # R-PLAN-6: a stopped course starts again from the beginning.
                cur = await conn.execute(
                    f"UPDATE {s}.learning_records SET status = 'stopped', progress = 0,"
                    " updated_at = %s"
                    " WHERE service_id = %s AND subscription_id = %s AND status = 'in_progress'",
                    (_at(body.at), service_id, subscription_id),
                )
                stopped = cur.rowcount
            await conn.execute(
                f"UPDATE {s}.accounts SET plan_id = %s"
                " WHERE service_id = %s AND subscription_id = %s",
                (body.plan_id, service_id, subscription_id),
            )
            return 200, PlanAnswer(stopped_courses=stopped)

        return await live().serve_account(request, service_id, "change_plan", subscription_id, act)

    @app.post(
        "/accounts/{subscription_id}/members/{member_id}/learning-records/reset",
        response_model=ResetAnswer,
        summary="Forget every learning record of one member",
    )
    async def reset(
        subscription_id: str, member_id: str, body: AtRequest, request: Request
    ) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            await account(conn, subscription_id)
            cur = await conn.execute(
                f"DELETE FROM {live().store.s}.learning_records"
                " WHERE service_id = %s AND subscription_id = %s AND member_id = %s",
                (service_id, subscription_id, member_id),
            )
            return 200, ResetAnswer(deleted=cur.rowcount)

        return await live().serve_account(
            request, service_id, "reset_learning_records", subscription_id, act
        )

    @app.delete(
        "/accounts/{subscription_id}/data",
        response_model=DeletionAnswer,
        summary="Delete every object of the subscription, the account last (idempotent)",
    )
    async def delete_data(subscription_id: str, request: Request) -> Response:
        async def act(conn: psycopg.AsyncConnection[Any]) -> tuple[int, BaseModel]:
            details: dict[str, int] = {}
            for table in ("learning_records", "documents", "accounts"):
                cur = await conn.execute(
                    f"DELETE FROM {live().store.s}.{table}"
                    " WHERE service_id = %s AND subscription_id = %s",
                    (service_id, subscription_id),
                )
                details[table] = cur.rowcount
            return 200, DeletionAnswer(partner_objects=sum(details.values()), details=details)

        return await live().serve_account(request, service_id, "delete_data", subscription_id, act)

    return app


def partner_openapi() -> dict[str, Any]:
    """The OpenAPI document a partner can generate its server from (docs/partner-openapi.json)."""
    return partner_app(None, "{service}").openapi()


def openapi_text() -> str:
    """docs/partner-openapi.json as committed (`python -m partners.sandbox_server --openapi`)."""
    return json.dumps(partner_openapi(), indent=2, ensure_ascii=False) + "\n"


async def as_refusal(request: Request, err: StarletteHTTPException) -> Response:
    """Every error the protocol's way: {"reason"}."""
    return JSONResponse({"reason": str(err.detail)}, err.status_code, headers=err.headers)


def _has_nul(request: Request, body: bytes) -> bool:
    return (
        "\x00" in unquote(request.url.path)
        or "\x00" in unquote(request.url.query)
        or b"\x00" in body
        or b"\\u0000" in body
    )


def _at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"'at' must be an ISO 8601 time, got {text!r}") from None


# ── the whole server: one app per service, and the admin endpoint ────────────────────────────


class LearningRecordIn(BaseModel):
    subscription_id: str
    member_id: str
    course_id: str
    status: Literal["in_progress", "completed", "stopped"] = "in_progress"
    progress: int = 0


class AccountStatus(BaseModel):
    status: Literal["active", "suspended"]


class DocumentIn(BaseModel):
    subscription_id: str
    member_id: str
    title: str


def sandbox_app(sandbox: Sandbox) -> FastAPI:
    app = FastAPI(title="bizsupport sandbox partner", openapi_url=None, docs_url=None)
    app.add_exception_handler(StarletteHTTPException, as_refusal)  # type: ignore[arg-type]
    store = sandbox.store

    def admin(request: Request, authorization: str = Header(default="")) -> None:
        host = request.client.host if request.client else ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise HTTPException(403, "the sandbox admin endpoint answers loopback only")
        if not hmac.compare_digest(authorization, f"Bearer {sandbox.admin_token}"):
            raise HTTPException(401, f"Authorization: Bearer ${ADMIN_TOKEN_SETTING} expected")

    guarded = [Depends(admin)]

    @app.get("/sandbox/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "services": sorted(sandbox.signers)}

    @app.put("/sandbox/faults", dependencies=guarded)
    async def add_fault(fault: Fault) -> dict[str, Any]:
        if fault.service_id not in sandbox.signers:
            raise HTTPException(404, f"no service {fault.service_id}")
        sandbox.faults.scripted.append(fault)
        return {"faults": len(sandbox.faults.scripted)}

    @app.delete("/sandbox/faults", dependencies=guarded)
    async def clear_faults(
        service_id: str | None = None, workplace_id: str | None = None
    ) -> dict[str, Any]:
        sandbox.faults.scripted = [
            f
            for f in sandbox.faults.scripted
            if not (service_id in (None, f.service_id) and workplace_id in (None, f.workplace_id))
        ]
        return {"faults": len(sandbox.faults.scripted)}

    @app.get("/sandbox/calls", dependencies=guarded)
    async def calls() -> dict[str, int]:
        return dict(sandbox.calls)

    @app.get("/sandbox/answers", dependencies=guarded)
    async def answers(webhook_id_prefix: str = "") -> list[dict[str, Any]]:
        """The answers it keeps by `webhook-id` (what a repeated request gets again): one per
        business action it carried out, e.g. `delete-data:` for every deletion."""
        return await rows(
            f"SELECT service_id, webhook_id, status, body, answered_at FROM {store.s}.requests"
            " WHERE starts_with(webhook_id, %s) ORDER BY answered_at, webhook_id",
            (webhook_id_prefix,),
        )

    async def rows(sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        async with store.pool.connection() as conn:
            found = await (await conn.execute(sql, args)).fetchall()
        return [json.loads(json.dumps(dict(r), default=str)) for r in found]

    @app.get("/sandbox/accounts", dependencies=guarded)
    async def all_accounts(
        subscription_id: str | None = None,
        workplace_id: Annotated[list[str] | None, Query()] = None,
    ) -> list[dict[str, Any]]:
        """Accounts, of one subscription or of any of the workplaces given (or all)."""
        return await rows(
            f"SELECT * FROM {store.s}.accounts WHERE (%s::text IS NULL OR subscription_id = %s)"
            " AND (%s::text[] IS NULL OR workplace_id = ANY(%s))"
            " ORDER BY created_at, subscription_id",
            (subscription_id, subscription_id, workplace_id, workplace_id),
        )

    @app.put("/sandbox/accounts/{subscription_id}/status", dependencies=guarded)
    async def set_account_status(subscription_id: str, body: AccountStatus) -> dict[str, Any]:
        """As a partner restored from an old backup would: an account active again."""
        changed = await rows(
            f"UPDATE {store.s}.accounts SET status = %s,"
            " suspended_at = CASE WHEN %s = 'active' THEN NULL ELSE now() END"
            " WHERE subscription_id = %s RETURNING subscription_id",
            (body.status, body.status, subscription_id),
        )
        if not changed:
            raise HTTPException(404, f"no account for {subscription_id}")
        return {"subscription_id": subscription_id, "status": body.status}

    async def service_of(subscription_id: str) -> str:
        found = await rows(
            f"SELECT service_id FROM {store.s}.accounts WHERE subscription_id = %s",
            (subscription_id,),
        )
        if not found:
            raise HTTPException(404, f"no account for {subscription_id}")
        return str(found[0]["service_id"])

    @app.post("/sandbox/learning-records", dependencies=guarded)
    async def add_learning_record(record: LearningRecordIn) -> dict[str, Any]:
        service_id = await service_of(record.subscription_id)
        return (
            await rows(
                f"INSERT INTO {store.s}.learning_records (service_id, subscription_id,"
                " member_id, course_id, status, progress) VALUES (%s, %s, %s, %s, %s, %s)"
                " RETURNING record_id",
                (
                    service_id,
                    record.subscription_id,
                    record.member_id,
                    record.course_id,
                    record.status,
                    record.progress,
                ),
            )
        )[0]

    @app.get("/sandbox/learning-records", dependencies=guarded)
    async def learning_records(subscription_id: str) -> list[dict[str, Any]]:
        return await rows(
            f"SELECT member_id, course_id, status, progress FROM {store.s}.learning_records"
            " WHERE subscription_id = %s ORDER BY member_id, course_id",
            (subscription_id,),
        )

    @app.post("/sandbox/documents", dependencies=guarded)
    async def add_document(document: DocumentIn) -> dict[str, Any]:
        service_id = await service_of(document.subscription_id)
        return (
            await rows(
                f"INSERT INTO {store.s}.documents (service_id, subscription_id, member_id,"
                " title) VALUES (%s, %s, %s, %s) RETURNING document_id",
                (service_id, document.subscription_id, document.member_id, document.title),
            )
        )[0]

    @app.get("/sandbox/objects", dependencies=guarded)
    async def objects(subscription_id: str) -> dict[str, int]:
        """How many objects of each kind the subscription has here."""
        counts = {}
        for table in ("accounts", "documents", "learning_records"):
            counts[table] = int(
                (
                    await rows(
                        f"SELECT count(*) AS n FROM {store.s}.{table} WHERE subscription_id = %s",
                        (subscription_id,),
                    )
                )[0]["n"]
            )
        return counts

    for service_id in sorted(sandbox.signers):
        app.mount(f"/{service_id}", partner_app(sandbox, service_id))
    return app


def service_secrets(service_ids: list[str], env: Mapping[str, str]) -> dict[str, Webhook]:
    found = {}
    for service_id in service_ids:
        name = secret_setting(service_id)
        if not env.get(name):
            raise SystemExit(f"sandbox partner: {name} is not set (the secret for {service_id})")
        found[service_id] = Webhook(check_secret(service_id, env[name], name))
    return found


async def run(args: argparse.Namespace) -> None:
    token = os.environ.get(ADMIN_TOKEN_SETTING)
    if not token:
        raise SystemExit(f"sandbox partner: {ADMIN_TOKEN_SETTING} is not set")
    signers = service_secrets(default_catalog().service_ids, os.environ)
    async with AsyncConnectionPool(
        args.database_url, min_size=1, max_size=10, kwargs={"row_factory": dict_row}, open=False
    ) as pool:
        await pool.wait()
        async with pool.connection() as conn:
            await conn.execute(SCHEMA_SQL.format(schema=args.schema))  # type: ignore[arg-type]
        sandbox = Sandbox(Store(pool, args.schema), signers, token)
        config = uvicorn.Config(
            sandbox_app(sandbox), host=args.host, port=args.port, log_level="warning"
        )
        log.info(
            "sandbox partner on http://%s:%s (%d services)", args.host, args.port, len(signers)
        )
        await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partners.sandbox_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument(
        "--openapi", action="store_true", help="print the protocol's OpenAPI document and exit"
    )
    parser.add_argument("--database-url", default=os.environ.get(DATABASE_URL_SETTING))
    parser.add_argument("--schema", default=DEFAULT_SCHEMA)
    args = parser.parse_args(argv)
    if args.openapi:
        print(openapi_text(), end="")
        return 0
    if args.port is None:
        parser.error("--port is required")
    if not args.database_url:
        parser.error(f"--database-url (or {DATABASE_URL_SETTING}) is required")
    if not args.schema.isidentifier():
        parser.error("--schema must be a plain identifier")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
