"""Events and the event feed over HTTP (R-EVENT-1, R-EVENT-3; docs/events.md), on the real
servers: decisions made through the API come back from the feed once each, numbered per
subscription in the order they were made, under ids that do not change; who may read which feed;
pages, type filters and bad cursors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from api.runtime import Runtime
from store import events
from tests.api.conftest import bearer, system_token, token
from tests.api.test_api import OFFSET_TIME, apply, base, error, rep, set_admin
from tests.conftest import Workplace, eventually

# Month-end may fall inside a test's clock advance: its invoice is an event of its own.
MONTH_END = {"invoice.issued", "subscription.billing_closed"}


async def feed(api: httpx.AsyncClient, rt: Runtime, wp: Workplace, **params: Any) -> dict[str, Any]:
    answer = await api.get(f"/v1/workplaces/{wp.id}/events", params=params, headers=rep(rt, wp))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def every_event(api: httpx.AsyncClient, rt: Runtime, wp: Workplace) -> list[dict[str, Any]]:
    """The whole feed of the workplace, page by page (2 a page)."""
    got: list[dict[str, Any]] = []
    after = None
    while True:
        page = await feed(api, rt, wp, limit=2, **({"after": after} if after else {}))
        got += page["events"]
        after = page["next_after"]
        if not page["has_more"]:
            return got


async def test_decisions_come_back_from_the_feed_in_order_once_each(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, env: WorkflowEnvironment
) -> None:
    rt, wp = api_runtime, workplace
    m1 = wp.members[0]
    cartax = await apply(api, rt, wp, "cartax")
    seat = f"{base(wp, 'cartax')}/usage-permissions/{m1}"
    assert (await api.put(seat, headers=rep(rt, wp))).status_code == 200
    assert (await api.delete(seat, headers=rep(rt, wp))).status_code == 200
    ubob = await apply(api, rt, wp, "ubob", "ubob-basic")
    await env.sleep(timedelta(days=1))  # no plan change on the day of application (R-PLAN-3)
    changed = await api.post(
        f"{base(wp, 'ubob')}/subscription/plan-change",
        json={"plan_id": "ubob-standard"},
        headers=rep(rt, wp),
    )
    assert changed.status_code == 200, changed.text
    await set_admin(api, rt, wp, "cartax", ["usage.view"])
    for svc in ("cartax", "ubob"):
        cancelled = await api.post(f"{base(wp, svc)}/subscription/cancel", headers=rep(rt, wp))
        assert cancelled.status_code == 200, cancelled.text

    async def all_there() -> list[dict[str, Any]] | None:
        got = await every_event(api, rt, wp)
        return got if sum(e["type"] == "subscription.cancelled" for e in got) == 2 else None

    got = await eventually(all_there, what="both cancellations in the feed")
    assert len({e["id"] for e in got}) == len(got)

    def of(sub: str) -> list[dict[str, Any]]:
        return [e for e in got if e["subscription_id"] == sub]

    for sub in (cartax["subscription_id"], ubob["subscription_id"]):
        mine = of(sub)
        # seq 1, 2, 3… in the order made, each the decision's own id (its audit entry's key)
        assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1))
        assert [e["id"] for e in mine] == [events.event_id(f"{sub}:{e['seq']}") for e in mine]
        assert all(OFFSET_TIME.match(e["created_at"]) for e in mine)
    assert [e["type"] for e in of(cartax["subscription_id"]) if e["type"] not in MONTH_END] == [
        "subscription.applied",
        "subscription.activated",
        "usage_permission.granted",
        "usage_permission.revoked",
        "subscription.cancelled",
    ]
    assert [e["type"] for e in of(ubob["subscription_id"]) if e["type"] not in MONTH_END] == [
        "subscription.applied",
        "subscription.activated",
        "subscription.plan_change_started",
        "subscription.plan_changed",
        "subscription.cancelled",
    ]
    granted = next(e for e in got if e["type"] == "usage_permission.granted")
    assert granted["data"]["member_id"] == m1 and granted["service_id"] == "cartax"
    activated = next(
        e for e in of(ubob["subscription_id"]) if e["type"] == "subscription.activated"
    )
    assert set(activated["data"]["usage_granted"]) >= {wp.rep, *wp.members}  # R-PERM-6
    plan = next(e for e in got if e["type"] == "subscription.plan_changed")
    assert (plan["data"]["from_plan"], plan["data"]["to_plan"]) == ("ubob-basic", "ubob-standard")
    gone = next(e for e in of(cartax["subscription_id"]) if e["type"] == "subscription.cancelled")
    assert OFFSET_TIME.match(gone["data"]["data_deletion_at"])
    (management,) = [e for e in got if e["type"] == "management_permission.changed"]
    assert management["subscription_id"] is None and management["seq"] == 1
    assert management["data"]["permissions"] == ["usage.view"]

    assert await every_event(api, rt, wp) == got  # read again: the same events, the same ids


async def test_who_may_read_which_feed(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, other_workplace: Workplace
) -> None:
    rt, wp = api_runtime, workplace
    await set_admin(api, rt, wp, "cartax", ["usage.view", "plan.change"])  # a delegated admin
    path = f"/v1/workplaces/{wp.id}/events"
    assert (await api.get(path, headers=rep(rt, wp))).status_code == 200
    member = bearer(token(rt, wp.id, wp.members[0]))
    admin = bearer(token(rt, wp.id, wp.admin))
    error(await api.get(path, headers=member), 403, "NOT_REPRESENTATIVE_ADMIN")
    error(await api.get(path, headers=admin), 403, "NOT_REPRESENTATIVE_ADMIN")
    error(await api.get(path, headers=rep(rt, other_workplace)), 404, "NOT_FOUND")
    error(await api.get(path, headers=bearer(system_token(rt))), 403, "FORBIDDEN")
    assert (await api.get(path)).status_code == 401
    # every workplace's: the system token only
    error(await api.get("/v1/events", headers=rep(rt, wp)), 403, "FORBIDDEN")
    mine = (await feed(api, rt, wp))["events"][-1]

    async def in_system_feed() -> bool:
        after = None
        while True:
            params: dict[str, Any] = {"limit": 500, "type": "management_permission.changed"}
            if after:
                params["after"] = after
            answer = await api.get("/v1/events", params=params, headers=bearer(system_token(rt)))
            assert answer.status_code == 200, answer.text
            page = answer.json()
            if mine in page["events"]:
                return True
            if not page["has_more"]:
                return False
            after = page["next_after"]

    assert await in_system_feed()
    # another workplace's event is no cursor of this one's feed
    other = f"/v1/workplaces/{other_workplace.id}/events"
    answer = await api.get(other, params={"after": mine["id"]}, headers=rep(rt, other_workplace))
    error(answer, 400, "UNKNOWN_EVENT")


async def test_pages_types_and_bad_cursors(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    rt, wp = api_runtime, workplace
    sets = [["usage.view"], ["usage.view", "plan.change"], [], ["usage.grant"], ["usage.view"]]
    for permissions in sets:
        await set_admin(api, rt, wp, "cartax", permissions)
    whole = await eventually(
        lambda: _all_of(api, rt, wp, len(sets)), what="the five changes in the feed"
    )
    assert [e["seq"] for e in whole] == [1, 2, 3, 4, 5]
    assert [e["data"]["permissions"] for e in whole] == [
        ["usage.view"],
        ["plan.change", "usage.view"],
        [],
        ["usage.grant"],
        ["usage.view"],
    ]

    first = await feed(api, rt, wp, limit=2)
    assert [e["id"] for e in first["events"]] == [e["id"] for e in whole[:2]]
    assert first["has_more"] is True and first["next_after"] == whole[1]["id"]
    second = await feed(api, rt, wp, limit=2, after=first["next_after"])
    assert [e["id"] for e in second["events"]] == [e["id"] for e in whole[2:4]]
    third = await feed(api, rt, wp, limit=2, after=second["next_after"])
    assert [e["id"] for e in third["events"]] == [whole[4]["id"]]
    assert third["has_more"] is False
    empty = await feed(api, rt, wp, after=third["next_after"])
    assert empty == {"events": [], "next_after": whole[4]["id"], "has_more": False}
    assert await feed(api, rt, wp) == {
        "events": whole,
        "next_after": whole[4]["id"],
        "has_more": False,
    }

    typed = await feed(
        api, rt, wp, type=["management_permission.changed", "invoice.issued"], limit=500
    )
    assert typed["events"] == whole
    none = await feed(api, rt, wp, type="invoice.issued")
    assert none == {"events": [], "next_after": None, "has_more": False}

    path = f"/v1/workplaces/{wp.id}/events"
    bad = await api.get(path, params={"type": "invoice.paid"}, headers=rep(rt, wp))
    assert error(bad, 422, "UNKNOWN_EVENT_TYPE")["details"]["event_type"] == "invoice.paid"
    bad = await api.get(path, params={"after": "evt_nope"}, headers=rep(rt, wp))
    assert error(bad, 400, "UNKNOWN_EVENT")["message_ko"]
    for limit in (0, 501, "many"):
        error(
            await api.get(path, params={"limit": limit}, headers=rep(rt, wp)),
            400,
            "VALIDATION_ERROR",
        )


async def _all_of(
    api: httpx.AsyncClient, rt: Runtime, wp: Workplace, count: int
) -> list[dict[str, Any]] | None:
    got: list[dict[str, Any]] = (await feed(api, rt, wp, limit=500))["events"]
    return got if len(got) == count else None
