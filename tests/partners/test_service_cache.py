"""The HTTP gateway remembers which service a subscription is on for the most recent
subscriptions only: a worker's memory does not grow with the whole book."""

from __future__ import annotations

import pytest

import partners.http as http


async def test_the_gateway_keeps_only_the_most_recent_subscriptions_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[str] = []

    async def service_of(subscription_id: str) -> str | None:
        looked_up.append(subscription_id)
        return f"svc-{subscription_id}"

    monkeypatch.setattr(http, "SERVICE_CACHE", 2)
    gateway = http.HttpPartner({}, service_of)
    for sub in ("a", "b", "a", "c"):
        assert await gateway._service(sub) == f"svc-{sub}"
    assert list(gateway.services) == ["a", "c"]  # "b" was the least recently used
    assert await gateway._service("b") == "svc-b"
    assert looked_up == ["a", "b", "c", "b"]
