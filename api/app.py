"""The HTTP API and the admin console, one FastAPI app.

    create_app(runtime)   tests and the sandbox stack pass a ready Runtime
    create_app()          `uvicorn api.app:create_app --factory`: built from the settings

Routes: /v1 (docs/rules.md), /console (Korean admin console), /sso/launch (the sandbox partner's
single-sign-on landing page), /healthz, /metrics (Prometheus; api/metrics.py), /docs and
/openapi.json.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api import console, errors, events, metrics, records, v1, webhooks
from api.idempotency import LeasePolicy
from api.limits import DEFAULT_BODY_LIMIT, BodyLimit
from api.ratelimit import RateLimit
from api.runtime import Runtime, build_runtime
from services.models import Health
from settings import load_settings
from settings import metrics_token as env_metrics_token
from starter import process
from store.idempotency import IdempotencyStore

STATIC = Path(__file__).resolve().parent / "static"
# Swagger UI and ReDoc as shipped by the fastapi-offline wheel: the docs work without internet.
DOCS_ASSETS = Path(str(resources.files("fastapi_offline") / "static"))

DESCRIPTION = """\
Business support services: apply for partner services, hand out usage permissions, change plans,
cancel, and see fees. Bearer tokens are HS256 JWTs (`sub`, `wp`, `exp`).

Every error answers `{"error": {"code", "message", "message_ko", "details"}}`: 400 malformed input,
401 no valid token, 403 outside the caller's rights, 404 unknown (or another workplace's), 409 state
conflict, 413 payload too large, 422 rule refused, 503 a backing service is unavailable (with
`Retry-After`; the change may or may not have been made). A POST may carry `Idempotency-Key`: a
retry with the same key gets the first answer, also after a 503 once the service is back; the same
key with another body is refused (422).
"""


def create_app(
    runtime: Runtime | None = None,
    *,
    body_limit: int = DEFAULT_BODY_LIMIT,
    metrics_public: bool | None = None,
    metrics_token: str | None = None,
) -> FastAPI:
    """`metrics_public`: serve /metrics without a token (default: METRICS_PUBLIC);
    `metrics_token`: a bearer token that opens /metrics only (default: METRICS_TOKEN)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = runtime is None
        current = runtime if runtime is not None else await build_runtime(load_settings())
        app.state.runtime = current
        app.state.idempotency = IdempotencyStore(current.pool)
        if built:  # the API process itself (uvicorn --factory): start-up is done
            process.freeze_startup_heap()
        try:
            yield
        finally:
            if built:
                await current.close()

    app = FastAPI(
        title="bizsupport",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local assets, not a CDN
        redoc_url=None,
    )
    app.state.body_limit = body_limit
    app.state.rate_limit = RateLimit()
    app.state.idempotency_policy = LeasePolicy()  # this process's leases on Idempotency-Keys
    if runtime is not None:  # usable before the lifespan runs (ASGI transports without it)
        app.state.runtime = runtime
        app.state.idempotency = IdempotencyStore(runtime.pool)
    errors.install(app)
    app.add_middleware(BodyLimit, limit=body_limit)
    # Prometheus: the outermost of our middlewares, so refusals and 500s are timed too.
    app.state.metrics = metrics.ApiMetrics()
    app.state.metrics_public = (
        load_settings().metrics_public if metrics_public is None else metrics_public
    )
    app.state.metrics_token = metrics_token if metrics_token is not None else env_metrics_token()
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        return Health(status="ok")

    app.include_router(v1.router)
    app.include_router(webhooks.router)
    app.include_router(records.router)
    app.include_router(events.router)
    app.include_router(metrics.router)
    console.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="bizsupport API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="bizsupport API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _without_default_422(get_openapi_of(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def get_openapi_of(app: FastAPI) -> dict[str, Any]:
    return get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )


def _without_default_422(spec: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents its own 422 validation answer; ours is the 400 VALIDATION_ERROR."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer and "HTTPValidationError" in json.dumps(answer):
                del operation["responses"]["422"]
    schemas = spec.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return spec
