"""The HTTP API, version 1 (its conventions: docs/rules.md, "HTTP contract"; the full contract is
served at /docs). Thin: every route checks the caller and calls the service layer
(SubscriptionService, DirectoryService, AccessService, BillingService), which does the rest."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import idempotency
from api.auth import AnyCaller, Caller, Member, System, runtime_of, same_workplace
from api.errors import responses
from api.models import (
    AdvanceIn,
    ApplyIn,
    ManagementPermissionsIn,
    MemberIn,
    PlanChangeIn,
    VerifyIn,
    WorkplaceIn,
)
from api.ratelimit import rate_limit_of
from api.runtime import Runtime
from domain.catalog import Catalog, Service
from domain.errors import BizError
from services.clock import SandboxControl
from services.models import (
    AuditLogOut,
    ClockOut,
    HomeCard,
    InvoicesOut,
    LaunchOut,
    ManagementPermissionsOut,
    MemberLeftOut,
    MemberSyncOut,
    MenuOut,
    ServiceOut,
    ServicePermissions,
    SubscriptionOut,
    UsagePermissionsOut,
    VerifiedOut,
    WorkplaceOut,
)
from services.subscriptions import UsageChange
from store.idempotency import IdempotencyStore

router = APIRouter(prefix="/v1")

PathId = Annotated[str, Path(min_length=1, max_length=200)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=idempotency.HEADER,
        min_length=1,
        max_length=idempotency.MAX_KEY_LENGTH,
        description="A retry with the same key gets the first answer (kept 24 h, R-ERR-2),"
        " also after a 503 once the service is back.",
    ),
]
Rt = Annotated[Runtime, Depends(runtime_of)]


def dump(model: type[BaseModel], value: Any) -> Any:
    return model.model_validate(value).model_dump(mode="json", by_alias=True)


class Action(Protocol):
    """What a route asks of the service layer, given the request id derived from the caller and
    the Idempotency-Key (None without a key); the service layer makes it the Temporal update id,
    so a retry after a crash is not made twice (api/idempotency.py)."""

    def __call__(self, *, request_id: str | None) -> Awaitable[Any]: ...


async def once(
    request: Request, who: Caller, model: type[BaseModel], action: Action, status: int = 200
) -> JSONResponse:
    """`action`'s answer as `model` with `status`, replayed for a retry with the same
    Idempotency-Key (R-ERR-2)."""
    store: IdempotencyStore = request.app.state.idempotency

    async def run(request_id: str | None) -> Any:
        return dump(model, await action(request_id=request_id))

    return await idempotency.respond(request, store, who.scope, status, run)


def actor_on_service(rt: Runtime, who: Caller, wp: str, svc: str) -> str:
    """The calling member (their id), acting on the workplace's service: another workplace is
    not found and an unknown service refused, before any Idempotency-Key is claimed."""
    actor = same_workplace(who, wp)
    rt.authz.service(svc)
    return actor


def service_view(service: Service, catalog: Catalog) -> dict[str, Any]:
    return {
        **service.model_dump(mode="json"),
        "name": service.name_ko,
        "terms_version": service.terms.version,
        "plans": [{**p.model_dump(mode="json"), "name": p.name_ko} for p in service.plans],
        "has_plan_choice": service.has_plan_choice,
        "sample_prices_notice": catalog.sample_prices_notice if catalog.sample_prices else None,
    }


# ── directory sync (system token) ────────────────────────────────────────────────────────────

directory_tag: list[str | Enum] = ["directory sync"]


@router.put(
    "/workplaces/{wp}",
    response_model=WorkplaceOut,
    tags=directory_tag,
    responses=responses(403, 404, 409, 422),
)
async def put_workplace(wp: PathId, body: WorkplaceIn, who: System, rt: Rt) -> Any:
    """Create or rename a workplace and name its representative admin."""
    return await rt.directory.put_workplace(wp, body.name, body.representative_admin.model_dump())


@router.put(
    "/workplaces/{wp}/members/{member_id}",
    response_model=MemberSyncOut,
    tags=directory_tag,
    responses=responses(403, 404, 409, 422),
)
async def put_member(wp: PathId, member_id: PathId, body: MemberIn, who: System, rt: Rt) -> Any:
    """Create or update a member; a changed login id lists its resets under `notices`."""
    return await rt.directory.put_member(
        wp, member_id, login_id=body.login_id, name=body.name, role=body.role
    )


@router.delete(
    "/workplaces/{wp}/members/{member_id}",
    response_model=MemberLeftOut,
    tags=directory_tag,
    responses=responses(403, 404, 409, 422),
)
async def delete_member(wp: PathId, member_id: PathId, who: System, rt: Rt) -> Any:
    """A member leaves: every usage and management permission goes (R-PERM-7)."""
    return await rt.directory.remove_member(wp, member_id)


# ── catalog ──────────────────────────────────────────────────────────────────────────────────


@router.get(
    "/services", response_model=list[ServiceOut], tags=["catalog"], responses=responses(403)
)
async def list_services(who: AnyCaller, rt: Rt) -> Any:
    return [service_view(s, rt.catalog) for s in rt.catalog.services]


@router.get(
    "/services/{service_id}",
    response_model=ServiceOut,
    tags=["catalog"],
    responses=responses(403, 404),
)
async def get_service(service_id: PathId, who: AnyCaller, rt: Rt) -> Any:
    return service_view(rt.authz.service(service_id), rt.catalog)


# ── business support (admin) ─────────────────────────────────────────────────────────────────

admin_tag: list[str | Enum] = ["business support"]


@router.get(
    "/workplaces/{wp}/services",
    response_model=list[HomeCard],
    tags=admin_tag,
    responses=responses(403, 404),
)
async def home_cards(wp: PathId, who: Member, rt: Rt) -> Any:
    """The home cards (R-APPLY-5): each service's state and the buttons it allows."""
    return await rt.access.home_cards(wp, same_workplace(who, wp))


