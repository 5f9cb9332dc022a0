"""Where each changelog partition's last committed record is: under exactly_once a log ends in a marker.

Every Kafka transaction ends with a commit (or abort) marker that takes an offset and that no consumer
receives. Faust's recovery waits for the record just below the last stable offset, which is then a
marker: it waits out two idle 5 s polls before it gives up on it, about 10 s at every start and every
takeover. Knowing the offset of the last committed record, recovery can end as soon as it has read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

#: how far back from the end the first look goes: a record, its commit marker, and a few aborted ones
FIRST_WINDOW = 8
#: each further look goes this many times further back
WIDER = 16
#: past this many offsets back, a partition is left to Faust's own idle check
MAX_WINDOW = 1 << 20
#: how long one look waits for a fetch
POLL_MS = 200


async def last_committed_records(options: Mapping[str, Any], ends: Mapping[TopicPartition, int]
                                 ) -> dict[TopicPartition, int]:
    """For each partition, the offset of its last committed record below ``ends[tp]`` (its last stable
    offset), or -1 if it has none there; ``options`` are the client's (``app.kafka_clients``). A partition it
    could not settle is left out."""
    found: dict[TopicPartition, int] = {}
    todo = {tp: end for tp, end in ends.items() if end > 0}
    found.update({tp: -1 for tp, end in ends.items() if end <= 0})
    if not todo:
        return found
    consumer = AIOKafkaConsumer(**options, isolation_level="read_committed",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(list(todo))
        begins = await consumer.beginning_offsets(list(todo))
        window = FIRST_WINDOW
        while todo and window <= MAX_WINDOW:
            starts = {tp: max(begins[tp], end - window) for tp, end in todo.items()}
            for tp, start in starts.items():
                consumer.seek(tp, start)
            last = await _read_to_ends(consumer, todo)
            for tp in list(todo):
                if tp in last or starts[tp] <= begins[tp]:
                    found[tp] = last.get(tp, -1)
                    del todo[tp]
            window *= WIDER
    finally:
        await consumer.stop()
    return found


async def _read_to_ends(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Read every partition from its position up to its end; the offset of the last record seen below it."""
    last: dict[TopicPartition, int] = {}
    reading = dict(ends)
    while reading:
        batches = await consumer.getmany(*reading, timeout_ms=POLL_MS)
        for tp, records in batches.items():
            below = [record.offset for record in records if record.offset < ends[tp]]
            if below:
                last[tp] = max(below[-1], last.get(tp, -1))
        positions = await asyncio.gather(*(consumer.position(tp) for tp in reading))
        for tp, position in zip(list(reading), positions, strict=True):
            if position >= ends[tp]:
                del reading[tp]
    return last
