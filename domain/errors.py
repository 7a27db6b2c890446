"""Every refusal the product can give: one stable code, an HTTP status, English and Korean text.

R-ERR-1: a refused action returns a machine-readable code and a human message and changes nothing.
The one list lives here so the API, the CLI, the console and the workflow say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.calendar import SEOUL
from domain.permissions import PERMISSION_KO


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    en: str
    ko: str


ERRORS: dict[str, ErrorSpec] = {
    # input and authentication
    "VALIDATION_ERROR": ErrorSpec(
        400,
        "The request is malformed: {problem}",
        "요청 형식이 올바르지 않습니다. 입력한 값을 확인해 주십시오.",
    ),
    "PAYLOAD_TOO_LARGE": ErrorSpec(
        413,
        "The request body is larger than {limit} bytes.",
        "요청 본문이 {limit}바이트를 넘습니다.",
    ),
    "UNAUTHENTICATED": ErrorSpec(
        401, "A valid bearer token is required.", "유효한 인증 토큰이 필요합니다."
    ),
    "FORBIDDEN": ErrorSpec(
        403,
        "You do not have the permission this action needs ({needs}).",
        "이 작업을 할 권한이 없습니다{needs_ko}.",
    ),
    "NOT_FOUND": ErrorSpec(404, "Not found.", "찾을 수 없습니다."),
    "WEBHOOK_URL_REFUSED": ErrorSpec(
        422,
        "This URL cannot receive webhooks: {problem}",
        "이 주소로는 웹훅을 보낼 수 없습니다. 공개된 https:// 주소를 입력해 주십시오.",
    ),
    "UNKNOWN_EVENT_TYPE": ErrorSpec(
        422,
        "Unknown event type {event_type}.",
        "알 수 없는 이벤트 유형입니다. 문서에 있는 유형을 지정해 주십시오.",
    ),
    "WEBHOOK_ENDPOINT_LIMIT": ErrorSpec(
        422,
        "At most {limit} webhook endpoints can be registered here.",
        "웹훅 엔드포인트는 최대 {limit}개까지 등록할 수 있습니다.",
    ),
    "WEBHOOK_ENDPOINT_DISABLED": ErrorSpec(
        409,
        "The endpoint was disabled after its deliveries kept failing; register it again.",
        "전송이 계속 실패해 사용 중지된 엔드포인트입니다. 삭제한 뒤 다시 등록해 주십시오.",
    ),
    "WEBHOOK_DELIVERY_PENDING": ErrorSpec(
        409,
        "The delivery is still pending; it will be sent without a resend.",
        "아직 전송 대기 중입니다. 다시 보내지 않아도 전송됩니다.",
    ),
    "IDEMPOTENCY_KEY_REUSED": ErrorSpec(
        422,
        "This Idempotency-Key was used with a different request.",
        "이 Idempotency-Key는 다른 요청에 이미 사용되었습니다.",
    ),
    # directory and catalog
    "UNKNOWN_WORKPLACE": ErrorSpec(
        404,
        "Workplace {workplace_id} does not exist.",
        "워크플레이스를 찾을 수 없습니다.",
    ),
    "UNKNOWN_MEMBER": ErrorSpec(
        404,
        "Member {member_id} is not in this workplace.",
        "이 워크플레이스의 구성원이 아닙니다.",
    ),
    "UNKNOWN_SERVICE": ErrorSpec(
        404, "Service {service_id} does not exist.", "찾을 수 없는 서비스입니다."
    ),
    "UNKNOWN_PLAN": ErrorSpec(
        422,
        "Plan {plan_id} is not a plan of {service_id}.",
        "이 서비스에 없는 상품입니다.",
    ),
    "PLAN_REQUIRED": ErrorSpec(
        422,
        "{service_id} has several plans: choose one (plan_id).",
        "이 서비스는 세부 상품을 선택해야 합니다.",
    ),
    # application
    "NOT_REPRESENTATIVE_ADMIN": ErrorSpec(
        403, "Only the representative admin can do this.", "대표 관리자만 할 수 있습니다."
    ),
    "TERMS_NOT_AGREED": ErrorSpec(
        422, "Agree to the terms of use to apply.", "이용 약관에 동의해야 신청할 수 있습니다."
    ),
    "TERMS_VERSION_OUTDATED": ErrorSpec(
        422,
        "The terms have changed: agree to version {current_version}.",
        "약관이 변경되었습니다. {current_version} 버전에 동의해 주십시오.",
    ),
    "ALREADY_SUBSCRIBED": ErrorSpec(
        409,
        "{service_id} is already in use by this workplace.",
        "이 워크플레이스는 이미 이 서비스를 이용 중입니다.",
    ),
    "PARTNER_REFUSED": ErrorSpec(
        422,
        "The partner refused the application: {reason}",
        "제휴사가 신청을 거절했습니다: {reason}",
    ),
    # lifecycle
    "NO_SUBSCRIPTION": ErrorSpec(
        404,
        "This workplace has no subscription to {service_id}.",
        "이 서비스의 신청 내역이 없습니다.",
    ),
    "ALREADY_CANCELLED": ErrorSpec(
        409, "The subscription is already cancelled.", "이미 해지된 서비스입니다."
    ),
    "NOT_ACTIVE": ErrorSpec(
        409,
        "The subscription is {state}, not active.",
        "서비스가 이용 중 상태가 아닙니다.",
    ),
    # plan change
    "PLAN_CHANGE_NOT_SUPPORTED": ErrorSpec(
        422,
        "{service_id} has a single plan; it cannot be changed.",
        "이 서비스는 상품을 변경할 수 없습니다.",
    ),
    "SAME_PLAN": ErrorSpec(
        422, "{plan_id} is already the current plan.", "이미 이용 중인 상품입니다."
    ),
    "PLAN_CHANGE_WINDOW_CLOSED": ErrorSpec(
        422,
        "{why} Next change from {next_plan_change_at}.",
        "{why_ko} {next_plan_change_at}부터 변경할 수 있습니다.",
    ),
    "COURSES_IN_PROGRESS": ErrorSpec(
        422,
        "{member_count} members have {course_count} courses in progress; confirm to stop them.",
        "구성원 {member_count}명이 수강 중인 교육 과정 {course_count}개가 있습니다. 변경하면 중단됩니다.",
    ),
    "PLAN_CHANGE_FAILED": ErrorSpec(
        502,
        "The partner could not change the plan; nothing changed.",
        "제휴사에서 상품을 변경하지 못했습니다. 변경된 내용은 없습니다.",
    ),
    "NO_SCHEDULED_PLAN_CHANGE": ErrorSpec(
        409, "No plan change is scheduled.", "예약된 상품 변경이 없습니다."
    ),
    # permissions
    "AUTO_GRANTED_SERVICE": ErrorSpec(
        422,
        "{service_id} gives usage permission to every member automatically.",
        "이 서비스는 전체 구성원에게 사용 권한이 자동으로 부여·회수되므로 직접 부여하거나 회수할 수 없습니다.",
    ),
    "PERMISSION_NOT_HELD": ErrorSpec(
        409,
        "Member {member_id} does not hold this permission.",
        "이 구성원에게는 사용 권한이 없습니다.",
    ),
    "NOT_AN_ADMIN": ErrorSpec(
        422,
        "Only admins can hold management permissions.",
        "관리자만 관리 권한을 가질 수 있습니다.",
    ),
    "UNKNOWN_PERMISSION": ErrorSpec(
        422, "Unknown permission {permission}.", "알 수 없는 권한입니다."
    ),
    "REPRESENTATIVE_REQUIRED": ErrorSpec(
        409,
        "A workplace needs a representative admin: name a successor first.",
        "대표 관리자가 필요합니다. 먼저 후임자를 지정해 주십시오.",
    ),
    "SANDBOX_ONLY": ErrorSpec(
        404,
        "The sandbox clock exists only in sandbox mode.",
        "샌드박스 모드에서만 사용할 수 있습니다.",
    ),
    "CLOCK_BUSY": ErrorSpec(
        409, "Another clock advance is running.", "다른 시간 이동이 진행 중입니다."
    ),
    "RATE_LIMITED": ErrorSpec(
        429,
        "Too many attempts from this client; try again in {retry_after} seconds.",
        "시도가 너무 많습니다. {retry_after}초 후에 다시 시도해 주십시오.",
    ),
    "SERVICE_UNAVAILABLE": ErrorSpec(
        503,
        "A backing service is unavailable; try again.",
        "일시적으로 이용할 수 없습니다. 다시 시도해 주십시오.",
    ),
    "METHOD_NOT_ALLOWED": ErrorSpec(
        405, "Method {method} is not allowed here.", "허용되지 않는 요청입니다."
    ),
    "INTERNAL_ERROR": ErrorSpec(
        500,
        "Something went wrong on our side; nothing was changed. Try again.",
        "서버 내부 오류가 발생했습니다. 다시 시도해 주십시오.",
    ),
    # the event feed (R-EVENT-3)
    "UNKNOWN_EVENT": ErrorSpec(
        400,
        "There is no event {event_id} to read after: pass the id of an event this feed gave.",
        "이 이벤트 ID를 찾을 수 없습니다. 피드에서 받은 이벤트 ID를 after에 넣어 주십시오.",
    ),
    # access (directory sync, management permissions, single sign-on)
    "REPRESENTATIVE_HOLDS_ALL": ErrorSpec(
        422,
        "The representative admin holds every management permission already.",
        "대표 관리자는 모든 관리 권한을 이미 가지고 있습니다.",
    ),
    # a cancelled subscription's records download (R-EVENT-4)
    "RECORDS_NOT_YET_AVAILABLE": ErrorSpec(
        404,
        "The records of subscription {subscription_id} can be downloaded once it is cancelled,"
        " until its data is deleted.",
        "기록 내려받기는 이용 해지 후 데이터가 삭제되기 전까지 할 수 있습니다."
        " 이 서비스는 아직 해지되지 않았습니다.",
    ),
    "RECORDS_DELETED": ErrorSpec(
        404,
        "The data of subscription {subscription_id} was deleted at {data_deletion_at};"
        " its records can no longer be downloaded.",
        "데이터가 {data_deletion_at}에 영구 삭제되어 기록을 내려받을 수 없습니다.",
    ),
}


# Why the monthly plan-change window is closed: PLAN_CHANGE_WINDOW_CLOSED's {why} and {why_ko}.
WINDOW_CLOSED_REASONS: dict[str, tuple[str, str]] = {
    "APPLICATION_DAY": (
        "No plan change on the day of application.",
        "신청 당일에는 상품을 변경할 수 없습니다.",
    ),
    "MONTHLY_LIMIT": (
        "A plan can be changed once per month.",
        "상품은 월 1회만 변경할 수 있습니다.",
    ),
}


def window_closed_details(
    reason: str, next_plan_change_at: str, scheduled_plan_change_at: str | None = None
) -> dict[str, str]:
    """The details of a PLAN_CHANGE_WINDOW_CLOSED refusal (R-PLAN-2, R-PLAN-3, R-PLAN-4).

    ``scheduled_plan_change_at`` is given when a scheduled change (R-PLAN-8) is what moves
    ``next_plan_change_at`` a month on: that change takes its month, and withdrawing it frees
    the month. The refusal then names it, in the details and in both languages' words.
    """
    why, why_ko = WINDOW_CLOSED_REASONS[reason]
    at = datetime.fromisoformat(next_plan_change_at).astimezone(SEOUL)  # KST, like every time
    details = {"reason": reason.lower(), "why": why, "why_ko": why_ko}
    if scheduled_plan_change_at is not None:
        taken = datetime.fromisoformat(scheduled_plan_change_at).astimezone(SEOUL)
        month, month_ko = f"{taken:%Y-%m}", f"{taken.year}년 {taken.month}월"
        details["why"] += (
            f" The plan change scheduled for {taken.date().isoformat()} is {month}'s change;"
            f" withdraw it to change the plan in {month} instead."
        )
        details["why_ko"] += (
            f" {month_ko} 1일로 예약된 상품 변경이 {month_ko}의 변경입니다."
            f" 예약을 철회하면 {month_ko}에 변경할 수 있습니다."
        )
        details["scheduled_plan_change_at"] = taken.isoformat()
    details["next_plan_change_at"] = at.isoformat()
    return details


# What a FORBIDDEN refusal needed, said in Korean (never a permission key): R-PERM-3.
NEEDS_KO: dict[str, str] = {
    **PERMISSION_KO,
    "a system token": "시스템 토큰",
    "a member token": "구성원 토큰",
    "any management permission": "업무 지원 관리 권한",
    "any management permission on the service": "이 서비스의 관리 권한",
    "a request from this console": "이 콘솔에서 보낸 요청",
    "a form of this console": "이 콘솔의 입력 양식",
    "the demo login of a local stack": "로컬 개발 스택의 데모 로그인",
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class BizError(Exception):
    """A refusal with a stable code; nothing was changed."""

    def __init__(self, code: str, details: dict[str, Any] | None = None, **fields: Any) -> None:
        if code not in ERRORS:
            raise ValueError(f"undocumented error code {code}")
        self.code = code
        self.details: dict[str, Any] = {**(details or {}), **fields}
        spec = ERRORS[code]
        values = _Blank({k: v for k, v in self.details.items() if not isinstance(v, (list, dict))})
        needs = NEEDS_KO.get(str(self.details.get("needs", "")))
        values["needs_ko"] = f" (필요한 권한: {needs})" if needs else ""
        self.message = spec.en.format_map(values)
        self.message_ko = spec.ko.format_map(values)
        super().__init__(f"{code}: {self.message}")

    @property
    def status(self) -> int:
        return ERRORS[self.code].status

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "message_ko": self.message_ko,
                "details": self.details,
            }
        }