@router.post(
    "/workplaces/{wp}/services/{svc}/subscription",
    status_code=201,
    response_model=SubscriptionOut,
    tags=admin_tag,
    responses=responses(403, 404, 409, 422),
)
async def apply(
    request: Request,
    wp: PathId,
    svc: PathId,
    body: ApplyIn,
    who: Member,
    rt: Rt,
    key: IdempotencyKey = None,
) -> Any:
    """Apply for a service (representative admin; terms agreement required)."""
    actor = same_workplace(who, wp)  # apply checks the service in the action (a refusal is kept)
    action = partial(
        rt.subscriptions.apply,
        workplace_id=wp,
        service_id=svc,
        actor_id=actor,
        plan_id=body.plan_id,
        terms_version=body.terms_version,
        agree_terms=body.agree_terms,
    )
    return await once(request, who, SubscriptionOut, action, status=201)


@router.get(
    "/workplaces/{wp}/services/{svc}/subscription",
    response_model=SubscriptionOut,
    tags=admin_tag,
    responses=responses(403, 404),
)
async def get_subscription(wp: PathId, svc: PathId, who: Member, rt: Rt) -> Any:
    """The live subscription, else the latest one."""
    actor = actor_on_service(rt, who, wp, svc)
    return await rt.subscriptions.status(workplace_id=wp, service_id=svc, actor_id=actor)


@router.post(
    "/workplaces/{wp}/services/{svc}/subscription/plan-change",
    response_model=SubscriptionOut,
    tags=admin_tag,
    responses=responses(403, 404, 409, 422, 502),
)
async def change_plan(
    request: Request,
    wp: PathId,
    svc: PathId,
    body: PlanChangeIn,
    who: Member,
    rt: Rt,
    key: IdempotencyKey = None,
) -> Any:
    """Change the plan now, or schedule it for the next window (R-PLAN)."""
    actor = actor_on_service(rt, who, wp, svc)
    action = partial(
        rt.subscriptions.change_plan,
        workplace_id=wp,
        service_id=svc,
        actor_id=actor,
        plan_id=body.plan_id,
        when=body.when,
        confirm_course_reset=body.confirm_course_reset,
    )
    return await once(request, who, SubscriptionOut, action)


