"""The executor: writes before sends, dead letters with the contract's headers, retries, nothing else."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from agents.executor import Executor, Headers
from agents.retry import Backoff
from models.commands import ReserveStock
from models.effects import Effects, Incoming, Send, Write
from models.events import BadMessage
from models.handlers import STATS, Reader
from models.stats import Bucket

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RECORD = Incoming("p.order-events", 3, 41, b"k", b"v", NOW.timestamp() - 30)
#: where a dead letter of RECORD is counted: the writer's index, then the bucket of the minute before NOW
COUNTED = [("write", "index|3|p.order-events"), ("write", f"{int(NOW.timestamp()) - 60}|3|p.order-events")]


class Journal:
    """Tables and an outbox that write down, in one list, everything done to them."""

    def __init__(self) -> None:
        self.done: list[tuple[str, ...]] = []
        self.values: dict[str, dict[str, bytes]] = {"t": {}}

    def table(self, name: str) -> Journal:
        return self

    def get(self, key: str) -> bytes | None:
        return self.values["t"].get(key)

    def __setitem__(self, key: str, value: bytes) -> None:
        self.done.append(("write", key))
        self.values["t"][key] = value

    def __delitem__(self, key: str) -> None:
        self.done.append(("delete", key))
        del self.values["t"][key]

    async def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        self.done.append(("send", topic, (key or b"").decode()))
        self.headers = dict(headers)


def executor(journal: Journal, sleeps: list[float] | None = None) -> Executor:
    async def sleep(delay: float) -> None:
        (sleeps if sleeps is not None else []).append(delay)

    return Executor({"t": journal, STATS: journal}, journal, lambda name: f"p.{name}", Backoff(), lambda: NOW, sleep)


def test_every_write_comes_before_every_send_whatever_order_the_handler_gave() -> None:
    journal = Journal()
    journal.values["t"]["gone"] = b"x"
    command = ReserveStock(order_id="o", sku="A", quantity=1)
    effects = Effects((Write("t", "a", b"1"), Write("t", "gone", None)), (Send("stock-commands", "A", command),))
    asyncio.run(executor(journal).apply(effects))
    assert journal.done == [("write", "a"), ("delete", "gone"), ("send", "p.stock-commands", "A")]


def test_a_rejected_record_is_dead_lettered_at_once_with_the_contract_s_headers() -> None:
    journal, sleeps = Journal(), []

    def reject(record: Incoming, read: Reader, now: datetime) -> Effects:
        raise BadMessage("value is not JSON")

    asyncio.run(executor(journal, sleeps).process(reject, RECORD))
    assert journal.done == [*COUNTED, ("send", "p.order-events.DLQ", "k")] and sleeps == []
    assert journal.headers == {
        "original.topic": b"p.order-events", "original.partition": b"3", "original.offset": b"41",
        "failure.reason": b"value is not JSON", "failure.timestamp": b"2026-01-01T00:00:00.000Z",
        "failure.class": b"BadMessage",
    }


def test_what_keeps_failing_is_retried_with_backoff_then_dead_lettered() -> None:
    journal, sleeps, calls = Journal(), [], []

    def broken(record: Incoming, read: Reader, now: datetime) -> Effects:
        calls.append(1)
        raise OSError("disk gone")

    asyncio.run(executor(journal, sleeps).process(broken, RECORD))
    assert (len(calls), sleeps) == (3, [1.0, 2.0])
    assert journal.done == [*COUNTED, ("send", "p.order-events.DLQ", "k")]
    assert (journal.headers["failure.class"], journal.headers["failure.reason"]) == (b"OSError", b"disk gone")


def test_a_retry_after_a_write_sees_the_write() -> None:
    """Writes come first, so a failed send is retried against the state already written."""
    journal, seen = Journal(), []
    fail_once = [True]

    def handler(record: Incoming, read: Reader, now: datetime) -> Effects:
        seen.append(read("t", "a"))
        return Effects((Write("t", "a", b"1"),), (Send("saga-replies", "o", ReserveStock("o", "A", 1)),))

    async def send(topic: str, key: bytes | None, value: bytes | None, headers: Headers,
                   partition: int | None = None) -> None:
        if fail_once.pop() if fail_once else False:
            raise ConnectionError("broker away")
        journal.done.append(("send", topic))

    journal.send = send  # type: ignore[method-assign]
    asyncio.run(executor(journal).process(handler, RECORD))
    assert seen == [None, b"1"]
    assert journal.done == [("write", "a"), ("write", "a"), ("send", "p.saga-replies")]


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "-1", "60.01", "1e400", "soon", ""])
def test_a_wait_that_is_not_a_finite_number_from_0_to_60_is_refused(raw: str) -> None:
    from app.web import parse_wait

    assert parse_wait(raw) is None


def test_waits_from_0_to_60_are_taken() -> None:
    from app.web import parse_wait

    assert [parse_wait(raw) for raw in (None, "0", "2.5", "60")] == [0.0, 0.0, 2.5, 60.0]


def test_bulk_restore_resumes_after_a_persisted_offset_of_0() -> None:
    from tables.bulk_restore import _next_offset

    assert (_next_offset(None), _next_offset(0), _next_offset(41)) == (0, 1, 42)


def test_a_dead_letter_redelivered_is_sent_again_but_counted_once() -> None:
    journal = Journal()

    def reject(record: Incoming, read: Reader, now: datetime) -> Effects:
        raise BadMessage("value is not JSON")

    for _ in range(2):
        asyncio.run(executor(journal).process(reject, RECORD))
    bucket = Bucket.from_json(journal.values["t"][COUNTED[1][1]])
    assert bucket.dead_letters == {"p.order-events": 1} and bucket.last_input == RECORD.position
    assert [each for each in journal.done if each[0] == "send"] == [("send", "p.order-events.DLQ", "k")] * 2


class Heard:
    """An observer that writes down what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, ...]] = []

    def applied(self, effects: Effects) -> None:
        self.heard.append(("applied", str(len(effects))))

    def retried(self, topic: str) -> None:
        self.heard.append(("retried", topic))

    def dead_lettered(self, topic: str, failure_class: str) -> None:
        self.heard.append(("dead", topic, failure_class))


def test_the_observer_hears_each_retry_and_the_dead_letter() -> None:
    journal, heard = Journal(), Heard()

    def broken(record: Incoming, read: Reader, now: datetime) -> Effects:
        raise OSError("disk gone")

    async def no_sleep(delay: float) -> None:
        pass

    run = Executor({"t": journal, STATS: journal}, journal, str, Backoff(attempts=3), lambda: NOW, no_sleep,
                   measure=False, observer=heard)
    asyncio.run(run.process(broken, RECORD))
    assert heard.heard == [("retried", "p.order-events")] * 2 + [("dead", "p.order-events", "OSError")]
    assert journal.done == [("send", "p.order-events.DLQ", "k")], "measure=False counts nothing"
