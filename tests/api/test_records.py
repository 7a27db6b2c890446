"""R-EVENT-4 through the API and the console: a cancelled subscription's records download
(JSON, and CSV files in a zip) from the cancellation until the data deletion, for the
representative admin and admins holding `subscription.cancel` on the service; the deletion
notice in the console from 7 days before; both gone once the data is deleted (R-CANCEL-2).
Business time moves by the sandbox clock, as a rehearsal would move it."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime

import httpx
from fastapi import FastAPI
from playwright.async_api import async_playwright, expect

from api.runtime import Runtime
from tests.api.browser import (
    ARGS,
    CHROMIUM,
    login,
    needs_chromium,
    overflows,
    serious_violations,
    shot,
)
from tests.api.conftest import LiveServer, bearer, console_login, system_token, token
from tests.api.test_api import apply, base, error, rep, set_admin
from tests.conftest import Workplace

DAY = 86_400


def records_url(wp: Workplace, svc: str, subscription_id: str) -> str:
    return f"{base(wp, svc)}/subscriptions/{subscription_id}/records"


async def advance(api: httpx.AsyncClient, rt: Runtime, seconds: float) -> None:
    system = bearer(system_token(rt))
    moved = await api.post("/v1/sandbox/clock/advance", json={"seconds": seconds}, headers=system)
    assert moved.status_code == 200, moved.text


def zipped_csv(content: bytes) -> dict[str, list[dict[str, str]]]:
    files = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            raw = archive.read(name)
            assert raw.startswith("\ufeff".encode()), f"{name}: no BOM for Excel"
            files[name] = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    return files


async def test_records_from_cancellation_until_the_deletion(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    headers = rep(api_runtime, workplace)
    status = await apply(api, api_runtime, workplace, "miricanvas")
    url = records_url(workplace, "miricanvas", status["subscription_id"])
    early = error(await api.get(url, headers=headers), 404, "RECORDS_NOT_YET_AVAILABLE")
    assert "해지" in early["message_ko"]

    cancelled = await api.post(
        f"{base(workplace, 'miricanvas')}/subscription/cancel", headers=headers
    )
    assert cancelled.status_code == 200, cancelled.text
    deletion = datetime.fromisoformat(cancelled.json()["data_deletion_at"])

    answer = await api.get(url, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="bizsupport-miricanvas-{status["subscription_id"]}-records.json"'
    )
    body = answer.json()
    assert set(body) == {"subscription", "invoices", "usage_history", "audit"}
    assert body["subscription"]["state"] == "cancelled"
    assert [e["action"] for e in body["audit"]] == ["applied", "activated", "cancelled"]
    cancel_row = body["usage_history"][-1]
    assert cancel_row["action_ko"] == "이용 해지" and cancel_row["actor_name"] == "대표"
    assert cancel_row["at"].endswith("+09:00")

    # 23 days on: the 7-day notice is in the records too; the final invoice may be out.
    await advance(api, api_runtime, 23 * DAY + 60)
    body = (await api.get(url, headers=headers)).json()
    notice = next(e for e in body["audit"] if e["action"] == "deletion_upcoming")
    assert notice["details"]["days_left"] == 7
    assert datetime.fromisoformat(notice["details"]["data_deletion_at"]) == deletion
    assert any(row["action_ko"] == "데이터 삭제 예정 알림" for row in body["usage_history"])
    invoices = (await api.get(f"{base(workplace, 'miricanvas')}/invoices", headers=headers)).json()
    assert body["invoices"] == invoices["invoices"]  # as …/invoices shows them

    zipped = await api.get(url, params={"format": "csv"}, headers=headers)
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    assert zipped.headers["content-disposition"].endswith('-records.zip"')
    files = zipped_csv(zipped.content)
    assert set(files) == {"subscription.csv", "invoices.csv", "usage_history.csv", "audit.csv"}
    assert [r["내용"] for r in files["usage_history.csv"]][:3] == [
        "서비스 신청",
        "이용 시작",
        "이용 해지",
    ]
    assert [r["action"] for r in files["audit.csv"]] == [e["action"] for e in body["audit"]]
    lines = sum(len(i["lines"]) for i in body["invoices"])
    assert len(files["invoices.csv"]) == lines
    assert files["subscription.csv"][0]["subscription_id"] == status["subscription_id"]

    # The deletion: the records are gone with the data.
    await advance(api, api_runtime, 7 * DAY)
    gone = error(await api.get(url, headers=headers), 404, "RECORDS_DELETED")
    assert "영구 삭제" in gone["message_ko"]
    assert datetime.fromisoformat(gone["details"]["data_deletion_at"]) >= deletion


async def test_the_feed_announces_the_deletion_7_and_1_days_ahead_then_the_purge(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    """R-EVENT-4 on the sandbox clock: cancel; +23 days → subscription.deletion_upcoming with
    days_left 7; +6 → 1; +1 → subscription.purged, and the records download is gone."""
    headers = rep(api_runtime, workplace)
    status = await apply(api, api_runtime, workplace, "cartax")
    sid = status["subscription_id"]
    cancelled = await api.post(f"{base(workplace, 'cartax')}/subscription/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    deletion = datetime.fromisoformat(cancelled.json()["data_deletion_at"])

    async def announced() -> list[tuple[str, dict[str, object]]]:
        answer = await api.get(
            f"/v1/workplaces/{workplace.id}/events",
            params={
                "limit": 500,
                "type": ["subscription.deletion_upcoming", "subscription.purged"],
            },
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        return [
            (e["type"], e["data"]) for e in answer.json()["events"] if e["subscription_id"] == sid
        ]

    await advance(api, api_runtime, 23 * DAY + 60)
    seen = await announced()
    assert [(t, d["days_left"]) for t, d in seen] == [("subscription.deletion_upcoming", 7)]
    assert datetime.fromisoformat(str(seen[0][1]["data_deletion_at"])) == deletion
    await advance(api, api_runtime, 6 * DAY)
    assert [(t, d.get("days_left")) for t, d in await announced()] == [
        ("subscription.deletion_upcoming", 7),
        ("subscription.deletion_upcoming", 1),
    ]
    await advance(api, api_runtime, 1 * DAY)
    assert [t for t, _ in await announced()] == [
        "subscription.deletion_upcoming",
        "subscription.deletion_upcoming",
        "subscription.purged",
    ]
    error(
        await api.get(records_url(workplace, "cartax", sid), headers=headers),
        404,
        "RECORDS_DELETED",
    )


async def test_who_may_download_the_records(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, other_workplace: Workplace
) -> None:
    """The representative admin, and admins holding subscription.cancel on that service."""
    status = await apply(api, api_runtime, workplace, "tudy")
    sub = status["subscription_id"]
    url = records_url(workplace, "tudy", sub)
    cancel = await api.post(
        f"{base(workplace, 'tudy')}/subscription/cancel", headers=rep(api_runtime, workplace)
    )
    assert cancel.status_code == 200, cancel.text
    admin = bearer(token(api_runtime, workplace.id, workplace.admin))
    member = bearer(token(api_runtime, workplace.id, workplace.members[0]))

    error(await api.get(url, headers=admin), 403, "FORBIDDEN")  # no permission at all
    await set_admin(api, api_runtime, workplace, "tudy", ["usage.view", "plan.change"])
    refused = error(await api.get(url, headers=admin), 403, "FORBIDDEN")
    assert refused["details"]["needs"] == "subscription.cancel"
    await set_admin(api, api_runtime, workplace, "cartax", ["subscription.cancel"])
    error(await api.get(url, headers=admin), 403, "FORBIDDEN")  # on another service
    await set_admin(api, api_runtime, workplace, "tudy", ["subscription.cancel"])
    allowed = await api.get(url, headers=admin)
    assert allowed.status_code == 200 and allowed.json()["subscription"]["subscription_id"] == sub

    error(await api.get(url, headers=member), 403, "FORBIDDEN")
    stranger = bearer(token(api_runtime, other_workplace.id, other_workplace.rep))
    error(await api.get(url, headers=stranger), 404, "NOT_FOUND")  # another workplace's
    # the id under another service of the same workplace, or an id that does not exist
    wrong = records_url(workplace, "cartax", sub)
    error(await api.get(wrong, headers=rep(api_runtime, workplace)), 404, "NO_SUBSCRIPTION")
    missing = records_url(workplace, "tudy", "sub_nowhere")
    error(await api.get(missing, headers=rep(api_runtime, workplace)), 404, "NO_SUBSCRIPTION")
    bad = await api.get(url, params={"format": "xml"}, headers=rep(api_runtime, workplace))
    error(bad, 400, "VALIDATION_ERROR")


async def test_console_notice_for_who_may_cancel_and_not_for_members(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    """The representative sees the records links from the cancellation and the deletion notice
    from 7 days before; an admin with only usage.view and a member see neither."""
    transport = httpx.ASGITransport(app=api_app)

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, base_url="http://api.test")

    async with client() as api, client() as rep_c, client() as admin_c, client() as member_c:
        status = await apply(api, api_runtime, workplace, "loai")
        sub = status["subscription_id"]
        await set_admin(api, api_runtime, workplace, "loai", ["usage.view"])
        cancelled = await api.post(
            f"{base(workplace, 'loai')}/subscription/cancel", headers=rep(api_runtime, workplace)
        )
        assert cancelled.status_code == 200, cancelled.text
        await console_login(rep_c, api_runtime, workplace.id, workplace.rep)
        await console_login(admin_c, api_runtime, workplace.id, workplace.admin)
        await console_login(member_c, api_runtime, workplace.id, workplace.members[0])

        page = (await rep_c.get("/console/services/loai?tab=usage")).text
        assert 'data-testid="records-links"' in page  # from the cancellation on
        assert 'data-testid="deletion-notice"' not in page  # not yet: 30 days ahead
        assert 'data-testid="deletion-notice"' not in (await rep_c.get("/console")).text
        admin_page = (await admin_c.get("/console/services/loai?tab=usage")).text
        assert 'data-testid="records-links"' not in admin_page

        await advance(api, api_runtime, 23 * DAY + 60)
        home = (await rep_c.get("/console")).text
        assert f'data-subscription="{sub}"' in home
        assert "데이터 삭제 예정" in home and "D-7" in home
        assert "청구서, 이용 내역, 감사 기록" in home and "KST" in home
        link = f"/console/services/loai/records/{sub}?format=csv"
        assert link in home
        download = await rep_c.get(link)
        assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
        assert "usage_history.csv" in zipped_csv(download.content)
        service_page = (await rep_c.get("/console/services/loai")).text
        assert 'data-testid="deletion-notice"' in service_page

        for other in (admin_c, member_c):
            answer = await other.get("/console", follow_redirects=True)
            assert answer.status_code == 200
            assert 'data-testid="deletion-notice"' not in answer.text
        assert (await member_c.get("/console", follow_redirects=True)).url.path == "/console/me"
        refused = await admin_c.get(link)
        assert refused.status_code == 403 and "권한" in refused.text

        await advance(api, api_runtime, 7 * DAY)
        home = (await rep_c.get("/console")).text
        assert 'data-testid="deletion-notice"' not in home
        page = (await rep_c.get("/console/services/loai?tab=usage")).text
        assert 'data-testid="records-links"' not in page
        gone = await rep_c.get(link)
        assert gone.status_code == 404 and "영구 삭제" in gone.text


@needs_chromium
async def test_the_notice_reads_at_phone_width(
    api: httpx.AsyncClient, api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    """At 375 px the notice and its links fit the screen, with no serious axe finding."""
    await apply(api, api_runtime, workplace, "juju")
    cancel = await api.post(
        f"{base(workplace, 'juju')}/subscription/cancel", headers=rep(api_runtime, workplace)
    )
    assert cancel.status_code == 200, cancel.text
    await advance(api, api_runtime, 29 * DAY + 60)  # the 1-day notice
    async with LiveServer(api_app) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = await login(browser, server, api_runtime, workplace, workplace.rep)
        await page.set_viewport_size({"width": 375, "height": 812})
        for path in ("/console", "/console/services/juju?tab=usage"):
            await page.goto(f"{server.url}{path}")
            notice = page.get_by_test_id("deletion-notice")
            await expect(notice).to_contain_text("D-1")
            await expect(notice.get_by_test_id("records-csv")).to_be_visible()
            assert await overflows(page) == 0, path
            assert await serious_violations(page) == [], path
        await shot(page, "deletion-notice-phone")
        await browser.close()
