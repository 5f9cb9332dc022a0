"""The two Kafka requests one transactional producer per worker (KIP-447) needs, which aiokafka 0.14 does not send.

- ``TxnOffsetCommit`` v3 names the consumer group generation and member. The group coordinator refuses it
  from a worker the group has moved on from, so a zombie's transaction can never commit the offsets of
  partitions another worker now owns: the whole transaction (its sends too) is aborted.
- ``OffsetFetch`` v7 with ``require_stable``: a new owner reading a partition's committed offset waits while
  an offset for it sits in a transaction not yet completed, instead of reading the offset before it and
  processing those inputs (and sending their outputs) again.

aiokafka has the flexible-version types both need. They are installed on our own transactional producer's
sender and our own worker consumer's coordinator, never on aiokafka's classes.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from aiokafka import errors
from aiokafka.client import CoordinationType
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.sender import Sender, TxnOffsetCommitHandler
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from aiokafka.structs import OffsetAndMetadata, TopicPartition

log = logging.getLogger(__name__)

#: (generation, member id) of the assignment the worker's consumer holds in its group
GroupMetadata = Callable[[], tuple[int, str]]
#: aiokafka's generation of a consumer that is no member of its group (yet, or any more)
NO_GENERATION = -1
#: the coordinator refuses a transaction's offsets because the group has moved on from this worker
GROUP_FENCING_ERRORS = frozenset({errors.IllegalGenerationError.errno, errors.UnknownMemberIdError.errno,
                                  82})  # FENCED_INSTANCE_ID
#: an offset of the partition is in a transaction the coordinator has not completed yet (aiokafka lacks it)
UNSTABLE_OFFSET_COMMIT = 88
NO_OFFSET = -1


class GroupFenced(errors.KafkaError):
    """The group moved on from this worker: its transaction must be aborted, its local changes dropped."""

    retriable = False


class UnstableOffsetCommit(errors.KafkaError):
    """A committed offset is still being decided by a transaction; asked again after a backoff."""

    errno = UNSTABLE_OFFSET_COMMIT
    retriable = True


class TxnOffsetCommitResponseV3(Response):
    """The coordinator's answer: an error code per partition."""

    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitStructV3(RequestStruct):
    """A transaction's offsets, with the generation and member of the consumer that read up to them."""

    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponseV3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("committed_offset", Int64), ("committed_leader_epoch", Int32),
                ("committed_metadata", CompactString("utf-8")), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitV3(Request[TxnOffsetCommitStructV3]):
    """``TxnOffsetCommit`` v3 only: a broker without it (before Kafka 2.5) cannot fence by generation."""

    API_KEY = 28

    def __init__(self, *fields: Any) -> None:
        self._fields = fields

    def build(self, request_struct_class: type[TxnOffsetCommitStructV3]) -> TxnOffsetCommitStructV3:
        return request_struct_class(*self._fields)


class _Errors(NamedTuple):
    """The shape of a v0 response, which aiokafka's handler reads."""

    errors: list[tuple[str, list[tuple[int, int]]]]


class GenerationTxnOffsetCommitHandler(TxnOffsetCommitHandler):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's handler of a transaction's offset commit, sending v3 and turning group fencing into an abort.

    aiokafka would treat ILLEGAL_GENERATION as fatal: the producer could then neither abort nor go on.
    """

    def __init__(self, sender: Sender, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str,
                 member: tuple[int, str]) -> None:
        super().__init__(sender, offsets, group_id)
        self._member = member

    def create_request(self) -> TxnOffsetCommitV3:
        txn = self._sender._txn_manager
        by_topic: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]] = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            by_topic[tp.topic].append((tp.partition, offset.offset, -1, offset.metadata, {}))
        generation, member_id = self._member
        return TxnOffsetCommitV3(txn.transactional_id, self._group_id, txn.producer_id, txn.producer_epoch,
                                 generation, member_id, None, [(t, ps, {}) for t, ps in by_topic.items()], {})

    def handle_response(self, resp: TxnOffsetCommitResponseV3) -> float | None:
        fenced = [(topic, p) for topic, parts, _ in resp.topics for p, code, _ in parts if code in GROUP_FENCING_ERRORS]
        if fenced:
            generation, member_id = self._member
            exc = GroupFenced(f"group {self._group_id} refused the offsets of {fenced}: generation {generation} "
                              f"and member {member_id!r} are no longer current")
            _abortable(self._sender._txn_manager, exc)
            return None
        flat = _Errors([(t, [(p, code) for p, code, _ in ps]) for t, ps, _ in resp.topics])
        return super().handle_response(flat)  # type: ignore[no-any-return]


def _abortable(txn: Any, exc: Exception) -> None:
    """aiokafka's abortable error, which the abort then really ends on the broker.

    aiokafka's ``error_transaction`` forgets the partitions and the group the transaction holds, so the
    abort after it is taken for an empty transaction and never sent: the transaction stays open until it
    times out, and ``read_committed`` readers of its partitions wait for it.
    """
    partitions, group = set(txn._txn_partitions), txn._txn_consumer_group
    txn.error_transaction(exc)
    txn._txn_partitions.update(partitions)
    txn._txn_consumer_group = group
    # the waiter of the transaction's end holds the error for a commit; the abort (the way out) replaces it
    # unread, and asyncio would log it as never retrieved
    txn._transaction_waiter.exception()


async def _txn_offset_commit(sender: Sender, group_metadata: GroupMetadata,
                             offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str) -> None:
    """``Sender._do_txn_offset_commit`` with our handler, naming the member read once, before any retry.

    A worker that is no member of the group is fenced here: the coordinator would accept offsets naming
    generation -1 and no member (as from a producer before KIP-447), whoever owns the partitions now.
    """
    if not offsets:
        return
    member = group_metadata()
    if member[0] == NO_GENERATION or not member[1]:
        _abortable(sender._txn_manager, GroupFenced(f"this worker holds no assignment in group {group_id}: "
                                                    "the offsets of its transaction cannot be committed"))
        return
    try:
        node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
    except errors.GroupAuthorizationFailedError as exc:
        _abortable(sender._txn_manager, exc)
        return
    await GenerationTxnOffsetCommitHandler(sender, offsets, group_id, member).do(node_id)


def commit_offsets_with_generation(sender: Sender, group_metadata: GroupMetadata) -> None:
    """This producer's transactions commit their offsets naming the group generation (KIP-447)."""
    sender._do_txn_offset_commit = partial(_txn_offset_commit, sender, group_metadata)


