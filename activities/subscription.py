"""The worker's activities: the current effects (activities/effects.py, one input model each)
and, under their old names, the ones version-1 and version-2 runs call (activities/legacy.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.effects import Effects
from activities.legacy import LegacyActivities


class SubscriptionActivities(Effects):
    def all(self) -> list[Callable[..., Any]]:
        return [*self.effects(), *LegacyActivities(self).all()]
