"""The subscription service: the one place admin actions are checked and sent to workflows.

The API, the console and the CLI all call this. It checks what needs PostgreSQL (directory,
role, permission: R-ERR-3), reserves the (workplace, service) slot, starts the workflow, and
sends updates; the workflow's validators check its own state. Refusals are `BizError`s.

Retries and crashes (issue 11). Every action takes an optional `request_id` (the API derives it
from the caller and the Idempotency-Key). An update sent with one gets an update id derived from
it, so Temporal answers a retried update with the first outcome even when the process that sent
it died before recording the answer. An application sent with one gets a subscription id (and so
a workflow id) derived from it, so a retry after a crash between the reservation and the start
finds its own reservation and starts, or finds, the same workflow. Each call to Temporal is
bounded by `temporal_deadline`: past it the answer is SERVICE_UNAVAILABLE (503), the change may
or may not have been made, and a retry with the same request id tells which.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from domain.billing import PlanFees, invoice_delay
from domain.calendar import plan_change_available_at
from domain.catalog import Catalog, Service
from domain.errors import BizError
from domain.permissions import (
    PLAN_CHANGE,
    SUBSCRIPTION_CANCEL,
    USAGE_GRANT,
    USAGE_VIEW,
)
from domain.subscription import (
    CURRENT_VERSION,
    SYSTEM_ACTOR,
    ActorRequest,
    Application,
    MemberEvent,
    PlanChangeNotice,
    PlanChangeRequest,
    StatusSnapshot,
    SubscriptionData,
    SubscriptionInput,
    UsageRequest,
)
from services.authz import Authz
from services.clock import Clock, wall_clock
from services.models import ScheduledChangeOut, SubscriptionOut
from statemachines.lifecycle import ENDED_STATES
from store import audit, directory, permissions, subscriptions
from store.db import Pool
from store.notify import SettledListener
from store.subscriptions import SubscriptionRow
from workflows import search_attributes as sa
from workflows.subscription import SubscriptionWorkflow, workflow_id

# A reservation younger than this may still be starting its workflow: not an orphan yet (the
# next application for the slot and the reconciler both wait this long).
ORPHAN_GRACE = timedelta(minutes=1)

Request = TypeVar("Request", ActorRequest, PlanChangeRequest, UsageRequest)
T = TypeVar("T")

log = logging.getLogger(__name__)

# How often an application waiting for its outcome looks at the row without being notified.
SETTLED_RECHECK = 2.0

# How long a request id keeps naming the same application: the Idempotency-Key's retention.
REQUEST_ID_RETENTION = timedelta(hours=24)


class SubscriptionService:
    def __init__(
        self,
        pool: Pool,
        client: Client,
        catalog: Catalog,
        task_queue: str,
        *,
        clock: Clock = wall_clock,
        history_event_limit: int = 2_000,
        temporal_deadline: float = 10.0,
        invoice_spread: timedelta = timedelta(0),
    ) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue
        self.clock = clock
        self.history_event_limit = history_event_limit
        self.temporal_deadline = temporal_deadline
        self.invoice_spread = invoice_spread
        self.authz = Authz(pool, catalog)
        self.settlements = SettledListener(pool)

    # ── application (R-APPLY, R-LIFE-1) ──────────────────────────────────────────────────────

    async def apply(
        self,
        *,
        workplace_id: str,
        service_id: str,
        actor_id: str,
        plan_id: str | None,
        terms_version: str | None,
        agree_terms: bool,
        wait_seconds: float = 5.0,
        request_id: str | None = None,
    ) -> SubscriptionOut:
        service = self.authz.service(service_id)
        await self.authz.representative(workplace_id, actor_id)
        if not agree_terms:
            raise BizError("TERMS_NOT_AGREED")
        if terms_version != service.terms.version:
            raise BizError("TERMS_VERSION_OUTDATED", current_version=service.terms.version)
        plan = self._chosen_plan(service, plan_id)
        subscription_id = derived_subscription_id(request_id, workplace_id, service_id)
        while True:
            try:
                reserved = await subscriptions.reserve(
                    self.pool,
                    subscription_id=subscription_id,
                    workplace_id=workplace_id,
                    service_id=service_id,
                    plan_id=plan,
                    applicant_id=actor_id,
                    terms_version=service.terms.version,
                )
            except BizError:
                await self._resume_orphaned_reservation(workplace_id, service_id)
                raise
            if reserved:
                break
            earlier = await subscriptions.by_id(self.pool, subscription_id)
            if earlier is not None and _same_application(earlier, workplace_id, service_id):
                # A retry: the first attempt reserved (and maybe started) this subscription.
                await self.ensure_started(earlier, by="retry")
                return await self._settled(subscription_id, wait_seconds)
            # the same key after its retention ran out: a new application
            subscription_id = derived_subscription_id(None, workplace_id, service_id)
        application = _application(service, subscription_id, workplace_id, plan, actor_id)
        try:
            await self._start(application)
        except BaseException as failure:
            if not _unreachable(failure):
                await self._release_unless_started(subscription_id)
            raise
        return await self._settled(subscription_id, wait_seconds)

    def _chosen_plan(self, service: Service, plan_id: str | None) -> str:
        if plan_id is None:
            if service.default_plan is None:
                raise BizError("PLAN_REQUIRED", service_id=service.service_id)
            return service.default_plan.plan_id
        if service.plan(plan_id) is None:
            raise BizError("UNKNOWN_PLAN", plan_id=plan_id, service_id=service.service_id)
        return plan_id

    async def _start(self, application: Application) -> None:
        """Start the subscription's workflow; one already running with its id is the same one
        (a retry, or a reconciler racing an application), not an error."""
        delay = invoice_delay(application.subscription_id, self.invoice_spread)
        data = SubscriptionData(
            application=application,
            plan_id=application.plan_id,
            version=CURRENT_VERSION,
            invoice_delay_seconds=int(delay.total_seconds()),
        )
        await self._bounded(
            self.client.start_workflow(
                SubscriptionWorkflow.run,
                SubscriptionInput(data=data, history_event_limit=self.history_event_limit),
                id=workflow_id(application.subscription_id),
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=sa.initial(
                    application.workplace_id, application.service_id, application.plan_id
                ),
                rpc_timeout=timedelta(seconds=self.temporal_deadline),
            )
        )

    async def _bounded(self, call: Awaitable[T]) -> T:
        """A Temporal call with a deadline: past it, SERVICE_UNAVAILABLE instead of a hang."""
        try:
            return await asyncio.wait_for(call, self.temporal_deadline)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            log.warning("Temporal did not answer within %.1f s: %r", self.temporal_deadline, err)
            raise BizError("SERVICE_UNAVAILABLE") from err

    async def _workflow_exists(self, subscription_id: str) -> bool:
        try:
            await self._bounded(self.handle(subscription_id).describe())
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def _release_unless_started(self, subscription_id: str) -> None:
        """A failed start frees the slot only if Temporal says the workflow does not exist. When
        Temporal cannot tell (unreachable, timed out), the start may have happened: the
        reservation stays, and a retry with the same request id, the next application for the
        slot, or the reconciler starts the workflow or finds it started (so a 503 on an
        application means it may still go through)."""
        try:
            exists = await self._workflow_exists(subscription_id)
        except (BizError, RPCError) as err:
            log.warning("start of %s is unknown; reservation kept: %r", subscription_id, err)
            return
        if not exists:
            await subscriptions.release(self.pool, subscription_id)

    async def ensure_started(
        self, row: SubscriptionRow, *, by: str
    ) -> Literal["started", "exists"]:
        """The workflow of a reservation (a read-model row): start it unless it exists. A start
        made here is audited once per subscription (`reservation_resumed`, by whom)."""
        if row.status_seq != 0 or await self._workflow_exists(row.subscription_id):
            return "exists"
        service = self.authz.service(row.service_id)
        application = _application(
            service,
            row.subscription_id,
            row.workplace_id,
            row.plan_id,
            row.applicant_id,
            terms_version=row.terms_version,
        )
        try:
            await self._start(application)
        except WorkflowAlreadyStartedError:  # it ran and ended in between
            return "exists"
        log.warning("started the workflow of reservation %s (%s)", row.subscription_id, by)
        at = await self.clock()
        async with self.pool.connection() as conn:
            await audit.write(
                conn,
                event_key=f"{row.subscription_id}:reservation_resumed",
                at=at,
                workplace_id=row.workplace_id,
                service_id=row.service_id,
                subscription_id=row.subscription_id,
                actor=SYSTEM_ACTOR,
                action="reservation_resumed",
                details={"by": by, "requested_at": row.requested_at.isoformat()},
            )
        return "started"

    async def _resume_orphaned_reservation(self, workplace_id: str, service_id: str) -> None:
        """A crash between reservation and start leaves a slot with no workflow: start it now."""
        row = await subscriptions.current(self.pool, workplace_id, service_id)
        if row is None or row.status_seq != 0:
            return
        if datetime.now(UTC) - row.requested_at < ORPHAN_GRACE:
            return  # its own application may still be starting it: not an orphan yet
        try:
            await self.ensure_started(row, by="next application")
        except (BizError, RPCError) as err:
            log.warning("could not resume reservation %s: %r", row.subscription_id, err)

    async def _settled(self, subscription_id: str, wait_seconds: float) -> SubscriptionOut:
        """Give provisioning a moment so the answer usually says `active` (or why not): woken
        by the commit that settles it (store.notify), not by polling; a look every
        SETTLED_RECHECK seconds covers a missed notification."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        async with self.settlements.watch(subscription_id) as settled:
            while True:
                row = await subscriptions.by_id(self.pool, subscription_id)
                assert row is not None
                remaining = deadline - loop.time()
                if row.state != "applied" or remaining <= 0:
                    return await self.view(row)
                await settled.wait(min(remaining, SETTLED_RECHECK))

    # ── actions on a live subscription ───────────────────────────────────────────────────────

    def handle(self, subscription_id: str) -> WorkflowHandle[SubscriptionWorkflow, StatusSnapshot]:
        return self.client.get_workflow_handle_for(
            SubscriptionWorkflow.run, workflow_id(subscription_id)
        )

    async def _live(self, workplace_id: str, service_id: str) -> SubscriptionRow:
        self.authz.service(service_id)
        row = await subscriptions.current(self.pool, workplace_id, service_id)
        if row is None:
            raise BizError("NO_SUBSCRIPTION", service_id=service_id)
        return row

    async def _update(
        self,
        row: SubscriptionRow,
        update: UpdateMethodMultiParam[[SubscriptionWorkflow, Request], StatusSnapshot],
        request: Request,
        request_id: str | None = None,
    ) -> SubscriptionOut:
        return await self.view(await self._send(row, update, request, request_id))

    async def _send(
        self,
        row: SubscriptionRow,
        update: UpdateMethodMultiParam[[SubscriptionWorkflow, Request], StatusSnapshot],
        request: Request,
        request_id: str | None = None,
    ) -> SubscriptionRow:
        """Send an update and read the row it wrote; with a request id, a retry of it gets the
        first outcome (Temporal de-duplicates updates by id within a workflow run)."""
        handle = self.handle(row.subscription_id)
        try:
            await self._bounded(
                handle.execute_update(
                    update,
                    request,
                    id=_update_id(request_id, update, request),
                    rpc_timeout=timedelta(seconds=self.temporal_deadline),
                )
            )
        except WorkflowUpdateFailedError as failure:
            refusal = _refusal(failure.cause)
            if _catching_up(row, refusal):
                raise BizError("SERVICE_UNAVAILABLE") from failure
            raise refusal from failure
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # workflow completed: nothing is live
                raise BizError("ALREADY_CANCELLED") from err
            raise
        fresh = await subscriptions.by_id(self.pool, row.subscription_id)
        assert fresh is not None
        return fresh

    async def cancel(
        self,
        *,
        workplace_id: str,
        service_id: str,
        actor_id: str,
        request_id: str | None = None,
    ) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, SUBSCRIPTION_CANCEL)
        row = await self._live(workplace_id, service_id)
        if row.state in ENDED_STATES and request_id is None:
            # With a request id Temporal decides: the first outcome if this is a retry.
            raise BizError("ALREADY_CANCELLED")
        request = ActorRequest(actor=actor_id)
        return await self._update(row, SubscriptionWorkflow.cancel, request, request_id)

    async def change_plan(
        self,
        *,
        workplace_id: str,
        service_id: str,
        actor_id: str,
        plan_id: str,
        when: Literal["now", "next_window"] = "now",
        confirm_course_reset: bool = False,
        request_id: str | None = None,
    ) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, PLAN_CHANGE)
        service = self.authz.service(service_id)
        if not service.has_plan_choice:
            raise BizError("PLAN_CHANGE_NOT_SUPPORTED", service_id=service_id)
        if service.plan(plan_id) is None:
            raise BizError("UNKNOWN_PLAN", plan_id=plan_id, service_id=service_id)
        row = await self._live(workplace_id, service_id)
        request = PlanChangeRequest(
            plan_id=plan_id,
            when=when,
            confirm_course_reset=confirm_course_reset,
            actor=actor_id,
        )
        return await self._update(row, SubscriptionWorkflow.change_plan, request, request_id)

    async def withdraw_plan_change(
        self,
        *,
        workplace_id: str,
        service_id: str,
        actor_id: str,
        request_id: str | None = None,
    ) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, PLAN_CHANGE)
        row = await self._live(workplace_id, service_id)
        request = ActorRequest(actor=actor_id)
        return await self._update(
            row, SubscriptionWorkflow.withdraw_plan_change, request, request_id
        )

    async def set_usage(
        self,
        *,
        workplace_id: str,
        service_id: str,
        actor_id: str,
        member_id: str,
        grant: bool,
        request_id: str | None = None,
    ) -> SubscriptionOut:
        change = UsageChange(workplace_id, service_id, actor_id, member_id, grant, request_id)
        return await self.view(await self.change_usage(change))

    async def change_usage(self, change: UsageChange) -> SubscriptionRow:
        """Grant or revoke a member's usage permission (R-PERM-2); the row it wrote."""
        wp, member = change.workplace_id, change.member_id
        await self.authz.require(wp, change.service_id, change.actor_id, USAGE_GRANT)
        if change.grant and await directory.member(self.pool, wp, member) is None:
            raise BizError("UNKNOWN_MEMBER", member_id=member)
        row = await self._live(wp, change.service_id)
        request = UsageRequest(member_id=member, actor=change.actor_id)
        grant, revoke = SubscriptionWorkflow.grant_usage, SubscriptionWorkflow.revoke_usage
        fresh = await self._send(row, grant if change.grant else revoke, request, change.request_id)
        if change.grant and await directory.member(self.pool, wp, member) is None:
            # The member left while this grant ran. The departure signals `member_left` only
            # where the read model shows a seat, and the seat may have been written after it
            # looked: the update has written it now, so drop it here (services/directory.py).
            await self.handle(row.subscription_id).signal(
                SubscriptionWorkflow.member_left, MemberEvent(member_id=member)
            )
        return fresh

    # ── reading ──────────────────────────────────────────────────────────────────────────────

    async def status(self, *, workplace_id: str, service_id: str, actor_id: str) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, USAGE_VIEW)
        return await self.view(await self._live(workplace_id, service_id))

    async def view(self, row: SubscriptionRow) -> SubscriptionOut:
        """A subscription's status, as `GET …/subscription` answers it (R-PLAN, R-CANCEL)."""
        service = self.authz.service(row.service_id)
        last_change = row.last_plan_change
        scheduled = row.scheduled_plan_change
        next_change = None
        if service.has_plan_choice and row.state == "active" and row.applied_at:
            next_change = plan_change_available_at(
                await self.clock(),
                row.applied_at,
                last_change["period"] if last_change else None,
                datetime.fromisoformat(scheduled["at"]) if scheduled else None,
            )
        return SubscriptionOut(
            subscription_id=row.subscription_id,
            workplace_id=row.workplace_id,
            service_id=row.service_id,
            state=row.state,
            plan_id=row.plan_id,
            applied_at=row.applied_at,
            activated_at=row.activated_at,
            cancelled_at=row.cancelled_at,
            cancel_reason=row.cancel_reason,
            # a cancelled subscription holds no seats (as its usage-permissions list)
            usage_permission_count=0 if row.state in ENDED_STATES else row.usage_permission_count,
            managers=await permissions.managers(self.pool, row.workplace_id, row.service_id),
            next_plan_change_at=next_change,
            scheduled_plan_change=ScheduledChangeOut.model_validate(scheduled)
            if scheduled
            else None,
            plan_change_notice=PlanChangeNotice.model_validate(last_change["notice"])
            if last_change and last_change["notice"]
            else None,
            data_deletion_at=row.data_deletion_at,
            final_invoice_at=row.final_invoice_at,
            purged_at=row.purged_at,
        )

    async def list_for(self, workplace_id: str) -> list[SubscriptionOut]:
        return [
            await self.view(r) for r in await subscriptions.for_workplace(self.pool, workplace_id)
        ]


