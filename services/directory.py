"""Directory sync (system token; docs/rules.md R-PERM-1, -7, -9): workplaces and members.

The directory is the source of every role (R-TOKEN). Changes are written to PostgreSQL in one
transaction each (`store.directory.sync_member` / `leave`), audited, and then told to the
subscription workflows by signal:

- a member who joins (or comes back) → `member_joined` to the workplace's live subscriptions of
  auto-grant services (ubob grants usage permission at once, R-PERM-6); no other service acts
  on it, so no other subscription is signalled;
- a member who leaves → `member_left` to the live subscriptions on which the read model shows
  the member holding usage permission, and to every live auto-grant one (usage permission
  dropped, R-PERM-7); a subscription where the member holds no seat has nothing to drop and is
  not signalled. Their management permissions are dropped in the same transaction as the
  departure;
- a changed login id → `login_id_changed` to the workplace's auto-grant (ubob) subscriptions that
  still hold data (the workflow resets the member's learning records through the partner and
  audits it, R-PERM-9); the member gets a notice, which the answer lists under `notices`.

Signals follow the commit, so a crash in between can lose one. Re-sending is harmless (every
handler is idempotent) and the sync heals the loss where it can: every PUT of a present member
re-sends `member_joined` to the auto-grant subscriptions, and a DELETE of a member who already
left re-sends `member_left` before answering UNKNOWN_MEMBER, to the same targets as a first
departure: a seat the lost signal failed to drop is still in the read model, since only the
workflow removes it from there.

The read model lags the workflow while a seat is being written; the two cases that lag could
hide are covered: an auto-grant seat (granted by `member_joined` or on activation) is signalled
whatever the read model says, and a manual grant re-checks the directory after its update has
written the seat (`SubscriptionService.set_usage`): either the departure sees the seat, or the
grant sees the departure and sends `member_left` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.service import RPCError, RPCStatusCode

from domain.audit import AuditAction
from domain.errors import BizError
from domain.permissions import ROLES
from domain.subscription import SYSTEM_ACTOR, MemberEvent
from domain.text import storable
from services.models import (
    DroppedPermission,
    MemberLeftOut,
    MemberOut,
    MemberSyncOut,
    NoticeOut,
    WorkplaceInfo,
    WorkplaceOut,
)
from services.subscriptions import SubscriptionService
from statemachines.lifecycle import LIVE_STATES
from store import access, audit, directory, subscriptions
from store.access import NoticeRow
from store.subscriptions import SubscriptionRow
from workflows.subscription import SubscriptionWorkflow

log = logging.getLogger(__name__)

LEARNING_RESET = "learning_records_reset"
_MAX_TEXT = 200


def notice_view(row: NoticeRow) -> NoticeOut:
    return NoticeOut.model_validate(row)


def _text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BizError("VALIDATION_ERROR", problem=f"{field} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise BizError("VALIDATION_ERROR", problem=f"{field} is longer than {_MAX_TEXT}")
    if not storable(value):
        raise BizError("VALIDATION_ERROR", problem=f"{field} contains control characters")
    return value


class DirectoryService:
    def __init__(self, subscriptions: SubscriptionService) -> None:
        self.pool = subscriptions.pool
        self.subscriptions = subscriptions

    # ── reading (who is who: the API's and the console's callers, the console's pickers) ────

    async def workplace(self, workplace_id: str) -> WorkplaceInfo | None:
        found = await directory.workplace(self.pool, workplace_id)
        return WorkplaceInfo.model_validate(found) if found is not None else None

    async def member(self, workplace_id: str, member_id: str) -> MemberOut | None:
        """A present member of the workplace (one who left, or never joined, is None)."""
        found = await directory.member(self.pool, workplace_id, member_id)
        return MemberOut.model_validate(found) if found is not None else None

    async def present_members(self, workplace_id: str) -> list[MemberOut]:
        """Present members: the representative admin, then admins, then members."""
        return [
            MemberOut.model_validate(m)
            for m in await directory.present_members(self.pool, workplace_id)
        ]

    async def representative(self, workplace_id: str) -> MemberOut:
        """The workplace's representative admin (UNKNOWN_WORKPLACE when there is none)."""
        found = await directory.representative(self.pool, workplace_id)
        if found is not None:
            return MemberOut.model_validate(found)
        if await directory.workplace(self.pool, workplace_id) is None:
            raise BizError("UNKNOWN_WORKPLACE", workplace_id=workplace_id)
        raise BizError("REPRESENTATIVE_REQUIRED")

    # ── workplaces ───────────────────────────────────────────────────────────────────────────

    async def put_workplace(
        self, workplace_id: str, name: str, representative: dict[str, str]
    ) -> WorkplaceOut:
        """Create or rename a workplace and make `representative` its representative admin."""
        _text("workplace_id", workplace_id)
        _text("name", name)
        if not isinstance(representative, dict):
            raise BizError("VALIDATION_ERROR", problem="representative_admin must be an object")
        rep_id = _text("representative_admin.member_id", representative.get("member_id"))
        rep_login = _text("representative_admin.login_id", representative.get("login_id"))
        rep_name = _text("representative_admin.name", representative.get("name"))
        before = await directory.workplace(self.pool, workplace_id)
        created = await directory.upsert_workplace(self.pool, workplace_id, name)
        if created or (before is not None and before.name != name):
            await self._audit(
                workplace_id,
                "workplace_created" if created else "workplace_renamed",
                name=name,
                **({} if before is None else {"previous_name": before.name}),
            )
        synced = await self.put_member(
            workplace_id,
            rep_id,
            login_id=rep_login,
            name=rep_name,
            role="representative_admin",
        )
        row = await directory.workplace(self.pool, workplace_id)
        assert row is not None
        return WorkplaceOut(
            workplace=WorkplaceInfo.model_validate(row),
            created=created,
            representative_admin=synced.member,
            notices=synced.notices,
        )

    # ── members ──────────────────────────────────────────────────────────────────────────────

    async def put_member(
        self, workplace_id: str, member_id: str, *, login_id: str, name: str, role: str
    ) -> MemberSyncOut:
        """Create or update a member, with what changed and the notices it caused."""
        _text("workplace_id", workplace_id)
        _text("member_id", member_id)
        _text("login_id", login_id)
        _text("name", name)
        if role not in ROLES:
            raise BizError("VALIDATION_ERROR", problem=f"role must be one of {', '.join(ROLES)}")
        if await directory.workplace(self.pool, workplace_id) is None:
            raise BizError("UNKNOWN_WORKPLACE", workplace_id=workplace_id)
        synced = await directory.sync_member(
            self.pool,
            workplace_id,
            {"member_id": member_id, "login_id": login_id, "name": name},
            role,
            at=await self.subscriptions.clock(),
        )
        before, after = synced.before, synced.after
        joined = before is None or before.left_at is not None
        login_changed = before is not None and before.login_id != login_id
        changes: list[str] = []

        if joined:
            changes.append("joined")
            await self._audit(
                workplace_id,
                "member_joined",
                member_id=member_id,
                role=role,
                rejoined=before is not None,
            )
        else:
            assert before is not None
            if before.role != role:
                changes.append("role_changed")
                await self._audit(
                    workplace_id,
                    "member_role_changed",
                    member_id=member_id,
                    from_role=before.role,
                    to_role=role,
                )
            if before.name != name:
                changes.append("renamed")
                await self._audit(workplace_id, "member_renamed", member_id=member_id)
        if synced.previous_representative is not None:
            changes.append("representative_changed")
            await self._audit(
                workplace_id,
                "representative_changed",
                member_id=member_id,
                previous_representative=synced.previous_representative,
            )
        if synced.dropped_permissions:  # audited and announced with the demotion
            changes.append("management_permissions_dropped")
        if login_changed:
            assert before is not None
            changes.append("login_id_changed")
            await self._audit(
                workplace_id,
                "login_id_changed",
                member_id=member_id,
                previous_login_id=before.login_id,
                login_id=login_id,
            )

        # Joined or not: a present member's PUT re-sends, healing a lost `member_joined`.
        event = MemberEvent(member_id=member_id, login_id=login_id)
        for sub in await subscriptions.live_of_services(
            self.pool, workplace_id, self._auto_grant_services()
        ):
            await self._signal(sub.subscription_id, SubscriptionWorkflow.member_joined, event)
        notices: list[NoticeOut] = []
        if login_changed:
            notices = await self._reset_learning_records(workplace_id, member_id, event)
        return MemberSyncOut(
            member=MemberOut.model_validate(after), changes=changes, notices=notices
        )

    async def remove_member(self, workplace_id: str, member_id: str) -> MemberLeftOut:
        """A member leaves: every usage and management permission goes (R-PERM-7)."""
        _text("workplace_id", workplace_id)
        _text("member_id", member_id)
        if await directory.workplace(self.pool, workplace_id) is None:
            raise BizError("UNKNOWN_WORKPLACE", workplace_id=workplace_id)
        result = await directory.leave(
            self.pool, workplace_id, member_id, at=await self.subscriptions.clock()
        )
        if result is None:
            raise BizError("UNKNOWN_MEMBER", member_id=member_id)
        event = MemberEvent(member_id=member_id)
        # Read after the departure's commit (see the module docstring on the lag).
        concerned = await subscriptions.live_held_by(
            self.pool, workplace_id, member_id, or_services=self._auto_grant_services()
        )
        if not result.left_now:
            for sub in concerned:  # heal a signal lost after an earlier departure
                await self._signal(sub.subscription_id, SubscriptionWorkflow.member_left, event)
            raise BizError("UNKNOWN_MEMBER", member_id=member_id)
        member = result.member
        # Its dropped management permissions were audited and announced with the departure.
        await self._audit(workplace_id, "member_left", member_id=member_id, role=member.role)
        for sub in concerned:
            await self._signal(sub.subscription_id, SubscriptionWorkflow.member_left, event)
        return MemberLeftOut(
            member=MemberOut.model_validate(member),
            dropped_management_permissions=[
                DroppedPermission(service_id=r.service_id, permission=r.permission)
                for r in result.dropped_permissions
            ],
        )

    # ── helpers ──────────────────────────────────────────────────────────────────────────────

    def _auto_grant(self, service_id: str) -> bool:
        found = self.subscriptions.authz.catalog.service(service_id)
        return bool(found and found.auto_grant_all_members)

    def _auto_grant_services(self) -> list[str]:
        """Services that grant usage permission to every member (ubob): the only ones that act
        on `member_joined`."""
        return [
            s.service_id
            for s in self.subscriptions.authz.catalog.services
            if s.auto_grant_all_members
        ]

    async def _reset_learning_records(
        self, workplace_id: str, member_id: str, event: MemberEvent
    ) -> list[NoticeOut]:
        """R-PERM-9: every auto-grant (ubob) subscription still holding data resets the member's
        learning records; one notice per service."""
        rows = await subscriptions.for_workplace(self.pool, workplace_id)
        targets = [r for r in rows if self._auto_grant(r.service_id) and r.state != "purged"]
        by_service: dict[str, list[SubscriptionRow]] = {}
        for row in targets:
            if await self._signal(
                row.subscription_id, SubscriptionWorkflow.login_id_changed, event
            ):
                by_service.setdefault(row.service_id, []).append(row)
        notices: list[NoticeOut] = []
        now = await self.subscriptions.clock()
        for service_id, subs in sorted(by_service.items()):
            service = self.subscriptions.authz.service(service_id)
            live = [s for s in subs if s.state in LIVE_STATES]
            main = (live or subs)[-1]
            notice = await access.add_notice(
                self.pool,
                workplace_id=workplace_id,
                member_id=member_id,
                kind=LEARNING_RESET,
                service_id=service_id,
                subscription_id=main.subscription_id,
                message=(
                    f"Your login id changed, so your {service.name_en} learning records"
                    " (courses in progress included) were reset."
                ),
                message_ko=(
                    f"로그인 아이디가 변경되어 {service.name_ko} 학습 기록"
                    "(수강 중인 과정 포함)이 초기화되었습니다."
                ),
                details={
                    "login_id": event.login_id,
                    "subscription_ids": [s.subscription_id for s in subs],
                },
                at=now,
            )
            notices.append(notice_view(notice))
        return notices

    async def _signal(
        self,
        subscription_id: str,
        signal: Callable[[SubscriptionWorkflow, MemberEvent], Awaitable[None]],
        event: MemberEvent,
    ) -> bool:
        """Send a member event; False when the workflow has already completed."""
        handle = self.subscriptions.handle(subscription_id)
        try:
            await handle.signal(signal, event)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info(
                "subscription %s has no running workflow; %s skipped",
                subscription_id,
                signal.__name__,
            )
            return False
        return True

    async def _audit(self, workplace_id: str, action: AuditAction, **details: Any) -> None:
        at = await self.subscriptions.clock()
        async with self.pool.connection() as conn:
            await audit.write(
                conn,
                event_key=None,
                at=at,
                workplace_id=workplace_id,
                service_id=details.pop("service_id", None),
                subscription_id=None,
                actor=SYSTEM_ACTOR,
                action=action,
                details=details,
            )
