"""Receiver.problems, the delivery-contract check the webhook tests and the kill matrix share
(tests/webhook_receiver.py): it must name every way a receiver's view can break the contract,
and let a redelivery (at least once) pass."""

from __future__ import annotations

from tests.webhook_receiver import Receiver, Seen


def seen(webhook_id: str, stream: str, seq: int, *, signed: bool = True, status: int = 200) -> Seen:
    return Seen(
        webhook_id=webhook_id,
        body={"subscription_id": stream, "workplace_id": "wp", "seq": seq},
        signatures=["v1,x"],
        verified_by=["whsec_x"] if signed else [],
        status=status,
    )


EXPECTED = {"s1": ["a", "b"], "s2": ["c"]}


def receiver(*requests: Seen) -> Receiver:
    return Receiver(seen=list(requests))


def test_each_event_once_in_order_and_a_redelivery_pass() -> None:
    got = receiver(seen("a", "s1", 1), seen("c", "s2", 1), seen("a", "s1", 1), seen("b", "s1", 2))
    assert got.problems(EXPECTED) == []
    assert got.redelivered({"a", "b", "c"}) == 1
    assert got.redelivered({"b", "c"}) == 0


def test_an_unsigned_delivery_is_named() -> None:
    got = receiver(seen("a", "s1", 1), seen("b", "s1", 2, signed=False), seen("c", "s2", 1))
    assert got.problems(EXPECTED) == ["b: no secret of the endpoint verifies ['v1,x']"]


def test_a_missing_event_and_one_only_refused_are_named() -> None:
    got = receiver(seen("a", "s1", 1), seen("b", "s1", 2, status=500))
    assert got.problems(EXPECTED) == ["b: never delivered", "c: never delivered"]


def test_an_unknown_event_is_named() -> None:
    got = receiver(seen("a", "s1", 1), seen("b", "s1", 2), seen("c", "s2", 1), seen("x", "s2", 2))
    assert got.problems(EXPECTED) == [
        "x: delivered, but no such event was expected",
        "stream s2: events first arrived as ['c', 'x'], not as ['c']",
    ]


def test_a_later_event_first_arriving_before_an_earlier_one_is_named() -> None:
    got = receiver(seen("b", "s1", 2), seen("a", "s1", 1), seen("b", "s1", 2), seen("c", "s2", 1))
    assert got.problems(EXPECTED) == [
        "stream s1: events first arrived as ['b', 'a'], not as ['a', 'b']"
    ]
