"""The benchmarks' no-logic workflow, in a module of its own: the sandbox executes a workflow's
module again for every workflow it runs, so a floor must not carry a bench's imports (and what it
costs per workflow is then only this small file, the fair floor)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

# How long the floor waits on its timer: longer than any bench runs.
FLOOR_TIMER = timedelta(days=31)


@activity.defn(name="bench_floor_step")
async def floor_step(step: int) -> int:
    """The floor's activity: does nothing, answers at once."""
    return step


@workflow.defn(name="BenchNoLogicWorkflow")
class NoLogicWorkflow:
    """Issue 22's no-logic workflow: two activities, then one timer, nothing decided. It waits on
    its timer until `finish`; a no-op update answers at once (the floor of an admin update: the
    same client, server and worker, no activity, nothing to decide). Every worker running it
    registers `floor_step`."""

    def __init__(self) -> None:
        self.done = False
        self.waiting = False

    @workflow.run
    async def run(self) -> None:
        for step in range(2):
            await workflow.execute_activity(
                floor_step, step, start_to_close_timeout=timedelta(seconds=30)
            )
        self.waiting = True
        try:
            await workflow.wait_condition(lambda: self.done, timeout=FLOOR_TIMER)
        except TimeoutError:
            pass

    @workflow.update
    async def noop(self, seq: int) -> int:
        return seq

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def ready(self) -> bool:
        """True once both activities are done and the run waits on its timer: then it sits in
        the worker's cache as it will stay."""
        return self.waiting
