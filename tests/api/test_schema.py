"""Schemathesis against the app's own /openapi.json: no 5xx, and every answer conforms to it.

The app runs under uvicorn in the test's event loop (it shares the loop's database pool and
Temporal client); schemathesis runs in a worker thread and calls it over HTTP. Path ids are
sometimes swapped for real ones (our workplace, catalog services) so that generated requests
reach the business rules, not only the 404s. The sandbox clock is off here: a generated advance
would move the whole session's time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import schemathesis
from hypothesis import strategies as st

from api.app import create_app
from api.runtime import Runtime
from tests.api.conftest import LiveServer, bearer, system_token, token
from tests.conftest import Workplace
from tests.schema_fuzz import CHECKS, fuzz_operations

EXAMPLES = {"positive": 6, "negative": 4}
BUDGET_SECONDS = 50


def fuzz(
    schema: Any, base_url: str, workplace: Workplace, headers: dict[str, dict[str, str]]
) -> list[str]:
    services = ["ubob", "miricanvas", "tudy", "cartax"]
    members = [workplace.rep, workplace.admin, *workplace.members]
    mostly = st.integers(0, 4).map(bool)  # true four times in five
    callers = st.sampled_from(["representative"] * 3 + sorted(headers))

    def check(case: Any, data: Any) -> None:
        params = case.path_parameters or {}
        if "wp" in params and data.draw(mostly):
            params["wp"] = workplace.id
        for name in ("svc", "service_id"):
            if name in params and data.draw(mostly):
                params[name] = data.draw(st.sampled_from(services))
        if "member_id" in params and data.draw(mostly):
            params["member_id"] = data.draw(st.sampled_from(members))
        who = data.draw(callers)
        response = case.call(base_url=base_url, headers=headers[who], timeout=30)
        case.validate_response(response, checks=CHECKS)

    return fuzz_operations(schema, EXAMPLES, BUDGET_SECONDS, check)


async def test_api_conforms_to_its_openapi(api_runtime: Runtime, workplace: Workplace) -> None:
    app = create_app(dataclasses.replace(api_runtime, sandbox=None))
    schema = schemathesis.openapi.from_dict(app.openapi())
    headers = {
        "representative": bearer(token(api_runtime, workplace.id, workplace.rep)),
        "member": bearer(token(api_runtime, workplace.id, workplace.members[0])),
        "system": bearer(system_token(api_runtime)),
    }
    async with LiveServer(app) as server:
        failures = await asyncio.to_thread(fuzz, schema, server.url, workplace, headers)
    assert not failures, "\n\n".join(failures)
