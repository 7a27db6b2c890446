"""The console's 웹훅 page (R-EVENT-2), over HTTP: only the representative admin has it; the
secret is shown once on the answer to the form (never in a cookie or URL), deliveries carry
Korean status words and Seoul times, and a finished delivery can be resent."""

from __future__ import annotations

import re

import httpx
import pytest

from api.console.labels import EVENT_TYPE_KO
from api.runtime import Runtime
from domain.event_types import EVENT_TYPES
from store.db import Pool
from tests.api.conftest import console_login, csrf_of
from tests.conftest import Workplace
from tests.store.test_webhooks import T0, append_event, insert_delivery

SECRET = re.compile(r'value="(whsec_[A-Za-z0-9+/=]+)"')


def test_every_event_type_has_korean_words() -> None:
    assert set(EVENT_TYPE_KO) == set(EVENT_TYPES)


async def test_the_representative_registers_an_endpoint_and_resends_a_delivery(
    api: httpx.AsyncClient, api_runtime: Runtime, pool: Pool, workplace: Workplace
) -> None:
    csrf = await console_login(api, api_runtime, workplace.id, workplace.rep)
    empty = await api.get("/console/webhooks")
    assert empty.status_code == 200 and 'data-testid="nav-webhooks"' in empty.text
    assert "등록한 웹훅 엔드포인트가 없습니다" in empty.text

    refused = await api.post(
        "/console/webhooks",
        data={"csrf": csrf, "url": "https://10.0.0.8/hook"},
        follow_redirects=True,
    )
    assert "이 주소로는 웹훅을 보낼 수 없습니다" in refused.text
    assert 'data-code="WEBHOOK_URL_REFUSED"' in refused.text

    made = await api.post(
        "/console/webhooks",
        data={
            "csrf": csrf,
            "url": "http://127.0.0.1:8999/hook",
            "description": "정산 시스템",
            "type": ["invoice.issued", "subscription.cancelled"],
        },
    )
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    found = SECRET.search(made.text)
    assert found, made.text
    secret = found.group(1)
    assert "한 번만 표시됩니다" in made.text
    assert secret not in made.headers.get("set-cookie", "") and secret not in str(made.url)
    (endpoint_id,) = re.findall(r'data-testid="webhook-(ep_[0-9a-f]+)"', made.text)

    again = await api.get("/console/webhooks")
    assert secret not in again.text and "whsec_" not in again.text
    assert "청구서 발행" in again.text and "이용 해지" in again.text and "사용 중" in again.text

    failed = await insert_delivery(
        pool,
        endpoint_id,
        await append_event(pool, workplace.id),
        "failed",
        T0,
        attempts=8,
        last_status_code=500,
        last_error="HTTP 500",
    )
    listed = await api.get("/console/webhooks")
    assert 'data-status="failed"' in listed.text and ">실패<" in listed.text
    assert f'data-testid="resend-{failed}"' in listed.text

    resent = await api.post(
        f"/console/webhooks/{endpoint_id}/deliveries/{failed}/resend",
        data={"csrf": csrf_of(listed.text)},
        follow_redirects=True,
    )
    assert "다시 보내도록 예약했습니다" in resent.text
    row = resent.text[resent.text.index(f'data-testid="delivery-{failed}"') :]
    row = row[: row.index("</tr>")]
    assert ">대기<" in row and "KST" in row and "다시 보내기" not in row

    rotated = await api.post(
        f"/console/webhooks/{endpoint_id}/rotate", data={"csrf": csrf_of(resent.text)}
    )
    new = SECRET.search(rotated.text)
    assert new and new.group(1) != secret and "이전 키도" in rotated.text

    deleted = await api.post(
        f"/console/webhooks/{endpoint_id}/delete",
        data={"csrf": csrf_of(rotated.text)},
        follow_redirects=True,
    )
    assert "웹훅 엔드포인트를 삭제했습니다" in deleted.text
    assert f'data-testid="webhook-{endpoint_id}"' not in deleted.text


async def test_a_form_without_the_session_csrf_changes_nothing(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace
) -> None:
    await console_login(api, api_runtime, workplace.id, workplace.rep)
    answer = await api.post(
        "/console/webhooks",
        data={"csrf": "forged", "url": "http://127.0.0.1:8999/hook"},
        follow_redirects=True,
    )
    assert "whsec_" not in answer.text
    assert (await api_runtime.webhooks.endpoints(workplace.id, workplace.rep)).endpoints == []


@pytest.mark.parametrize("who", ["admin", "member"])
async def test_others_have_no_webhooks_page(
    api: httpx.AsyncClient, api_runtime: Runtime, workplace: Workplace, who: str
) -> None:
    member = workplace.admin if who == "admin" else workplace.members[0]
    if who == "admin":
        await api_runtime.access.set_management_permissions(
            workplace.id, "ubob", member, ["usage.view"], workplace.rep
        )
    await console_login(api, api_runtime, workplace.id, member)
    home = await api.get("/console", follow_redirects=True)
    assert 'data-testid="nav-webhooks"' not in home.text
    page = await api.get("/console/webhooks")
    assert page.status_code == 403 and "대표 관리자만 할 수 있습니다" in page.text
