"""What each decision announces (R-EVENT-1; docs/events.md): one audit entry, one event.

Pure: a decision is known by its audit entry (the action code and its details), the subscription's
snapshot after it and, for a month's invoice, the invoice as `GET …/invoices` shows it. This
module says which event type that is and what its `data` carries. `store.subscriptions` and
`store.access` write the event in the decision's own transaction (`store.events.append`).

`data` is self-contained: a receiver learns what happened without calling back (the state, the
plan, the service, who acted, the times), instants in Seoul time with their offset and money as
whole-won strings, as everywhere in the API.

Every audit action is either announced (`EVENT_TYPE_OF`; the types: domain/event_types.py) or
listed in `EVENTLESS` with the reason; a test keeps the two complete and apart, so a new
action code cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.audit import AuditAction
from domain.calendar import SEOUL
from domain.event_types import EventType
from domain.subscription import AuditEntry, StatusSnapshot

EVENT_TYPE_OF: dict[AuditAction, EventType] = {
    "applied": "subscription.applied",
    "activated": "subscription.activated",
    "refused": "subscription.provisioning_failed",
    "cancelled": "subscription.cancelled",
    "purged": "subscription.purged",
    "plan_change_started": "subscription.plan_change_started",
    "plan_changed": "subscription.plan_changed",
    "plan_change_failed": "subscription.plan_change_failed",
    "plan_change_scheduled": "subscription.plan_change_scheduled",
    "plan_change_withdrawn": "subscription.plan_change_withdrawn",
    "plan_change_dropped": "subscription.plan_change_dropped",
    "usage_granted": "usage_permission.granted",
    "usage_revoked": "usage_permission.revoked",
    "learning_records_reset": "usage_permission.learning_records_reset",
    "invoice_issued": "invoice.issued",
    "billing_closed": "subscription.billing_closed",
    "deletion_upcoming": "subscription.deletion_upcoming",
    "management_permissions_changed": "management_permission.changed",
    "management_permissions_dropped": "management_permission.changed",
}

_DIRECTORY = (
    "a fact the suite's directory told bizsupport (the suite is its source and knows it already);"
    " what it changes here is announced by the decisions it causes (usage_permission.revoked,"
    " usage_permission.learning_records_reset, management_permission.changed)"
)
_REPAIR = (
    "a repair of bizsupport's own copy (read model, reservation, partner account), not a new"
    " decision: the decision it brings back in line was announced by its workflow"
)
_OPERATOR = (
    "an alert for bizsupport's operators (a partner refused a suspension or a deletion that must"
    " happen); nothing was decided yet: the step is retried, and announced when it is done"
)
_WEBHOOK = (
    "the configuration of event delivery itself, not a business decision (and announcing it"
    " through the endpoints it configures would be circular)"
)
EVENTLESS: dict[AuditAction, str] = {
    "member_joined": _DIRECTORY,
    "member_left": _DIRECTORY,
    "member_role_changed": _DIRECTORY,
    "member_renamed": _DIRECTORY,
    "login_id_changed": _DIRECTORY,
    "representative_changed": _DIRECTORY,
    "workplace_created": _DIRECTORY,
    "workplace_renamed": _DIRECTORY,
    "reservation_resumed": _REPAIR,
    "read_model_repaired": _REPAIR,
    "partner_account_suspended": _REPAIR,
    "partner_refused": _OPERATOR,
    "webhook_endpoint_created": _WEBHOOK,
    "webhook_endpoint_deleted": _WEBHOOK,
    "webhook_endpoint_disabled": _WEBHOOK,
    "webhook_secret_rotated": _WEBHOOK,
}

MANAGEMENT_ACTIONS: frozenset[AuditAction] = frozenset(
    {"management_permissions_changed", "management_permissions_dropped"}
)


@dataclass(frozen=True)
class Event:
    """An event before it is written: its type and its `data` (the rest of the body, id, seq,
    created_at and the ids, comes from where it is written)."""

    type: EventType
    data: dict[str, Any]


def shown_time(instant: datetime | None) -> str | None:
    """An instant as the API shows it: ISO 8601 in Seoul time with its offset."""
    return None if instant is None else instant.astimezone(SEOUL).isoformat()


def subscription_event(
    audit: AuditEntry, snapshot: StatusSnapshot, invoice: dict[str, Any] | None = None
) -> Event | None:
    """The event a workflow's decision announces, or None for an action that announces nothing
    (`EVENTLESS`). `invoice`: for `invoice_issued`, the invoice as `GET …/invoices` shows it
    (`domain.billing.issued_invoice_json`), which is then the event's whole `data`."""
    type = EVENT_TYPE_OF.get(audit.action)
    if type is None:
        return None
    if audit.action in MANAGEMENT_ACTIONS:
        raise ValueError(f"{audit.action} belongs to a workplace, not to a subscription")
    if audit.action == "invoice_issued":
        if invoice is None:
            raise ValueError("an invoice_issued event carries its invoice")
        return Event(type, dict(invoice))
    s, d = snapshot, audit.details
    data: dict[str, Any] = {
        "subscription_id": s.subscription_id,
        "service_id": s.service_id,
        "state": s.state,
        "previous_state": d.get("previous_state"),
        "plan_id": s.plan_id,
        "usage_permission_count": s.usage_permission_count,
        "actor": audit.actor,
        "at": shown_time(audit.at),
    }
    data.update(_DETAILS[audit.action](s, d))
    return Event(type, data)


