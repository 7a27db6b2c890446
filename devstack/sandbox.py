"""`SANDBOX=1 make run`: the same stack on Temporal's time-skipping server (a rehearsal).

The time-skipping server keeps workflows in memory and has no Web UI, so the sandbox has its own
database under DATA_DIR/sandbox, emptied at each start (README, `SANDBOX=1 make run`). Everything
runs in this one process, so the API's sandbox clock can move the server's time and then wait
until the worker has finished what the fired timers caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import uvicorn
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.runtime import Runtime, launch_base_url
from devstack.clock import SandboxClock
from devstack.demo import DEMO_WORKPLACE, seed_demo
from devstack.embedded import EmbeddedPostgres
from devstack.partner import partner_port, sandbox_partner
from devstack.process import (
    STOP_TIME,
    Children,
    close_pool,
    identity,
    require_ports,
    say,
    share_of,
    wait_for_port,
    wait_for_signal,
)
from devstack.quiescence import InFlight
from devstack.stopping import StopSignals, within
from domain.catalog import default_catalog
from services.root import build_services
from settings import Settings, auth_secret, write_private
from starter.temporal import binary, build_worker, ensure_search_attributes
from store.db import Pool, migrate, open_pool


async def run_sandbox(settings: Settings, stop: StopSignals) -> None:
    """As devstack.stack.run_stack: `stop` is looked at between steps and in every wait, and
    whatever was started is stopped by STOP_TIME after the signal."""
    require_ports({"API": settings.api_port, "sandbox partner": partner_port()})
    root = settings.data_dir / "sandbox"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    postgres = EmbeddedPostgres(root / "postgres")
    env: WorkflowEnvironment | None = None
    pool: Pool | None = None
    children = Children(root / "logs")  # the sandbox partner server, supervised
    try:
        database_url = postgres.start(stop=stop)
        say(f"sandbox PostgreSQL on {postgres.display_url} (emptied at each start)")
        stop.check()
        migrate(database_url)
        stop.check()
        partner = sandbox_partner(root, database_url)
        partner_proc = children.start("partner", partner.argv, partner.server_env)
        wait_for_port(partner.port, "sandbox partner", partner_proc, stop=stop)
        os.environ.update(partner.stack_env())  # this process's worker calls it
        say(f"sandbox partner on {partner.base} for {', '.join(partner.sandboxed) or 'no service'}")
        stop.check()
        # Not cancelled midway: the server it starts would be left running. Seconds at most.
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(binary("temporal-test-server")),
            data_converter=pydantic_data_converter,
        )
        stop.check()
        await stop.guard(ensure_search_attributes(env.client))
        target = env.client.service_client.config.target_host
        say(f"time-skipping Temporal server on {target} (no Web UI in sandbox mode)")
        stack_file = SandboxStackFile(settings.data_dir / "stack.json", children)
        stack_file.update(
            database_url=database_url,
            temporal_address=target,
            partner_config=str(partner.config_file),
        )
        pool = await stop.guard(open_pool(database_url, max_size=20), undo=close_pool)
        in_flight = InFlight()
        worker = build_worker(
            env.client, pool, settings.task_queue, interceptors=[in_flight.interceptor()]
        )
        services = build_services(
            pool,
            env.client,
            default_catalog(),
            settings.task_queue,
            secret=auth_secret(settings),
            launch_url=launch_base_url(settings),
            clock=env.get_current_time,
            invoice_spread=settings.invoice_spread,
            webhook_allow_loopback=settings.webhook_allow_loopback,
        )
        runtime = Runtime(
            services, sandbox=SandboxClock(env, in_flight.idle), demo_workplace=DEMO_WORKPLACE
        )
        server = _EmbeddedServer(
            uvicorn.Config(
                create_app(runtime),
                host="127.0.0.1",
                port=settings.api_port,
                log_level="warning",
            )
        )
        # The worker and the server as tasks, not `async with`: each gets a bounded time to stop
        # (a worker whose server is gone retries for long; a Ctrl-C from a terminal reaches the
        # time-skipping server too, since the SDK starts it in this process group).
        working = asyncio.create_task(worker.run())
        serving = asyncio.create_task(server.serve())
        try:
            login = await stop.guard(seed_demo(services.subscriptions))
            stack_file.update(ready=True)
            announce_sandbox(settings, login, partner.lines())
            await wait_for_signal(
                stop, lambda: serving.done() or working.done() or supervised(stack_file)
            )
        finally:
            until = stop.deadline(STOP_TIME)
            server.should_exit = True
            await within(share_of(until, 5), serving)
            await within(share_of(until, 4), worker.shutdown())
            if working.done() and not working.cancelled() and not stop.requested:
                working.result()  # the worker's fatal error, if that is what ended the wait
    finally:
        if stop.requested:
            say(f"{stop.name}: stopping the sandbox…")
        until = stop.deadline(STOP_TIME)
        if pool is not None:
            await close_pool(pool)
        children.stop(until, lambda: stop.hurried, after=2)
        if env is not None:
            await within(share_of(until, 2), env.shutdown())
        postgres.stop(share_of(until, 1), lambda: stop.hurried)
        (settings.data_dir / "stack.json").unlink(missing_ok=True)
        say("stopped the sandbox")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the sandbox process: Ctrl-C belongs to the sandbox, which stops it."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class SandboxStackFile:
    """DATA_DIR/stack.json of a sandbox (0600, it holds the database password): how to reach it
    (the CLI, tests), `ready` once the demo is seeded, and the supervised children as
    `{"pid", "started"}`, rewritten when one is started again (the kill matrix kills the sandbox
    partner by it). It names no launcher: a `make run` on the same DATA_DIR leaves it alone."""

    def __init__(self, path: Path, children: Children) -> None:
        self.path = path
        self.children = children
        self.fields: dict[str, Any] = {"children": {}}

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        self.children_now()
        write_private(self.path, json.dumps(self.fields))

    def children_now(self) -> bool:
        """Record the children's current pids; True when one changed."""
        pids = self.children.pids()
        recorded = {name: (who or {}).get("pid") for name, who in self.fields["children"].items()}
        if recorded == pids:
            return False
        self.fields["children"] = {name: identity(pid) for name, pid in pids.items()}
        return True


def supervised(stack_file: SandboxStackFile) -> bool:
    stack_file.children.check()  # restarts the partner server if it died, with backoff
    if stack_file.children_now():
        stack_file.update()
    return False


def announce_sandbox(settings: Settings, login: str, partners: list[str]) -> None:
    base = f"http://127.0.0.1:{settings.api_port}"
    say("sandbox ready: business time runs at wall speed and jumps when you advance it")
    say(f"  console      {base}/console/login   (demo login: {login})")
    say(f"  API docs     {base}/docs")
    say(f"  clock        GET {base}/v1/sandbox/clock · POST {base}/v1/sandbox/clock/advance")
    for line in partners:
        say(line)
    say(f"  API metrics  {base}/metrics   (no worker metrics: its worker runs in this process)")
    say("Ctrl-C stops everything.")
