"""What the services answer: typed models shared by the API (its response bodies), the console
and the CLI.

Times serialize as ISO 8601 in Asia/Seoul with their offset; money as strings of whole won.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from domain.audit import AuditAction
from domain.calendar import SEOUL
from domain.subscription import PlanChangeNotice
from statemachines.lifecycle import StateName

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


class Out(BaseModel):
    # from_attributes: built from store rows (dataclasses) as well as from dicts
    model_config = ConfigDict(extra="ignore", from_attributes=True)


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


CardState = Literal["not_applied"] | StateName
CardButton = Literal["apply", "browse", "manage", "inquire"]


class HomeCard(Out):
    service_id: str
    name_ko: str
    name_en: str
    state: CardState
    subscription_id: str | None
    buttons: list[CardButton]
    manages: bool = Field(
        default=True, description="Whether the caller manages this service (R-PERM-3)."
    )


class ScheduledChangeOut(Out):
    plan_id: str
    at: Time
    confirm_course_reset: bool = False
    requested_by: str | None = None


class SubscriptionOut(Out):
    subscription_id: str
    workplace_id: str
    service_id: str
    state: StateName
    plan_id: str
    applied_at: Time | None
    activated_at: Time | None
    cancelled_at: Time | None
    cancel_reason: str | None
    usage_permission_count: int
    managers: list[str]
    next_plan_change_at: Time | None
    scheduled_plan_change: ScheduledChangeOut | None
    # Older read-model rows hold the notice as English text: PlanChangeNotice reads it as a code.
    plan_change_notice: PlanChangeNotice | None
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
    state: StateName
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
    final_charge: EstimateOut | None = Field(
        default=None,
        description="After cancellation: the final invoice still to come, until it is issued.",
    )


class AuditEntryOut(Out):
    audit_id: int
    at: Time
    service_id: str | None
    subscription_id: str | None
    actor: str
    action: AuditAction
    outcome: str
    details: dict[str, Any]


class AuditLogOut(Out):
    entries: list[AuditEntryOut]


class EventOut(Out):
    """An event (R-EVENT-1; docs/events.md): also the body of every webhook delivery."""

    id: str = Field(description="Stable: the same event keeps it across retries and resends.")
    type: str = Field(description="What happened (docs/events.md lists the types).")
    created_at: str = Field(description="When the decision was made, Seoul time with offset.")
    workplace_id: str
    service_id: str | None
    subscription_id: str | None = Field(description="None for a workplace's own events.")
    seq: int = Field(
        description="1, 2, 3… per subscription (per workplace for events of no subscription), "
        "in the order the decisions were made."
    )
    data: dict[str, Any] = Field(
        description="What a receiver needs without calling back; money as whole-won strings."
    )


class EventFeedOut(Out):
    """A page of the event feed (R-EVENT-3): oldest first after the cursor."""

    events: list[EventOut]
    next_after: str | None = Field(
        description="Pass as `after` for the next page: the last event's id, or the `after` "
        "given when the page is empty."
    )
    has_more: bool = Field(description="More events are readable now (ask again at once).")


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


class SessionOut(Out):
    """A console session: the member it belongs to (as the directory says now) and the CSRF
    token its forms send back."""

    member: MemberOut
    csrf_token: str


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
    launch_url: str = Field(
        description="Where to POST the token (form field `token`); the token is never in a URL."
    )
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


# ── a service as one person sees it ──────────────────────────────────────────────────────────


class ServiceManager(Out):
    """Someone who manages a service, and with which detail permissions (R-PERM-3)."""

    member_id: str
    name: str | None
    role: str
    permissions: list[str]


class ServiceOverview(Out):
    """One service as the person asking may see and act on it (the console's service page)."""

    service_id: str
    role: str
    held: list[str] = Field(description="The caller's management permissions on the service.")
    manages: bool = Field(description="False: no permission here; only the guide is shown.")
    status: SubscriptionOut | None
    usage: UsagePermissionsOut | None
    managers: list[ServiceManager]
    pending_charge: EstimateOut | None = Field(
        description="After cancellation, the final charge until its invoice is issued."
    )
    can_apply: bool
    can_grant: bool
    can_change_plan: bool
    can_cancel: bool
    can_view_fees: bool


# ── operations ───────────────────────────────────────────────────────────────────────────────


class ReservationsReconciled(Out):
    """Reservations without a workflow (a crash between the reservation and the start)."""

    examined: int = Field(description="Reservations in `applied` whose workflow never published.")
    started: int = Field(description="Workflows started for reservations that had none.")
    already_running: int = Field(description="Reservations whose workflow exists (only slow).")
    failed: int = Field(description="Reservations left for the next pass (Temporal unreachable).")


class ReadModelReconciled(Out):
    """Read-model rows compared with their workflow's `status` (the workflow is the truth)."""

    examined: int = Field(description="Rows compared: stale in a transient state, or quiet long.")
    repaired: int = Field(description="Rows behind their workflow, rewritten from its snapshot.")
    in_step: int = Field(description="Rows that agreed with their workflow.")
    ahead: int = Field(
        description="Rows newer than their workflow's snapshot (e.g. a reset workflow): left as "
        "they are, logged."
    )
    workflow_missing: int = Field(description="Rows whose workflow Temporal does not know.")
    failed: int = Field(description="Rows left for the next pass (Temporal unreachable).")


class PartnerAccountsReconciled(Out):
    """Partner accounts still active although their subscription is not live."""

    examined: int = Field(description="Active partner accounts looked at.")
    suspended: int = Field(description="Accounts of an ended subscription, suspended now.")
    unknown: int = Field(
        description="Accounts of a subscription the read model does not know: logged, untouched."
    )
    failed: int = Field(description="Accounts left for the next pass (the partner failed).")


class ReconcileOut(Out):
    """What one reconciliation pass did (`python -m starter.cli reconcile`)."""

    reservations: ReservationsReconciled
    read_model: ReadModelReconciled
    partner_accounts: PartnerAccountsReconciled


# ── webhooks (R-EVENT-2) ─────────────────────────────────────────────────────────────────────


class WebhookEndpointOut(Out):
    """An endpoint as listed: never its secret."""

    endpoint_id: str
    url: str
    types: list[str] | None = Field(description="The event types it receives; null: all.")
    description: str
    status: Literal["enabled", "disabled"] = Field(
        description="disabled: its deliveries kept failing for 3 days (nothing more is sent)."
    )
    created_at: Time
    status_changed_at: Time | None = None
    failing_since: Time | None = Field(
        default=None, description="The first failure since its last success."
    )


class WebhookEndpointsOut(Out):
    endpoints: list[WebhookEndpointOut]


class WebhookSecretOut(Out):
    """A secret, shown once: when the endpoint is created and when the secret is rotated."""

    endpoint_id: str
    secret: str = Field(description="whsec_<base64>: keep it; it is not shown again.")


class WebhookEndpointCreatedOut(WebhookSecretOut):
    url: str
    types: list[str] | None
    created_at: Time


class WebhookRotatedOut(WebhookSecretOut):
    previous_secret_retires_at: Time = Field(
        description="Until then the previous secret signs alongside the new one."
    )


class WebhookDeliveryOut(Out):
    delivery_id: str
    event_id: str = Field(description="The `webhook-id` it is sent with, also on a resend.")
    event_type: str
    subscription_id: str | None
    seq: int
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: Time | None
    next_attempt_at: Time | None
    created_at: Time


class WebhookDeliveriesOut(Out):
    deliveries: list[WebhookDeliveryOut]
    next_before: str | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )
