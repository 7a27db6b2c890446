"""What the API's /metrics reads from the ledger at scrape time.

Read from PostgreSQL on every scrape rather than counted in a process, so every API process
answers the same numbers however many workers issued the invoices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.calendar import Period, next_period, period_of, period_start, period_start_date
from store.db import Pool

# Periods reported by the invoice series: the latest ones, so the label set stays bounded.
PERIODS_KEPT = 24


@dataclass(frozen=True)
class PeriodInvoices:
    period: Period
    issued: int
    total_won: int  # VAT included


@dataclass(frozen=True)
class MonthClose:
    """Invoices issued for a period against the invoices it should have."""

    period: Period
    which: str  # "last_closed" or "current"
    issued: int
    expected: int


async def invoices_by_period(pool: Pool, periods: int = PERIODS_KEPT) -> list[PeriodInvoices]:
    """Invoices issued and their total (won, VAT included) for each of the latest periods."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT period, count(*) AS issued, coalesce(sum(total), 0) AS total_won"
                " FROM invoices GROUP BY period ORDER BY period DESC LIMIT %s",
                (periods,),
            )
        ).fetchall()
    return [
        PeriodInvoices(period=r["period"], issued=int(r["issued"]), total_won=int(r["total_won"]))
        for r in reversed(rows)
    ]


def _previous_period(period: Period) -> Period:
    return period_of(period_start_date(period) - timedelta(days=1))


async def month_close(pool: Pool, now: datetime) -> list[MonthClose]:
    """Month-close progress for the last closed period and the current one (Seoul months).

    `expected` approximates "subscriptions with a billable day in the period" by subscriptions
    active at some point in it: activated before the period ends, and not cancelled before it
    starts. A subscription cancelled on the period's first day, or one whose whole period was
    unbillable for another reason, is counted although its invoice may rightly be absent, so
    `issued < expected` is a prompt to look, not proof of a missing invoice.
    """
    current = period_of(now)
    answers = []
    async with pool.connection() as conn:
        for which, period in (("last_closed", _previous_period(current)), ("current", current)):
            start, end = period_start(period), period_start(next_period(period))
            row = await (
                await conn.execute(
                    "SELECT"
                    " (SELECT count(*) FROM subscriptions WHERE activated_at < %(end)s"
                    "   AND (cancelled_at IS NULL OR cancelled_at >= %(start)s)) AS expected,"
                    " (SELECT count(*) FROM invoices WHERE period = %(period)s) AS issued",
                    {"start": start, "end": end, "period": period},
                )
            ).fetchone()
            assert row is not None
            answers.append(
                MonthClose(
                    period=period,
                    which=which,
                    issued=int(row["issued"]),
                    expected=int(row["expected"]),
                )
            )
    return answers
