"""The Temporal worker: runs SubscriptionWorkflow and its activities, and on a task queue of its
own the webhook endpoint workflows, woken by the webhook dispatcher it also runs.

python worker.py        (reads DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE,
                         WORKER_METRICS_PORT, METRICS_BIND_ADDRESS, and every service's
                         BIZSUPPORT_PARTNER_URL_<SERVICE> and BIZSUPPORT_PARTNER_SECRET_<SERVICE>)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from domain.catalog import CatalogError, default_catalog
from partners.config import PartnerConfigError, load_partner_endpoints
from services.reconcile import reconcile_periodically
from services.root import build_services
from services.webhook_dispatch import WebhookDispatcher
from settings import load_settings
from starter import process
from starter.temporal import build_webhook_worker, build_worker, connect, partner_gateway
from store.db import migrate, open_pool


async def serve() -> int:
    settings = load_settings()
    if not settings.database_url:
        print(
            "worker: DATABASE_URL is not set (`make run` sets it for the dev stack)",
            file=sys.stderr,
        )
        return 2
    try:
        catalog = default_catalog()  # R-CAT-6: a malformed catalog stops start-up, naming it
    except CatalogError as err:
        print(f"worker: {err}", file=sys.stderr)
        return 2
    try:  # every service needs its partner's URL and secret (docs/partners.md)
        load_partner_endpoints(catalog.service_ids)
    except PartnerConfigError as err:
        print(f"worker: cannot start: {err}", file=sys.stderr)
        return 2
    migrate(settings.database_url)
    pool = await open_pool(settings.database_url, max_size=20)
    # The SDK's metrics (task slots, workflow task latency) for Prometheus; loopback unless
    # METRICS_BIND_ADDRESS says otherwise, off with WORKER_METRICS_PORT=0.
    client = await connect(
        settings.temporal_address,
        settings.temporal_namespace,
        metrics_address=settings.worker_metrics_address,
    )
    partner = partner_gateway(pool, client)  # one per process: one pooled HTTP client
    worker = build_worker(
        client,
        pool,
        settings.task_queue,
        max_cached_workflows=settings.worker_cache_size,
        partner=partner,
    )
    webhooks = build_webhook_worker(
        client, pool, settings.task_queue, allow_loopback=settings.webhook_allow_loopback
    )
    dispatcher = WebhookDispatcher(pool, client, settings.task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.info(
        "worker polling task queue %s at %s", settings.task_queue, settings.temporal_address
    )
    if settings.worker_metrics_address:
        logging.info("worker metrics at http://%s/metrics", settings.worker_metrics_address)
    # What a crash or a restore left behind is repaired here (services/reconcile.py).
    services = build_services(
        pool, client, catalog, settings.task_queue, invoice_spread=settings.invoice_spread
    )
    process.freeze_startup_heap()
    async with worker, webhooks:
        reconciling = asyncio.create_task(
            reconcile_periodically(services.subscriptions, partner, stop)
        )
        dispatching = asyncio.create_task(dispatcher.run(stop))
        await stop.wait()
        await reconciling
        await dispatching
    await pool.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(process.run(serve()))
