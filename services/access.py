"""Access: home cards, permission screens, the member menu and single sign-on (R-PERM, R-APPLY-5).

Every check reads the directory and PostgreSQL (R-ERR-3, R-TOKEN: roles never come from a token).
Per-service checks go through `SubscriptionService.require`, the one permission check.

Workplace scoping (R-PERM-10): every query is keyed by the workplace id of the call, and an
actor is looked up in that workplace only, so an actor of another workplace is UNKNOWN_MEMBER
(404) before anything of the workplace is read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from urllib.parse import urlencode

from domain.errors import BizError
from domain.permissions import (
    MANAGEMENT_PERMISSIONS,
    PLAN_CHANGE,
    SUBSCRIPTION_CANCEL,
    USAGE_GRANT,
    USAGE_VIEW,
    is_business_admin,
    unknown_permissions,
)
from domain.text import storable
from domain.tokens import check_secret, mint_launch_token, verify_launch_token
from services.billing import BillingService
from services.directory import notice_view
from services.models import (
    AuditEntryOut,
    CardButton,
    CardState,
    HolderOut,
    HomeCard,
    LaunchOut,
    ManagementPermissionsOut,
    MenuOut,
    MenuService,
    PermissionHolder,
    PermissionListing,
    ServiceManager,
    ServiceOverview,
    ServicePermissions,
    UsagePermissionsOut,
    VerifiedOut,
)
from services.subscriptions import SubscriptionService, UsageChange
from statemachines.lifecycle import ENDED_STATES, LIVE_STATES, USABLE_STATES
from store import access, directory, permissions, subscriptions
from store.subscriptions import SubscriptionRow

log = logging.getLogger(__name__)
DEFAULT_LAUNCH_URL = "http://127.0.0.1:8000/sso/launch"
MAX_AUDIT_LIMIT = 1000
# Spent jtis are kept this long after their token expired; older ones cannot verify anyway.
SPENT_JTI_RETENTION = timedelta(days=1)


class AccessService:
    def __init__(
        self,
        subscriptions: SubscriptionService,
        billing: BillingService,
        secret: str,
        launch_base_url: str = DEFAULT_LAUNCH_URL,
    ) -> None:
        self.pool = subscriptions.pool
        self.subscriptions = subscriptions
        self.billing = billing
        self.secret = check_secret(secret)  # a weak secret stops start-up, however passed in
        self.launch_base_url = launch_base_url
        self.authz = subscriptions.authz

    # ── helpers ──────────────────────────────────────────────────────────────────────────────

    def _catalog_ids(self) -> list[str]:
        return [s.service_id for s in self.authz.catalog.services]

    # ── home cards (R-APPLY-5) ───────────────────────────────────────────────────────────────

    async def home_cards(self, workplace_id: str, actor_id: str) -> list[HomeCard]:
        """One card per catalog service: its state and the buttons that fit it."""
        member, held = await self.authz.business_admin(workplace_id, actor_id)
        latest: dict[str, SubscriptionRow] = {}
        for row in await subscriptions.for_workplace(self.pool, workplace_id):
            shown = latest.get(row.service_id)
            # the live subscription, else the latest (rows come oldest first)
            if shown is None or shown.state not in LIVE_STATES:
                latest[row.service_id] = row
        cards = []
        for service in self.authz.catalog.services:
            found = latest.get(service.service_id)
            state: CardState = found.state if found else "not_applied"
            buttons: list[CardButton] = []
            if state not in LIVE_STATES:
                buttons.append("apply")
            buttons.append("browse")
            if found is not None:
                buttons.append("manage")
            buttons.append("inquire")
            cards.append(
                HomeCard(
                    service_id=service.service_id,
                    name_ko=service.name_ko,
                    name_en=service.name_en,
                    state=state,
                    subscription_id=found.subscription_id if found else None,
                    buttons=buttons,
                    manages=member.role == "representative_admin"
                    or bool(held.get(service.service_id)),
                )
            )
        return cards

    # ── one service as the caller may see it (the console's service page) ──────────────────

    async def service_overview(
        self, workplace_id: str, service_id: str, actor_id: str
    ) -> ServiceOverview:
        """What the caller may see and do on one service. Anyone managing it (any management
        permission, or the representative) sees its real state and usage; each action is
        offered only to who may take it, so the console shows no button that can only fail."""
        service = self.authz.service(service_id)
        member, held = await self.authz.held_on(workplace_id, service_id, actor_id)
        if not held:  # a business admin who does not manage this service: the guide only
            return ServiceOverview(
                service_id=service_id,
                role=member.role,
                held=[],
                manages=False,
                status=None,
                usage=None,
                managers=[],
                pending_charge=None,
                can_apply=False,
                can_grant=False,
                can_change_plan=False,
                can_cancel=False,
                can_view_fees=False,
            )
        row = await subscriptions.current(self.pool, workplace_id, service_id)
        status = await self.subscriptions.view(row) if row is not None else None
        usage = None
        if row is not None:
            usage = await self._usage(workplace_id, row)
        live = row is not None and row.state in LIVE_STATES
        usable = row is not None and row.state in USABLE_STATES
        can_view_fees = USAGE_VIEW in held
        return ServiceOverview(
            service_id=service_id,
            role=member.role,
            held=held,
            manages=True,
            status=status,
            usage=usage,
            managers=await self._managers(workplace_id, service_id),
            pending_charge=(await self.billing.final_charge(row) if can_view_fees else None),
            can_apply=member.role == "representative_admin" and not live,
            can_grant=(USAGE_GRANT in held and usable and not service.auto_grant_all_members),
            can_change_plan=PLAN_CHANGE in held and usable and service.has_plan_choice,
            can_cancel=SUBSCRIPTION_CANCEL in held and live,
            can_view_fees=can_view_fees,
        )

    async def _managers(self, workplace_id: str, service_id: str) -> list[ServiceManager]:
        """R-PERM-3, -4: the 권한 관리 listing of the service turned around: each manager (the
        representative, holding everything implicitly, then each admin) with what they hold."""
        (listing,) = await self._listing(workplace_id, [service_id])
        managers: dict[str, ServiceManager] = {}
        for entry in listing.permissions:  # in MANAGEMENT_PERMISSIONS order
            for holder in entry.holders:
                manager = managers.setdefault(
                    holder.member_id,
                    ServiceManager(
                        member_id=holder.member_id,
                        name=holder.name,
                        role="representative_admin" if holder.implicit else "admin",
                        permissions=[],
                    ),
                )
                manager.permissions.append(entry.permission)
        return list(managers.values())

    # ── usage permissions (R-PERM-2) ─────────────────────────────────────────────────────────

    async def usage_permissions(
        self, workplace_id: str, service_id: str, actor_id: str
    ) -> UsagePermissionsOut:
        self.authz.service(service_id)
        await self.authz.require(workplace_id, service_id, actor_id, USAGE_VIEW)
        row = await subscriptions.current(self.pool, workplace_id, service_id)
        if row is None:
            raise BizError("NO_SUBSCRIPTION", service_id=service_id)
        return await self._usage(workplace_id, row)

    async def set_usage(self, change: UsageChange) -> UsagePermissionsOut:
        """Grant or revoke (SubscriptionService.change_usage), answered with the holders after
        it. Whoever may make the change gets that answer (`usage.grant`; the listing on its own
        needs `usage.view`), as the console shows the holders to anyone managing the service:
        a change made is never answered 403."""
        row = await self.subscriptions.change_usage(change)
        return await self._usage(change.workplace_id, row)

    async def _usage(self, workplace_id: str, row: SubscriptionRow) -> UsagePermissionsOut:
        """Who holds usage permission on the subscription (its read-model row); a cancelled
        subscription holds no seats, whatever rows its last holders left."""
        holders = []
        if row.state not in ENDED_STATES:
            holders = await access.usage_holders_named(self.pool, workplace_id, row.subscription_id)
        return UsagePermissionsOut(
            service_id=row.service_id,
            subscription_id=row.subscription_id,
            state=row.state,
            count=len(holders),
            holders=[
                HolderOut(member_id=h.member_id, name=h.name, granted_at=h.granted_at)
                for h in holders
            ],
        )

    # ── management permissions (R-PERM-3, -4) ────────────────────────────────────────────────

    async def management_permissions(
        self, workplace_id: str, actor_id: str
    ) -> ManagementPermissionsOut:
        """Per service, per permission, the admins holding it (representative: implicitly)."""
        await self.authz.representative(workplace_id, actor_id)
        return ManagementPermissionsOut(
            services=await self._listing(workplace_id, self._catalog_ids())
        )

    async def set_management_permissions(
        self,
        workplace_id: str,
        service_id: str,
        member_id: str,
        permissions: list[str],
        actor_id: str,
    ) -> ServicePermissions:
        """Replace an admin's permissions on one service (`[]` removes them all).

        The representative admin holds every permission implicitly; setting theirs is refused
        with REPRESENTATIVE_HOLDS_ALL (their stored applicant rows stay, R-PERM-3).
        """
        self.authz.service(service_id)
        await self.authz.representative(workplace_id, actor_id)
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise BizError("VALIDATION_ERROR", problem="permissions must be a list of names")
        unknown = unknown_permissions(permissions)
        if unknown:
            raise BizError("UNKNOWN_PERMISSION", permission=unknown[0], unknown=unknown)
        if not storable(member_id):
            raise BizError("UNKNOWN_MEMBER", member_id="?")
        await access.set_management(
            self.pool,
            workplace_id=workplace_id,
            service_id=service_id,
            member_id=member_id,
            permissions=permissions,
            by=actor_id,
            at=await self.subscriptions.clock(),
        )
        (listing,) = await self._listing(workplace_id, [service_id])
        return listing

    async def _listing(self, workplace_id: str, service_ids: list[str]) -> list[ServicePermissions]:
        explicit: dict[tuple[str, str], list[PermissionHolder]] = {}
        for row in await access.management_holders(self.pool, workplace_id):
            if row.role == "representative_admin":
                continue  # listed once, as holding everything implicitly
            explicit.setdefault((row.service_id, row.permission), []).append(
                PermissionHolder(member_id=row.member_id, name=row.name, implicit=False)
            )
        rep = await directory.representative(self.pool, workplace_id)
        implicit = (
            [PermissionHolder(member_id=rep.member_id, name=rep.name, implicit=True)] if rep else []
        )
        return [
            ServicePermissions(
                service_id=service_id,
                permissions=[
                    PermissionListing(
                        permission=permission,
                        holders=implicit + explicit.get((service_id, permission), []),
                    )
                    for permission in MANAGEMENT_PERMISSIONS
                ],
            )
            for service_id in service_ids
        ]

    # ── the member's menu (R-PERM-5, -8, -9) ─────────────────────────────────────────────────

    async def menu(self, workplace_id: str, member_id: str) -> MenuOut:
        member = await self.authz.actor(workplace_id, member_id)
        usable = await access.usable_subscriptions(self.pool, workplace_id, member_id)
        services = []
        for row in usable:
            service = self.authz.catalog.service(row.service_id)
            if service is None:
                continue
            services.append(
                MenuService(
                    service_id=service.service_id, name=service.name_ko, name_en=service.name_en
                )
            )
        held = await permissions.management_of(self.pool, workplace_id, member_id)
        notices = await access.notices_for(self.pool, workplace_id, member_id)
        return MenuOut(
            services=services,
            business_support_admin=is_business_admin(member.role, held),
            notices=[notice_view(n) for n in notices],
        )

    # ── single sign-on (R-PERM-8, R-CANCEL-1) ────────────────────────────────────────────────

    async def launch(
        self, workplace_id: str, member_id: str, service_id: str, now: datetime
    ) -> LaunchOut:
        """A single-use launch token for a member with usage permission on an active
        subscription. `now` is wall-clock time (token expiry is wall time, also in sandbox)."""
        self.authz.service(service_id)
        await self.authz.actor(workplace_id, member_id)
        usable = await access.usable_subscriptions(self.pool, workplace_id, member_id, service_id)
        if not usable:
            raise BizError("FORBIDDEN", needs="usage permission on an active subscription")
        token, _jti, expires_at = mint_launch_token(
            self.secret,
            member_id=member_id,
            workplace_id=workplace_id,
            service_id=service_id,
            now=now,
        )
        # The token is not in the URL (logs, history, Referer): the client POSTs it there.
        launch_url = f"{self.launch_base_url}?{urlencode({'service': service_id})}"
        return LaunchOut(launch_url=launch_url, token=token, expires_at=expires_at)

    async def verify_launch(self, token: str, now: datetime) -> VerifiedOut:
        """The partner's check: signature and expiry, the jti spent once, then the member must
        still be present with usage permission on an active subscription. Any failure is
        UNAUTHENTICATED (a token works once, then 401)."""
        claims = verify_launch_token(self.secret, token, now=now)
        spent = await access.spend_launch_token(
            self.pool,
            jti=claims.jti,
            workplace_id=claims.workplace_id,
            member_id=claims.member_id,
            service_id=claims.service_id,
            expires_at=claims.expires_at,
        )
        if not spent:
            log.info("launch token %s refused: already used", claims.jti)
            raise BizError("UNAUTHENTICATED")
        await access.forget_expired_launch_tokens(self.pool, now - SPENT_JTI_RETENTION)
        usable = await access.usable_subscriptions(
            self.pool, claims.workplace_id, claims.member_id, claims.service_id
        )
        if not usable:
            log.info(
                "launch token %s refused: no usage permission on an active service", claims.jti
            )
            raise BizError("UNAUTHENTICATED")
        return VerifiedOut(
            member_id=claims.member_id,
            workplace_id=claims.workplace_id,
            service_id=claims.service_id,
            subscription_id=usable[0].subscription_id,
        )

    # ── audit log (R-LIFE-4, R-BILL-8) ───────────────────────────────────────────────────────

    async def audit_log(
        self, workplace_id: str, actor_id: str, service_id: str | None, limit: int = 100
    ) -> list[AuditEntryOut]:
        """The latest `limit` entries, oldest first. With a service: `usage.view` there;
        without: the representative admin only (directory and workplace-wide entries)."""
        if service_id is None:
            await self.authz.representative(workplace_id, actor_id)
        else:
            self.authz.service(service_id)
            await self.authz.require(workplace_id, service_id, actor_id, USAGE_VIEW)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise BizError("VALIDATION_ERROR", problem="limit must be an integer")
        if not 1 <= limit <= MAX_AUDIT_LIMIT:
            raise BizError("VALIDATION_ERROR", problem=f"limit must be 1..{MAX_AUDIT_LIMIT}")
        rows = await access.recent_audit(self.pool, workplace_id, service_id, limit)
        return [AuditEntryOut.model_validate(r) for r in rows]
