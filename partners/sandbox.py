"""The built-in sandbox partner: acts on real rows in the `partner_sandbox` schema.

Operators and tests script its answers through `partner_sandbox.scripted_faults`: a `refuse` row
makes provisioning fail for good with its reason; a `transient` row fails the next `remaining`
calls, as a flaky partner would.
"""

from __future__ import annotations

from datetime import datetime

from partners.gateway import (
    DeletionCount,
    MemberCourses,
    PartnerAccount,
    PartnerRefusal,
    PartnerUnavailable,
)
from store.db import Pool


class SandboxPartner:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def _scripted_fault(self, workplace_id: str, service_id: str) -> None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE partner_sandbox.scripted_faults SET remaining = remaining - 1"
                    " WHERE workplace_id = %s AND service_id = %s AND kind = 'transient'"
                    " AND remaining > 0 RETURNING remaining",
                    (workplace_id, service_id),
                )
            ).fetchone()
            if row is not None:
                raise PartnerUnavailable("sandbox partner: scripted transient fault")
            refusal = await (
                await conn.execute(
                    "SELECT reason FROM partner_sandbox.scripted_faults"
                    " WHERE workplace_id = %s AND service_id = %s AND kind = 'refuse'",
                    (workplace_id, service_id),
                )
            ).fetchone()
            if refusal is not None:
                raise PartnerRefusal(refusal["reason"] or "refused by the partner")

    async def provision(
        self,
        *,
        subscription_id: str,
        workplace_id: str,
        service_id: str,
        plan_id: str,
        at_iso: str,
    ) -> None:
        await self._scripted_fault(workplace_id, service_id)
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO partner_sandbox.accounts (subscription_id, workplace_id, service_id,"
                " plan_id, status, sso_registered, created_at)"
                " VALUES (%s, %s, %s, %s, 'active', true, %s)"
                " ON CONFLICT (subscription_id) DO NOTHING",
                (
                    subscription_id,
                    workplace_id,
                    service_id,
                    plan_id,
                    datetime.fromisoformat(at_iso),
                ),
            )

    async def suspend(self, *, subscription_id: str, at_iso: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE partner_sandbox.accounts SET status = 'suspended', suspended_at = %s"
                " WHERE subscription_id = %s AND status = 'active'",
                (datetime.fromisoformat(at_iso), subscription_id),
            )

    async def active_accounts(self, *, workplace_id: str | None = None) -> list[PartnerAccount]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT subscription_id, workplace_id, service_id FROM partner_sandbox.accounts"
                    " WHERE status = 'active' AND (%s::text IS NULL OR workplace_id = %s)"
                    " ORDER BY subscription_id",
                    (workplace_id, workplace_id),
                )
            ).fetchall()
        return [PartnerAccount(**r) for r in rows]

    async def courses_in_progress(self, *, subscription_id: str) -> list[MemberCourses]:
        async with self.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT member_id, array_agg(course_id ORDER BY course_id) AS courses"
                    " FROM partner_sandbox.learning_records"
                    " WHERE subscription_id = %s AND status = 'in_progress'"
                    " GROUP BY member_id ORDER BY member_id",
                    (subscription_id,),
                )
            ).fetchall()
        return [MemberCourses(member_id=r["member_id"], courses=r["courses"]) for r in rows]

    async def change_plan(
        self, *, subscription_id: str, plan_id: str, stop_courses: bool, at_iso: str
    ) -> int:
        at = datetime.fromisoformat(at_iso)
        async with self.pool.connection() as conn, conn.transaction():
            stopped = 0
            if stop_courses:
                # R-PLAN-6: a stopped course starts again from the beginning.
                cur = await conn.execute(
                    "UPDATE partner_sandbox.learning_records"
                    " SET status = 'stopped', progress = 0, updated_at = %s"
                    " WHERE subscription_id = %s AND status = 'in_progress'",
                    (at, subscription_id),
                )
                stopped = cur.rowcount
            await conn.execute(
                "UPDATE partner_sandbox.accounts SET plan_id = %s WHERE subscription_id = %s",
                (plan_id, subscription_id),
            )
        return stopped

    async def reset_learning_records(self, *, subscription_id: str, member_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM partner_sandbox.learning_records"
                " WHERE subscription_id = %s AND member_id = %s",
                (subscription_id, member_id),
            )
            return cur.rowcount

    async def delete_data(self, *, subscription_id: str) -> DeletionCount:
        details: dict[str, int] = {}
        async with self.pool.connection() as conn, conn.transaction():
            for table in ("learning_records", "documents", "accounts"):
                cur = await conn.execute(
                    f"DELETE FROM partner_sandbox.{table} WHERE subscription_id = %s",
                    (subscription_id,),
                )
                details[table] = cur.rowcount
        return DeletionCount(partner_objects=sum(details.values()), details=details)
