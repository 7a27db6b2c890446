"""A probe workflow for bench/memory_probe.py: a shape (start input size, local activities,
activities, search-attribute upserts, a timer) chosen by its input, then waits. A module of its
own: the sandbox executes it again for every run."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from workflows.search_attributes import SUBSCRIPTION_STATE


class ProbeInput(BaseModel):
    blob: str = ""
    locals: int = 0
    activities: int = 0
    upserts: int = 0
    timer: bool = False


@activity.defn(name="probe_noop")
async def probe_noop(seq: int) -> int:
    return seq


@workflow.defn(name="ProbeWorkflow")
class ProbeWorkflow:
    def __init__(self) -> None:
        self.waiting = False

    @workflow.run
    async def run(self, input: ProbeInput) -> None:
        for seq in range(input.locals):
            await workflow.execute_local_activity(
                probe_noop, seq, start_to_close_timeout=timedelta(seconds=30)
            )
        for seq in range(input.activities):
            await workflow.execute_activity(
                probe_noop, seq, start_to_close_timeout=timedelta(seconds=30)
            )
        for seq in range(input.upserts):
            workflow.upsert_search_attributes([SUBSCRIPTION_STATE.value_set(f"s{seq}")])
        self.waiting = True
        timeout = timedelta(days=20) if input.timer else None
        await workflow.wait_condition(lambda: not self.waiting, timeout=timeout)

    @workflow.query
    def ready(self) -> bool:
        return self.waiting
