"""Envelopes: many internal messages in one record, held per destination partition and sent on flush."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from agents.envelopes import Envelopes, Headers, partition_for
from agents.executor import Executor
from agents.retry import Backoff
from models import envelope
from models.effects import Effects, Incoming, opened
from models.events import BadMessage
from models.handlers import Reader

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Sent:
    """An outbox that writes down each record."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, dict[str, bytes], int | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        self.records.append((topic, key, value, dict(headers), partition))


def test_an_envelope_gives_back_each_key_and_value_in_order_whatever_the_key_holds() -> None:
    messages = [(b"SKU-1", b'{"kind":"ReserveStock","n":1}'), ('tab\t"quote"\nnewline é'.encode(), b'{"a":"\\t"}')]
    packed = envelope.pack(envelope.line(key, value) for key, value in messages)
    assert envelope.is_envelope(packed) and not envelope.is_envelope(b'{"kind":"X"}')
    assert envelope.unpack(packed) == messages


def test_opened_numbers_an_envelope_s_messages_and_leaves_a_plain_record_whole() -> None:
    packed = envelope.pack([envelope.line(b"a", b"{}"), b"not a line", envelope.line(b"b", b"[]")])
    record = Incoming("t", 2, 9, b"a", packed, 0.0)
    assert [(each.key, each.value, each.index, each.position) for each in opened(record)] == [
        (b"a", b"{}", 0, 9 << 16), (None, b"not a line", 1, 9 << 16 | 1), (b"b", b"[]", 2, 9 << 16 | 2)]
    plain = Incoming("t", 2, 9, b"a", b"{}", 0.0)
    assert opened(plain) == [plain] and plain.position == 9 << 16


def test_a_later_record_always_has_a_later_position_than_any_message_of_an_earlier_one() -> None:
    last_of_biggest = Incoming("t", 0, 9, b"k", b"{}", 0.0, envelope.MAX_MESSAGES - 1)
    assert last_of_biggest.position < Incoming("t", 0, 10, b"k", b"{}", 0.0).position


def test_the_partition_of_a_key_is_the_one_aiokafka_s_producer_picks() -> None:
    choose = DefaultPartitioner()
    for key in [b"SKU-1", b"o-42", b"c-7", "é".encode(), b""]:
        assert partition_for(key, 8) == choose(key, list(range(8)), list(range(8)))


def test_internal_sends_are_held_and_sent_one_record_per_partition_other_sends_at_once() -> None:
    sent = Sent()
    held = Envelopes(sent, {"stock": 4}, lambda key, n: len(key) % n)

    async def run() -> None:
        await held.send("stock", b"aa", b"{1}", [("h", b"x")])
        await held.send("order-events", b"o", b"{e}", [("eventType", b"E")])
        await held.send("stock", b"b", b"{2}", [])
        await held.send("stock", b"cc", b"{3}", [])
        assert len(held) == 3 and [r[0] for r in sent.records] == ["order-events"]
        await held.flush()

    asyncio.run(run())
    assert len(held) == 0
    assert sent.records[1:] == [
        ("stock", b"aa", envelope.pack([b'"aa"\t{1}', b'"cc"\t{3}']), {}, 2),
        ("stock", b"b", b'"b"\t{2}', {}, 1),
    ]


def test_a_full_envelope_goes_out_before_it_would_pass_its_size() -> None:
    sent = Sent()
    held = Envelopes(sent, {"stock": 1}, lambda key, n: 0, max_bytes=40)

    async def run() -> None:
        for n in range(4):
            await held.send("stock", b"k", b"{%d234567890}" % n, [])
        await held.flush()

    asyncio.run(run())
    assert [len(envelope.unpack(value or b"")) for _, _, value, _, _ in sent.records] == [2, 2]
    assert all(len(value or b"") <= 40 for _, _, value, _, _ in sent.records)


def test_a_bad_message_in_an_envelope_is_dead_lettered_alone_with_its_place() -> None:
    sent = Sent()
    executor = Executor({}, sent, str, Backoff(), lambda: NOW, measure=False)
    packed = envelope.pack([envelope.line(b"a", b"good"), envelope.line(b"b", b"bad")])

    def handler(record: Incoming, read: Reader, now: datetime) -> Effects:
        if record.value == b"bad":
            raise BadMessage("bad body")
        return Effects()

    async def run() -> None:
        for each in opened(Incoming("stock", 3, 17, b"a", packed, 0.0)):
            await executor.process(handler, each)

    asyncio.run(run())
    [(topic, key, value, headers, _)] = sent.records
    assert (topic, key, value) == ("stock.DLQ", b"b", b"bad")
    assert (headers["original.offset"], headers["original.index"], headers["failure.reason"]) == (
        b"17", b"1", b"bad body")


def test_each_loop_holds_its_own_sends() -> None:
    sent = Sent()
    executor = Executor({}, sent, str, Backoff(), lambda: NOW, internal={"stock": 1})
    first, second = executor.for_loop(), executor.for_loop()

    async def run() -> None:
        await first.envelopes.send("stock", b"a", b"{1}", [])
        await second.envelopes.send("stock", b"b", b"{2}", [])
        await first.flush()

    asyncio.run(run())
    assert [value for _, _, value, _, _ in sent.records] == [b'"a"\t{1}'] and len(second.envelopes) == 1


def test_an_envelope_that_could_not_be_sent_is_held_again_ahead_of_what_came_since() -> None:
    sent, failures = Sent(), [ConnectionError("broker away")]
    send = sent.send

    async def flaky(topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                    partition: int | None = None) -> None:
        if failures:
            raise failures.pop()
        await send(topic, key, value, headers, partition)

    sent.send = flaky  # type: ignore[method-assign]
    held = Envelopes(sent, {"stock": 1}, lambda key, n: 0)

    async def run() -> None:
        await held.send("stock", b"a", b"{1}", [])
        try:
            await held.flush()
        except ConnectionError:
            pass
        else:
            raise AssertionError("the failure was swallowed")
        await held.send("stock", b"b", b"{2}", [])
        assert len(held) == 2
        await held.flush()

    asyncio.run(run())
    assert [value for _, _, value, _, _ in sent.records] == [b'"a"\t{1}\n"b"\t{2}']


def test_a_redriven_letter_goes_back_without_any_header_the_dead_letter_path_added() -> None:
    from app.ops.dlq import _provenance
    from app.ops.kafka import Stored

    letter = Stored("stock.DLQ", 0, 5, 0, b"b", b"bad", (
        ("original.topic", b"stock"), ("original.partition", b"3"), ("original.offset", b"17"),
        ("original.index", b"1"), ("failure.reason", b"bad body"), ("failure.timestamp", b"t"),
        ("failure.class", b"BadMessage"), ("trace", b"kept")))
    names = [name for name, _ in _provenance(letter)]
    assert names[0] == "trace" and not any(name.startswith(("original.", "failure.")) for name in names)


def test_dropped_sends_are_never_sent_and_later_ones_go_as_before() -> None:
    """What an aborted transaction's inputs made is forgotten; their next owner makes it again."""
    sent = Sent()
    held = Envelopes(sent, {"stock": 2, "replies": 2}, lambda key, n: 0, owns=lambda topic, p: topic == "replies")

    async def run() -> int:
        await held.send("stock", b"a", b"{1}", [])
        await held.send("replies", b"r", b"{2}", [])  # handed over in place
        dropped = held.drop()
        await held.send("stock", b"b", b"{3}", [])
        await held.flush()
        return dropped

    assert asyncio.run(run()) == 2
    assert not held.in_place
    assert sent.records == [("stock", b"b", b'"b"\t{3}', {}, 0)]
