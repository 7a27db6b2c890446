"""The JSON API is strict (security issue, item 11): where the contract says boolean, integer,
number or string, any other JSON type is a 400 VALIDATION_ERROR that names the field. Before,
`"agree_terms": "yes"` was taken as consent and `"seconds": "60"` as a number."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.runtime import Runtime
from tests.api.conftest import TERMS, bearer, system_token, token
from tests.conftest import Workplace

APPLY = {"terms_version": TERMS, "agree_terms": True}
PERSON = {"member_id": "sx-rep", "login_id": "sx-rep", "name": "Rep"}


def refused(answer: httpx.Response, where: list[Any]) -> None:
    assert answer.status_code == 400, answer.text
    err = answer.json()["error"]
    assert err["code"] == "VALIDATION_ERROR", err
    assert err["details"]["errors"][0]["loc"] == ["body", *where], err
    assert ".".join(str(p) for p in where) in err["message"], err


@pytest.mark.parametrize(
    "field, value",
    [
        ("agree_terms", "yes"),
        ("agree_terms", "true"),
        ("agree_terms", 1),
        ("agree_terms", "1"),
        ("agree_terms", None),
        ("terms_version", 20260101),
        ("terms_version", True),
        ("plan_id", 5),
        ("plan_id", False),
    ],
)
async def test_apply(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, field: str, value: Any
) -> None:
    answer = await api.post(
        f"/v1/workplaces/{workplace.id}/services/cartax/subscription",
        json={**APPLY, field: value},
        headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
    )
    refused(answer, [field])


@pytest.mark.parametrize(
    "field, value",
    [
        ("confirm_course_reset", "true"),
        ("confirm_course_reset", 1),
        ("confirm_course_reset", "false"),
        ("plan_id", 7),
        ("when", 0),
    ],
)
async def test_plan_change(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, field: str, value: Any
) -> None:
    answer = await api.post(
        f"/v1/workplaces/{workplace.id}/services/ubob/subscription/plan-change",
        json={"plan_id": "ubob-basic", field: value},
        headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
    )
    refused(answer, [field])


@pytest.mark.parametrize(
    "body, where",
    [
        ({"name": 42, "representative_admin": PERSON}, ["name"]),
        (
            {"name": "W", "representative_admin": {**PERSON, "member_id": 1}},
            ["representative_admin", "member_id"],
        ),
        (
            {"name": "W", "representative_admin": {**PERSON, "name": True}},
            ["representative_admin", "name"],
        ),
        ({"name": "W", "representative_admin": "sx-rep"}, ["representative_admin"]),
    ],
)
async def test_workplace(
    api: httpx.AsyncClient, api_runtime: Runtime, body: dict[str, Any], where: list[Any]
) -> None:
    answer = await api.put(
        "/v1/workplaces/wp-strict-json", json=body, headers=bearer(system_token(api_runtime))
    )
    refused(answer, where)


@pytest.mark.parametrize(
    "field, value", [("login_id", 123), ("name", 1.5), ("role", ["member"]), ("role", 1)]
)
async def test_member(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, field: str, value: Any
) -> None:
    body = {"login_id": "sx-m", "name": "M", "role": "member", field: value}
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/members/sx-m",
        json=body,
        headers=bearer(system_token(api_runtime)),
    )
    refused(answer, [field])


@pytest.mark.parametrize(
    "value, where",
    [("usage.view", ["permissions"]), ([1], ["permissions", 0]), ([True], ["permissions", 0])],
)
async def test_management_permissions(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, value: Any, where: list
) -> None:
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/services/ubob/management-permissions/{workplace.admin}",
        json={"permissions": value},
        headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
    )
    refused(answer, where)


@pytest.mark.parametrize("value", [12345, True, ["x"]])
async def test_sso_verify(api: httpx.AsyncClient, value: Any) -> None:
    refused(await api.post("/v1/sso/verify", json={"token": value}), ["token"])


@pytest.mark.parametrize("value", ["3600", True, "1e3", None])
async def test_sandbox_advance(api: httpx.AsyncClient, api_runtime: Runtime, value: Any) -> None:
    answer = await api.post(
        "/v1/sandbox/clock/advance",
        json={"seconds": value},
        headers=bearer(system_token(api_runtime)),
    )
    refused(answer, ["seconds"])


async def test_right_types_still_pass_validation(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """Strict is not stricter than the contract: JSON integers are numbers, booleans are bools."""
    answer = await api.put(
        f"/v1/workplaces/{workplace.id}/members/sx-ok",
        json={"login_id": "sx-ok", "name": "OK", "role": "member"},
        headers=bearer(system_token(api_runtime)),
    )
    assert answer.status_code == 200, answer.text
    answer = await api.post(
        f"/v1/workplaces/{workplace.id}/services/cartax/subscription",
        json={"terms_version": TERMS, "agree_terms": False},
        headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
    )
    assert answer.json()["error"]["code"] == "TERMS_NOT_AGREED", answer.text
    answer = await api.post(  # a JSON integer is a number: refused for its value, not its type
        "/v1/sandbox/clock/advance", json={"seconds": 0}, headers=bearer(system_token(api_runtime))
    )
    assert answer.json()["error"]["details"]["errors"][0]["type"] == "greater_than", answer.text
