"""Management permission rules (R-PERM-3..5): pure, no I/O."""

from __future__ import annotations

from typing import Final

USAGE_VIEW: Final = "usage.view"
USAGE_GRANT: Final = "usage.grant"
PLAN_CHANGE: Final = "plan.change"
SUBSCRIPTION_CANCEL: Final = "subscription.cancel"
MANAGEMENT_PERMISSIONS: Final[tuple[str, ...]] = (
    USAGE_VIEW,
    USAGE_GRANT,
    PLAN_CHANGE,
    SUBSCRIPTION_CANCEL,
)

# How the console and Korean refusals name each permission (R-PERM-3), in MANAGEMENT_PERMISSIONS
# order.
PERMISSION_KO: Final[dict[str, str]] = {
    "usage.view": "사용 현황·이용 내역·요금 조회",
    "usage.grant": "사용 권한 부여",
    "plan.change": "신청 상품 변경",
    "subscription.cancel": "이용 해지",
}

ROLES: Final[tuple[str, ...]] = ("member", "admin", "representative_admin")


def holds(role: str, explicit: set[str], needed: str) -> bool:
    """The representative admin holds every permission implicitly; admins what they were given.

    A plain member holds nothing, even if a stale row says otherwise (demotion drops them).
    """
    if role == "representative_admin":
        return True
    if role != "admin":
        return False
    return needed in explicit


def is_business_admin(role: str, explicit: dict[str, set[str]]) -> bool:
    """R-PERM-5: the business-support menu shows for the representative admin and for an admin
    holding any management permission on any service; never for a plain member."""
    if role == "representative_admin":
        return True
    return role == "admin" and any(explicit.values())


def unknown_permissions(names: list[str]) -> list[str]:
    """The names that are not management permissions, in the order given."""
    return [n for n in names if n not in MANAGEMENT_PERMISSIONS]
