"""The console as each person sees it (R-PERM-3..5, -8), at desktop and phone (375 px) widths,
with axe-core's accessibility check on every page: 0 serious or critical violations.

- the representative admin: every page and every action;
- an admin holding only `plan.change` on ubob: ubob's real state and usage, the plan-change
  flow, and no button that can only fail; other services show their guide only;
- a plain member: their service menu (top bar and page), never the business-support menu.

BIZSUPPORT_UPDATE_DOCS=1 refreshes docs/console-admin.png and docs/console-member.png.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright, expect

from api.runtime import Runtime
from tests.api.browser import (
    ARGS,
    CHROMIUM,
    keep,
    login,
    needs_chromium,
    overflows,
    serious_violations,
    shot,
)
from tests.api.conftest import TERMS, LiveServer, bearer, token
from tests.conftest import Workplace
from tests.store.test_webhooks import T0, append_event, insert_delivery

WIDTHS = (1280, 375)

REP_PAGES = [
    "/console",
    "/console/services",
    "/console/services/ubob?tab=guide",
    "/console/services/ubob?tab=usage",
    "/console/services/ubob/invoices",
    "/console/services/ubob/history",
    "/console/permissions",
    "/console/history",
    "/console/webhooks",
    "/console/me",
]
ADMIN_PAGES = [
    "/console",
    "/console/services",
    "/console/services/ubob?tab=usage",
    "/console/services/miricanvas?tab=usage",
    "/console/services/cartax?tab=guide",
    "/console/me",
]
MEMBER_PAGES = ["/console/me"]


async def setup(server: LiveServer, runtime: Runtime, wp: Workplace) -> None:
    """ubob (everyone has a seat) and miricanvas (m1 has a seat); the admin holds plan.change on
    ubob only."""
    rep = bearer(token(runtime, wp.id, wp.rep))
    base = f"/v1/workplaces/{wp.id}/services"
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        for svc, plan in (("ubob", "ubob-basic"), ("miricanvas", None)):
            body = {"terms_version": TERMS, "agree_terms": True}
            if plan:
                body["plan_id"] = plan
            answer = await http.post(f"{base}/{svc}/subscription", json=body, headers=rep)
            assert answer.status_code == 201, answer.text
        granted = await http.put(
            f"{base}/miricanvas/usage-permissions/{wp.members[0]}", headers=rep
        )
        assert granted.status_code == 200, granted.text
        delegated = await http.put(
            f"{base}/ubob/management-permissions/{wp.admin}",
            json={"permissions": ["plan.change"]},
            headers=rep,
        )
        assert delegated.status_code == 200, delegated.text


async def check_pages(page: Page, server: LiveServer, paths: list[str], who: str) -> list[str]:
    """Every page at both widths: no serious accessibility finding, no sideways scrolling."""
    problems: list[str] = []
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            answer = await page.goto(f"{server.url}{path}")
            assert answer is not None and answer.status == 200, f"{who} {path}: {answer}"
            problems += [f"{who}@{width}: {v}" for v in await serious_violations(page)]
            extra = await overflows(page)
            if extra > 0:
                problems.append(f"{who}@{width}: {path} scrolls sideways by {extra}px")
    return problems


@needs_chromium
async def test_console_for_each_person(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with LiveServer(api_app) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            await setup(server, api_runtime, workplace)
            problems = await representative(browser, server, api_runtime, workplace)
            problems += await delegated_admin(browser, server, api_runtime, workplace)
            problems += await member(browser, server, api_runtime, workplace)
        finally:
            await browser.close()
    assert not problems, "\n".join(problems)


async def representative(
    browser: Browser, server: LiveServer, runtime: Runtime, wp: Workplace
) -> list[str]:
    page = await login(browser, server, runtime, wp, wp.rep)
    await expect(page.get_by_role("link", name="권한 관리")).to_be_visible()
    await page.goto(f"{server.url}/console/services/ubob?tab=usage")
    for button in ("plan-open", "cancel-open"):
        await expect(page.get_by_test_id(button)).to_be_visible()
    await expect(page.get_by_test_id("grant-open")).to_have_count(0)  # ubob grants itself
    await expect(page.get_by_test_id("auto-grant")).to_be_visible()
    managers = page.get_by_test_id("managers")
    await expect(managers.get_by_test_id(f"manager-{wp.admin}")).to_contain_text("신청 상품 변경")
    await page.goto(f"{server.url}/console/services/miricanvas?tab=usage")
    await expect(page.get_by_test_id("grant-open")).to_be_visible()
    problems = await webhooks_on_a_phone(page, server, runtime, wp)
    return problems + await check_pages(page, server, REP_PAGES, "representative")


async def webhooks_on_a_phone(
    page: Page, server: LiveServer, runtime: Runtime, wp: Workplace
) -> list[str]:
    """웹훅 at 375 px: register an endpoint, its secret shown once, then a failed delivery to
    resend (the page check that follows sees the endpoint and its deliveries)."""
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.goto(f"{server.url}/console/webhooks")
    await page.get_by_test_id("webhook-url").fill("http://127.0.0.1:8999/bizsupport/hooks")
    await page.get_by_test_id("webhook-create-submit").click()
    await expect(page.get_by_test_id("webhook-secret")).to_have_value(re.compile("^whsec_"))
    problems = [f"webhooks secret: {v}" for v in await serious_violations(page)]
    if (extra := await overflows(page)) > 0:
        problems.append(f"webhooks secret @375 scrolls sideways by {extra}px")
    endpoint = page.locator("[data-testid^=webhook-ep_]")
    endpoint_id = (await endpoint.get_attribute("data-testid") or "").removeprefix("webhook-")
    event_no = await append_event(runtime.pool, wp.id, "invoice.issued")
    failed = await insert_delivery(
        runtime.pool, endpoint_id, event_no, "failed", T0, attempts=8, last_status_code=500
    )
    await page.goto(f"{server.url}/console/webhooks")
    await page.get_by_test_id(f"resend-{failed}").click()
    await expect(page.get_by_test_id(f"delivery-{failed}")).to_contain_text("대기")
    return problems


async def delegated_admin(
    browser: Browser, server: LiveServer, runtime: Runtime, wp: Workplace
) -> list[str]:
    page = await login(browser, server, runtime, wp, wp.admin)
    await expect(page.get_by_role("heading", name="업무 지원 서비스")).to_be_visible()
    await expect(page.get_by_role("link", name="권한 관리")).to_have_count(0)
    card = page.get_by_test_id("card-ubob")
    await expect(card).to_have_attribute("data-state", "active")
    await expect(
        page.get_by_test_id("card-cartax").get_by_role("link", name="서비스 신청")
    ).to_have_count(0)
    canvas = page.get_by_test_id("card-miricanvas")  # live, but not theirs to manage
    await expect(canvas.get_by_role("link", name="서비스 관리")).to_have_count(0)
    await expect(card.get_by_role("link", name="서비스 관리")).to_be_visible()

    # ubob: the real state and usage, and only the plan change it may make
    await page.goto(f"{server.url}/console/services/ubob?tab=usage")
    await expect(page.get_by_test_id("status-state")).to_have_text("이용 중")
    await expect(page.get_by_test_id("usage-count")).to_have_text("5명")
    for absent in ("cancel-open", "grant-open", "apply-open"):
        await expect(page.get_by_test_id(absent)).to_have_count(0)
    await expect(page.get_by_role("link", name="이용 요금 조회 ›")).to_have_count(0)
    await page.get_by_test_id("plan-open").click()
    await expect(page.locator("#plan-dialog")).to_be_visible()
    await page.locator("#plan-dialog").get_by_role("button", name="취소").click()
    keep(await shot(page, "people-admin-ubob"), "console-admin.png")

    # a service it does not manage: the guide, and a word on why there is no more
    await page.goto(f"{server.url}/console/services/miricanvas?tab=usage")
    await expect(page.get_by_test_id("not-managed")).to_be_visible()
    await page.goto(f"{server.url}/console/services/cartax?tab=guide")
    await expect(page.get_by_test_id("apply-why")).to_contain_text("대표 관리자만")
    problems = await check_pages(page, server, ADMIN_PAGES, "admin")
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.goto(f"{server.url}/console/services/ubob?tab=usage")
    keep(await shot(page, "people-admin-phone"), "console-admin-phone.png")
    return problems


async def member(
    browser: Browser, server: LiveServer, runtime: Runtime, wp: Workplace
) -> list[str]:
    page = await login(browser, server, runtime, wp, wp.members[0])
    await expect(page).to_have_url(f"{server.url}/console/me")
    await expect(page.get_by_role("link", name="업무 지원 홈")).to_have_count(0)
    top = page.get_by_test_id("top-services")
    await expect(top.get_by_test_id("top-open-ubob")).to_be_visible()
    await expect(top.get_by_test_id("top-open-miricanvas")).to_be_visible()
    await page.goto(f"{server.url}/console")  # not shown to members: their menu instead
    await expect(page).to_have_url(f"{server.url}/console/me")
    keep(await shot(page, "people-member"), "console-member.png")
    await top.get_by_test_id("top-open-miricanvas").click()
    await expect(page.get_by_test_id("sso-result")).to_contain_text(wp.members[0])
    return await check_pages(page, server, MEMBER_PAGES, "member")
