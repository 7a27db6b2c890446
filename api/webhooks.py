"""Webhook endpoints over HTTP (R-EVENT-2; docs/webhooks.md): a workplace's, for its
representative admin, under /v1/workplaces/{wp}/webhook-endpoints, and the system-wide ones
(every workplace's events), for a system token, under /v1/webhook-endpoints. The same
operations on both; WebhookService does the checks and the work.

(No `from __future__ import annotations` here: the routes are declared once per scope inside
`_routes`, whose dependency type FastAPI must see as a value, not as a name to look up.)
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.auth import Caller, Member, System, same_workplace
from api.errors import responses
from api.models import WebhookEndpointIn
from api.v1 import IdempotencyKey, PathId, Rt, once
from domain.subscription import SYSTEM_ACTOR
from services.models import (
    WebhookDeliveriesOut,
    WebhookDeliveryOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointsOut,
    WebhookRotatedOut,
)
from store.webhooks import DeliveryStatus

router = APIRouter(prefix="/v1")


@dataclass(frozen=True)
class Owner:
    """Whose endpoints a request acts on: a workplace's (as its member `actor`) or, with
    `workplace_id` None, the system's."""

    who: Caller
    workplace_id: str | None
    actor: str


async def workplace_owner(wp: PathId, who: Member) -> Owner:
    """A member of `wp` (another workplace is not found); the service checks the role."""
    return Owner(who, wp, same_workplace(who, wp))


async def system_owner(who: System) -> Owner:
    return Owner(who, None, SYSTEM_ACTOR)


def _routes(prefix: str, owner: Callable[..., Awaitable[Owner]], tag: str) -> None:
    Scope = Annotated[Owner, Depends(owner)]
    tags: list[str | Enum] = [tag]
    one = f"{prefix}/{{endpoint_id}}"

    @router.post(
        prefix,
        status_code=201,
        response_model=WebhookEndpointCreatedOut,
        tags=tags,
        responses=responses(403, 404, 422),
    )
    async def create_webhook_endpoint(
        request: Request,
        body: WebhookEndpointIn,
        scope: Scope,
        rt: Rt,
        key: IdempotencyKey = None,
    ) -> Any:
        """Register an endpoint; the answer holds its secret, shown only here."""
        action = partial(
            rt.webhooks.create,
            scope.workplace_id,
            scope.actor,
            url=body.url,
            types=body.types,
            description=body.description,
        )
        return await once(request, scope.who, WebhookEndpointCreatedOut, action, status=201)

    @router.get(
        prefix, response_model=WebhookEndpointsOut, tags=tags, responses=responses(403, 404)
    )
    async def list_webhook_endpoints(scope: Scope, rt: Rt) -> Any:
        """The endpoints (never their secrets)."""
        return await rt.webhooks.endpoints(scope.workplace_id, scope.actor)

    @router.delete(
        one, status_code=204, response_class=Response, tags=tags, responses=responses(403, 404)
    )
    async def delete_webhook_endpoint(endpoint_id: PathId, scope: Scope, rt: Rt) -> Response:
        """Delete the endpoint: nothing more is sent to it."""
        await rt.webhooks.delete(scope.workplace_id, scope.actor, endpoint_id)
        return Response(status_code=204)

    @router.post(
        f"{one}/rotate-secret",
        response_model=WebhookRotatedOut,
        tags=tags,
        responses=responses(403, 404, 422),
    )
    async def rotate_webhook_secret(
        request: Request, endpoint_id: PathId, scope: Scope, rt: Rt, key: IdempotencyKey = None
    ) -> Any:
        """A new secret, shown only here; the previous one keeps signing for 24 hours."""
        rotate = partial(rt.webhooks.rotate, scope.workplace_id, scope.actor, endpoint_id)
        return await once(request, scope.who, WebhookRotatedOut, lambda request_id: rotate())

    @router.get(
        f"{one}/deliveries",
        response_model=WebhookDeliveriesOut,
        tags=tags,
        responses=responses(403, 404),
    )
    async def webhook_deliveries(
        endpoint_id: PathId,
        scope: Scope,
        rt: Rt,
        status: DeliveryStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    ) -> Any:
        """The endpoint's deliveries, newest first: attempts, last answer, next attempt."""
        return await rt.webhooks.deliveries(
            scope.workplace_id, scope.actor, endpoint_id, status=status, limit=limit, before=before
        )

    @router.post(
        f"{one}/deliveries/{{delivery_id}}/resend",
        response_model=WebhookDeliveryOut,
        tags=tags,
        responses=responses(403, 404, 409, 422),
    )
    async def resend_webhook_delivery(
        request: Request,
        endpoint_id: PathId,
        delivery_id: PathId,
        scope: Scope,
        rt: Rt,
        key: IdempotencyKey = None,
    ) -> Any:
        """Send a succeeded or failed delivery again (the same `webhook-id`, a new signature);
        a pending one is refused with 409 WEBHOOK_DELIVERY_PENDING."""
        resend = partial(
            rt.webhooks.resend, scope.workplace_id, scope.actor, endpoint_id, delivery_id
        )
        return await once(request, scope.who, WebhookDeliveryOut, lambda request_id: resend())


_routes("/workplaces/{wp}/webhook-endpoints", workplace_owner, "webhooks")
_routes("/webhook-endpoints", system_owner, "webhooks (system)")
