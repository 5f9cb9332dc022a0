"""The requests of one transaction per worker, on the wire and in their answers (the broker's side is in
tests/integration/test_group_transactions.py), and the worker's transactional id."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors
from aiokafka.producer.transaction_manager import TransactionManager as TxnState
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from app.composition import build
from app.group_transactions import (
    UNSTABLE_OFFSET_COMMIT,
    GenerationTxnOffsetCommitHandler,
    GroupFenced,
    OffsetFetchResponseV7,
    OffsetFetchStructV7,
    StableOffsetFetch,
    TxnOffsetCommitResponseV3,
    TxnOffsetCommitStructV3,
    UnstableOffsetCommit,
    _txn_offset_commit,
    committed_offsets,
)
from app.transactions import Producer, TransactionFailed, worker_transactional_id
from config.settings import Settings
from tables.recovery import Consumer

IN = TopicPartition("in", 0)
OTHER = TopicPartition("in", 1)


def _in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """aiokafka's transaction state makes futures, so it lives in a running loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _sender(txn: TxnState) -> Any:
    return SimpleNamespace(_txn_manager=txn, _retry_backoff=0.01)


def _txn_with_offsets(offsets: dict[TopicPartition, OffsetAndMetadata]) -> TxnState:
    txn = TxnState("worker-1", 60_000)
    txn.set_pid_and_epoch(42, 3)
    txn.begin_transaction()
    txn.maybe_add_partition_to_txn(TopicPartition("out", 0))
    txn.partition_added(TopicPartition("out", 0))
    txn.add_offsets_to_txn(offsets, "app")
    txn.consumer_group_added("app")
    return txn


def _response(codes: dict[TopicPartition, int]) -> TxnOffsetCommitResponseV3:
    return TxnOffsetCommitResponseV3(0, [(tp.topic, [(tp.partition, code, {})], {}) for tp, code in codes.items()], {})


@_in_loop
async def test_the_offset_commit_names_the_generation_and_member_of_the_assignment() -> None:
    offsets = {OTHER: OffsetAndMetadata(9, ""), IN: OffsetAndMetadata(5, "")}
    handler = GenerationTxnOffsetCommitHandler(_sender(_txn_with_offsets(offsets)), offsets, "app", (7, "member-a"))
    struct = handler.create_request().build(TxnOffsetCommitStructV3)
    decoded = TxnOffsetCommitStructV3.SCHEMA.decode(io.BytesIO(struct.encode()))
    assert decoded[:7] == ("worker-1", "app", 42, 3, 7, "member-a", None)
    assert decoded[7] == [("in", [(0, 5, -1, "", {}), (1, 9, -1, "", {})], {})]


@pytest.mark.parametrize("code", [errors.IllegalGenerationError.errno, errors.UnknownMemberIdError.errno, 82])
@_in_loop
async def test_a_refusal_by_the_group_is_an_abortable_error_that_still_aborts_on_the_broker(code: int) -> None:
    offsets = {IN: OffsetAndMetadata(5, "")}
    txn = _txn_with_offsets(offsets)
    handler = GenerationTxnOffsetCommitHandler(_sender(txn), offsets, "app", (7, "member-a"))
    assert handler.handle_response(_response({IN: code})) is None
    assert txn.state == txn.state.ABORTABLE_ERROR
    with pytest.raises(GroupFenced):
        txn._transaction_waiter.result()  # what a commit would raise
    txn.aborting_transaction()
    # the abort is sent: aiokafka's own error path forgot what the transaction holds and skipped it
    assert not txn.is_empty_transaction()
    assert txn.needs_transaction_commit() is not None


@_in_loop
async def test_an_accepted_commit_completes_the_offsets_and_other_errors_stay_aiokafkas() -> None:
    offsets = {IN: OffsetAndMetadata(5, "")}
    txn = _txn_with_offsets(offsets)
    pending = txn._pending_txn_offsets[0][2]
    handler = GenerationTxnOffsetCommitHandler(_sender(txn), dict(offsets), "app", (7, "member-a"))
    assert handler.handle_response(_response({IN: 0})) is None
    assert pending.done() and pending.exception() is None
    busy = _txn_with_offsets(dict(offsets))
    retry = GenerationTxnOffsetCommitHandler(_sender(busy), dict(offsets), "app", (7, "member-a"))
    assert retry.handle_response(_response({IN: errors.CoordinatorLoadInProgressError.errno})) == 0.01


@pytest.mark.parametrize("member", [(-1, ""), (-1, "member-a"), (7, "")])
@_in_loop
async def test_a_worker_holding_no_assignment_never_sends_its_offsets_and_aborts(member: tuple[int, str]) -> None:
    """The coordinator would take offsets naming generation -1 and no member from anyone (as before KIP-447)."""
    offsets = {IN: OffsetAndMetadata(5, "")}
    txn = _txn_with_offsets(offsets)
    pending = txn._pending_txn_offsets[0][2]
    asked: list[object] = []

    async def find_coordinator(*args: object) -> int:
        asked.append(args)
        return 0

    sender = _sender(txn)
    sender._find_coordinator = find_coordinator
    await _txn_offset_commit(sender, lambda: member, offsets, "app")
    assert asked == [], "the offsets went to the coordinator"
    assert txn.state == txn.state.ABORTABLE_ERROR
    with pytest.raises(GroupFenced):
        pending.result()  # what send_offsets_to_transaction raises
    txn.aborting_transaction()
    assert txn.needs_transaction_commit() is not None, "the abort is sent"


