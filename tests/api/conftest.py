"""Fixtures for the API, schema and browser tests: the real app on the suite's real servers.

The Runtime runs on the session's time-skipping environment and PostgreSQL, with a worker of its
own (its own task queue) carrying the `InFlight` interceptor, so the sandbox clock can wait until
the effects of an advance have landed. A test module uses them with
`pytest_plugins = ["tests.api_support"]`. (PYTEST_DONT_REWRITE: imported before it is a plugin.)
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.subscription import SubscriptionActivities
from api.app import create_app
from api.ratelimit import RateLimit
from api.runtime import Runtime
from devstack.clock import SandboxClock
from devstack.quiescence import InFlight
from domain.catalog import default_catalog
from domain.tokens import mint_access_token
from services.root import build_services
from starter.temporal import partner_gateway
from store.db import Pool
from workflows.subscription import SubscriptionWorkflow

TERMS = "2026-01-01"


@pytest_asyncio.fixture(scope="session")
async def api_runtime(env: WorkflowEnvironment, pool: Pool) -> AsyncIterator[Runtime]:
    task_queue = f"bizsupport-api-{uuid.uuid4().hex[:8]}"
    in_flight = InFlight()
    worker = Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SubscriptionWorkflow],
        activities=SubscriptionActivities(pool, partner_gateway(pool)).all(),
        interceptors=[in_flight.interceptor()],
        max_concurrent_activities=100,
    )
    services = build_services(
        pool,
        env.client,
        default_catalog(),
        task_queue,
        secret=secrets.token_urlsafe(32),
        launch_url="http://127.0.0.1/sso/launch",
        clock=env.get_current_time,
        webhook_allow_loopback=True,
    )
    runtime = Runtime(services, sandbox=SandboxClock(env, in_flight.idle), demo_workplace=None)
    async with worker:
        yield runtime


@pytest_asyncio.fixture(scope="session")
async def api_app(api_runtime: Runtime) -> FastAPI:
    app = create_app(api_runtime)
    # The whole suite logs in from one address; the limit itself is tested on its own.
    app.state.rate_limit = RateLimit(attempts=100_000)
    return app


@pytest_asyncio.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def token(runtime: Runtime, workplace_id: str, member_id: str, **kwargs: Any) -> str:
    return mint_access_token(
        runtime.secret,
        member_id=member_id,
        workplace_id=workplace_id,
        now=kwargs.pop("now", datetime.now(UTC)),
        **kwargs,
    )


def system_token(runtime: Runtime) -> str:
    return mint_access_token(
        runtime.secret, member_id=None, workplace_id=None, role="system", now=datetime.now(UTC)
    )


def csrf_of(html: str) -> str:
    """The CSRF token a console page puts in its forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


async def console_login(
    client: httpx.AsyncClient, runtime: Runtime, workplace_id: str, member_id: str
) -> str:
    """Log in to the console with a member's bearer token; returns the session's CSRF token."""
    login_page = await client.get("/console/login")
    answer = await client.post(
        "/console/login/token",
        data={"csrf": csrf_of(login_page.text), "token": token(runtime, workplace_id, member_id)},
        follow_redirects=True,
    )
    assert answer.status_code == 200 and "/console/login" not in str(answer.url), answer.text
    return csrf_of(answer.text)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The app under uvicorn in a background task of the test's event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
