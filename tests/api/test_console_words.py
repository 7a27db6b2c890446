"""The console speaks Korean to people: no ids, permission keys or English in what it says;
이용 내역 (R-BILL-8) in sentences, automatic grants included (R-PERM-6), filtered by service and
by person; refusals in Korean (R-ERR-1)."""

from __future__ import annotations

import re
from typing import get_args

from fastapi import FastAPI

from api.console.labels import ACTION_KO, NOTICE_KO, notice_ko
from api.runtime import Runtime
from domain.audit import AUDIT_ACTIONS
from domain.subscription import PlanChangeNotice, PlanChangeNoticeCode
from tests.api.conftest import TERMS, bearer, console_login, token
from tests.api.test_console_security import client_of
from tests.conftest import Workplace

KEYS = re.compile(r"usage\.view|usage\.grant|plan\.change|subscription\.cancel|\w+=|\['")


def text_of(html: str) -> str:
    """What a person reads: the page without tags, scripts and attribute values."""
    html = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


async def test_history_in_sentences_with_automatic_grants_and_filters(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(api_app) as http:
        applied = await http.post(
            f"/v1/workplaces/{workplace.id}/services/ubob/subscription",
            json={"terms_version": TERMS, "agree_terms": True, "plan_id": "ubob-basic"},
            headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
        )
        assert applied.status_code == 201
        await console_login(http, api_runtime, workplace.id, workplace.rep)
        page = text_of((await http.get("/console/history")).text)
        assert "사용 권한 자동 부여" in page and "m1" in page  # ubob's automatic grants
        assert not KEYS.search(page), KEYS.search(page)
        only_m1 = text_of(
            (await http.get(f"/console/history?service=ubob&member={workplace.members[0]}")).text
        )
        assert "사용 권한 자동 부여" in only_m1
        assert "약관 버전" not in only_m1  # the application is not about m1


async def test_refusals_in_korean_name_what_is_missing_without_keys(
    api_app: FastAPI, api_runtime: Runtime, workplace: Workplace
) -> None:
    async with client_of(api_app) as http:
        applied = await http.post(
            f"/v1/workplaces/{workplace.id}/services/miricanvas/subscription",
            json={"terms_version": TERMS, "agree_terms": True},
            headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
        )
        assert applied.status_code == 201
        delegated = await http.put(
            f"/v1/workplaces/{workplace.id}/services/miricanvas/management-permissions/"
            f"{workplace.admin}",
            json={"permissions": ["usage.view"]},
            headers=bearer(token(api_runtime, workplace.id, workplace.rep)),
        )
        assert delegated.status_code == 200
        csrf = await console_login(http, api_runtime, workplace.id, workplace.admin)
        refused = await http.post(
            "/console/services/miricanvas/cancel", data={"csrf": csrf}, follow_redirects=True
        )
        shown = text_of(refused.text)
        assert "이 작업을 할 권한이 없습니다 (필요한 권한: 이용 해지)" in shown
        assert not KEYS.search(shown) and "permission" not in shown
        unknown = await http.get("/console/services/nope")
        assert "찾을 수 없는 서비스입니다" in unknown.text and "nope" not in text_of(unknown.text)


def test_every_audit_action_and_notice_has_korean_words() -> None:
    """Audit actions and plan-change notices are codes (domain/audit.py, domain/subscription.py);
    the console words each by its code, so a new code without a label fails here."""
    assert set(ACTION_KO) == set(AUDIT_ACTIONS)
    assert set(NOTICE_KO) == set(get_args(PlanChangeNoticeCode))
    for code in get_args(PlanChangeNoticeCode):
        worded = notice_ko(PlanChangeNotice(code=code, plan_id="ubob-premium"))
        assert worded and not KEYS.search(worded) and not re.search(r"[A-Za-z]", worded)
    # an older read-model row's English notice reads as its code, then in Korean
    old = PlanChangeNotice.model_validate("Scheduled change to ubob-premium failed.")
    assert notice_ko(old) == NOTICE_KO["scheduled_change_failed"]
