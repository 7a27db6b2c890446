"""How a run of each version calls its effects (docs/architecture.md, "Versions").

Workflow code, passed through the sandbox (one copy per worker, not one per run): it holds no
state, and calls the SDK's workflow functions, which act on the run that is executing.

- Version 3 calls each effect with its one input model (`effect`, `commit`).
- Versions 1 and 2 call the same effects under their old names with positional arguments
  (`legacy`, activities/legacy.py); version 1 also has the three activities the later versions
  fold into `commit` (`publish`, `sync_usage_holders`, `issue_invoice`).
- `local` effects are short, keyed PostgreSQL reads and writes that are safe to repeat: local
  activities from version 2 on (a marker in the history instead of an activity's three events
  and two workflow tasks; retried by the worker with the same policy), activities in version 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from activities.effects import Effects
from activities.legacy import LegacyActivities
from domain.effects import EffectInput
from domain.subscription import Publication

ACTIVITY_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
PROVISION_RETRY = RetryPolicy(
    maximum_interval=timedelta(minutes=1), non_retryable_error_types=["PARTNER_REFUSED"]
)
In = TypeVar("In", bound=EffectInput)
Out = TypeVar("Out")


async def effect(
    version: int,
    method: Callable[[Any, In], Awaitable[Out]],
    input: In,
    *,
    local: bool = False,
    retry: RetryPolicy = ACTIVITY_RETRY,
) -> Out:
    """One effect (an `Effects` method) as a run of `version` calls it."""
    if version < 3:
        old = getattr(LegacyActivities, method.__name__)  # the same name, positional arguments
        result: Out = await legacy(version, old, *input.args(), local=local, retry=retry)
        return result
    if local:
        return await workflow.execute_local_activity_method(
            method, input, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
        )
    return await workflow.execute_activity_method(
        method, input, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
    )


async def legacy(
    version: int,
    method: Callable[..., Awaitable[Any]],
    *args: Any,
    local: bool = False,
    retry: RetryPolicy = ACTIVITY_RETRY,
) -> Any:
    """A version-1/2 activity (a `LegacyActivities` method), with positional arguments."""
    if local and version >= 2:
        return await workflow.execute_local_activity_method(
            method, args=list(args), start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
        )
    return await workflow.execute_activity_method(
        method, args=list(args), start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=retry
    )


async def commit(publication: Publication) -> None:
    """Versions 2 and 3: one decision's database writes in one local activity."""
    await workflow.execute_local_activity_method(
        Effects.commit,
        publication,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
    )
