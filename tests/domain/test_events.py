"""domain/events.py (R-EVENT-1): which event each decision announces and what its data says."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.audit import AUDIT_ACTIONS, AuditAction
from domain.billing import Invoice, InvoiceLine, invoice_id, issued_invoice_json
from domain.event_types import EVENT_TYPES
from domain.events import (
    EVENT_TYPE_OF,
    EVENTLESS,
    MANAGEMENT_ACTIONS,
    management_event,
    subscription_event,
)
from domain.subscription import (
    AuditEntry,
    PlanChangeNotice,
    ScheduledPlanChange,
    StatusSnapshot,
)

AT = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 11:00 KST


def snapshot(**changes: Any) -> StatusSnapshot:
    fields: dict[str, Any] = {
        "subscription_id": "sub_1",
        "workplace_id": "wp",
        "service_id": "ubob",
        "state": "active",
        "plan_id": "ubob-basic",
        "applied_at": AT,
        "activated_at": AT,
        "cancelled_at": None,
        "cancel_reason": None,
        "last_plan_change_period": None,
        "scheduled_plan_change": None,
        "plan_change_notice": None,
        "data_deletion_at": None,
        "final_invoice_at": None,
        "purged_at": None,
        "usage_permission_count": 2,
        "seq": 3,
    }
    return StatusSnapshot(**{**fields, **changes})


def entry(action: AuditAction, **details: Any) -> AuditEntry:
    return AuditEntry(at=AT, actor="rep", action=action, details=details)


def test_every_audit_action_is_announced_or_listed_as_eventless() -> None:
    """A new action code must be placed: mapped to an event type, or eventless with a reason."""
    assert set(EVENT_TYPE_OF) | set(EVENTLESS) == set(AUDIT_ACTIONS)
    assert not set(EVENT_TYPE_OF) & set(EVENTLESS)
    assert all(reason.strip() for reason in EVENTLESS.values())
    assert set(EVENT_TYPE_OF.values()) == set(EVENT_TYPES)


def test_the_contracts_types_are_all_there() -> None:
    """API.md's "Types at least"."""
    required = {
        "subscription.applied",
        "subscription.activated",
        "subscription.provisioning_failed",
        "subscription.plan_change_scheduled",
        "subscription.plan_change_withdrawn",
        "subscription.plan_changed",
        "subscription.cancelled",
        "subscription.deletion_upcoming",
        "subscription.purged",
        "usage_permission.granted",
        "usage_permission.revoked",
        "management_permission.changed",
        "invoice.issued",
    }
    assert required <= set(EVENT_TYPES)


@pytest.mark.parametrize("action", sorted(EVENTLESS))
def test_eventless_actions_announce_nothing(action: AuditAction) -> None:
    assert subscription_event(entry(action), snapshot()) is None


@pytest.mark.parametrize(
    "action", sorted(set(EVENT_TYPE_OF) - MANAGEMENT_ACTIONS - {"invoice_issued"})
)
def test_every_subscription_event_carries_the_subscription(action: AuditAction) -> None:
    event = subscription_event(entry(action, previous_state="active"), snapshot())
    assert event is not None and event.type == EVENT_TYPE_OF[action]
    d = event.data
    assert d["subscription_id"] == "sub_1" and d["service_id"] == "ubob"
    assert d["state"] == "active" and d["plan_id"] == "ubob-basic"
    assert d["previous_state"] == "active" and d["actor"] == "rep"
    assert d["at"] == "2026-03-10T11:00:00+09:00"


def test_activation_names_the_automatic_grants() -> None:
    event = subscription_event(
        entry("activated", usage_granted=["m1", "m2"], automatic=True), snapshot()
    )
    assert event is not None and event.type == "subscription.activated"
    assert event.data["usage_granted"] == ["m1", "m2"] and event.data["automatic"] is True
    assert event.data["activated_at"] == "2026-03-10T11:00:00+09:00"
    plain = subscription_event(entry("activated"), snapshot())
    assert plain is not None and plain.data["usage_granted"] == []


def test_a_refusal_is_a_failed_provisioning_with_the_partners_reason() -> None:
    event = subscription_event(
        entry("refused", reason="account limit"), snapshot(state="cancelled", cancelled_at=AT)
    )
    assert event is not None and event.type == "subscription.provisioning_failed"
    assert event.data["reason"] == "account limit"


def test_cancellation_says_when_the_data_goes() -> None:
    cancelled = snapshot(
        state="cancelled", cancelled_at=AT, data_deletion_at=AT + timedelta(days=30)
    )
    event = subscription_event(entry("cancelled", dropped_plan_change="ubob-pro"), cancelled)
    assert event is not None and event.type == "subscription.cancelled"
    assert event.data["data_deletion_at"] == "2026-04-09T11:00:00+09:00"
    assert event.data["dropped_plan_change"] == "ubob-pro"


def test_plan_changes_name_both_plans() -> None:
    started = subscription_event(
        entry("plan_change_started", plan_id="ubob-pro"), snapshot(state="plan_changing")
    )
    assert started is not None and started.data["from_plan"] == "ubob-basic"
    assert started.data["to_plan"] == "ubob-pro"
    changed = subscription_event(
        entry("plan_changed", from_plan="ubob-basic", to_plan="ubob-pro", stopped_courses=1),
        snapshot(plan_id="ubob-pro"),
    )
    assert changed is not None and changed.type == "subscription.plan_changed"
    assert (changed.data["from_plan"], changed.data["to_plan"]) == ("ubob-basic", "ubob-pro")
    failed = subscription_event(
        entry("plan_change_failed", plan_id="ubob-pro", reason="no"), snapshot()
    )
    assert failed is not None and failed.type == "subscription.plan_change_failed"
    assert failed.data["reason"] == "no"


