"""The subscription lifecycle (SPEC §3) as a python-statemachine machine.

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

from typing import Literal

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

StateName = Literal["applied", "active", "plan_changing", "cancelled", "purged"]
STATE_NAMES: tuple[StateName, ...] = ("applied", "active", "plan_changing", "cancelled", "purged")
LIVE_STATES: frozenset[str] = frozenset({"applied", "active", "plan_changing"})


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
        """Rebuild the machine in a saved state (replay, continue-as-new)."""
        return cls(start_value=state)

    @property
    def state_name(self) -> StateName:
        value: StateName = self.current_state_value
        return value

    def can(self, event: str) -> bool:
        return any(e.id == event for e in self.allowed_events)


__all__ = [
    "LIVE_STATES",
    "STATE_NAMES",
    "StateName",
    "SubscriptionLifecycle",
    "TransitionNotAllowed",
]
