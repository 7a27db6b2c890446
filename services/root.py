"""The composition root: every service, built once, on one pool and one Temporal client.

The API and its console (api/runtime.py), the worker (worker.py), the operator CLI
(starter/cli.py), the dev stacks (devstack/), the benches and the tests all build their services
here, so each service is wired the same way everywhere:

    SubscriptionService   applications and actions on subscriptions (the workflow calls)
    BillingService        issued invoices, estimates, the final charge
    DirectoryService      directory sync, and who is who
    SessionService        console sessions
    RecordsService        a cancelled subscription's records download and deletion notice
    EventService          the event feed (R-EVENT-3)
    AccessService         home cards, permission screens, the member menu, single sign-on
                          (needs the token-signing secret: built only when one is given)
    WebhookService        webhook endpoints, their secrets, deliveries and resends
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client

from domain.catalog import Catalog
from services.access import DEFAULT_LAUNCH_URL, AccessService
from services.authz import Authz
from services.billing import BillingService
from services.clock import Clock, wall_clock
from services.directory import DirectoryService
from services.events import EventService
from services.records import RecordsService
from services.sessions import SessionService
from services.subscriptions import SubscriptionService
from services.webhooks import WebhookService
from store.db import Pool


@dataclass(frozen=True)
class Services:
    subscriptions: SubscriptionService
    billing: BillingService
    directory: DirectoryService
    sessions: SessionService
    webhooks: WebhookService
    records: RecordsService
    events: EventService
    _access: AccessService | None = None

    @property
    def access(self) -> AccessService:
        """Single sign-on signs launch tokens, so this one needs the auth secret."""
        if self._access is None:
            raise RuntimeError("these services were built without an auth secret (no access)")
        return self._access

    @property
    def pool(self) -> Pool:
        return self.subscriptions.pool

    @property
    def client(self) -> Client:
        return self.subscriptions.client

    @property
    def authz(self) -> Authz:
        return self.subscriptions.authz

    @property
    def catalog(self) -> Catalog:
        return self.subscriptions.authz.catalog


def build_services(
    pool: Pool,
    client: Client,
    catalog: Catalog,
    task_queue: str,
    *,
    secret: str | None = None,
    launch_url: str = DEFAULT_LAUNCH_URL,
    clock: Clock = wall_clock,
    history_event_limit: int = 2_000,
    temporal_deadline: float = 10.0,
    invoice_spread: timedelta = timedelta(0),
    webhook_allow_loopback: bool = False,
) -> Services:
    """Every service on `pool` and `client`, starting workflows on `task_queue`; business time
    from `clock` (the sandbox's in a rehearsal). Without `secret`, no AccessService (the worker
    and the CLI need none). `webhook_allow_loopback`: webhook endpoints on loopback are
    accepted (a local stack, the tests: settings.webhook_allow_loopback)."""
    subscriptions = SubscriptionService(
        pool,
        client,
        catalog,
        task_queue,
        clock=clock,
        history_event_limit=history_event_limit,
        temporal_deadline=temporal_deadline,
        invoice_spread=invoice_spread,
    )
    billing = BillingService(subscriptions)
    directory = DirectoryService(subscriptions)
    return Services(
        subscriptions=subscriptions,
        billing=billing,
        directory=directory,
        sessions=SessionService(directory),
        webhooks=WebhookService(
            pool, subscriptions.authz, clock, allow_loopback=webhook_allow_loopback
        ),
        records=RecordsService(subscriptions),
        events=EventService(pool, subscriptions.authz),
        _access=(
            AccessService(subscriptions, billing, secret, launch_base_url=launch_url)
            if secret is not None
            else None
        ),
    )
