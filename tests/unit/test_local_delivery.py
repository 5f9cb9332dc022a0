"""Messages to partitions the worker owns are handled in place: a whole saga in one input, counted once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import faust
import pytest

from agents import executor as executor_module
from agents.envelopes import partition_for
from agents.executor import Executor, Headers
from agents.faust_io import consumed_from
from agents.local_delivery import LocalDelivery
from agents.retry import Backoff
from models import commands, handlers, stats
from models.effects import INLINE_OFFSET, Effects, Incoming, Send
from models.events import FundsAdded, OrderLine, OrderPlaced, StockAdded, format_time
from models.handlers import SAGAS, STATS, STOCK, TABLES, WALLETS
from models.measures import Placed
from models.saga import COMPLETED, SagaPolicy, SagaState
from models.stock import Stock
from models.topics import INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS
from models.wallet import Wallet

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PARTITIONS = 4
OWNERS = (commands.SAGA, commands.STOCK, commands.WALLET)


class Outbox:
    """What went to Kafka: (topic, key) of each record."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        self.sent.append((topic, (key or b"").decode()))


class Worker:
    """The executor as the worker builds it, over in-memory tables, with a loop that hands over in place."""

    def __init__(self, owned: set[tuple[str, int]] | None = None) -> None:
        self.tables: dict[str, dict[str, bytes]] = {name: {} for name in TABLES}
        self.outbox = Outbox()
        self.contexts: list[tuple[str, int]] = []
        self.local = LocalDelivery(self._context)
        executor = Executor(self.tables, self.outbox, lambda name: name, Backoff(), lambda: NOW,
                            internal=dict.fromkeys(OWNERS, PARTITIONS), local=self.local)
        policy = SagaPolicy(timeout=timedelta(minutes=5))
        for topic, handler in ((commands.SAGA, handlers.saga(policy, True)), (commands.STOCK, handlers.stock(True)),
                               (commands.WALLET, handlers.wallet(True))):
            self.local.serve(topic, handler)
        self.local.take(owned if owned is not None else {(t, p) for t in OWNERS for p in range(PARTITIONS)})
        self.loop = executor.for_loop(in_place=True)
        self.offset = 0

    @contextmanager
    def _context(self, topic: str, partition: int) -> Iterator[object]:
        self.contexts.append((topic, partition))
        yield None

    def feed(self, topic: str, value: bytes) -> None:
        """One public record through its ingress, then everything it hands over in place."""
        self.offset += 1
        record = Incoming(topic, 0, self.offset, None, value, NOW.timestamp())

        async def handle() -> None:
            await self.loop.process(handlers.ingress(topic, "internal"), record)
            await self.loop.deliver_in_place()

        asyncio.run(handle())

    def saga(self, order_id: str) -> SagaState:
        return SagaState.from_json(self.tables[SAGAS][order_id])


def order(order_id: str = "o-1", quantity: int = 2) -> OrderPlaced:
    return OrderPlaced(event_id=f"e-{order_id}", occurred_at=format_time(NOW), order_id=order_id, customer_id="c-1",
                       items=(OrderLine(sku="A", quantity=quantity, unit_price=Decimal("1.50")),
                              OrderLine(sku="B", quantity=1, unit_price=Decimal("2.00"))),
                       total_amount=Decimal(quantity) * Decimal("1.50") + Decimal("2.00"))


def seeded(worker: Worker) -> Worker:
    for sku in "AB":
        worker.feed(INVENTORY_EVENTS, StockAdded(event_id=f"s-{sku}", occurred_at=format_time(NOW), sku=sku,
                                                 quantity=5).encode())
    worker.feed(PAYMENT_EVENTS, FundsAdded(event_id="f-1", occurred_at=format_time(NOW), customer_id="c-1",
                                           amount=Decimal("100")).encode())
    return worker


def counted(worker: Worker) -> stats.Bucket:
    total = stats.Bucket()
    for key, value in worker.tables[STATS].items():
        if stats.parse_bucket_key(key) is not None:
            total += stats.Bucket.from_json(value)
    return total


def test_with_every_partition_owned_a_whole_saga_ends_within_its_one_input_and_nothing_internal_reaches_kafka() -> None:
    worker = seeded(Worker())
    worker.feed(ORDER_EVENTS, order().encode())
    assert worker.saga("o-1").status == COMPLETED
    assert Stock.from_json(worker.tables[STOCK]["A"]).available == 3
    assert Wallet.from_json(worker.tables[WALLETS]["c-1"]).balance == Decimal("95.00")
    assert not [topic for topic, _ in worker.outbox.sent if topic in OWNERS]
    assert ("order-events", "o-1") in worker.outbox.sent  # OrderConfirmed, a public event, still goes out


def test_each_message_is_handled_in_the_context_of_its_own_partition() -> None:
    worker = seeded(Worker())
    worker.contexts.clear()
    worker.feed(ORDER_EVENTS, order().encode())
    saga_partition = partition_for(b"o-1", PARTITIONS)
    assert (commands.SAGA, saga_partition) == worker.contexts[0]
    assert {(commands.STOCK, partition_for(sku, PARTITIONS)) for sku in (b"A", b"B")} <= set(worker.contexts)
    assert (commands.WALLET, partition_for(b"c-1", PARTITIONS)) in worker.contexts
    assert {topic for topic, _ in worker.contexts} == set(OWNERS)


