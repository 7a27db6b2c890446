"""The reconciler's reads of the subscriptions read model (services/reconcile.py).

Writes go through the modules that own them: a repaired row through `subscriptions.publish`
(never over a newer one), audit entries through `audit.write`.
"""

from __future__ import annotations

from collections.abc import Sequence

from statemachines.lifecycle import FINAL_STATES, TRANSIENT_STATES
from store.db import Pool, fetch_all
from store.subscriptions import ROW, SubscriptionRow


async def drift_candidates(
    pool: Pool,
    *,
    stale_after_seconds: float,
    quiet_for_seconds: float,
    limit: int,
    workplace_id: str | None = None,
    everything: bool = False,
) -> list[SubscriptionRow]:
    """Published rows (`status_seq` > 0) that may disagree with their workflow, least recently
    updated first: in a transient state and untouched for `stale_after_seconds`, or in any state
    but purged and untouched for `quiet_for_seconds`. With `everything`, every published row but
    the purged ones, whatever its age (an operator's full pass, e.g. after a restore)."""
    async with pool.connection() as conn:
        return await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE status_seq > 0 AND state <> ALL(%(final)s)"
            " AND (%(wp)s::text IS NULL OR workplace_id = %(wp)s)"
            " AND (%(everything)s OR (updated_at < now() - make_interval(secs => %(stale)s)"
            "   AND (state = ANY(%(transient)s)"
            "        OR updated_at < now() - make_interval(secs => %(quiet)s))))"
            " ORDER BY updated_at LIMIT %(limit)s",
            {
                "final": list(FINAL_STATES),
                "wp": workplace_id,
                "everything": everything,
                "stale": stale_after_seconds,
                "transient": list(TRANSIENT_STATES),
                "quiet": quiet_for_seconds,
                "limit": limit,
            },
        )


async def rows_by_id(pool: Pool, subscription_ids: Sequence[str]) -> dict[str, SubscriptionRow]:
    """The read-model rows of the given subscriptions, by id (absent ids are unknown)."""
    async with pool.connection() as conn:
        rows = await fetch_all(
            conn,
            SubscriptionRow,
            f"SELECT {ROW} FROM subscriptions WHERE subscription_id = ANY(%s)",
            (list(subscription_ids),),
        )
    return {r.subscription_id: r for r in rows}
