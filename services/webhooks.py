"""Webhook endpoints: create, list, delete, rotate the secret, see deliveries, resend (R-EVENT-2;
docs/webhooks.md, "Endpoints"). Delivering is the dispatcher's, which store/webhooks.py wakes.

Who: a workplace's endpoints are its representative admin's (another member, the delegated
admins included, is refused NOT_REPRESENTATIVE_ADMIN; another workplace's endpoint is not
found). System-wide endpoints (`workplace_id` None) receive every workplace's events; only a
system token reaches them, which the API checks (api/auth.py `System`, as for directory sync).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import timedelta

from domain.audit import AuditAction
from domain.errors import BizError
from domain.event_types import unknown_event_types
from domain.subscription import SYSTEM_ACTOR
from domain.text import storable
from domain.webhook_urls import RefusedUrl
from services.authz import Authz
from services.clock import Clock
from services.models import (
    WebhookDeliveriesOut,
    WebhookDeliveryOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointOut,
    WebhookEndpointsOut,
    WebhookRotatedOut,
)
from services.webhook_targets import checked_target
from store import audit
from store import webhooks as store
from store.db import Pool
from store.webhooks import DeliveryStatus, EndpointRow

MAX_ENDPOINTS = 10  # per workplace, and system-wide
MAX_DESCRIPTION = 200
SECRET_OVERLAP = timedelta(hours=24)  # a replaced secret keeps signing this long
# The audit log's workplace for system-wide endpoints: no workplace has an empty id.
SYSTEM_AUDIT_SCOPE = ""


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def endpoint_id_for(request_id: str | None) -> str:
    """A new endpoint's id; derived from the request id when there is one, so a retry of the
    same create (the same Idempotency-Key) after a crash finds the endpoint it made."""
    if request_id is None:
        return "ep_" + uuid.uuid4().hex
    return "ep_" + hashlib.sha256(f"webhook-endpoint\n{request_id}".encode()).hexdigest()[:32]


class WebhookService:
    def __init__(self, pool: Pool, authz: Authz, clock: Clock, *, allow_loopback: bool) -> None:
        self.pool = pool
        self.authz = authz
        self.clock = clock
        # loopback URLs are accepted only on a local stack (settings.webhook_allow_loopback)
        self.allow_loopback = allow_loopback

    async def create(
        self,
        workplace_id: str | None,
        actor_id: str,
        *,
        url: str,
        types: list[str] | None = None,
        description: str = "",
        request_id: str | None = None,
    ) -> WebhookEndpointCreatedOut:
        """A new endpoint and its secret, the only time the secret is shown (and on rotation)."""
        await self._owner(workplace_id, actor_id)
        if types is not None:
            if not types:
                raise BizError(
                    "VALIDATION_ERROR", problem="types: name at least one, or leave it out for all"
                )
            unknown = unknown_event_types(types)
            if unknown:
                raise BizError("UNKNOWN_EVENT_TYPE", event_type=unknown[0], unknown=unknown)
            types = sorted(set(types))
        if len(description) > MAX_DESCRIPTION or not storable(description):
            raise BizError(
                "VALIDATION_ERROR",
                problem=f"description: at most {MAX_DESCRIPTION} characters of plain text",
            )
        if not storable(url):
            raise BizError("WEBHOOK_URL_REFUSED", problem="The URL has control characters.")
        try:
            await checked_target(url, allow_loopback=self.allow_loopback)
        except RefusedUrl as refused:
            raise BizError(
                "WEBHOOK_URL_REFUSED", problem=str(refused), reason=refused.reason
            ) from None
        endpoint_id = endpoint_id_for(request_id)
        made = await store.endpoint(self.pool, endpoint_id, with_deleted=True)
        if made is None:
            secret = new_secret()
            made = await store.create(
                self.pool,
                endpoint_id=endpoint_id,
                workplace_id=workplace_id,
                url=url,
                types=types,
                description=description,
                created_by=actor_id,
                at=await self.clock(),
                secret=secret,
                limit=MAX_ENDPOINTS,
            )
            if made is None:
                raise BizError("WEBHOOK_ENDPOINT_LIMIT", limit=MAX_ENDPOINTS)
            await self._audit(made, actor_id, "webhook_endpoint_created", url=url, types=types)
        elif made.workplace_id != workplace_id:
            raise BizError("NOT_FOUND")
        else:  # this request made it before a crash: the same answer again
            secret = (await store.secrets(self.pool, endpoint_id))[-1].secret
        return WebhookEndpointCreatedOut(
            endpoint_id=made.endpoint_id,
            url=made.url,
            types=made.types,
            secret=secret,
            created_at=made.created_at,
        )

    async def endpoints(self, workplace_id: str | None, actor_id: str) -> WebhookEndpointsOut:
        await self._owner(workplace_id, actor_id)
        rows = await store.endpoints(self.pool, workplace_id)
        return WebhookEndpointsOut(
            endpoints=[WebhookEndpointOut.model_validate(row) for row in rows]
        )

    async def delete(self, workplace_id: str | None, actor_id: str, endpoint_id: str) -> None:
        """The endpoint is deleted: nothing more is sent to it, its deliveries stay listed."""
        found = await self._endpoint(workplace_id, actor_id, endpoint_id)
        if not await store.delete(self.pool, endpoint_id, await self.clock()):
            raise BizError("NOT_FOUND")
        await self._audit(found, actor_id, "webhook_endpoint_deleted", url=found.url)

    async def rotate(
        self, workplace_id: str | None, actor_id: str, endpoint_id: str
    ) -> WebhookRotatedOut:
        """A new secret; the one it replaces keeps signing for SECRET_OVERLAP."""
        found = await self._endpoint(workplace_id, actor_id, endpoint_id)
        secret = new_secret()
        at = await self.clock()
        if await store.rotate(self.pool, endpoint_id, secret, at, SECRET_OVERLAP) is None:
            raise BizError("NOT_FOUND")
        retires_at = at + SECRET_OVERLAP
        await self._audit(
            found, actor_id, "webhook_secret_rotated", previous_retires_at=retires_at.isoformat()
        )
        return WebhookRotatedOut(
            endpoint_id=endpoint_id, secret=secret, previous_secret_retires_at=retires_at
        )

    async def deliveries(
        self,
        workplace_id: str | None,
        actor_id: str,
        endpoint_id: str,
        *,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> WebhookDeliveriesOut:
        """The endpoint's deliveries, newest first; `before` (a delivery id) pages back."""
        await self._endpoint(workplace_id, actor_id, endpoint_id)
        rows = await store.deliveries(
            self.pool, endpoint_id, status=status, limit=limit + 1, before=before
        )
        page = rows[:limit]
        return WebhookDeliveriesOut(
            deliveries=[WebhookDeliveryOut.model_validate(row) for row in page],
            next_before=page[-1].delivery_id if len(rows) > limit else None,
        )

    async def resend(
        self, workplace_id: str | None, actor_id: str, endpoint_id: str, delivery_id: str
    ) -> WebhookDeliveryOut:
        """Send a succeeded or failed delivery again: the same event and `webhook-id`, a new
        signature, a fresh retry schedule. A pending one is refused (it is being sent)."""
        found = await self._endpoint(workplace_id, actor_id, endpoint_id)
        if found.status == "disabled":
            raise BizError("WEBHOOK_ENDPOINT_DISABLED")
        if await store.delivery(self.pool, endpoint_id, delivery_id) is None:
            raise BizError("NOT_FOUND")
        if not await store.resend(self.pool, endpoint_id, delivery_id, await self.clock()):
            raise BizError("WEBHOOK_DELIVERY_PENDING")
        again = await store.delivery(self.pool, endpoint_id, delivery_id)
        assert again is not None
        return WebhookDeliveryOut.model_validate(again)

    # ── checks ───────────────────────────────────────────────────────────────────────────────

    async def _owner(self, workplace_id: str | None, actor_id: str) -> None:
        """The workplace's representative admin; system-wide: the API checked the system token."""
        if workplace_id is not None:
            await self.authz.representative(workplace_id, actor_id)

    async def _endpoint(
        self, workplace_id: str | None, actor_id: str, endpoint_id: str
    ) -> EndpointRow:
        """The owner's endpoint (not deleted); another scope's is not found."""
        await self._owner(workplace_id, actor_id)
        found = await store.endpoint(self.pool, endpoint_id) if storable(endpoint_id) else None
        if found is None or found.workplace_id != workplace_id:
            raise BizError("NOT_FOUND")
        return found

    async def _audit(
        self, endpoint: EndpointRow, actor_id: str, action: AuditAction, **details: object
    ) -> None:
        at = await self.clock()
        async with self.pool.connection() as conn:
            await audit.write(
                conn,
                event_key=None,
                at=at,
                workplace_id=endpoint.workplace_id or SYSTEM_AUDIT_SCOPE,
                service_id=None,
                subscription_id=None,
                actor=actor_id if endpoint.workplace_id is not None else SYSTEM_ACTOR,
                action=action,
                details={"endpoint_id": endpoint.endpoint_id, **details},
            )
