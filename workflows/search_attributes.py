"""Search attributes operators filter by in the Temporal UI (R-LIFE-4)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

WORKPLACE_ID = SearchAttributeKey.for_keyword("WorkplaceId")
SERVICE_ID = SearchAttributeKey.for_keyword("ServiceId")
SUBSCRIPTION_STATE = SearchAttributeKey.for_keyword("SubscriptionState")
PLAN_ID = SearchAttributeKey.for_keyword("PlanId")
ALL_KEYS = (WORKPLACE_ID, SERVICE_ID, SUBSCRIPTION_STATE, PLAN_ID)


def initial(workplace_id: str, service_id: str, plan_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(WORKPLACE_ID, workplace_id),
            SearchAttributePair(SERVICE_ID, service_id),
            SearchAttributePair(SUBSCRIPTION_STATE, "applied"),
            SearchAttributePair(PLAN_ID, plan_id),
        ]
    )