@_in_loop
async def test_the_worker_names_the_assignment_it_holds_not_the_coordinators_state_of_the_moment(
    tmp_path: Path
) -> None:
    app = build(Settings(data_dir=tmp_path, processing_guarantee="exactly_once"))
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    assert consumer.group_metadata() == (-1, ""), "no assignment yet"
    coordinator = SimpleNamespace(generation=7, member_id="member-a")

    async def on_partitions_assigned(assigned: object, generation: int) -> None:
        pass

    thread = SimpleNamespace(consumer=consumer, app=app, on_partitions_assigned=on_partitions_assigned,
                             _ensure_consumer=lambda: SimpleNamespace(_coordinator=coordinator))
    await consumer.RebalanceListener(thread).on_partitions_assigned([IN])
    # the group drops the worker (a paused zombie back): aiokafka resets its coordinator before the revoke
    coordinator.generation, coordinator.member_id = -1, ""
    assert consumer.group_metadata() == (7, "member-a")


def test_the_offset_fetch_asks_for_stable_offsets() -> None:
    struct = StableOffsetFetch("app", [("in", [0, 1])]).build(OffsetFetchStructV7)
    decoded = OffsetFetchStructV7.SCHEMA.decode(io.BytesIO(struct.encode()))
    assert decoded == ("app", [("in", [0, 1], {})], True, {})


def _fetched(*partitions: tuple[int, int, int], error: int = 0) -> OffsetFetchResponseV7:
    return OffsetFetchResponseV7(0, [("in", [(p, offset, -1, "", code, {}) for p, offset, code in partitions], {})],
                                 error, {})


def test_fetched_offsets_skip_partitions_never_committed_and_an_unstable_one_is_retried() -> None:
    assert committed_offsets(_fetched((0, 5, 0), (1, -1, 0))) == {IN: OffsetAndMetadata(5, "")}
    with pytest.raises(UnstableOffsetCommit) as unstable:
        committed_offsets(_fetched((0, 5, 0), (1, -1, UNSTABLE_OFFSET_COMMIT)))
    assert unstable.value.retriable
    with pytest.raises(errors.GroupAuthorizationFailedError):
        committed_offsets(_fetched(error=errors.GroupAuthorizationFailedError.errno))


def test_a_worker_keeps_its_transactional_id_across_restarts(tmp_path: Path) -> None:
    first = worker_transactional_id("app", tmp_path / "a")
    assert first.startswith("app-")
    assert worker_transactional_id("app", tmp_path / "a") == first
    assert worker_transactional_id("app", tmp_path / "b") != first


class _StandIn:
    """The aiokafka producer calls the worker's transaction makes, recorded; its state is aiokafka's own."""

    def __init__(self, txn: TxnState, refuse_offsets: bool = False) -> None:
        self._txn_manager, self.calls, self.refuse_offsets = txn, [], refuse_offsets

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.calls.append("offsets")
        if self.refuse_offsets:
            raise GroupFenced("refused")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")


def _worker_producer(tmp_path: Path, stand_in: _StandIn) -> Producer:
    app = build(Settings(data_dir=tmp_path, processing_guarantee="exactly_once"))
    producer = app.producer
    assert isinstance(producer, Producer)
    producer._transaction_producers[producer.transactional_id] = stand_in  # type: ignore[assignment]
    producer._trn_locks[producer.transactional_id] = asyncio.Lock()
    return producer


def _in_state(state: str) -> TxnState:
    txn = TxnState("worker-1", 60_000)
    txn.set_pid_and_epoch(42, 3)
    txn.begin_transaction()
    if state == "abortable":
        txn.error_transaction(GroupFenced("an earlier request of the transaction was refused"))
        txn._transaction_waiter.exception()
    elif state == "fatal":
        txn.fatal_error(errors.ProducerFenced())
        txn._transaction_waiter.exception()
    return txn


@_in_loop
async def test_the_worker_commits_its_one_transaction_and_begins_the_next(tmp_path: Path) -> None:
    stand_in = _StandIn(_in_state("open"))
    await _worker_producer(tmp_path, stand_in).commit_worker_transaction({IN: 5}, "app", True)
    assert stand_in.calls == ["offsets", "commit", "begin"]


@_in_loop
async def test_a_refused_commit_is_aborted_and_a_failed_transaction_is_never_taken_for_committed(
    tmp_path: Path
) -> None:
    refused = _StandIn(_in_state("open"), refuse_offsets=True)
    with pytest.raises(GroupFenced):
        await _worker_producer(tmp_path / "a", refused).commit_worker_transaction({IN: 5}, "app", True)
    assert refused.calls == ["offsets", "abort"]
    for state, calls in (("abortable", ["abort"]), ("fatal", [])):
        stand_in = _StandIn(_in_state(state))
        with pytest.raises(TransactionFailed):
            await _worker_producer(tmp_path / state, stand_in).commit_worker_transaction({IN: 5}, "app", True)
        assert stand_in.calls == calls, state
