"""The benchmarks' no-logic workflows, in a module of their own: the sandbox executes a
workflow's module again for every workflow it runs, so a floor must not carry a bench's imports
(and what it costs per workflow is then only this small file, the fair floor)."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn(name="BenchNoLogicWorkflow")
class NoLogicWorkflow:
    """Waits on a condition until `finish`; a no-op update answers at once (the floor of an
    admin update: the same client, server and worker, no activity, nothing to decide)."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update
    async def noop(self, seq: int) -> int:
        return seq

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def ready(self) -> bool:
        """Answered once the workflow's first task has run: it is in the worker's cache."""
        return True
