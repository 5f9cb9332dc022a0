"""The app's own outputs on the public topics are skipped before Faust, and committed only in their turn."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP, Message

from app.composition import build
from app.own_outputs import SkippedAcks
from config.settings import Settings
from models import handlers
from models.commands import ReserveStock
from models.effects import OUTPUT_MARK, Send
from models.events import BadMessage, OrderConfirmed, OrderLine, OrderPlaced
from models.topics import INPUT_TOPICS, ORDER_EVENTS, PAYMENT_EVENTS
from tables.recovery import Consumer

TP0 = TP(ORDER_EVENTS, 0)
OWN = handlers.own_outputs(ORDER_EVENTS, "internal")
PLACED = OrderPlaced(event_id="e-1", occurred_at="2026-12-02T10:00:00Z", order_id="o-1", customer_id="c-1",
                     items=(OrderLine(sku="A", quantity=1, unit_price=Decimal("2.00")),), total_amount=Decimal("2.00"))
CONFIRMED = OrderConfirmed(event_id="e-2", occurred_at="2026-12-02T10:00:01Z", order_id="o-1", customer_id="c-1",
                           total_amount=Decimal("2.00"))


def marked(event: Any) -> list[tuple[str, bytes]]:
    """The headers the executor writes with an event."""
    return list(Send(ORDER_EVENTS, "o-1", event).headers.items())


# --- what is skippable ---------------------------------------------------------------------------


def test_every_event_the_app_sends_is_marked_and_commands_are_not() -> None:
    assert OUTPUT_MARK in marked(CONFIRMED)
    assert set(dict(marked(CONFIRMED))) == {*CONFIRMED.headers(), OUTPUT_MARK[0]}
    assert Send("stock", "A", ReserveStock(order_id="o-1", sku="A", quantity=1)).headers == {}


def test_only_a_marked_own_output_type_by_its_body_is_skippable() -> None:
    assert handlers.skippable(OWN, marked(CONFIRMED), CONFIRMED.encode())
    assert not handlers.skippable(OWN, CONFIRMED.headers().items(), CONFIRMED.encode()), "not written by the app"
    assert not handlers.skippable(OWN, marked(CONFIRMED), PLACED.encode()), "the body wins over the headers"
    assert not handlers.skippable(OWN, marked(CONFIRMED), b"{not json"), "left to ingress, which dead-letters it"
    assert not handlers.skippable(OWN, marked(CONFIRMED), b"[1]")
    assert not handlers.skippable(OWN, marked(CONFIRMED), None)


def test_the_skippable_types_are_those_ingress_ignores() -> None:
    assert all("OrderPlaced" not in handlers.own_outputs(topic, "internal") for topic in INPUT_TOPICS)
    assert {"PaymentProcessed", "PaymentFailed"} <= handlers.own_outputs(PAYMENT_EVENTS, "internal")
    assert not {"PaymentProcessed", "PaymentFailed"} & handlers.own_outputs(PAYMENT_EVENTS, "external")
    assert handlers.route_public(ORDER_EVENTS, CONFIRMED, "internal") is None


def test_a_payment_result_on_the_order_topic_is_a_bad_message_not_ignored() -> None:
    """Only payment-events carries payment results; elsewhere one is dead-lettered, never dropped silently."""
    processed = handlers.decode_event(
        b'{"event_id":"e","event_type":"PaymentProcessed","occurred_at":"2026-12-02T10:00:00Z","version":1,'
        b'"order_id":"o-1","customer_id":"c-1","amount":"2.00"}')
    with pytest.raises(BadMessage):
        handlers.route_public(ORDER_EVENTS, processed, "internal")


# --- the ledger ----------------------------------------------------------------------------------


def test_a_skipped_offset_waits_for_the_record_delivered_before_it() -> None:
    done: set[int] = set()
    acks = SkippedAcks(lambda tp, offset: offset in done)
    assert acks.skipped(TP0, 3), "nothing delivered before it: ack at once"
    acks.delivered(TP0, 4)
    assert not acks.skipped(TP0, 5) and not acks.skipped(TP0, 6)
    acks.delivered(TP0, 7)
    assert not acks.skipped(TP0, 8)
    assert acks.waiting() == 3 and acks.release(TP0) == []
    done.add(4)
    assert acks.release(TP0) == [5, 6], "8 waits for 7"
    done.add(7)
    assert acks.release(TP0) == [8]
    assert acks.skipped(TP0, 9), "the record before it is acked"
    assert acks.waiting() == 0


def test_forgetting_a_partition_drops_what_waits_there() -> None:
    acks = SkippedAcks(lambda tp, offset: True)
    acks.delivered(TP0, 4)
    acks._waiting[TP0] = {4: [5]}
    acks.forget([TP0])
    assert acks.waiting() == 0 and acks.release(TP0) == []


# --- the worker's consumer, with Faust's own bookkeeping ------------------------------------------


def record(offset: int, event: Any, own: bool) -> ConsumerRecord[bytes, bytes]:
    headers = marked(event) if own else list(event.headers().items())
    return ConsumerRecord(TP0.topic, TP0.partition, offset, 0, 0, b"o-1", event.encode(), None, 2, 100,
                          tuple(headers))


def message(offset: int) -> Message:
    return Message(TP0.topic, TP0.partition, offset, 0.0, 0, [], b"o-1", b"{}", None)


def consumer_of(tmp_path: Path, committed: int | None) -> Consumer:
    app = build(Settings(data_dir=tmp_path))
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    consumer._active_partitions = {TP0}
    consumer._committed_offset[TP0] = committed
    consumer._read_offset[TP0] = committed
    consumer.highwater = lambda tp: 0  # type: ignore[method-assign]  # no consumer thread runs here
    app.topics._acking_topics.add(TP0.topic)  # as the ingress agent's subscription does
    return consumer


def fetched(consumer: Consumer, records: list[ConsumerRecord[bytes, bytes]]) -> list[tuple[int, int | None]]:
    """Faust's ``getmany`` over one fetch: each delivered offset, and the read offset Faust then sees."""

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:
        return {TP0: records}, consumer._get_active_partitions()  # as Faust's own does

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]

    async def drain() -> list[tuple[int, int | None]]:
        return [(msg.offset, consumer._read_offset[tp]) async for tp, msg in consumer.getmany(timeout=1.0)]

    return asyncio.run(drain())