def test_a_scheduled_change_says_when_in_seoul_time() -> None:
    at = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)  # 00:00 KST on 1 April
    scheduled = ScheduledPlanChange(plan_id="ubob-pro", at=at, requested_by="rep")
    event = subscription_event(
        entry("plan_change_scheduled", plan_id="ubob-pro", at=at.isoformat()),
        snapshot(scheduled_plan_change=scheduled),
    )
    assert event is not None and event.data["scheduled_at"] == "2026-04-01T00:00:00+09:00"
    assert event.data["to_plan"] == "ubob-pro"


def test_a_dropped_change_gives_the_notices_code() -> None:
    notice = PlanChangeNotice(code="scheduled_change_dropped_month_used", plan_id="ubob-pro")
    event = subscription_event(
        entry("plan_change_dropped", plan_id="ubob-pro", reason=notice.code),
        snapshot(plan_change_notice=notice),
    )
    assert event is not None and event.data["reason"] == "scheduled_change_dropped_month_used"


def test_seat_events_name_the_member() -> None:
    granted = subscription_event(entry("usage_granted", member_id="m1"), snapshot())
    assert granted is not None and granted.type == "usage_permission.granted"
    assert granted.data["member_id"] == "m1" and granted.data["automatic"] is False
    revoked = subscription_event(
        entry("usage_revoked", member_id="m1", reason="member_left"), snapshot()
    )
    assert revoked is not None and revoked.type == "usage_permission.revoked"
    assert revoked.data["reason"] == "member_left"


def test_deletion_upcoming_counts_the_days_left() -> None:
    s = snapshot(state="cancelled", cancelled_at=AT, data_deletion_at=AT + timedelta(days=30))
    event = subscription_event(entry("deletion_upcoming", days_left=7), s)
    assert event is not None and event.type == "subscription.deletion_upcoming"
    assert event.data["days_left"] == 7
    assert event.data["data_deletion_at"] == "2026-04-09T11:00:00+09:00"


def test_an_invoice_event_is_the_invoice_as_the_api_shows_it() -> None:
    invoice = Invoice(
        period="2026-03",
        lines=[
            InvoiceLine(
                plan_id="ubob-basic",
                from_day=date(2026, 3, 11),
                to_day=date(2026, 3, 31),
                days=21,
                seats=2,
                amount=Decimal(14_000),
            )
        ],
        subtotal=Decimal(14_000),
        vat=Decimal(1_400),
        total=Decimal(15_400),
    )
    shown = issued_invoice_json(
        invoice_id=invoice_id("sub_1", "2026-03"),
        subscription_id="sub_1",
        period=invoice.period,
        issued_at=AT,
        lines=(line.model_dump() for line in invoice.lines),
        subtotal=invoice.subtotal,
        vat=invoice.vat,
        total=invoice.total,
    )
    event = subscription_event(entry("invoice_issued", period="2026-03"), snapshot(), shown)
    assert event is not None and event.type == "invoice.issued"
    assert event.data == shown
    assert event.data["total"] == "15400" and event.data["lines"][0]["amount"] == "14000"
    assert event.data["lines"][0]["from"] == "2026-03-11"
    assert event.data["issued_at"] == "2026-03-10T11:00:00+09:00"
    with pytest.raises(ValueError, match="carries its invoice"):
        subscription_event(entry("invoice_issued", period="2026-03"), snapshot())


def test_management_changes_are_one_type_whatever_made_them() -> None:
    set_ = management_event(
        entry(
            "management_permissions_changed",
            member_id="a1",
            permissions=["usage.view", "plan.change"],
            added=["plan.change"],
            removed=["subscription.cancel"],
        ),
        "ubob",
    )
    assert set_.type == "management_permission.changed"
    assert set_.data["permissions"] == ["plan.change", "usage.view"]
    assert set_.data["reason"] == "set" and set_.data["service_id"] == "ubob"
    dropped = management_event(
        entry(
            "management_permissions_dropped",
            member_id="a1",
            permissions=["usage.view"],
            reason="member_left",
        ),
        "ubob",
    )
    assert dropped.type == "management_permission.changed"
    assert dropped.data["permissions"] == [] and dropped.data["removed"] == ["usage.view"]
    assert dropped.data["reason"] == "member_left"
    with pytest.raises(ValueError):
        subscription_event(entry("management_permissions_changed"), snapshot())
    with pytest.raises(ValueError):
        management_event(entry("usage_granted"), "ubob")


@given(
    st.sampled_from(sorted(set(EVENT_TYPE_OF) - MANAGEMENT_ACTIONS - {"invoice_issued"})),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_time_in_data_is_seoul_time(action: AuditAction, at: datetime) -> None:
    s = snapshot(
        applied_at=at,
        activated_at=at,
        cancelled_at=at,
        data_deletion_at=at,
        final_invoice_at=at,
        purged_at=at,
    )
    event = subscription_event(AuditEntry(at=at, actor="system", action=action), s)
    assert event is not None
    times = [v for k, v in event.data.items() if k.endswith("_at") or k == "at"]
    assert times and all(v is None or v.endswith("+09:00") for v in times)