def _unreachable(failure: BaseException) -> bool:
    """Temporal did not answer: whether the call took effect is unknown."""
    if isinstance(failure, BizError):
        return failure.code == "SERVICE_UNAVAILABLE"
    if isinstance(failure, RPCError):
        return failure.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
    return isinstance(failure, (TimeoutError, asyncio.CancelledError))


def derived_subscription_id(request_id: str | None, workplace_id: str, service_id: str) -> str:
    """A new subscription's id: derived from the request id when there is one (so a retried
    application finds its own reservation and workflow), else random."""
    if request_id is None:
        return f"sub_{uuid.uuid4().hex[:20]}"
    seed = f"apply\n{request_id}\n{workplace_id}\n{service_id}"
    return f"sub_{hashlib.sha256(seed.encode()).hexdigest()[:20]}"


def _same_application(row: SubscriptionRow, workplace_id: str, service_id: str) -> bool:
    """Whether an existing subscription with a derived id is this request's own (not one made
    with the same Idempotency-Key after its retention ran out)."""
    fresh = row.requested_at > datetime.now(UTC) - REQUEST_ID_RETENTION
    return fresh and row.workplace_id == workplace_id and row.service_id == service_id


def _update_id(request_id: str | None, update: Any, request: Request) -> str | None:
    """The Temporal update id of a request: the same for every retry, another for another
    update or another body sent with the same key."""
    if request_id is None:
        return None
    name = getattr(update, "__name__", str(update))
    digest = hashlib.sha256(f"{request_id}\n{name}\n{request.model_dump_json()}".encode())
    return f"{name}-{digest.hexdigest()[:32]}"


