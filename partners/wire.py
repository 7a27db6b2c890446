"""The partner protocol on the wire: paths, bodies, signature headers and idempotency keys.

Both ends use these: the HTTP gateway (partners/http.py) that calls a partner and the sandbox
partner server (partners/sandbox_server.py) that answers like one. docs/partners.md describes the
protocol for partners; docs/partner-openapi.json is generated from the sandbox server's app.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from partners.gateway import DeletionCount, MemberCourses, PartnerAccount

# A request signed longer ago than this (or this far ahead) is refused with 401.
SIGNATURE_TOLERANCE = timedelta(minutes=5)

# Answers that mean "the partner refuses this for good" (body {"reason"}).
REFUSAL_STATUSES = frozenset({400, 403, 404, 409, 422})
# Answers that mean "try again later" besides every 5xx.
TRANSIENT_STATUSES = frozenset({408, 429})
# 401: the request's signature was not accepted; a configuration fault on one side or the other.
UNAUTHORIZED = 401

# The operations, as named in idempotency keys, metrics and the sandbox's scripted faults.
OPERATIONS = (
    "provision",
    "suspend",
    "accounts",
    "courses",
    "change_plan",
    "reset_learning_records",
    "delete_data",
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProvisionRequest(_Body):
    workplace_id: str = Field(examples=["wp-1234"])
    service_id: str = Field(examples=["cartax"])
    plan_id: str = Field(examples=["cartax-basic"])
    at: str = Field(
        description="When bizsupport decided it (ISO 8601)", examples=["2026-03-01T09:00:00+09:00"]
    )


class AccountAnswer(_Body):
    account_id: str = Field(examples=["acct-7f3a"])


class AtRequest(_Body):
    at: str = Field(description="When bizsupport decided it (ISO 8601)")


class SuspendAnswer(_Body):
    subscription_id: str
    status: str = Field(examples=["suspended"])


class AccountsAnswer(_Body):
    accounts: list[PartnerAccount]


class CoursesAnswer(_Body):
    members: list[MemberCourses]


class PlanRequest(_Body):
    plan_id: str
    stop_courses: bool = Field(description="Stop (and reset) every course in progress")
    at: str


class PlanAnswer(_Body):
    stopped_courses: int


class ResetAnswer(_Body):
    deleted: int


class DeletionAnswer(DeletionCount):
    model_config = ConfigDict(extra="forbid")


class Refusal(_Body):
    reason: str = Field(
        description="Why, for the admin to read (Korean is fine)",
        examples=["사업자 정보 확인 불가"],
    )


def idempotency_key(operation: str, *parts: str) -> str:
    """The `webhook-id` of a business action: the same action always carries the same key, so a
    partner that sees it again answers as it did the first time (`provision:sub-1`)."""
    return ":".join((operation, *parts))
