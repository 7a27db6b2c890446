"""What the API and the console run on: the services (built by services/root.py) and what only
the HTTP side needs (the sandbox clock, the demo login, resources to close).

`create_app(runtime)` takes it ready-made (tests, the sandbox stack); `create_app()` builds the
production one from the settings in its lifespan (`uvicorn api.app:create_app --factory`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.client import Client

import settings as settings_module
from domain.catalog import Catalog, default_catalog
from services.access import AccessService
from services.authz import Authz
from services.billing import BillingService
from services.clock import SandboxControl
from services.directory import DirectoryService
from services.events import EventService
from services.records import RecordsService
from services.root import Services, build_services
from services.sessions import SessionService
from services.subscriptions import SubscriptionService
from services.webhooks import WebhookService
from settings import Settings
from starter.temporal import connect
from store.db import Pool, migrate, open_pool

log = logging.getLogger(__name__)

POOL_WAIT_SECONDS = 5.0


@dataclass
class Runtime:
    services: Services
    sandbox: SandboxControl | None = None
    # The console's password-less "pick a demo member" login, limited to this workplace's people
    # and to loopback (api/console/login.py); None: closed. Only make run's embedded stack opens it.
    demo_workplace: str | None = None
    # Called when the app shuts down (resources the runtime opened itself).
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    @property
    def subscriptions(self) -> SubscriptionService:
        return self.services.subscriptions

    @property
    def billing(self) -> BillingService:
        return self.services.billing

    @property
    def directory(self) -> DirectoryService:
        return self.services.directory

    @property
    def sessions(self) -> SessionService:
        return self.services.sessions

    @property
    def webhooks(self) -> WebhookService:
        return self.services.webhooks

    @property
    def events(self) -> EventService:
        return self.services.events

    @property
    def access(self) -> AccessService:
        return self.services.access

    @property
    def records(self) -> RecordsService:
        return self.services.records

    @property
    def pool(self) -> Pool:
        return self.services.pool

    @property
    def client(self) -> Client:
        return self.services.client

    @property
    def catalog(self) -> Catalog:
        return self.services.catalog

    @property
    def authz(self) -> Authz:
        return self.services.authz

    @property
    def secret(self) -> str:
        """The token-signing secret (bearer tokens, launch tokens)."""
        return self.access.secret

    async def business_now(self) -> datetime:
        """Business time: the subscription service's clock (the sandbox clock in sandbox mode)."""
        return await self.subscriptions.clock()

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()
        self.closers.clear()


def launch_base_url(settings: Settings) -> str:
    """Where the (sandbox) partner receives single-sign-on launches: this app's landing page."""
    return f"http://127.0.0.1:{settings.api_port}/sso/launch"


async def build_runtime(settings: Settings) -> Runtime:
    """The production runtime: DATABASE_URL, the Temporal server, the secret, the catalog."""
    if settings.sandbox:
        raise RuntimeError(
            "SANDBOX=1: the sandbox API runs inside the stack (devstack.stack) with the "
            "time-skipping server; pass it a Runtime with a sandbox clock instead"
        )
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (`make run` sets it for the dev stack)")
    catalog = default_catalog()  # a malformed catalog stops start-up here (R-CAT-6)
    secret = settings_module.auth_secret(settings)
    await asyncio.to_thread(migrate, settings.database_url)
    # A short wait for a connection: with PostgreSQL down, requests answer 503 within seconds.
    pool = await open_pool(settings.database_url, max_size=20, wait_seconds=POOL_WAIT_SECONDS)
    try:
        client = await connect(settings.temporal_address, settings.temporal_namespace)
    except BaseException:
        await pool.close()
        raise
    services = build_services(
        pool,
        client,
        catalog,
        settings.task_queue,
        secret=secret,
        launch_url=launch_base_url(settings),
        invoice_spread=settings.invoice_spread,
        webhook_allow_loopback=settings.webhook_allow_loopback,
    )
    runtime = Runtime(
        services,
        demo_workplace=(
            os.environ.get("BIZSUPPORT_DEMO_WORKPLACE", "demo")
            if _flag("BIZSUPPORT_DEMO_LOGIN")
            else None
        ),
    )
    runtime.closers.append(pool.close)
    return runtime


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
