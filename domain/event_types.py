"""Every event type a decision can announce (R-EVENT-1; API.md "Events and webhooks").

The one list: webhook endpoints subscribe to these (`services/webhooks.py` refuses any other),
and the mapping from decisions to events names its types from here.
"""

from __future__ import annotations

from typing import Literal, get_args

EventType = Literal[
    # a subscription's life
    "subscription.applied",
    "subscription.activated",
    "subscription.provisioning_failed",
    "subscription.plan_change_scheduled",
    "subscription.plan_change_withdrawn",
    "subscription.plan_change_started",
    "subscription.plan_changed",
    "subscription.plan_change_failed",
    "subscription.plan_change_dropped",
    "subscription.cancelled",
    "subscription.billing_closed",
    "subscription.deletion_upcoming",
    "subscription.purged",
    # seats and the partner's learning records
    "usage_permission.granted",
    "usage_permission.revoked",
    "usage_permission.learning_records_reset",
    # management permissions (a workplace stream, no subscription)
    "management_permission.changed",
    # billing
    "invoice.issued",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)


def unknown_event_types(types: list[str]) -> list[str]:
    """The names in `types` that are not event types, in the order given."""
    return [t for t in types if t not in EVENT_TYPES]
