"""The console's Korean words and formats: states, roles, permissions, actions, times, money."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.audit import AuditAction
from domain.calendar import SEOUL
from domain.event_types import EventType
from domain.permissions import PERMISSION_KO
from domain.subscription import SYSTEM_ACTOR, PlanChangeNotice, PlanChangeNoticeCode

STATE_KO = {
    "not_applied": "미신청",
    "applied": "신청 처리 중",
    "active": "이용 중",
    "plan_changing": "상품 변경 중",
    "cancelled": "해지됨",
    "purged": "데이터 삭제됨",
}
ROLE_KO = {"representative_admin": "대표 관리자", "admin": "관리자", "member": "구성원"}
# One label per audit action code (tests/api/test_console_words.py checks that none is missing).
ACTION_KO: dict[AuditAction, str] = {
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
    "deletion_upcoming": "데이터 삭제 예정 알림",
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
    "reservation_resumed": "신청 처리 재개(자동 복구)",
    "read_model_repaired": "상태 정보 복구(자동 복구)",
    "partner_account_suspended": "제휴사 계정 정지(자동 복구)",
    "partner_refused": "제휴사 거절(운영자 확인 중)",
    "webhook_endpoint_created": "웹훅 엔드포인트 등록",
    "webhook_endpoint_deleted": "웹훅 엔드포인트 삭제",
    "webhook_endpoint_disabled": "웹훅 엔드포인트 사용 중지(계속 실패)",
    "webhook_secret_rotated": "웹훅 서명 키 교체",
}
# The partner calls a `partner_refused` entry can name.
PARTNER_CALL_KO = {"suspend": "제휴사 계정 정지", "delete_data": "제휴사 데이터 삭제"}
OUTCOME_KO = {"ok": "완료", "refused": "거절", "failed": "실패", "dropped": "취소"}
# The webhooks page (R-EVENT-2): one label per event type, checked like ACTION_KO.
EVENT_TYPE_KO: dict[EventType, str] = {
    "subscription.applied": "서비스 신청",
    "subscription.activated": "이용 시작",
    "subscription.provisioning_failed": "신청 실패",
    "subscription.plan_change_scheduled": "상품 변경 예약",
    "subscription.plan_change_withdrawn": "상품 변경 예약 취소",
    "subscription.plan_change_started": "상품 변경 시작",
    "subscription.plan_changed": "신청 상품 변경",
    "subscription.plan_change_failed": "상품 변경 실패",
    "subscription.plan_change_dropped": "예약된 상품 변경 취소",
    "subscription.cancelled": "이용 해지",
    "subscription.billing_closed": "청구 종료",
    "subscription.deletion_upcoming": "데이터 삭제 예정",
    "subscription.purged": "데이터 영구 삭제",
    "usage_permission.granted": "사용 권한 부여",
    "usage_permission.revoked": "사용 권한 회수",
    "usage_permission.learning_records_reset": "학습 기록 초기화",
    "management_permission.changed": "관리 권한 변경",
    "invoice.issued": "청구서 발행",
}
DELIVERY_STATUS_KO = {"pending": "대기", "succeeded": "성공", "failed": "실패"}
ENDPOINT_STATUS_KO = {"enabled": "사용 중", "disabled": "사용 중지"}
BUTTON_KO = {
    "apply": "서비스 신청",
    "browse": "서비스 둘러보기",
    "manage": "서비스 관리",
    "inquire": "문의하기",
}


def actor_ko(actor: str, names: dict[str, str]) -> str:
    """Who made an audited change, as 이용 내역 names them."""
    return "시스템" if actor == SYSTEM_ACTOR else names.get(actor, "알 수 없음")


def _as_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def fmt_time(value: Any) -> str:
    moment = _as_time(value)
    return "-" if moment is None else moment.astimezone(SEOUL).strftime("%Y-%m-%d %H:%M KST")


def fmt_date(value: Any) -> str:
    moment = _as_time(value)
    return "-" if moment is None else moment.astimezone(SEOUL).strftime("%Y-%m-%d")


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)")


def humanize(text: str) -> str:
    """A refusal's Korean text with its ISO instants written as Seoul local times."""
    return _ISO.sub(lambda m: fmt_time(m.group(0).replace("Z", "+00:00")), text)


