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
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import settings as settings_module
from domain.catalog import Catalog, default_catalog
from domain.errors import BizError
from settings import Settings
from starter.directory import DirectoryService
from starter.permissions import AccessService
from starter.subscriptions import SubscriptionService
from starter.temporal import connect
from store.db import Pool, migrate, open_pool

log = logging.getLogger(__name__)

ADVANCE_RPC_TIMEOUT = timedelta(minutes=10)


class SandboxClock:
    """The sandbox's business clock: the time-skipping server's time, moved on request.

    `advance` lets every timer due in the span (the end included) fire, then waits for `idle` (the
    worker has nothing in flight) so that the effects are in the read model when it answers.
    """

    def __init__(self, env: WorkflowEnvironment, idle: Callable[[], Awaitable[None]]) -> None:
        self.env = env
        self.idle = idle
        self._lock = asyncio.Lock()

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def advance(self, seconds: float) -> datetime:
        if self._lock.locked():  # no await between the check and the acquire: no race
            raise BizError("CLOCK_BUSY")
        async with self._lock:
            await self._skip(seconds)
            await self.idle()
            return await self.now()

    async def _skip(self, seconds: float) -> None:
        """`env.sleep`, with a deadline long enough for a month-end of many subscriptions."""
        if not getattr(self.env, "supports_time_skipping_v1", False):
            await self.env.sleep(seconds)
            return
        request = SleepRequest()
        request.duration.FromTimedelta(timedelta(seconds=seconds))
        await self.env.client.test_service.unlock_time_skipping_with_sleep(
            request, timeout=ADVANCE_RPC_TIMEOUT
        )


@dataclass
class Runtime:
    pool: Pool
    client: Client
    catalog: Catalog
    subscriptions: SubscriptionService
    directory: DirectoryService
    access: AccessService
    secret: str
    sandbox: SandboxClock | None = None
    # The console's "pick a demo member" login: for local stacks only (make run, tests).
    demo_login: bool = False
    # Called when the app shuts down (resources the runtime opened itself).
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

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
    sandbox: SandboxClock | None = None,
    demo_login: bool = False,
) -> Runtime:
    """The directory and access services on top of a subscription service: one make-up for all."""
    return Runtime(
        pool=pool,
        client=client,
        catalog=catalog,
        subscriptions=subscriptions,
        directory=DirectoryService(pool, client, subscriptions),
        access=AccessService(pool, subscriptions, secret, launch_base_url=launch_url),
        secret=secret,
        sandbox=sandbox,
        demo_login=demo_login,
    )


async def build_runtime(settings: Settings) -> Runtime:
    """The production runtime: DATABASE_URL, the Temporal server, the secret, the catalog."""
    if settings.sandbox:
        raise RuntimeError(
            "SANDBOX=1: the sandbox API runs inside the stack (starter.stack) with the "
            "time-skipping server; pass it a Runtime with a SandboxClock instead"
        )
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set (`make run` sets it for the dev stack)")
    catalog = default_catalog()  # a malformed catalog stops start-up here (R-CAT-6)
    secret = settings_module.auth_secret(settings)
    await asyncio.to_thread(migrate, settings.database_url)
    pool = await open_pool(settings.database_url, max_size=20)
    try:
        client = await connect(settings.temporal_address, settings.temporal_namespace)
    except BaseException:
        await pool.close()
        raise
    subscriptions = SubscriptionService(pool, client, catalog, settings.task_queue)
    runtime = assemble(
        pool=pool,
        client=client,
        catalog=catalog,
        subscriptions=subscriptions,
        secret=secret,
        launch_url=launch_base_url(settings),
        demo_login=_flag("BIZSUPPORT_DEMO_LOGIN"),
    )
    runtime.closers.append(pool.close)
    return runtime


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
