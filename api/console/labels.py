"""The console's Korean words and formats: states, roles, permissions, actions, times, money."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.calendar import SEOUL

STATE_KO = {
    "not_applied": "미신청",
    "applied": "신청 처리 중",
    "active": "이용 중",
    "plan_changing": "상품 변경 중",
    "cancelled": "해지됨",
    "purged": "데이터 삭제됨",
}
ROLE_KO = {"representative_admin": "대표 관리자", "admin": "관리자", "member": "구성원"}
PERMISSION_KO = {
    "usage.view": "사용 현황·이용 내역·요금 조회",
    "usage.grant": "사용 권한 부여",
    "plan.change": "신청 상품 변경",
    "subscription.cancel": "이용 해지",
}
ACTION_KO = {
    "applied": "서비스 신청",
    "activated": "이용 시작",
    "refused": "신청 거절(제휴사)",
    "cancelled": "이용 해지",
    "purged": "데이터 영구 삭제",
    "plan_change_started": "상품 변경 시작",
    "plan_changed": "신청 상품 변경",
    "plan_change_failed": "상품 변경 실패",
    "plan_change_scheduled": "상품 변경 예약",
    "plan_change_withdrawn": "상품 변경 예약 취소",
    "plan_change_dropped": "예약된 상품 변경 취소(수강 중인 과정)",
    "usage_granted": "사용 권한 부여",
    "usage_revoked": "사용 권한 회수",
    "learning_records_reset": "학습 기록 초기화",
    "invoice_issued": "청구서 발행",
    "billing_closed": "청구 종료",
    "management_permissions_changed": "관리 권한 변경",
    "management_permissions_dropped": "관리 권한 해제",
    "member_joined": "구성원 추가",
    "member_left": "구성원 탈퇴",
    "member_role_changed": "역할 변경",
    "member_renamed": "이름 변경",
    "login_id_changed": "로그인 아이디 변경",
    "representative_changed": "대표 관리자 변경",
    "workplace_created": "워크플레이스 생성",
    "workplace_renamed": "워크플레이스 이름 변경",
}
OUTCOME_KO = {"ok": "완료", "refused": "거절", "failed": "실패", "dropped": "취소"}
BUTTON_KO = {
    "apply": "서비스 신청",
    "browse": "서비스 둘러보기",
    "manage": "서비스 관리",
    "inquire": "문의하기",
}


def _as_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def fmt_time(value: Any) -> str:
    moment = _as_time(value)
    return "-" if moment is None else moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M")


def fmt_date(value: Any) -> str:
    moment = _as_time(value)
    return "-" if moment is None else moment.astimezone(SEOUL).strftime("%Y년 %m월 %d일")


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)")


def humanize(text: str) -> str:
    """A refusal's Korean text with its ISO instants written as Seoul local times."""
    return _ISO.sub(lambda m: fmt_time(m.group(0).replace("Z", "+00:00")), text)


def won(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{int(Decimal(str(value))):,}원"


FILTERS = {"time": fmt_time, "date": fmt_date, "won": won, "humanize": humanize}
GLOBALS = {
    "STATE_KO": STATE_KO,
    "ROLE_KO": ROLE_KO,
    "PERMISSION_KO": PERMISSION_KO,
    "ACTION_KO": ACTION_KO,
    "OUTCOME_KO": OUTCOME_KO,
    "BUTTON_KO": BUTTON_KO,
}
