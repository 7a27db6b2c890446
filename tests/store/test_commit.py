"""store.subscriptions.commit on the real PostgreSQL: one decision's writes (invoice, usage
holders, read model, audit entry) land together or not at all, and a repeated commit changes
nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from domain.billing import Invoice, InvoiceLine
from domain.subscription import Publication
from store import subscriptions
from store.db import Pool
from tests.conftest import Workplace
from tests.store.test_notify import publication


async def _reserved(pool: Pool) -> tuple[str, str]:
    wp = await Workplace(pool).create()
    sub = f"sub_{uuid.uuid4().hex[:20]}"
    assert await subscriptions.reserve(
        pool,
        subscription_id=sub,
        workplace_id=wp.id,
        service_id="cartax",
        plan_id="cartax-basic",
        applicant_id=wp.rep,
        terms_version="t",
    )
    return sub, wp.id


def _decision(sub: str, wp: str, seq: int, **audit_details: Any) -> Publication:
    """An active subscription's month-close with two holders, as version 2 commits it."""
    pub = publication(sub, wp, "active", seq, "active")
    assert pub.audit is not None
    line = InvoiceLine(
        plan_id="cartax-basic",
        from_day=date(2026, 10, 1),
        to_day=date(2026, 10, 31),
        days=31,
        seats=2,
        amount=Decimal(2000),
    )
    invoice = Invoice(
        period="2026-10",
        lines=[line],
        subtotal=Decimal(2000),
        vat=Decimal(200),
        total=Decimal(2200),
    )
    audit = pub.audit.model_copy(update={"details": {**pub.audit.details, **audit_details}})
    return pub.model_copy(
        update={
            "audit": audit,
            "usage_holders": ["m1", "m2"],
            "holders_at": datetime.now(UTC),
            "invoice": invoice,
        }
    )


async def _written(pool: Pool, sub: str) -> dict[str, Any]:
    async with pool.connection() as conn:

        async def one(sql: str) -> Any:
            row = await (await conn.execute(sql, (sub,))).fetchone()
            assert row is not None
            return row["n"]

        return {
            "invoices": await one("SELECT count(*) AS n FROM invoices WHERE subscription_id = %s"),
            "holders": await one(
                "SELECT count(*) AS n FROM usage_permissions WHERE subscription_id = %s"
            ),
            "audit": await one("SELECT count(*) AS n FROM audit_log WHERE subscription_id = %s"),
            "seq": await one(
                "SELECT status_seq AS n FROM subscriptions WHERE subscription_id = %s"
            ),
        }


async def test_a_commit_writes_everything_once(pool: Pool) -> None:
    sub, wp = await _reserved(pool)
    before = await _written(pool, sub)
    await subscriptions.commit(pool, _decision(sub, wp, 1))
    after = {"invoices": 1, "holders": 2, "audit": before["audit"] + 1, "seq": 1}
    assert await _written(pool, sub) == after
    await subscriptions.commit(pool, _decision(sub, wp, 1))  # a retried local activity
    assert await _written(pool, sub) == after


async def test_a_failing_statement_rolls_back_the_whole_decision(pool: Pool) -> None:
    sub, wp = await _reserved(pool)
    before = await _written(pool, sub)
    # PostgreSQL's jsonb refuses \u0000: the audit entry, sent after the invoice, the holders
    # and the read model, fails.
    poisoned = _decision(sub, wp, 1, note="\x00")
    try:
        await subscriptions.commit(pool, poisoned)
    except Exception as err:
        assert "\\u0000" in str(err) or "0x00" in str(err) or "NUL" in str(err), err
    else:
        raise AssertionError("the poisoned audit entry was accepted")
    assert await _written(pool, sub) == before
    # the pool's connections are usable afterwards, and the same decision commits
    await subscriptions.commit(pool, _decision(sub, wp, 1))
    assert (await _written(pool, sub))["invoices"] == 1
