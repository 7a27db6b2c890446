"""Request bodies of the HTTP API (docs/rules.md, "HTTP contract"), so /openapi.json documents them.

Requests forbid unknown fields (a typo is a 400, not silently ignored) and are strict: where the
contract says boolean, integer, number or string, any other JSON type is a 400 naming the field
(`"agree_terms": "yes"` is not consent, `"seconds": "60"` is not a number). The response bodies
are the service layer's own models (`services.models`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=1, max_length=200)]


class Request(BaseModel):
    # strict=True: no coercion between JSON types. A request field that must parse from a JSON
    # string (a datetime, a date, an Enum) needs `Field(strict=False)` of its own.
    model_config = ConfigDict(extra="forbid", strict=True)


# ── requests ─────────────────────────────────────────────────────────────────────────────────


class Person(Request):
    member_id: Id
    login_id: Id
    name: Id


class WorkplaceIn(Request):
    name: Id
    representative_admin: Person


class MemberIn(Request):
    login_id: Id
    name: Id
    role: Literal["member", "admin", "representative_admin"]


class ApplyIn(Request):
    plan_id: Id | None = None
    terms_version: Id
    agree_terms: bool = Field(description="Must be true (R-APPLY-2).")


class PlanChangeIn(Request):
    plan_id: Id
    when: Literal["now", "next_window"] = "now"
    confirm_course_reset: bool = False


class ManagementPermissionsIn(Request):
    permissions: list[Annotated[str, Field(max_length=64)]] = Field(
        max_length=16,
        description="usage.view, usage.grant, plan.change, subscription.cancel; [] removes all.",
    )


class VerifyIn(Request):
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class AdvanceIn(Request):
    seconds: Annotated[float, Field(gt=0, le=400 * 86_400)] = Field(
        description="How far to move the sandbox clock (at most 400 days)."
    )


class WebhookEndpointIn(Request):
    url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(
        description="https:// and a public address (loopback http:// on a local stack only)."
    )
    types: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="Event types to receive; leave out for every type.",
    )
    description: Annotated[str, Field(max_length=200)] = ""