class OffsetFetchResponseV7(Response):
    """Each partition's committed offset, or an error such as UNSTABLE_OFFSET_COMMIT."""

    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("committed_offset", Int64), ("committed_leader_epoch", Int32),
                ("metadata", CompactString("utf-8")), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchStructV7(RequestStruct):
    """The committed offsets of a group's partitions, stable ones only."""

    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponseV7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        ("topics", CompactArray(("name", CompactString("utf-8")), ("partition_indexes", CompactArray(Int32)),
                                ("tags", TaggedFields))),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetch(Request[OffsetFetchStructV7]):
    """``OffsetFetch`` v7 with ``require_stable``."""

    API_KEY = 9

    def __init__(self, group_id: str, topics: list[tuple[str, list[int]]]) -> None:
        self._group_id = group_id
        self._topics = topics

    def build(self, request_struct_class: type[OffsetFetchStructV7]) -> OffsetFetchStructV7:
        return request_struct_class(self._group_id, [(t, ps, {}) for t, ps in self._topics], True, {})


def committed_offsets(response: OffsetFetchResponseV7) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets in a fetch's answer; an error (an unstable offset among them) is raised for a retry."""
    if response.error_code:
        raise _fetch_error(response.error_code, "the group")
    offsets = {}
    for topic, partitions, _ in response.topics:
        for partition, offset, _epoch, metadata, code, _ in partitions:
            tp = TopicPartition(topic, partition)
            if code == errors.UnknownTopicOrPartitionError.errno:
                log.warning("OffsetFetchRequest -- unknown topic %s", topic)
                continue
            if code:
                raise _fetch_error(code, str(tp))
            if offset != NO_OFFSET:
                offsets[tp] = OffsetAndMetadata(offset, metadata or "")
    return offsets


def _fetch_error(code: int, what: str) -> errors.KafkaError:
    """The error of a code in an offset fetch, retriable where aiokafka retries it."""
    if code == UNSTABLE_OFFSET_COMMIT:
        return UnstableOffsetCommit(f"an offset of {what} is in a transaction not completed yet")
    error_type = errors.for_code(code)
    return error_type(what) if error_type is not errors.UnknownError else errors.KafkaError(f"error {code} for {what}")


async def _fetch_stable(coordinator: GroupCoordinator, partitions: list[TopicPartition]
                        ) -> dict[TopicPartition, OffsetAndMetadata]:
    """``GroupCoordinator._do_fetch_commit_offsets`` asking for stable offsets only."""
    by_topic: dict[str, list[int]] = collections.defaultdict(list)
    for tp in partitions:
        by_topic[tp.topic].append(tp.partition)
    try:
        response = await coordinator._send_req(StableOffsetFetch(coordinator.group_id, list(by_topic.items())))
        return committed_offsets(response)
    except (errors.NotCoordinatorForGroupError, errors.CoordinatorNotAvailableError):
        coordinator.coordinator_dead()
        raise


def fetch_stable_offsets(coordinator: GroupCoordinator) -> None:
    """This coordinator reads committed offsets only once no transaction holds them open."""
    coordinator._do_fetch_commit_offsets = partial(_fetch_stable, coordinator)
