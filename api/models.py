"""Request and response shapes of the HTTP API (API.md), so /openapi.json documents them.

Requests forbid unknown fields (a typo is a 400, not silently ignored) and are strict: where the
contract says boolean, integer, number or string, any other JSON type is a 400 naming the field
(`"agree_terms": "yes"` is not consent, `"seconds": "60"` is not a number). Responses serialize
times as ISO 8601 in Asia/Seoul with their offset and money as strings of whole won.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

SEOUL = ZoneInfo("Asia/Seoul")

Time = Annotated[
    datetime,
    PlainSerializer(lambda d: d.astimezone(SEOUL).isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Money = Annotated[
    Decimal,
    PlainSerializer(lambda d: str(int(d)), return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^-?[0-9]+$", "examples": ["12000"]}),
]
State = Literal["applied", "active", "plan_changing", "cancelled", "purged"]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class Request(BaseModel):
    # strict=True: no coercion between JSON types. A request field that must parse from a JSON
    # string (a datetime, a date, an Enum) needs `Field(strict=False)` of its own.
    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


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


# ── catalog ──────────────────────────────────────────────────────────────────────────────────


class PlanOut(Out):
    plan_id: str
    name: str
    name_ko: str
    name_en: str
    base_fee: Money
    seat_fee: Money


class HowToOut(Out):
    label: str
    description: str
    action: str


class TermsOut(Out):
    version: str
    text: str


class ServiceOut(Out):
    service_id: str
    name: str
    name_ko: str
    name_en: str
    introduction: str
    pricing_text: str
    how_to_use: list[HowToOut]
    notes: list[str]
    homepage_url: str
    inquiry_url: str
    terms: TermsOut
    terms_version: str
    plans: list[PlanOut]
    has_plan_choice: bool
    auto_grant_all_members: bool
    sample_prices_notice: str | None = None


# ── business support ─────────────────────────────────────────────────────────────────────────


class HomeCard(Out):
    service_id: str
    name_ko: str
    name_en: str
    state: Literal["not_applied", "applied", "active", "plan_changing", "cancelled", "purged"]
    subscription_id: str | None
    buttons: list[Literal["apply", "browse", "manage", "inquire"]]


class ScheduledChangeOut(Out):
    plan_id: str
    at: Time
    confirm_course_reset: bool = False
    requested_by: str | None = None


class SubscriptionOut(Out):
    subscription_id: str
    workplace_id: str
    service_id: str
    state: State
    plan_id: str
    applied_at: Time | None
    activated_at: Time | None
    cancelled_at: Time | None
    cancel_reason: str | None
    usage_permission_count: int
    managers: list[str]
    next_plan_change_at: Time | None
    scheduled_plan_change: ScheduledChangeOut | None
    plan_change_notice: str | None
    data_deletion_at: Time | None
    final_invoice_at: Time | None
    purged_at: Time | None


class HolderOut(Out):
    member_id: str
    name: str | None
    granted_at: Time


class UsagePermissionsOut(Out):
    service_id: str
    subscription_id: str
    state: State
    count: int
    holders: list[HolderOut]


class PermissionHolder(Out):
    member_id: str
    name: str | None
    implicit: bool


class PermissionListing(Out):
    permission: str
    holders: list[PermissionHolder]


class ServicePermissions(Out):
    service_id: str
    permissions: list[PermissionListing]


class ManagementPermissionsOut(Out):
    services: list[ServicePermissions]


class InvoiceLineOut(Out):
    plan_id: str
    from_: date = Field(
        validation_alias=AliasChoices("from", "from_day"), serialization_alias="from"
    )
    to: date = Field(validation_alias=AliasChoices("to", "to_day"), serialization_alias="to")
    days: int
    seats: int
    amount: Money


class EstimateOut(Out):
    subscription_id: str | None = None
    period: str
    lines: list[InvoiceLineOut]
    subtotal: Money
    vat: Money
    total: Money


class InvoiceOut(EstimateOut):
    invoice_id: str
    subscription_id: str | None
    issued_at: Time


class InvoicesOut(Out):
    invoices: list[InvoiceOut]
    estimate: EstimateOut | None


class AuditEntryOut(Out):
    audit_id: int
    at: Time
    service_id: str | None
    subscription_id: str | None
    actor: str
    action: str
    outcome: str
    details: dict[str, Any]


class AuditLogOut(Out):
    entries: list[AuditEntryOut]


# ── directory ────────────────────────────────────────────────────────────────────────────────


class MemberOut(Out):
    workplace_id: str
    member_id: str
    login_id: str
    name: str
    role: Literal["member", "admin", "representative_admin"]
    joined_at: Time
    left_at: Time | None


class NoticeOut(Out):
    notice_id: int
    kind: str
    service_id: str | None
    subscription_id: str | None
    message: str
    message_ko: str
    details: dict[str, Any]
    created_at: Time


class WorkplaceInfo(Out):
    workplace_id: str
    name: str
    created_at: Time
    updated_at: Time


class WorkplaceOut(Out):
    workplace: WorkplaceInfo
    created: bool
    representative_admin: MemberOut
    notices: list[NoticeOut]


class MemberSyncOut(Out):
    member: MemberOut
    changes: list[str]
    notices: list[NoticeOut]


class DroppedPermission(Out):
    service_id: str
    permission: str


class MemberLeftOut(Out):
    member: MemberOut
    dropped_management_permissions: list[DroppedPermission]


# ── member ───────────────────────────────────────────────────────────────────────────────────


class MenuService(Out):
    service_id: str
    name: str
    name_en: str | None = None


class MenuOut(Out):
    services: list[MenuService]
    business_support_admin: bool
    notices: list[NoticeOut]


class LaunchOut(Out):
    launch_url: str
    token: str
    expires_at: Time


class VerifiedOut(Out):
    member_id: str
    workplace_id: str
    service_id: str
    subscription_id: str | None = None


# ── operations ───────────────────────────────────────────────────────────────────────────────


class ClockOut(Out):
    now: Time


class Health(Out):
    status: Literal["ok"]
