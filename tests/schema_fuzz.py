"""Schemathesis over every operation of an OpenAPI document, positive and negative cases,
collecting every operation's failures within a time budget (the API's own schema test and the
partner protocol's contract test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz_operations(
    schema: Any,
    examples: dict[str, int],
    budget_seconds: float,
    check_case: Callable[[Any, Any], None],
) -> list[str]:
    """`check_case(case, data)` calls and validates one generated case; `examples` maps a
    generation mode ("positive", "negative") to how many cases of it each operation gets."""
    failures: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, count in examples.items():

            @given(case=operation.as_strategy(schemathesis.GenerationMode(mode)), data=st.data())
            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any, data: Any) -> None:
                check_case(case, data)

            try:
                check()
            except Unsatisfiable:  # no negative input exists (no parameters, no body)
                continue
            except Exception as failure:  # collect every operation's failures, then report
                failures.append(f"{operation.label} [{mode}]: {failure}")
        if time.monotonic() - started > budget_seconds:
            failures.append(f"time budget of {budget_seconds} s exceeded at {operation.label}")
            break
    return failures
