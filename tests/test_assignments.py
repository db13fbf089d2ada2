"""The daemon's idle clock runs only while every consumer holds its partitions."""

from __future__ import annotations

import time

from mma.service.sources import Assignments


def test_idle_only_while_every_consumer_holds_its_partitions() -> None:
    book = Assignments(["notice", "alert"], wait_s=0.2)
    assert not book.settled()  # subscribed, nothing assigned yet
    book.assigned("notice")
    assert not book.settled()
    book.assigned("alert")
    assert book.settled()
    book.revoked("alert")  # a rebalance: another daemon joins the group
    assert not book.settled()
    book.assigned("alert")
    assert book.settled()


def test_a_consumer_never_assigned_stops_holding_the_clock() -> None:
    book = Assignments(["notice", "alert"], wait_s=0.2)
    book.assigned("notice")
    time.sleep(0.25)
    assert book.settled()
    book.revoked("notice")  # the wait restarts from the revocation
    assert not book.settled()
    time.sleep(0.25)
    assert book.settled()


def test_no_consumers_is_settled() -> None:
    assert Assignments([]).settled()
