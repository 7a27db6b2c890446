"""The subscription lifecycle (docs/rules.md §2, R-LIFE) as a python-statemachine machine.

Pure and synchronous: no timers, no clock, no I/O, so it runs unchanged inside a Temporal
workflow and is rebuilt from the saved state value after continue-as-new or replay.

    applied ──activate──▶ active ──start_plan_change──▶ plan_changing
       │                  ▲  │                              │
       │                  └──┼──────finish_plan_change──────┘
       ├──refuse──────────┐  │
       └──cancel──────────┴──┴──cancel──▶ cancelled ──purge──▶ purged

A cancellation asked for during `plan_changing` is not a transition of its own: the workflow
makes it wait for the change to finish (R-PLAN-7), so `cancel` is not allowed from there.
"""

from __future__ import annotations

from typing import Literal, Protocol

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

StateName = Literal["applied", "active", "plan_changing", "cancelled", "purged"]
STATE_NAMES: tuple[StateName, ...] = ("applied", "active", "plan_changing", "cancelled", "purged")
# The one definition of the state groups; SQL takes them as parameters (`state = ANY(%s)`).
# Live: holds the workplace's one slot for the service (R-LIFE-1).
LIVE_STATES: tuple[StateName, ...] = ("applied", "active", "plan_changing")
# Usable: members with usage permission can open the service (R-PERM-8).
USABLE_STATES: tuple[StateName, ...] = ("active", "plan_changing")
# Ended: cancelled, with or without its data.
ENDED_STATES: tuple[StateName, ...] = ("cancelled", "purged")
# Transient: the workflow moves on within seconds (provisioning, a plan change being applied),
# so a read-model row left in one for minutes is suspect (services/reconcile.py).
TRANSIENT_STATES: tuple[StateName, ...] = ("applied", "plan_changing")
# Final: the workflow ends there and never publishes again.
FINAL_STATES: tuple[StateName, ...] = ("purged",)


class HasState(Protocol):
    """A model the machine is bound to: it keeps the state value in its `state` field."""

    state: StateName


class SubscriptionLifecycle(StateMachine):
    applied = State("applied", initial=True, value="applied")
    active = State("active", value="active")
    plan_changing = State("plan_changing", value="plan_changing")
    cancelled = State("cancelled", value="cancelled")
    purged = State("purged", final=True, value="purged")

    activate = applied.to(active)
    refuse = applied.to(cancelled)
    start_plan_change = active.to(plan_changing)
    finish_plan_change = plan_changing.to(active)
    cancel = applied.to(cancelled) | active.to(cancelled)
    purge = cancelled.to(purged)

    @classmethod
    def at(cls, state: str) -> SubscriptionLifecycle:
        """A free-standing machine in a given state (tests, what-if checks)."""
        return cls(start_value=state)

    @classmethod
    def bound_to(cls, model: HasState) -> SubscriptionLifecycle:
        """The machine over a model's `state` field: a transition writes the field, and a model
        restored from a saved state (replay, continue-as-new) resumes in that state."""
        return cls(model=model, state_field="state")

    @property
    def state_name(self) -> StateName:
        value: StateName = self.current_state_value
        return value

    def can(self, event: str) -> bool:
        return any(e.id == event for e in self.allowed_events)


__all__ = [
    "ENDED_STATES",
    "FINAL_STATES",
    "LIVE_STATES",
    "STATE_NAMES",
    "TRANSIENT_STATES",
    "USABLE_STATES",
    "StateName",
    "SubscriptionLifecycle",
    "TransitionNotAllowed",
]
