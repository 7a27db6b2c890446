"""The subscription service: the one place admin actions are checked and sent to workflows.

The API, the console and the CLI all call this. It checks what needs PostgreSQL (directory,
role, permission: R-ERR-3), reserves the (workplace, service) slot, starts the workflow, and
sends updates; the workflow's validators check its own state. Refusals are `BizError`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from domain.billing import PlanFees
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
    ActorRequest,
    Application,
    MemberEvent,
    PlanChangeRequest,
    StatusSnapshot,
    SubscriptionData,
    SubscriptionInput,
    UsageRequest,
)
from services.authz import Authz
from services.clock import Clock, wall_clock
from services.models import SubscriptionOut
from statemachines.lifecycle import ENDED_STATES
from store import directory, permissions, subscriptions
from store.db import Pool
from workflows import search_attributes as sa
from workflows.subscription import SubscriptionWorkflow, workflow_id

# A reservation younger than this may still be starting its workflow: not an orphan yet.
ORPHAN_GRACE = timedelta(seconds=30)

Request = TypeVar("Request", ActorRequest, PlanChangeRequest, UsageRequest)


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
    ) -> None:
        self.pool = pool
        self.client = client
        self.catalog = catalog
        self.task_queue = task_queue
        self.clock = clock
        self.history_event_limit = history_event_limit
        self.authz = Authz(pool, catalog)

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
    ) -> SubscriptionOut:
        service = self.authz.service(service_id)
        await self.authz.representative(workplace_id, actor_id)
        if not agree_terms:
            raise BizError("TERMS_NOT_AGREED")
        if terms_version != service.terms.version:
            raise BizError("TERMS_VERSION_OUTDATED", current_version=service.terms.version)
        plan = self._chosen_plan(service, plan_id)
        subscription_id = f"sub_{uuid.uuid4().hex[:20]}"
        try:
            await subscriptions.reserve(
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
        application = _application(service, subscription_id, workplace_id, plan, actor_id)
        try:
            await self._start(application)
        except WorkflowAlreadyStartedError:
            pass  # a concurrent resume of this reservation started it: it is ours all the same
        except BaseException:
            await subscriptions.release(self.pool, subscription_id)
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
        data = SubscriptionData(application=application, plan_id=application.plan_id)
        await self.client.start_workflow(
            SubscriptionWorkflow.run,
            SubscriptionInput(data=data, history_event_limit=self.history_event_limit),
            id=workflow_id(application.subscription_id),
            task_queue=self.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=sa.initial(
                application.workplace_id, application.service_id, application.plan_id
            ),
        )

    async def _resume_orphaned_reservation(self, workplace_id: str, service_id: str) -> None:
        """A crash between reservation and start leaves a slot with no workflow: start it now."""
        row = await subscriptions.current(self.pool, workplace_id, service_id)
        if row is None or row["status_seq"] != 0:
            return
        if datetime.now(UTC) - row["requested_at"] < ORPHAN_GRACE:
            return  # its own application may still be starting it: not an orphan yet
        try:
            await self.handle(row["subscription_id"]).describe()
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                return
        service = self.authz.service(service_id)
        with contextlib.suppress(WorkflowAlreadyStartedError):  # someone else resumed it
            await self._start(
                _application(
                    service,
                    row["subscription_id"],
                    workplace_id,
                    row["plan_id"],
                    row["applicant_id"],
                    terms_version=row["terms_version"],
                )
            )

    async def _settled(self, subscription_id: str, wait_seconds: float) -> SubscriptionOut:
        """Give provisioning a moment so the answer usually says `active` (or why not)."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            row = await subscriptions.by_id(self.pool, subscription_id)
            assert row is not None
            if row["state"] != "applied" or asyncio.get_running_loop().time() > deadline:
                return await self.view(row)
            await asyncio.sleep(0.05)

    # ── actions on a live subscription ───────────────────────────────────────────────────────

    def handle(self, subscription_id: str) -> WorkflowHandle[SubscriptionWorkflow, StatusSnapshot]:
        return self.client.get_workflow_handle_for(
            SubscriptionWorkflow.run, workflow_id(subscription_id)
        )

    async def _live(self, workplace_id: str, service_id: str) -> dict[str, Any]:
        self.authz.service(service_id)
        row = await subscriptions.current(self.pool, workplace_id, service_id)
        if row is None:
            raise BizError("NO_SUBSCRIPTION", service_id=service_id)
        return row

    async def _update(
        self,
        row: dict[str, Any],
        update: UpdateMethodMultiParam[[SubscriptionWorkflow, Request], StatusSnapshot],
        request: Request,
    ) -> SubscriptionOut:
        handle = self.handle(row["subscription_id"])
        try:
            await handle.execute_update(update, request)
        except WorkflowUpdateFailedError as failure:
            raise _refusal(failure.cause) from failure
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # workflow completed: nothing is live
                raise BizError("ALREADY_CANCELLED") from err
            raise
        fresh = await subscriptions.by_id(self.pool, row["subscription_id"])
        assert fresh is not None
        return await self.view(fresh)

    async def cancel(self, *, workplace_id: str, service_id: str, actor_id: str) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, SUBSCRIPTION_CANCEL)
        row = await self._live(workplace_id, service_id)
        if row["state"] in ENDED_STATES:
            raise BizError("ALREADY_CANCELLED")
        return await self._update(row, SubscriptionWorkflow.cancel, ActorRequest(actor=actor_id))

    async def change_plan(
        self,
        *,
        workplace_id: str,
        service_id: str,
        actor_id: str,
        plan_id: str,
        when: Literal["now", "next_window"] = "now",
        confirm_course_reset: bool = False,
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
            confirm_course_reset=confirm_course_reset,  # type: ignore[arg-type]
            actor=actor_id,
        )
        return await self._update(row, SubscriptionWorkflow.change_plan, request)

    async def withdraw_plan_change(
        self, *, workplace_id: str, service_id: str, actor_id: str
    ) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, PLAN_CHANGE)
        row = await self._live(workplace_id, service_id)
        return await self._update(
            row, SubscriptionWorkflow.withdraw_plan_change, ActorRequest(actor=actor_id)
        )

    async def set_usage(
        self, *, workplace_id: str, service_id: str, actor_id: str, member_id: str, grant: bool
    ) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, USAGE_GRANT)
        if grant and await directory.member(self.pool, workplace_id, member_id) is None:
            raise BizError("UNKNOWN_MEMBER", member_id=member_id)
        row = await self._live(workplace_id, service_id)
        request = UsageRequest(member_id=member_id, actor=actor_id)
        update = SubscriptionWorkflow.grant_usage if grant else SubscriptionWorkflow.revoke_usage
        answer = await self._update(row, update, request)
        if grant and await directory.member(self.pool, workplace_id, member_id) is None:
            # The member left while this grant ran. The departure signals `member_left` only
            # where the read model shows a seat, and the seat may have been written after it
            # looked: the update has written it now, so drop it here (services/directory.py).
            await self.handle(row["subscription_id"]).signal(
                SubscriptionWorkflow.member_left, MemberEvent(member_id=member_id)
            )
        return answer

    # ── reading ──────────────────────────────────────────────────────────────────────────────

    async def status(self, *, workplace_id: str, service_id: str, actor_id: str) -> SubscriptionOut:
        await self.authz.require(workplace_id, service_id, actor_id, USAGE_VIEW)
        return await self.view(await self._live(workplace_id, service_id))

    async def view(self, row: dict[str, Any]) -> SubscriptionOut:
        """The API's subscription status (API.md: GET …/subscription)."""
        service = self.authz.service(row["service_id"])
        last_change = row["last_plan_change"] or {}
        next_change = None
        if service.has_plan_choice and row["state"] == "active" and row["applied_at"]:
            scheduled = row["scheduled_plan_change"]
            next_change = plan_change_available_at(
                await self.clock(),
                row["applied_at"],
                last_change.get("period"),
                datetime.fromisoformat(scheduled["at"]) if scheduled else None,
            )
        return SubscriptionOut(
            subscription_id=row["subscription_id"],
            workplace_id=row["workplace_id"],
            service_id=row["service_id"],
            state=row["state"],
            plan_id=row["plan_id"],
            applied_at=row["applied_at"],
            activated_at=row["activated_at"],
            cancelled_at=row["cancelled_at"],
            cancel_reason=row["cancel_reason"],
            usage_permission_count=row["usage_permission_count"],
            managers=await permissions.managers(self.pool, row["workplace_id"], row["service_id"]),
            next_plan_change_at=next_change,
            scheduled_plan_change=row["scheduled_plan_change"],
            plan_change_notice=last_change.get("notice"),
            data_deletion_at=row["data_deletion_at"],
            final_invoice_at=row["final_invoice_at"],
            purged_at=row["purged_at"],
        )

    async def list_for(self, workplace_id: str) -> list[SubscriptionOut]:
        return [
            await self.view(r) for r in await subscriptions.for_workplace(self.pool, workplace_id)
        ]


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


def _refusal(cause: BaseException | None) -> BizError:
    """Turn a workflow's refusal (ApplicationError typed with our code) back into a BizError."""
    if isinstance(cause, ApplicationError) and cause.type:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        try:
            return BizError(cause.type, details)
        except ValueError:
            pass
    raise RuntimeError(f"unexpected workflow failure: {cause!r}") from cause