@pytest.mark.parametrize("committed", [None, 10])
def test_skipped_offsets_commit_only_once_the_records_before_them_are_acked(tmp_path: Path,
                                                                            committed: int | None) -> None:
    """From a fresh partition too, where Faust commits whatever is acked without looking for holes."""
    start = committed or 0
    consumer = consumer_of(tmp_path, committed)
    kinds = [False, True, True, False, True, True]  # own output?
    records = [record(start + n, CONFIRMED if own else PLACED, own) for n, own in enumerate(kinds)]
    delivered = fetched(consumer, records)
    assert delivered == [(start, committed), (start + 3, start + 2)], "Faust sees no gap before the next record"
    assert consumer._new_offset(TP0) is None, "nothing delivered is acked yet"
    consumer.ack(message(start))
    assert consumer._new_offset(TP0) == start + 3, "up to the record still being handled"
    assert consumer._new_offset(TP0) is None
    consumer._committed_offset[TP0] = start + 3
    consumer.ack(message(start + 3))
    assert consumer._new_offset(TP0) == start + 6, "the skipped tail goes with the last record: lag reaches 0"
    assert consumer.skipped_acks.waiting() == 0


def test_the_transaction_markers_between_skipped_records_are_committed_with_them(tmp_path: Path) -> None:
    """Under exactly_once every commit leaves a marker offset that no record holds; none may stall the commits."""
    consumer = consumer_of(tmp_path, 10)
    assert fetched(consumer, [record(10, PLACED, False), record(12, CONFIRMED, True), record(14, CONFIRMED, True),
                              record(15, CONFIRMED, True)]) == [(10, 10)]
    assert consumer._new_offset(TP0) is None
    consumer.ack(message(10))
    assert consumer._new_offset(TP0) == 16


def test_own_outputs_at_the_head_of_an_assignment_commit_at_once(tmp_path: Path) -> None:
    consumer = consumer_of(tmp_path, 10)
    assert fetched(consumer, [record(10, CONFIRMED, True), record(11, CONFIRMED, True), record(12, PLACED, False)]) \
        == [(12, 11)]
    assert consumer._new_offset(TP0) == 12


def test_nothing_is_skipped_once_the_generation_changed(tmp_path: Path) -> None:
    """Faust stops delivering a fetch from an older generation; what it stops at is not acked by us either."""
    consumer = consumer_of(tmp_path, 0)
    generation = consumer.generation()
    assert consumer.deliverable(TP0, generation)
    consumer.app.consumer_generation_id = generation + 1
    assert not consumer.deliverable(TP0, generation)
    consumer.app.consumer_generation_id = generation
    consumer._active_partitions = set()
    assert not consumer.deliverable(TP0, generation), "a paused partition's records are not Faust's to deliver"
    assert fetched(consumer, [record(0, CONFIRMED, True)]) == []
    assert consumer._new_offset(TP0) is None, "left to Faust, which dropped it: never acked"


def test_a_revoked_partition_s_waiting_offsets_are_never_acked(tmp_path: Path) -> None:
    consumer = consumer_of(tmp_path, 0)
    fetched(consumer, [record(0, PLACED, False), record(1, CONFIRMED, True)])
    assert consumer.skipped_acks.waiting() == 1
    asyncio.run(consumer.on_partitions_revoked({TP0}))
    assert consumer.skipped_acks.waiting() == 0
