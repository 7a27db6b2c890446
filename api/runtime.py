"""What the API and the console run on: one object holding the connections and the services.

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
from domain.tokens import check_secret
from services.access import AccessService
from services.authz import Authz
from services.clock import SandboxControl
from services.directory import DirectoryService
from services.subscriptions import SubscriptionService
from settings import Settings
from starter.temporal import connect
from store.db import Pool, migrate, open_pool

log = logging.getLogger(__name__)

POOL_WAIT_SECONDS = 5.0


@dataclass
class Runtime:
    pool: Pool
    client: Client
    catalog: Catalog
    subscriptions: SubscriptionService
    directory: DirectoryService
    access: AccessService
    secret: str
    sandbox: SandboxControl | None = None
    # The console's password-less "pick a demo member" login, limited to this workplace's people
    # and to loopback (api/console/login.py); None: closed. Only make run's embedded stack opens it.
    demo_workplace: str | None = None
    # Called when the app shuts down (resources the runtime opened itself).
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    @property
    def authz(self) -> Authz:
        return self.subscriptions.authz

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


def assemble(
    *,
    pool: Pool,
    client: Client,
    catalog: Catalog,
    subscriptions: SubscriptionService,
    secret: str,
    launch_url: str,
    sandbox: SandboxControl | None = None,
    demo_workplace: str | None = None,
) -> Runtime:
    """The directory and access services on top of a subscription service: one make-up for all."""
    check_secret(secret)  # a weak secret stops start-up, however it was passed in
    return Runtime(
        pool=pool,
        client=client,
        catalog=catalog,
        subscriptions=subscriptions,
        directory=DirectoryService(pool, client, subscriptions),
        access=AccessService(pool, subscriptions, secret, launch_base_url=launch_url),
        secret=secret,
        sandbox=sandbox,
        demo_workplace=demo_workplace,
    )


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
    subscriptions = SubscriptionService(
        pool, client, catalog, settings.task_queue, invoice_spread=settings.invoice_spread
    )
    runtime = assemble(
        pool=pool,
        client=client,
        catalog=catalog,
        subscriptions=subscriptions,
        secret=secret,
        launch_url=launch_base_url(settings),
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
