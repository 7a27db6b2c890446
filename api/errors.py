"""The error model (docs/rules.md, R-ERR-1 and "HTTP contract") for every answer that is not a
success, the framework's included.

`{"error": {"code", "message", "message_ko", "details"}}`: codes come from `domain.errors`, the
one list. The handlers here turn refusals (`BizError`), FastAPI's validation errors (400, not its
default 422), Starlette's 404/405, an unreachable backing service (503) and anything unexpected
(500, logged, no stack trace in the answer) into that shape.

A 503 always carries `Retry-After` (seconds; also `details.retry_after`): the backing service was
unreachable or the same Idempotency-Key is still being answered. The change may or may not have
been made; a retry with the same Idempotency-Key gets its first outcome (README, "Retry and 503").
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

from domain.errors import BizError

log = logging.getLogger(__name__)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable UPPER_SNAKE code (see the list in domain/errors.py).")
    message: str
    message_ko: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """Every refusal: a stable code, English and Korean text, and machine-readable details."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorInfo


RETRY_AFTER_SECONDS = 2


def error_response(code: str, **details: Any) -> JSONResponse:
    return biz_response(BizError(code, **details))


def biz_response(err: BizError) -> JSONResponse:
    response = JSONResponse(jsonable_encoder(err.body()), status_code=err.status)
    retry_after = err.details.get("retry_after")
    if err.status == 503 and not isinstance(retry_after, int):
        retry_after = RETRY_AFTER_SECONDS
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


_DESCRIPTIONS = {
    400: "Malformed input (VALIDATION_ERROR), also the framework's own validation errors.",
    401: "Missing, expired or forged token, or a member who is unknown or has left.",
    403: "A valid token acting outside its rights.",
    404: "Unknown id, or another workplace's data (its existence is not revealed).",
    409: "State conflict.",
    413: "Request body larger than the limit (PAYLOAD_TOO_LARGE).",
    422: "Rule refused (e.g. PLAN_CHANGE_WINDOW_CLOSED, COURSES_IN_PROGRESS).",
    429: "Too many attempts from this client (RATE_LIMITED); see Retry-After.",
    502: "The partner failed; nothing changed.",
    503: "A backing service (database, Temporal) is unavailable, or the same Idempotency-Key is"
    " still being answered; the change may or may not have been made. Retry after `Retry-After`"
    " seconds with the same Idempotency-Key to get the first outcome.",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting the error answers of an operation."""
    wanted = sorted({400, 401, 413, 503, *statuses})
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in wanted}


# ── handlers ─────────────────────────────────────────────────────────────────────────────────


REFUSAL = "refusal_code"  # where an action's outcome is left for the metrics (api/metrics.py)


def note_refusal(request: Request, code: str) -> None:
    """Leave the refusal's code on the request: /metrics counts the action under it."""
    setattr(request.state, REFUSAL, code)


def _problem(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    text = f"{where}: {first.get('msg', 'invalid')}"
    return text if len(errors) == 1 else f"{text} (and {len(errors) - 1} more)"


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
    note_refusal(request, "VALIDATION_ERROR")
    return error_response("VALIDATION_ERROR", problem=_problem(errors), errors=errors)


async def _on_biz(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BizError)
    note_refusal(request, exc.code)
    return biz_response(exc)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = exc.status_code
    if code == 405:
        note_refusal(request, "METHOD_NOT_ALLOWED")
        response = error_response("METHOD_NOT_ALLOWED", method=request.method)
        response.headers.update(exc.headers or {})
        return response
    details: dict[str, Any] = {}
    if code == 404:
        refusal = "NOT_FOUND"
    elif code == 413:
        refusal, details = "PAYLOAD_TOO_LARGE", {"limit": request.app.state.body_limit}
    elif code == 401:
        refusal = "UNAUTHENTICATED"
    elif code == 403:
        refusal, details = "FORBIDDEN", {"needs": "?"}
    elif 400 <= code < 500:
        refusal, details = "VALIDATION_ERROR", {"problem": str(exc.detail)}
    else:
        refusal = "INTERNAL_ERROR"
    note_refusal(request, refusal)
    return error_response(refusal, **details)


async def _on_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("backing service unavailable: %r", exc)
    note_refusal(request, "SERVICE_UNAVAILABLE")
    return error_response("SERVICE_UNAVAILABLE", retry_after=RETRY_AFTER_SECONDS)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(BizError, _on_biz)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RPCError, _on_unavailable)
    app.add_exception_handler(psycopg.OperationalError, _on_unavailable)
    app.add_exception_handler(PoolTimeout, _on_unavailable)
    app.add_middleware(CatchAll)


class CatchAll:
    """Anything unexpected becomes a logged 500 in the error shape, never a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            scope.setdefault("state", {})[REFUSAL] = "INTERNAL_ERROR"
            await error_response("INTERNAL_ERROR")(scope, receive, send)
