"""store/metrics.py: month-close progress on the real PostgreSQL.

`expected` approximates "had a billable day in the period" by "active at some point in it"
(README, "Metrics"). The rows sit in a random year of the 1900s, where no other test writes, so
the counts are exact although the suite shares one database.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from store.db import Pool
from store.metrics import month_close
from tests.conftest import Workplace

SEOUL = ZoneInfo("Asia/Seoul")


async def test_month_close_counts_subscriptions_active_in_the_period(pool: Pool) -> None:
    wp = await Workplace(pool).create()
    year = random.randint(1901, 1999)
    period = f"{year}-03"

    def at(month: int, day: int, hour: int = 12) -> datetime:
        return datetime(year, month, day, hour, tzinfo=SEOUL)

    rows = {
        # activated, cancelled
        "before-and-on": (at(2, 10), None),  # counted in March and April
        "ended-in-february": (at(2, 10), at(2, 20)),  # not in March
        "cancelled-on-the-1st": (at(2, 10), at(3, 1, 0)),  # counted: the approximation
        "activated-on-the-31st": (at(3, 31, 23), None),  # counted in March and April
        "activated-in-april": (at(4, 1, 0), None),  # April only
        "never-activated": (None, at(3, 5)),  # never
    }
    ids = {name: f"sub-{uuid.uuid4().hex[:10]}" for name in rows}
    async with pool.connection() as conn:
        for name, (activated, cancelled) in rows.items():
            await conn.execute(
                "INSERT INTO subscriptions (subscription_id, workplace_id, service_id, state,"
                " plan_id, applicant_id, terms_version, activated_at, cancelled_at)"
                " VALUES (%s, %s, %s, 'cancelled', 'basic', %s, 't', %s, %s)",
                (ids[name], wp.id, f"svc-{name}", wp.rep, activated, cancelled),
            )
        await conn.execute(
            "INSERT INTO invoices (invoice_id, subscription_id, workplace_id, service_id, period,"
            " issued_at, lines, subtotal, vat, total)"
            " VALUES (%s, %s, %s, 'svc', %s, %s, '[]', 1000, 100, 1100)",
            (f"inv-{ids['before-and-on']}", ids["before-and-on"], wp.id, period, at(4, 1, 0)),
        )
    try:
        last, current = await month_close(pool, at(4, 10))
        assert (last.which, last.period) == ("last_closed", period)
        assert (last.expected, last.issued) == (3, 1)
        assert (current.which, current.period) == ("current", f"{year}-04")
        assert (current.expected, current.issued) == (3, 0)
        # In January the last closed period is the previous year's December.
        (december, _) = await month_close(pool, at(1, 15))
        assert december.period == f"{year - 1}-12" and december.expected == 0
    finally:
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM invoices WHERE workplace_id = %s", (wp.id,))
            await conn.execute("DELETE FROM subscriptions WHERE workplace_id = %s", (wp.id,))