def test_a_saga_handled_in_place_counts_its_order_placed_and_ended_once_each() -> None:
    worker = seeded(Worker())
    worker.feed(ORDER_EVENTS, order("o-1").encode())
    worker.feed(ORDER_EVENTS, order("o-2", quantity=9).encode())  # out of stock
    worker.feed(ORDER_EVENTS, order("o-1").encode())  # a duplicate changes nothing, and counts nothing
    bucket = counted(worker)
    assert (bucket.placed, bucket.confirmed, sum(bucket.cancelled.values())) == (2, 1, 1)


def test_a_message_to_a_partition_not_owned_goes_through_kafka_and_what_is_owned_still_is_handled_in_place() -> None:
    stock_a = partition_for(b"A", PARTITIONS)
    owned = {(t, p) for t in OWNERS for p in range(PARTITIONS)} - {(commands.STOCK, stock_a)}
    worker = seeded(Worker(owned))  # StockAdded for A goes through Kafka too: A has no stock here
    worker.feed(ORDER_EVENTS, order().encode())
    asyncio.run(worker.loop.flush())
    assert worker.outbox.sent.count((commands.STOCK, "A")) == 1  # one envelope: A's StockAdded and ReserveStock
    assert worker.saga("o-1").status != COMPLETED  # waits for A's reply, which another worker would send
    assert Stock.from_json(worker.tables[STOCK]["B"]).holds == {"o-1": 1}  # B's was made in place


def test_nothing_is_handled_in_place_after_give_up_or_on_a_topic_without_a_handler() -> None:
    local = LocalDelivery()
    local.serve(commands.SAGA, handlers.customers)
    local.take({(commands.SAGA, 1), (commands.CUSTOMER, 1)})
    assert local.owns(commands.SAGA, 1) and not local.owns(commands.SAGA, 2)
    assert not local.owns(commands.CUSTOMER, 1)
    local.give_up()
    assert not local.owns(commands.SAGA, 1)


def test_a_loop_that_does_not_hand_over_in_place_holds_every_internal_send_for_kafka() -> None:
    worker = Worker()
    timer = Executor(worker.tables, worker.outbox, lambda name: name, Backoff(), lambda: NOW,
                     internal=dict.fromkeys(OWNERS, PARTITIONS), local=worker.local).for_loop()
    send = Send(commands.SAGA, "o-1", commands.SagaTimeout(order_id="o-1"))
    asyncio.run(timer.apply(Effects(sends=(send,))))
    assert not timer.envelopes.in_place and len(timer.envelopes) == 1


def test_a_message_handed_over_in_place_has_a_position_below_every_record_s() -> None:
    seen: list[Incoming] = []
    worker = Worker()

    def note(record: Incoming, read: handlers.Reader, now: datetime) -> Effects:
        seen.append(record)
        return Effects()

    worker.local.serve(commands.SAGA, note)
    asyncio.run(worker.loop.apply(Effects(sends=(Send(commands.SAGA, "o-1", commands.SagaTimeout(order_id="o-1")),))))
    asyncio.run(worker.loop.deliver_in_place())
    assert [(r.topic, r.offset) for r in seen] == [(commands.SAGA, INLINE_OFFSET)]
    assert seen[0].position < Incoming("t", 0, 0, None, None, 0).position


def test_past_the_most_one_input_may_hand_over_the_rest_go_through_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "MAX_IN_PLACE", 2)
    handled: list[str] = []
    worker = Worker()

    def echo(record: Incoming, read: handlers.Reader, now: datetime) -> Effects:  # a reply loop, by mistake
        handled.append(record.key.decode() if record.key else "")
        return Effects(sends=(Send(commands.SAGA, "o-1", commands.SagaTimeout(order_id="o-1")),))

    worker.local.serve(commands.SAGA, echo)
    asyncio.run(worker.loop.apply(Effects(sends=(Send(commands.SAGA, "o-1", commands.SagaTimeout(order_id="o-1")),))))
    asyncio.run(worker.loop.deliver_in_place())
    assert handled == ["o-1", "o-1"] and len(worker.loop.envelopes) == 1


def test_inside_consumed_from_faust_sees_an_event_of_that_topic_and_partition_and_none_after() -> None:
    with consumed_from("p.stock-commands", 5):
        event = faust.current_event()
        assert event is not None and (event.message.topic, event.message.partition) == ("p.stock-commands", 5)
    assert faust.current_event() is None


def test_a_count_with_no_position_of_its_own_always_counts_and_leaves_the_last_position_alone() -> None:
    tables: dict[str, bytes] = {}
    for position in (40, Incoming("t", 0, INLINE_OFFSET, None, None, 0).position, INLINE_OFFSET << 16, 30):
        for write in stats.count(lambda table, key: tables.get(key), "t", 0, position, NOW, [Placed(NOW)]):
            if write.value is not None:
                tables[write.key] = write.value
    bucket = stats.Bucket.from_json(tables[stats.bucket_key(stats.minute_of(NOW), "t", 0)])
    assert (bucket.placed, bucket.last_input) == (3, 40)  # 30 comes after 40 was counted: a redelivery
