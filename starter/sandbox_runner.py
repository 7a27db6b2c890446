"""How the worker runs workflow code: the SDK's sandbox, with two caches. The one module that
leans on the Temporal SDK's internals (docs/architecture.md, "Upgrading temporalio").

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

Public behaviour relied on (no private name): the sandbox imports `workflows/`'s modules afresh
for every workflow it runs, through the standard import system (`sys.meta_path`).
`_SharedCodeFinder` gives those modules a loader that keeps the first compile's code object:
about 60 KiB of code objects per cached subscription, and a compile on every workflow start and
every replay (bench/memory.py, bench/README.md). Should the sandbox stop importing that way, the
finder simply goes unused.

tests/starter/test_sandbox_runner.py fails, naming the installed SDK version, if the private API
changes (the method or class goes, its signature changes, or the sandbox stops entering
workflows through it). Then either adapt `_CompiledOnceInstance`, or set `COMPILE_SNIPPETS_ONCE`
to False: the worker runs the SDK's stock `SandboxedWorkflowRunner` (a little more CPU, the same
behaviour) and no private name is imported.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from types import CodeType, ModuleType
from typing import Any, ClassVar, TypeVar

import temporalio
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# The switch: False runs the SDK's stock sandbox runner, for an SDK whose private API changed.
COMPILE_SNIPPETS_ONCE = True

M = TypeVar("M", bound=Message)

# The packages whose modules the sandbox loads again for every workflow it runs.
SANDBOXED_PACKAGES = ("workflows",)


class _SharedCodeLoader(importlib.machinery.SourceFileLoader):
    """Loads a module's code object once per process and hands the same one to every later
    load. A code object is immutable, so sharing it shares nothing a workflow could change:
    each sandbox still executes the module afresh (its own globals, functions and classes)."""

    _codes: ClassVar[dict[str, CodeType]] = {}

    def get_code(self, fullname: str) -> CodeType:
        code = self._codes.get(self.path)
        if code is None:
            code = super().get_code(fullname)
            assert code is not None, f"{self.path} has no code"
            self._codes[self.path] = code
        return code


class _SharedCodeFinder(importlib.abc.MetaPathFinder):
    """Finds SANDBOXED_PACKAGES' modules as the path finder does, loaded by _SharedCodeLoader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] not in SANDBOXED_PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = _SharedCodeLoader(spec.loader.name, spec.loader.path)
        return spec


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
    """How the worker runs workflow code: the SDK's sandbox, whose restrictions stay as they are,
    with the workflow modules' code compiled once per process (a finder ahead of the path
    finder, installed once per process), and the sandbox's own entry snippets too while
    COMPILE_SNIPPETS_ONCE is on."""
    if not any(isinstance(finder, _SharedCodeFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SharedCodeFinder())
    if not COMPILE_SNIPPETS_ONCE:
        return SandboxedWorkflowRunner()
    return _CompiledOnceRunner()