@router.delete(
    "/workplaces/{wp}/services/{svc}/subscription/plan-change",
    response_model=SubscriptionOut,
    tags=admin_tag,
    responses=responses(403, 404, 409, 422),
)
async def withdraw_plan_change(
    request: Request, wp: PathId, svc: PathId, who: Member, rt: Rt, key: IdempotencyKey = None
) -> Any:
    """Withdraw a scheduled plan change."""
    actor = actor_on_service(rt, who, wp, svc)
    action = partial(
        rt.subscriptions.withdraw_plan_change, workplace_id=wp, service_id=svc, actor_id=actor
    )
    return await once(request, who, SubscriptionOut, action)


@router.post(
    "/workplaces/{wp}/services/{svc}/subscription/cancel",
    response_model=SubscriptionOut,
    tags=admin_tag,
    responses=responses(403, 404, 409, 422),
)
async def cancel(
    request: Request, wp: PathId, svc: PathId, who: Member, rt: Rt, key: IdempotencyKey = None
) -> Any:
    """Cancel at once; data is deleted 30 days later, fees through today billed next month."""
    actor = actor_on_service(rt, who, wp, svc)
    action = partial(rt.subscriptions.cancel, workplace_id=wp, service_id=svc, actor_id=actor)
    return await once(request, who, SubscriptionOut, action)


@router.get(
    "/workplaces/{wp}/services/{svc}/usage-permissions",
    response_model=UsagePermissionsOut,
    tags=admin_tag,
    responses=responses(403, 404),
)
async def usage_permissions(wp: PathId, svc: PathId, who: Member, rt: Rt) -> Any:
    """Who holds usage permission (seats), and how many."""
    return await rt.access.usage_permissions(wp, svc, same_workplace(who, wp))


@dataclass
class SeatPath:
    """One member's seat on a workplace's service: the path of the grant and the revoke."""

    wp: PathId
    svc: PathId
    member_id: PathId


Seat = Annotated[SeatPath, Depends()]
seat_route = partial(
    router.api_route,
    "/workplaces/{wp}/services/{svc}/usage-permissions/{member_id}",
    response_model=UsagePermissionsOut,
    tags=admin_tag,
    responses=responses(403, 404, 409, 422),
)


async def _set_usage(
    request: Request, rt: Runtime, seat: SeatPath, who: Caller, grant: bool
) -> Any:
    actor = actor_on_service(rt, who, seat.wp, seat.svc)

    async def change(*, request_id: str | None) -> UsagePermissionsOut:
        usage = UsageChange(seat.wp, seat.svc, actor, seat.member_id, grant, request_id)
        return await rt.access.set_usage(usage)

    return await once(request, who, UsagePermissionsOut, change)


@seat_route(methods=["PUT"])
async def grant_usage(
    request: Request, seat: Seat, who: Member, rt: Rt, key: IdempotencyKey = None
) -> Any:
    """Give a member usage permission (not on ubob: it grants everyone automatically)."""
    return await _set_usage(request, rt, seat, who, grant=True)


@seat_route(methods=["DELETE"])
async def revoke_usage(
    request: Request, seat: Seat, who: Member, rt: Rt, key: IdempotencyKey = None
) -> Any:
    """Take a member's usage permission back."""
    return await _set_usage(request, rt, seat, who, grant=False)


@router.get(
    "/workplaces/{wp}/services/{svc}/invoices",
    response_model=InvoicesOut,
    tags=admin_tag,
    responses=responses(403, 404),
)
async def invoices(wp: PathId, svc: PathId, who: Member, rt: Rt) -> Any:
    """Issued invoices of every subscription to the service, and this month's estimate."""
    actor = actor_on_service(rt, who, wp, svc)
    return await rt.billing.invoices(workplace_id=wp, service_id=svc, actor_id=actor)