def management_event(audit: AuditEntry, service_id: str) -> Event:
    """`management_permission.changed`: an admin's management permissions on a service changed,
    set by the representative admin or dropped by the directory (demotion, leaving)."""
    d = audit.details
    held: object
    added: object
    removed: object
    if audit.action == "management_permissions_changed":
        held, added, removed, reason = d["permissions"], d["added"], d["removed"], "set"
    elif audit.action == "management_permissions_dropped":
        held, added, removed, reason = [], [], d["permissions"], str(d["reason"])
    else:
        raise ValueError(f"{audit.action} is not a management-permission change")
    return Event(
        "management_permission.changed",
        {
            "service_id": service_id,
            "member_id": d["member_id"],
            "permissions": sorted(_strings(held)),
            "added": sorted(_strings(added)),
            "removed": sorted(_strings(removed)),
            "reason": reason,
            "actor": audit.actor,
            "at": shown_time(audit.at),
        },
    )


def _strings(value: object) -> list[str]:
    assert isinstance(value, list), value
    return [str(v) for v in value]


Details = dict[str, object]


def _applied(s: StatusSnapshot, d: Details) -> Details:
    return {"applied_at": shown_time(s.applied_at), "terms_version": d.get("terms_version")}


def _activated(s: StatusSnapshot, d: Details) -> Details:
    # R-PERM-6: a service that grants every member automatically names them here.
    return {
        "activated_at": shown_time(s.activated_at),
        "usage_granted": d.get("usage_granted", []),
        "automatic": bool(d.get("automatic", False)),
    }


def _refused(s: StatusSnapshot, d: Details) -> Details:
    return {"reason": d.get("reason"), "cancelled_at": shown_time(s.cancelled_at)}


def _cancelled(s: StatusSnapshot, d: Details) -> Details:
    return {
        "cancelled_at": shown_time(s.cancelled_at),
        "data_deletion_at": shown_time(s.data_deletion_at),
        "final_invoice_at": shown_time(s.final_invoice_at),
        "dropped_plan_change": d.get("dropped_plan_change"),
    }


def _purged(s: StatusSnapshot, d: Details) -> Details:
    return {"purged_at": shown_time(s.purged_at), "removed_objects": d.get("removed_objects")}


def _plan_change_started(s: StatusSnapshot, d: Details) -> Details:
    return {"from_plan": s.plan_id, "to_plan": d.get("plan_id")}


def _plan_changed(s: StatusSnapshot, d: Details) -> Details:
    return {
        "from_plan": d.get("from_plan"),
        "to_plan": d.get("to_plan"),
        "stopped_courses": d.get("stopped_courses", 0),
    }


def _plan_change_failed(s: StatusSnapshot, d: Details) -> Details:
    return {"to_plan": d.get("plan_id"), "reason": d.get("reason")}


def _plan_change_scheduled(s: StatusSnapshot, d: Details) -> Details:
    scheduled = s.scheduled_plan_change
    if scheduled is None:  # not in the snapshot: what the details say
        return {"to_plan": d.get("plan_id"), "scheduled_at": None, "confirm_course_reset": False}
    return {
        "to_plan": scheduled.plan_id,
        "scheduled_at": shown_time(scheduled.at),
        "confirm_course_reset": scheduled.confirm_course_reset,
    }


def _plan_change_withdrawn(s: StatusSnapshot, d: Details) -> Details:
    return {"to_plan": d.get("plan_id")}


def _plan_change_dropped(s: StatusSnapshot, d: Details) -> Details:
    notice = s.plan_change_notice
    return {
        "to_plan": d.get("plan_id"),
        "reason": notice.code if notice is not None else d.get("reason"),
        "members": d.get("members", []),  # R-PLAN-10: who has courses in progress, if that is why
    }


def _usage(s: StatusSnapshot, d: Details) -> Details:
    return {
        "member_id": d.get("member_id"),
        "automatic": bool(d.get("automatic", False)),
        "reason": d.get("reason"),
    }


def _learning_records_reset(s: StatusSnapshot, d: Details) -> Details:
    return {
        "member_id": d.get("member_id"),
        "login_id": d.get("login_id"),
        "records": d.get("records"),
    }


def _billing_closed(s: StatusSnapshot, d: Details) -> Details:
    return {"period": d.get("period")}


def _deletion_upcoming(s: StatusSnapshot, d: Details) -> Details:
    return {"days_left": d.get("days_left"), "data_deletion_at": shown_time(s.data_deletion_at)}


_DETAILS: dict[AuditAction, Callable[[StatusSnapshot, Details], Details]] = {
    "applied": _applied,
    "activated": _activated,
    "refused": _refused,
    "cancelled": _cancelled,
    "purged": _purged,
    "plan_change_started": _plan_change_started,
    "plan_changed": _plan_changed,
    "plan_change_failed": _plan_change_failed,
    "plan_change_scheduled": _plan_change_scheduled,
    "plan_change_withdrawn": _plan_change_withdrawn,
    "plan_change_dropped": _plan_change_dropped,
    "usage_granted": _usage,
    "usage_revoked": _usage,
    "learning_records_reset": _learning_records_reset,
    "billing_closed": _billing_closed,
    "deletion_upcoming": _deletion_upcoming,
}
