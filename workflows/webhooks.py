"""One long-lived workflow per webhook endpoint (R-EVENT-2; docs/webhooks.md, "Delivery").

It holds no delivery state (PostgreSQL does): it runs rounds (activities/webhooks.py) one after
the other. After a round with work left it runs the next at once; otherwise it waits for a `poke`
(the dispatcher's: new events, a resend) or until the earliest retry, a durable timer on the
business clock (on the time-skipping server an advance of the sandbox clock runs the retries).
It continues as new every `ROUNDS_PER_RUN` rounds and ends when the endpoint is deleted or
disabled; a poke to an ended one starts it again (signal-with-start).

Its task queue is the worker's own with `WEBHOOK_QUEUE_SUFFIX`, served by a worker of its own
with few slots (starter/temporal.py), so deliveries never take the subscriptions' slots.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import RoundInput, RoundResult, WebhookActivities

WEBHOOK_QUEUE_SUFFIX = "-webhooks"
ROUNDS_PER_RUN = 100
ROUND_TIMEOUT = timedelta(minutes=2)
ROUND_HEARTBEAT = timedelta(seconds=30)
# A round that fails (PostgreSQL down, the worker died) is tried again, for as long as it takes.
ROUND_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


def endpoint_workflow_id(endpoint_id: str) -> str:
    return f"webhook-endpoint-{endpoint_id}"


def webhook_queue(task_queue: str) -> str:
    return task_queue + WEBHOOK_QUEUE_SUFFIX


class EndpointInput(BaseModel):
    endpoint_id: str
    # How soon a round whose worker died is noticed (the round heartbeats six times in it,
    # activities/webhooks.py). Every production start takes the default; a test that kills a
    # worker mid-round gives a shorter one so it does not wait 30 s. Replay-safe: histories
    # without the field read the default, and a heartbeat timeout is not compared on replay
    # (only an activity's type and id are).
    round_heartbeat: timedelta = ROUND_HEARTBEAT


@workflow.defn(name="WebhookEndpointWorkflow")
class WebhookEndpointWorkflow:
    def __init__(self) -> None:
        self.poked = False

    @workflow.signal
    def poke(self) -> None:
        """Something may be ready: new events, a resend. Many pokes are one round."""
        self.poked = True

    @workflow.run
    async def run(self, input: EndpointInput) -> None:
        for _ in range(ROUNDS_PER_RUN):
            self.poked = False  # a poke from here on runs another round
            result: RoundResult = await workflow.execute_activity_method(
                WebhookActivities.deliver_round,
                RoundInput(endpoint_id=input.endpoint_id, now=workflow.now()),
                start_to_close_timeout=ROUND_TIMEOUT,
                heartbeat_timeout=input.round_heartbeat,
                retry_policy=ROUND_RETRY,
            )
            if result.ended:
                return
            if result.more or self.poked:
                continue
            wait = None
            if result.next_at is not None:
                wait = max(result.next_at - workflow.now(), timedelta(seconds=1))
            try:
                await workflow.wait_condition(lambda: self.poked, timeout=wait)
            except TimeoutError:
                pass
            if workflow.info().is_continue_as_new_suggested():
                break
        # Whatever was poked meanwhile is looked at by the new run's first round.
        workflow.continue_as_new(input)