def won(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{int(Decimal(str(value))):,}원"


FILTERS = {
    "time": fmt_time,
    "date": fmt_date,
    "won": won,
    "humanize": humanize,
    "notice_ko": lambda n: notice_ko(n),
}
GLOBALS = {
    "STATE_KO": STATE_KO,
    "ROLE_KO": ROLE_KO,
    "PERMISSION_KO": PERMISSION_KO,
    "ACTION_KO": ACTION_KO,
    "OUTCOME_KO": OUTCOME_KO,
    "BUTTON_KO": BUTTON_KO,
    "EVENT_TYPE_KO": EVENT_TYPE_KO,
    "DELIVERY_STATUS_KO": DELIVERY_STATUS_KO,
    "ENDPOINT_STATUS_KO": ENDPOINT_STATUS_KO,
    "actor_ko": actor_ko,
}


REASON_KO = {
    "member_left": "구성원 탈퇴",
    "demoted": "역할 변경",
    "scheduled_change_dropped_same_plan": "이미 그 상품을 이용 중",
    "scheduled_change_dropped_month_used": "이번 달 상품 변경을 이미 함",
    # the same reasons in audit entries written before they were codes
    "already on that plan": "이미 그 상품을 이용 중",
    "this month's plan change was already made": "이번 달 상품 변경을 이미 함",
}


def describe(
    action: str, details: dict[str, Any], names: dict[str, str], plans: dict[str, str]
) -> str:
    """An audit entry's details as a Korean sentence for 이용 내역 (never keys or ids)."""

    def who(key: str = "member_id") -> str:
        member = details.get(key)
        return names.get(str(member), str(member)) if member else ""

    def plan(key: str = "plan_id") -> str:
        value = details.get(key)
        return plans.get(str(value), str(value)) if value else ""

    def perms(key: str) -> str:
        return ", ".join(PERMISSION_KO.get(p, p) for p in details.get(key) or [])

    reason = REASON_KO.get(str(details.get("reason", "")), "")
    if action == "usage_granted":
        return f"{who()}에게 사용 권한 부여" + (" (자동)" if details.get("automatic") else "")
    if action == "usage_revoked":
        return f"{who()}의 사용 권한 회수" + (f" ({reason})" if reason else "")
    if action == "plan_changed":
        text = f"{plan('from_plan')} → {plan('to_plan')}"
        stopped = details.get("stopped_courses") or 0
        return text + (f", 수강 중인 교육 과정 {stopped}개 중단" if stopped else "")
    if action == "plan_change_scheduled":
        return f"{plan()}(으)로 {fmt_time(details.get('at'))}에 변경 예약"
    if action in ("plan_change_withdrawn", "plan_change_started", "plan_change_failed"):
        return plan()
    if action == "plan_change_dropped":
        if details.get("member_count"):
            return f"{plan()}: 구성원 {details['member_count']}명이 교육 과정 수강 중"
        return f"{plan()}: {reason}" if reason else plan()
    if action == "invoice_issued":
        return f"{details.get('period', '')} 청구서 {won(details.get('total'))}"
    if action == "billing_closed":
        return f"{details.get('period', '')} 청구 종료"
    if action == "cancelled" and details.get("dropped_plan_change"):
        return f"예약된 상품 변경({plan('dropped_plan_change')}) 취소"
    if action == "purged":
        return f"데이터 {details.get('removed_objects', 0)}건 삭제"
    if action == "refused":
        return str(details.get("reason", ""))
    if action == "partner_refused":
        what = PARTNER_CALL_KO.get(str(details.get("operation", "")), "")
        return f"{what}: {details.get('reason', '')}"
    if action == "activated" and details.get("usage_granted"):
        people = ", ".join(names.get(m, m) for m in details["usage_granted"])
        return f"전체 구성원에게 사용 권한 자동 부여: {people}"
    if action == "applied":
        return f"약관 버전 {details.get('terms_version', '')}"
    if action == "management_permissions_changed":
        parts = [
            f"추가: {perms('added')}" if details.get("added") else "",
            f"해제: {perms('removed')}" if details.get("removed") else "",
        ]
        return f"{who()} — " + ", ".join(p for p in parts if p)
    if action == "management_permissions_dropped":
        return f"{who()} — {perms('permissions')} 해제" + (f" ({reason})" if reason else "")
    if action == "learning_records_reset":
        return f"{who()}의 학습 기록 {details.get('records', 0)}건 초기화"
    if action == "member_role_changed":
        frm, to = details.get("from_role", ""), details.get("to_role", "")
        return f"{who()}: {ROLE_KO.get(frm, frm)} → {ROLE_KO.get(to, to)}"
    if action in ("member_joined", "member_left", "member_renamed", "login_id_changed"):
        return who()
    if action == "representative_changed":
        return f"{who('previous_representative')} → {who()}"
    if action in ("workplace_created", "workplace_renamed"):
        return str(details.get("name", ""))
    return ""


NOTICE_KO: dict[PlanChangeNoticeCode, str] = {
    "scheduled_change_dropped_same_plan": (
        "예약된 상품 변경이 취소되었습니다: 이미 그 상품을 이용 중입니다."
    ),
    "scheduled_change_dropped_month_used": (
        "예약된 상품 변경이 취소되었습니다: 이번 달 상품 변경을 이미 했습니다."
    ),
    "scheduled_change_dropped_courses_in_progress": (
        "예약된 상품 변경이 취소되었습니다: 수강 중인 교육 과정이 있습니다."
    ),
    "scheduled_change_failed": "예약된 상품 변경에 실패했습니다. 다시 신청해 주십시오.",
}


def notice_ko(notice: PlanChangeNotice | None) -> str:
    """The workflow's plan-change notice, by its code, in Korean."""
    return "" if notice is None else NOTICE_KO[notice.code]
