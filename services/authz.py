"""Who may do what: the one place every service checks its caller (R-PERM, R-ERR-3, R-TOKEN).

Roles always come from the directory and management permissions from PostgreSQL, never from a
token. Workplace scoping (R-PERM-10): an actor is looked up in the workplace of the call only, so
an actor of another workplace is UNKNOWN_MEMBER (404) before anything of the workplace is read.
"""

from __future__ import annotations

from domain.catalog import Catalog, Service
from domain.errors import BizError
from domain.permissions import MANAGEMENT_PERMISSIONS, holds, is_business_admin
from domain.text import storable
from services.models import MemberOut
from store import directory, permissions
from store.db import Pool


class Authz:
    def __init__(self, pool: Pool, catalog: Catalog) -> None:
        self.pool = pool
        self.catalog = catalog

    def service(self, service_id: str) -> Service:
        found = self.catalog.service(service_id)
        if found is None:
            raise BizError("UNKNOWN_SERVICE", service_id=service_id)
        return found

    async def actor(self, workplace_id: str, member_id: str) -> MemberOut:
        """The present member of the workplace making the call."""
        if not storable(workplace_id):
            raise BizError("UNKNOWN_WORKPLACE", workplace_id="?")
        if not storable(member_id):
            raise BizError("UNKNOWN_MEMBER", member_id="?")
        found = await directory.member(self.pool, workplace_id, member_id)
        if found is not None:  # members reference their workplace: it exists
            return MemberOut.model_validate(found)
        if await directory.workplace(self.pool, workplace_id) is None:
            raise BizError("UNKNOWN_WORKPLACE", workplace_id=workplace_id)
        raise BizError("UNKNOWN_MEMBER", member_id=member_id)

    async def require(
        self, workplace_id: str, service_id: str, member_id: str, permission: str
    ) -> MemberOut:
        """The one permission check (R-PERM-3): `permission` on the service, or refused."""
        member = await self.actor(workplace_id, member_id)
        held = await permissions.management_of(self.pool, workplace_id, member_id)
        if not holds(member.role, held.get(service_id, set()), permission):
            raise BizError("FORBIDDEN", needs=permission)
        return member

    async def held_on(
        self, workplace_id: str, service_id: str, member_id: str
    ) -> tuple[MemberOut, list[str]]:
        """A business admin (R-PERM-5) and the management permissions they hold on the service
        (the representative: all of them; possibly none). FORBIDDEN for anyone else."""
        member, explicit = await self.business_admin(workplace_id, member_id)
        on_service = explicit.get(service_id, set())
        return member, [p for p in MANAGEMENT_PERMISSIONS if holds(member.role, on_service, p)]

    async def representative(self, workplace_id: str, member_id: str) -> MemberOut:
        member = await self.actor(workplace_id, member_id)
        if member.role != "representative_admin":
            raise BizError("NOT_REPRESENTATIVE_ADMIN")
        return member

    async def business_admin(
        self, workplace_id: str, member_id: str
    ) -> tuple[MemberOut, dict[str, set[str]]]:
        """The representative, or an admin holding a management permission on some service,
        with their explicit permissions per service (R-PERM-5)."""
        member = await self.actor(workplace_id, member_id)
        held = await permissions.management_of(self.pool, workplace_id, member_id)
        if not is_business_admin(member.role, held):
            raise BizError("FORBIDDEN", needs="any management permission")
        return member, held