def _application(
    service: Service,
    subscription_id: str,
    workplace_id: str,
    plan_id: str,
    applicant_id: str,
    *,
    terms_version: str | None = None,
) -> Application:
    """What the workflow starts with: the plans' fees as they are now (fixed for its life)."""
    return Application(
        subscription_id=subscription_id,
        workplace_id=workplace_id,
        service_id=service.service_id,
        plan_id=plan_id,
        applicant_id=applicant_id,
        terms_version=terms_version or service.terms.version,
        fees={p.plan_id: PlanFees(base_fee=p.base_fee, seat_fee=p.seat_fee) for p in service.plans},
        auto_grant_all_members=service.auto_grant_all_members,
    )


@dataclass(frozen=True)
class UsageChange:
    """A grant (or, with `grant=False`, a revoke) of one member's usage permission."""

    workplace_id: str
    service_id: str
    actor_id: str
    member_id: str
    grant: bool
    request_id: str | None = None


def _catching_up(row: SubscriptionRow, refusal: BizError) -> bool:
    """The workflow refused as not yet active although the read model shows it active: the
    activation's commit (a local activity) landed, but the workflow task around it did not
    complete before its worker died, so the run is replaying it on another worker. That is a
    matter of seconds: a 503 to retry, not a 409 the admin cannot make sense of."""
    behind = refusal.code == "NOT_ACTIVE" and refusal.details.get("state") == "applied"
    return behind and row.state != "applied"


def _refusal(cause: BaseException | None) -> BizError:
    """Turn a workflow's refusal (ApplicationError typed with our code) back into a BizError."""
    if isinstance(cause, ApplicationError) and cause.type:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        try:
            return BizError(cause.type, details)
        except ValueError:
            pass
    raise RuntimeError(f"unexpected workflow failure: {cause!r}") from cause