@router.get(
    "/workplaces/{wp}/management-permissions",
    response_model=ManagementPermissionsOut,
    tags=admin_tag,
    responses=responses(403, 404),
)
async def management_permissions(wp: PathId, who: Member, rt: Rt) -> Any:
    """Per service, per permission, the admins holding it (representative admin only)."""
    return await rt.access.management_permissions(wp, same_workplace(who, wp))


@router.put(
    "/workplaces/{wp}/services/{svc}/management-permissions/{member_id}",
    response_model=ServicePermissions,
    tags=admin_tag,
    responses=responses(403, 404, 409, 422),
)
async def set_management_permissions(
    wp: PathId,
    svc: PathId,
    member_id: PathId,
    body: ManagementPermissionsIn,
    who: Member,
    rt: Rt,
) -> Any:
    """Set an admin's management permissions on a service (`[]` removes them)."""
    actor = same_workplace(who, wp)
    return await rt.access.set_management_permissions(
        wp, svc, member_id, list(body.permissions), actor
    )


@router.get(
    "/workplaces/{wp}/audit-log",
    response_model=AuditLogOut,
    tags=admin_tag,
    responses=responses(403, 404),
)
async def audit_log(
    wp: PathId,
    who: Member,
    rt: Rt,
    service: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Dated events (이용 내역): `usage.view` on the service, or without it the representative."""
    actor = same_workplace(who, wp)
    return AuditLogOut(entries=await rt.access.audit_log(wp, actor, service, limit))


# ── member ───────────────────────────────────────────────────────────────────────────────────


@router.get("/me/menu", response_model=MenuOut, tags=["member"], responses=responses(403))
async def menu(who: Member, rt: Rt) -> Any:
    """The services the member can open now, and whether the admin menu shows."""
    assert who.workplace_id is not None and who.member_id is not None
    return await rt.access.menu(who.workplace_id, who.member_id)


@router.post(
    "/me/services/{svc}/launch",
    response_model=LaunchOut,
    tags=["member"],
    responses=responses(403, 404, 409, 422),
)
async def launch(
    request: Request, svc: PathId, who: Member, rt: Rt, key: IdempotencyKey = None
) -> Any:
    """A single-use launch token and URL for opening the service without a second login."""
    assert who.workplace_id is not None and who.member_id is not None
    wp, member_id = who.workplace_id, who.member_id
    issue = partial(rt.access.launch, wp, member_id, svc)
    return await once(request, who, LaunchOut, lambda request_id: issue(datetime.now(UTC)))


@router.post(
    "/sso/verify",
    response_model=VerifiedOut,
    tags=["member"],
    responses=responses(429),
    openapi_extra={"security": []},
)
async def verify(request: Request, body: VerifyIn, rt: Rt) -> Any:
    """The partner's side (no bearer): a launch token works once, then 401."""
    rate_limit_of(request).check(request)
    return await rt.access.verify_launch(body.token, datetime.now(UTC))


# ── sandbox clock ────────────────────────────────────────────────────────────────────────────


def sandbox_control(request: Request) -> SandboxControl:
    control = runtime_of(request).sandbox
    if control is None:
        raise BizError("SANDBOX_ONLY")
    return control


Sandbox = Annotated[SandboxControl, Depends(sandbox_control)]


@router.get(
    "/sandbox/clock", response_model=ClockOut, tags=["sandbox"], responses=responses(403, 404)
)
async def get_clock(sandbox: Sandbox, who: System) -> Any:
    """The sandbox's business time (404 SANDBOX_ONLY outside sandbox mode)."""
    return {"now": await sandbox.now()}


@router.post(
    "/sandbox/clock/advance",
    response_model=ClockOut,
    tags=["sandbox"],
    responses=responses(403, 404, 409, 422),
)
async def advance_clock(
    request: Request, body: AdvanceIn, sandbox: Sandbox, who: System, key: IdempotencyKey = None
) -> Any:
    """Move business time; answers once every timer due in the span fired and its effects
    landed. One advance at a time (a concurrent one → 409 CLOCK_BUSY)."""

    async def move(*, request_id: str | None) -> dict[str, Any]:
        return {"now": await sandbox.advance(body.seconds)}

    return await once(request, who, ClockOut, move)
