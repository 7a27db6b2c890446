"""The lifecycle machine (docs/rules.md §2, R-LIFE): every allowed transition, and every other
one refused."""

from __future__ import annotations

import pytest

from statemachines.lifecycle import (
    FINAL_STATES,
    STATE_NAMES,
    SubscriptionLifecycle,
    TransitionNotAllowed,
)

ALLOWED = {
    ("applied", "activate"): "active",
    ("applied", "refuse"): "cancelled",  # R-LIFE-2: a permanent refusal
    ("applied", "cancel"): "cancelled",
    ("active", "start_plan_change"): "plan_changing",  # R-PLAN-7
    ("plan_changing", "finish_plan_change"): "active",
    ("active", "cancel"): "cancelled",
    ("cancelled", "purge"): "purged",  # R-CANCEL-2
}
EVENTS = sorted({event for _, event in ALLOWED})


@pytest.mark.parametrize(("state", "event"), sorted(ALLOWED))
def test_allowed_transitions(state: str, event: str) -> None:
    machine = SubscriptionLifecycle.at(state)
    assert machine.can(event)
    machine.send(event)
    assert machine.state_name == ALLOWED[(state, event)]


REFUSED = [(s, e) for s in STATE_NAMES for e in EVENTS if (s, e) not in ALLOWED]


@pytest.mark.parametrize(("state", "event"), REFUSED)
def test_refused_transitions_leave_the_state(state: str, event: str) -> None:
    """R-CANCEL-4 (cancel twice), R-PLAN-7 (no cancel mid-change), purged is final."""
    machine = SubscriptionLifecycle.at(state)
    assert not machine.can(event)
    with pytest.raises(TransitionNotAllowed):
        machine.send(event)
    assert machine.state_name == state


def test_new_machine_starts_applied_and_purged_is_final() -> None:
    assert SubscriptionLifecycle().state_name == "applied"
    assert SubscriptionLifecycle.at("purged").allowed_events == []


def test_final_states_are_the_machines_final_states() -> None:
    """The reconciler skips FINAL_STATES: the workflow never publishes from them again."""
    assert FINAL_STATES == tuple(s.value for s in SubscriptionLifecycle.final_states)
    assert all(SubscriptionLifecycle.at(s).allowed_events == [] for s in FINAL_STATES)
