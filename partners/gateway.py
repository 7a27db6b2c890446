"""What the system needs from a partner service, whoever the partner is."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from pydantic import BaseModel
from temporalio.exceptions import ApplicationError


class PartnerRefusal(Exception):
    """The partner said no for good (R-LIFE-2): retrying will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PartnerUnavailable(ApplicationError):
    """A transient fault (a timeout, a dropped connection, 408, 429, 5xx): Temporal retries the
    activity with backoff, or after `retry_after` when the partner said when (Retry-After)."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message, type="PARTNER_UNAVAILABLE", next_retry_delay=retry_after)


# How long a call an operator has to settle waits before it is tried again: one the partner
# answered with 401 (PartnerMisconfigured), or a suspension or deletion it refused
# (PartnerRefusalUnsettled).
OPERATOR_RETRY = timedelta(minutes=2)


class PartnerMisconfigured(ApplicationError):
    """The partner did not accept our signature (401): a wrong secret or URL on one side. An
    operator fixes it; meanwhile the call is retried slowly, never taken as a refusal."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="PARTNER_MISCONFIGURED", next_retry_delay=OPERATOR_RETRY)


class PartnerRefusalUnsettled(ApplicationError):
    """The partner refused for good a call an ended subscription cannot do without: the
    suspension (R-CANCEL-1) or the data deletion (R-CANCEL-2). No state of the workflow takes
    such a refusal (versions 1-3 wait for the call to succeed), so it is shown to an operator
    (activities/effects.py, `refusal_awaits_operator`) and the call is retried slowly, never
    dropped, until the operator has settled it with the partner."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="PARTNER_REFUSAL_UNSETTLED", next_retry_delay=OPERATOR_RETRY)


class MemberCourses(BaseModel):
    member_id: str
    courses: list[str]


class DeletionCount(BaseModel):
    partner_objects: int
    details: dict[str, int]


class PartnerAccount(BaseModel):
    """An account the partner keeps for a subscription (and so for one workplace and service)."""

    subscription_id: str
    workplace_id: str
    service_id: str


class PartnerGateway(Protocol):
    async def provision(
        self,
        *,
        subscription_id: str,
        workplace_id: str,
        service_id: str,
        plan_id: str,
        at_iso: str,
    ) -> None:
        """Create the workplace's account and register single sign-on; idempotent."""

    async def suspend(self, *, subscription_id: str, at_iso: str) -> None:
        """Suspend the account at once (R-CANCEL-1); idempotent."""

    async def active_accounts(self, *, workplace_id: str | None = None) -> list[PartnerAccount]:
        """Every account not suspended (of one workplace, or all): the reconciler looks for
        accounts whose subscription is no longer live."""

    async def courses_in_progress(self, *, subscription_id: str) -> list[MemberCourses]: ...

    async def change_plan(
        self, *, subscription_id: str, plan_id: str, stop_courses: bool, at_iso: str
    ) -> int:
        """Switch the plan; with stop_courses, stop every course in progress. Returns how many."""

    async def reset_learning_records(
        self, *, subscription_id: str, member_id: str, at_iso: str | None = None
    ) -> int:
        """R-PERM-9: forget every learning record of the member; returns how many."""

    async def delete_data(self, *, subscription_id: str) -> DeletionCount:
        """R-CANCEL-2: delete every partner-side object of the subscription; idempotent."""
