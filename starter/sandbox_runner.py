"""How the worker runs workflow code: the SDK's sandbox, with `workflows/` passed through and
its entry snippets compiled once. The one module that leans on the Temporal SDK's internals
(docs/architecture.md, "Upgrading temporalio").

Private API relied on (checked with the temporalio minor version pyproject.toml pins):

- `temporalio.worker.workflow_sandbox._runner._Instance`, the sandbox's workflow instance, built
  as `_Instance(instance_details, runner_class, restrictions)` (as the SDK's own
  `SandboxedWorkflowRunner.create_instance` builds it), and its method
  `_run_code(self, code: str, **extra_globals: Any) -> None`, through which the sandbox enters
  the workflow: it `exec`s a short constant source string when it creates the instance, on every
  activation, and for every payload of every command and result (its serialization context).
  `_CompiledOnceInstance` overrides `_run_code` to hand `exec` a code object compiled once per
  process instead of the string; `exec` takes either, with the same effect.
  Why: `exec` of a string compiles it every time, and that compile was about a tenth of the
  worker's CPU under admin load (py-spy, bench/README.md).

- `_Instance.activate(self, act)` and `_Instance.globals_and_locals["__temporal_in_sandbox"]
  .instance`, the SDK's workflow instance (`_WorkflowInstanceImpl`), whose attributes
  `_current_internal_flags`, `_deployment_version_for_current_task` and `_workflow_input
  .headers` are set from the activation it runs. `_CompiledOnceInstance.activate` replaces them
  with copies after every activation (`_let_go_of_activation`), and `_CompiledOnceRunner`
  copies the start's headers, memo and last result in the instance details (`_detached`).
  Why: protobuf messages parsed by upb live in one arena per parsed message, and any part
  still referenced keeps the whole activation allocated; the SDK's references kept each cached
  run's first activation, its start input included (bench/README.md, "Issue 22").

Public behaviour relied on (no private name): `SandboxRestrictions.with_passthrough_modules`.
`workflows/` is passed through the sandbox like `domain/`: the sandbox imports it once per process
and every run shares its module (code, functions, classes), where it would otherwise execute the
module again for every workflow it runs: about 18 KiB of module state per cached subscription
and two thirds of a new run's CPU (bench/README.md, "Issue 22"). What the sandbox's import-time
proxies checked in that code (no clock, randomness, I/O or threads outside `workflow.`), the lint
rules of `workflows/ruff.toml` check instead, in the suite (tests/workflows/test_guard.py); replay
tests check determinism as before.

tests/starter/test_sandbox_runner.py fails, naming the installed SDK version, if the private API
changes (the method or class goes, its signature changes, or the sandbox stops entering
workflows through it). Then either adapt `_CompiledOnceInstance`, or set `COMPILE_SNIPPETS_ONCE`
to False: the worker runs the SDK's stock `SandboxedWorkflowRunner` (a little more CPU, the same
behaviour) and no private name is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import CodeType
from typing import Any, ClassVar, TypeVar

import temporalio
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# The switch: False runs the SDK's stock sandbox runner, for an SDK whose private API changed.
COMPILE_SNIPPETS_ONCE = True

M = TypeVar("M", bound=Message)

# Passed through the sandbox: one copy per process, shared by every run (see above).
SHARED_PACKAGES = ("workflows",)
RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules(*SHARED_PACKAGES)


if COMPILE_SNIPPETS_ONCE:  # everything private stays under this switch
    try:
        from temporalio.worker.workflow_sandbox._runner import _Instance
    except ImportError as gone:
        raise ImportError(
            f"temporalio {temporalio.__version__} has no workflow_sandbox._runner._Instance:"
            " set COMPILE_SNIPPETS_ONCE = False in starter/sandbox_runner.py"
            ' (docs/architecture.md, "Upgrading temporalio")'
        ) from gone

    class _CompiledOnceInstance(_Instance):
        """The SDK's sandboxed workflow instance, except that the snippets it runs inside the
        sandbox are compiled once per process instead of on every call. Everything else (the
        restrictions, the importer, the globals) is the SDK's own."""

        _codes: ClassVar[dict[str, CodeType]] = {}

        def _run_code(self, code: str, **extra_globals: Any) -> None:
            compiled = self._codes.get(code)
            if compiled is None:
                compiled = self._codes[code] = compile(code, "<string>", "exec")
            super()._run_code(compiled, **extra_globals)  # type: ignore[arg-type]

        def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
            completion = super().activate(act)
            sandboxed: Any = self.globals_and_locals["__temporal_in_sandbox"]
            _let_go_of_activation(sandboxed.instance)
            return completion

    class _CompiledOnceRunner(SandboxedWorkflowRunner):
        """SandboxedWorkflowRunner making _CompiledOnceInstance instances."""

        def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
            return _CompiledOnceInstance(_detached(det), self.runner_class, self.restrictions)


def _copy(message: M) -> M:
    fresh = type(message)()
    fresh.CopyFrom(message)
    return fresh


def _copies(payloads: Mapping[str, Payload]) -> dict[str, Payload]:
    return {key: _copy(value) for key, value in payloads.items()}


def _let_go_of_activation(instance: Any) -> None:
    """The SDK's workflow instance (`_WorkflowInstanceImpl`) without references into the
    activation it last ran: it keeps that activation's internal flags and deployment version,
    and the start's headers, as parts of the activation, so (upb: one arena per parsed message)
    the whole activation stays allocated while the run is cached; for a run waiting on its
    timer that is its first activation, the start input included. Copies of those small parts
    free it. The names are checked by tests/starter/test_sandbox_runner.py."""
    instance._current_internal_flags = list(instance._current_internal_flags)
    instance._deployment_version_for_current_task = _copy(
        instance._deployment_version_for_current_task
    )
    started = instance._workflow_input
    if started is not None and not isinstance(started.headers, dict):
        started.headers = _copies(started.headers)


def _detached(det: WorkflowInstanceDetails) -> WorkflowInstanceDetails:
    """`det` without references into the activation that started the run. A protobuf
    message parsed by upb lives in one arena with the whole activation it came from, and the
    SDK's details keep the start's headers, memo and last result as parts of it: the first
    activation (the run's input, search attributes, …) stays allocated for as long as the run is
    cached. Fresh copies of those small parts free it."""
    info = dataclasses.replace(
        det.info, headers=_copies(det.info.headers), raw_memo=_copies(det.info.raw_memo)
    )
    return dataclasses.replace(
        det,
        info=info,
        last_completion_result=_copy(det.last_completion_result),
        last_failure=_copy(det.last_failure) if det.last_failure is not None else None,
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    """How the worker runs workflow code: the SDK's sandbox, with `workflows/` passed through
    (RESTRICTIONS), and the sandbox's own entry snippets compiled once while
    COMPILE_SNIPPETS_ONCE is on."""
    if not COMPILE_SNIPPETS_ONCE:
        return SandboxedWorkflowRunner(restrictions=RESTRICTIONS)
    return _CompiledOnceRunner(restrictions=RESTRICTIONS)
