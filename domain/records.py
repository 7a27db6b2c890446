"""A cancelled subscription's records download and deletion notice (R-EVENT-4): when each is
offered, as pure rules over the subscription's read-model facts (services/records.py asks).

The records (invoices, usage history, audit) can be downloaded from the cancellation until the
data deletion (R-CANCEL-2); the console shows the notice from the first deletion notice's
instant (7 days before) until the deletion.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from domain.calendar import SEOUL
from domain.errors import BizError
from domain.subscription import DELETION_NOTICE_DAYS

NOTICE_LEAD = timedelta(days=max(DELETION_NOTICE_DAYS))


def records_refusal(
    *,
    subscription_id: str,
    state: str,
    data_deletion_at: datetime | None,
    purged_at: datetime | None,
    now: datetime,
) -> BizError | None:
    """Why the records cannot be downloaded now, or None: before the cancellation there is
    nothing to take away yet; at the deletion instant (or once purged) they are gone."""
    deleted_at = purged_at or data_deletion_at
    if state == "purged" or (deleted_at is not None and now >= deleted_at):
        when = deleted_at.astimezone(SEOUL).isoformat() if deleted_at is not None else "?"
        return BizError("RECORDS_DELETED", subscription_id=subscription_id, data_deletion_at=when)
    if state != "cancelled":
        return BizError("RECORDS_NOT_YET_AVAILABLE", subscription_id=subscription_id, state=state)
    return None


def deletion_notice_shown(
    *, state: str, data_deletion_at: datetime | None, purged_at: datetime | None, now: datetime
) -> bool:
    """Whether the admins see the deletion notice now: cancelled with a deletion ahead, from
    7 days before it until it happens."""
    if state != "cancelled" or purged_at is not None or data_deletion_at is None:
        return False
    return data_deletion_at - NOTICE_LEAD <= now < data_deletion_at


def days_left(data_deletion_at: datetime, now: datetime) -> int:
    """Whole days until the deletion, rounded up (D-7 from 7 days before until 6 days before)."""
    return max(0, math.ceil((data_deletion_at - now) / timedelta(days=1)))
