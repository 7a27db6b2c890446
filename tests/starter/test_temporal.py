"""The worker's workflow runner (starter/temporal.py): recorded histories replay with it, the
sandbox takes the workflow module's code from the one compile the runner keeps, and the snippets
through which it enters a workflow are compiled once, not per call."""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

import workflows.subscription
from starter.temporal import _CompiledOnceInstance, _SharedCodeLoader, workflow_runner
from workflows.subscription import SubscriptionWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"


async def test_recorded_histories_replay_with_the_workers_runner() -> None:
    files = sorted(HISTORIES.glob("*.json"))
    assert files, f"no recorded histories in {HISTORIES}"
    replayer = Replayer(
        workflows=[SubscriptionWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    histories = [WorkflowHistory.from_json(path.stem, path.read_text()) for path in files]
    await replayer.replay_workflow(histories[0])
    snippets = dict(_CompiledOnceInstance._codes)
    assert any("__temporal_in_sandbox.activate(" in code for code in snippets), snippets.keys()
    for history in histories[1:]:
        await replayer.replay_workflow(history)
    # every later activation ran a code object compiled for the first workflow: none new
    assert _CompiledOnceInstance._codes.keys() == snippets.keys()
    assert all(_CompiledOnceInstance._codes[code] is snippets[code] for code in snippets)
    # The sandbox loaded workflows/subscription.py through the runner's loader: compiled once
    # per process, not once per workflow (bench/memory.py measures what that saves).
    source, shared = _source_and_shared()
    assert source in shared, f"the sandbox compiled {source} itself; shared: {sorted(shared)}"


def _source_and_shared() -> tuple[str, set[str]]:
    source = os.path.realpath(workflows.subscription.__file__)
    return source, {os.path.realpath(path) for path in _SharedCodeLoader._codes}
