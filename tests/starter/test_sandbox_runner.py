"""The worker's workflow runner (starter/sandbox_runner.py), and the SDK internals it leans on.

If a temporalio upgrade changes the private API the snippet cache relies on, the tests here fail
naming the installed SDK version; docs/architecture.md ("Upgrading temporalio") says what then.
With the cache switched off (`COMPILE_SNIPPETS_ONCE = False`) the private-API checks are skipped
and the worker must run the SDK's stock runner."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import temporalio
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowInstance, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from starter import sandbox_runner
from tests.workflows.test_durability import HISTORIES, SUBSCRIPTION_HISTORIES
from workflows.subscription import SubscriptionWorkflow

SDK = f"temporalio {temporalio.__version__}"
ADVICE = (
    "the SDK's private API that starter/sandbox_runner.py relies on changed: adapt"
    " _CompiledOnceInstance, or set COMPILE_SNIPPETS_ONCE = False there"
    ' (docs/architecture.md, "Upgrading temporalio")'
)
SNIPPET_CACHE = pytest.mark.skipif(
    not sandbox_runner.COMPILE_SNIPPETS_ONCE,
    reason="COMPILE_SNIPPETS_ONCE is off: the worker runs the SDK's stock sandbox runner",
)
# What a snippet does: make the sandboxed instance, and hand it an activation.
CREATE, ACTIVATE = "InSandbox(", "__temporal_in_sandbox.activate("


def histories() -> list[WorkflowHistory]:
    files = sorted(HISTORIES.glob(SUBSCRIPTION_HISTORIES))
    assert files, f"no recorded histories in {HISTORIES}"
    return [WorkflowHistory.from_json(path.stem, path.read_text()) for path in files]


async def replay(runner: WorkflowRunner, *recorded: WorkflowHistory) -> None:
    replayer = Replayer(
        workflows=[SubscriptionWorkflow],
        workflow_runner=runner,
        data_converter=pydantic_data_converter,
    )
    for history in recorded:
        await replayer.replay_workflow(history)


def private_instance() -> type[Any]:
    """The SDK's sandboxed workflow instance (imported here, so its absence fails a test)."""
    from temporalio.worker.workflow_sandbox import _runner

    found = getattr(_runner, "_Instance", None)
    assert isinstance(found, type), f"{SDK}: workflow_sandbox._runner._Instance is gone; {ADVICE}"
    assert issubclass(found, WorkflowInstance), f"{SDK}: _Instance is no WorkflowInstance; {ADVICE}"
    return found


def parameters(function: Callable[..., Any]) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@SNIPPET_CACHE
def test_the_sdks_private_sandbox_instance_has_the_signatures_relied_on() -> None:
    instance = private_instance()
    run_code = getattr(instance, "_run_code", None)
    assert callable(run_code), f"{SDK}: _Instance._run_code is gone; {ADVICE}"
    positional, variadic = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_KEYWORD
    assert parameters(run_code) == [
        ("self", positional),
        ("code", positional),
        ("extra_globals", variadic),
    ], f"{SDK}: _Instance._run_code{inspect.signature(run_code)}; {ADVICE}"
    assert [name for name, _ in parameters(instance.__init__)] == [
        "self",
        "instance_details",
        "runner_class",
        "restrictions",
    ], f"{SDK}: _Instance{inspect.signature(instance.__init__)}; {ADVICE}"
    assert issubclass(sandbox_runner._CompiledOnceInstance, instance)


@SNIPPET_CACHE
async def test_the_sdks_own_sandbox_enters_workflows_through_run_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the cache overrides is the stock runner's way in: every instance creation and every
    activation of a replay with the SDK's own runner is a `_run_code` call."""
    instance = private_instance()
    stock = instance._run_code
    entered: list[str] = []

    def recording(self: Any, code: str, **extra_globals: Any) -> None:
        entered.append(code)
        stock(self, code, **extra_globals)

    monkeypatch.setattr(instance, "_run_code", recording)
    await replay(SandboxedWorkflowRunner(), histories()[0])
    for snippet in (CREATE, ACTIVATE):
        assert any(snippet in code for code in entered), f"{SDK}: no {snippet}…) seen; {ADVICE}"


async def test_recorded_histories_replay_with_the_workers_runner() -> None:
    recorded = histories()
    runner = sandbox_runner.workflow_runner()
    await replay(runner, recorded[0])
    if sandbox_runner.COMPILE_SNIPPETS_ONCE:
        cache = sandbox_runner._CompiledOnceInstance._codes
        snippets = dict(cache)
        assert any(ACTIVATE in code for code in snippets), f"{SDK}: {sorted(snippets)}; {ADVICE}"
        await replay(runner, *recorded[1:])
        # every later activation ran a code object compiled for the first workflow: none new
        assert cache.keys() == snippets.keys(), f"{SDK}: new snippets {cache.keys() - snippets}"
        assert all(cache[code] is snippets[code] for code in snippets)
    else:
        await replay(runner, *recorded[1:])


@SNIPPET_CACHE
async def test_a_cached_run_keeps_no_part_of_its_activations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After every activation the SDK's instance holds plain copies, not parts of the parsed
    activation (which would keep the whole activation, the start input included, allocated for
    as long as the run is cached: bench/README.md)."""
    seen: list[Any] = []
    let_go = sandbox_runner._let_go_of_activation

    def recording(instance: Any) -> None:
        let_go(instance)
        seen.append(instance)

    monkeypatch.setattr(sandbox_runner, "_let_go_of_activation", recording)
    await replay(sandbox_runner.workflow_runner(), histories()[0])
    assert seen, f"{SDK}: the runner's activate was not called; {ADVICE}"
    for instance in seen:
        # workflows/ is passed through: the run is an instance of this process's own class, not
        # of a class the sandbox made by executing the module again (bench/memory.py).
        assert type(instance._object) is SubscriptionWorkflow, f"{SDK}: {type(instance._object)}"
        assert type(instance._current_internal_flags) is list, f"{SDK}; {ADVICE}"
        assert type(instance._workflow_input.headers) is dict, f"{SDK}; {ADVICE}"


async def test_switched_off_the_worker_runs_the_sdks_stock_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_runner, "COMPILE_SNIPPETS_ONCE", False)
    runner = sandbox_runner.workflow_runner()
    assert type(runner) is SandboxedWorkflowRunner
    assert runner.restrictions is sandbox_runner.RESTRICTIONS
    await replay(runner, *histories())
