"""The workflow's effects, one input model each (version 3; docs/architecture.md, "Versions").

Each activity of `activities/subscription.py` takes exactly one of these, so the workflow's call
and the activity's signature are checked by mypy together. Versions 1 and 2 call the same effects
under their old names with the same values as positional arguments, in field order (`args`;
`activities/legacy.py`): the field order here is that argument order and must not change while a
version-1 or version-2 run remains.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from domain.subscription import Application, Publication


class EffectInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def args(self) -> list[Any]:
        """The same values as the positional arguments of the version-1/2 activity."""
        return [getattr(self, name) for name in type(self).model_fields]


class Apply(EffectInput):
    """Version 5: record the application and announce it, then create the partner account
    (R-APPLY-2, -4; R-LIFE-4; R-LIFE-2), in one activity."""

    application: Application
    at: datetime
    announcement: Publication  # the "applied" snapshot and audit entry


class RecordApplication(EffectInput):
    """Store the terms agreement and the applicant's manager role (R-APPLY-2, -4)."""

    application: Application
    at: datetime


class Provision(EffectInput):
    """Create the partner account and register SSO (R-LIFE-2)."""

    application: Application
    at: datetime


class PresentMembers(EffectInput):
    workplace_id: str


class SuspendPartnerAccount(EffectInput):
    subscription_id: str
    at: datetime


class CoursesInProgress(EffectInput):
    subscription_id: str


class ChangePartnerPlan(EffectInput):
    subscription_id: str
    plan_id: str
    stop_courses: bool
    at: datetime


class ResetLearningRecords(EffectInput):
    subscription_id: str
    member_id: str


class DeleteSubscriptionData(EffectInput):
    """R-CANCEL-2: partner-side data, then local usage data and the deletion record."""

    subscription_id: str
    at: datetime
