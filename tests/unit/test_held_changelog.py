"""Held changelog writes go out in record batches into the worker's transaction, none lost, each future resolved."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import RecordMetadata, TopicPartition
from faust.types import FutureMessage

from app import transactions
from app.composition import build
from config.settings import Settings


class FakeProducer:
    """aiokafka's producer as ``send_held`` uses it: batches are kept, their futures resolved by the test."""

    def __init__(self) -> None:
        self._message_accumulator = SimpleNamespace(_compression_type=0)
        self._txn_manager = SimpleNamespace(is_fatal_error=lambda: False)
        self.batches: list[tuple[str, int, list[bytes], asyncio.Future[Any]]] = []

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        batch.close()
        records = DefaultRecordBatch(bytearray(batch._build()))
        sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches.append((topic, partition, [record.key for record in records], sent))
        return sent


def _written(topic: str, partition: int, base_offset: int) -> RecordMetadata:
    return RecordMetadata(topic, partition, TopicPartition(topic, partition), base_offset, 1_000, 0, 0)


@pytest.fixture
def held(tmp_path: Path) -> tuple[Any, FakeProducer, Any]:
    """The worker's producer with a fake transactional one, and the stock table's changelog topic."""
    app = build(Settings(data_dir=tmp_path, processing_guarantee="exactly_once"))
    fake = FakeProducer()
    app.producer._transaction_producers[app.producer.transactional_id] = fake  # type: ignore[attr-defined]
    app.producer._trn_locks[app.producer.transactional_id] = asyncio.Lock()  # type: ignore[attr-defined]
    return app.producer, fake, app.tables["stock"].changelog_topic


def _messages(topic: Any, count: int, size: int, sent: list[int]) -> list[FutureMessage]:
    return [topic.as_future_message(key=f"key-{n}".encode(), value=b"x" * size, partition=3,
                                    callback=lambda fut: sent.append(fut.result().offset), eager_partitioning=True)
            for n in range(count)]


def test_held_writes_of_a_partition_go_out_in_one_batch_and_each_future_gets_its_offset(held: Any) -> None:
    asyncio.run(_one_batch(*held))


async def _one_batch(producer: Any, fake: FakeProducer, topic: Any) -> None:
    called: list[int] = []
    messages = _messages(topic, 3, 10, called)
    await producer.send_held(topic.get_topic_name(), 3, messages)
    [(name, partition, keys, sent)] = fake.batches
    assert (name, partition, keys) == (topic.get_topic_name(), 3, [b"key-0", b"key-1", b"key-2"])
    assert not any(fut.done() for fut in messages)  # not before the batch is written
    sent.set_result(_written(name, 3, 40))
    await asyncio.sleep(0)
    assert [fut.result().offset for fut in messages] == [40, 41, 42]
    assert called == [40, 41, 42]  # the table's own callback, as Faust's publish runs it


def test_more_than_a_batch_holds_is_split_in_order_and_nothing_is_left_out(
        held: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "HELD_BATCH_BYTES", 400)
    asyncio.run(_split(*held))


async def _split(producer: Any, fake: FakeProducer, topic: Any) -> None:
    messages = _messages(topic, 10, 100, [])
    await producer.send_held(topic.get_topic_name(), 3, messages)
    assert len(fake.batches) > 2
    assert [key for _, _, keys, _ in fake.batches for key in keys] == [f"key-{n}".encode() for n in range(10)]
    offset = 0
    for name, partition, keys, sent in fake.batches:
        sent.set_result(_written(name, partition, offset))
        offset += len(keys)
    await asyncio.sleep(0)
    assert [fut.result().offset for fut in messages] == list(range(10))


def test_a_batch_that_fails_fails_the_futures_of_its_messages(held: Any) -> None:
    asyncio.run(_failed(*held))


async def _failed(producer: Any, fake: FakeProducer, topic: Any) -> None:
    messages = _messages(topic, 2, 10, [])
    await producer.send_held(topic.get_topic_name(), 3, messages)
    fake.batches[0][3].set_exception(RuntimeError("not written"))
    await asyncio.sleep(0)
    for fut in messages:
        with pytest.raises(RuntimeError, match="not written"):
            fut.result()


def test_a_record_larger_than_a_batch_goes_in_a_batch_of_its_own(held: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions, "HELD_BATCH_BYTES", 100)
    asyncio.run(_alone(*held))


async def _alone(producer: Any, fake: FakeProducer, topic: Any) -> None:
    messages = _messages(topic, 3, 500, [])
    await producer.send_held(topic.get_topic_name(), 3, messages)
    assert [keys for _, _, keys, _ in fake.batches] == [[b"key-0"], [b"key-1"], [b"key-2"]]


def test_nothing_is_sent_by_a_producer_that_was_fenced(held: Any) -> None:
    """Through the transaction's lock and its check, as Faust's own transactional sends go."""
    asyncio.run(_fenced(*held))


async def _fenced(producer: Any, fake: FakeProducer, topic: Any) -> None:
    fake._txn_manager = SimpleNamespace(is_fatal_error=lambda: True)
    with pytest.raises(transactions.TransactionFailed, match="fenced"):
        await producer.send_held(topic.get_topic_name(), 3, _messages(topic, 1, 10, []))
    assert not fake.batches
