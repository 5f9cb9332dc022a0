"""The Faust floor for the benchmark: one agent that sends every message it reads on, nothing else.

Run as ``python bench/faust_passthrough.py worker -l warn`` with ``BENCH_BROKER``, ``BENCH_APP_ID``,
``BENCH_SOURCE`` and ``BENCH_SINK`` set. It uses the worker's producer settings (acks=all, the same
linger), so its rate is what Faust itself allows per message on this machine, before any of our code.
"""

from __future__ import annotations

import os

import faust
from faust.types import StreamT

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=os.environ["BENCH_BROKER"],
    store="memory://",
    web_enabled=False,
    producer_acks=-1,
    producer_linger=float(os.environ.get("BENCH_LINGER_MS", "5")) / 1000,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["BENCH_SOURCE"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["BENCH_SINK"], key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def passthrough(stream: StreamT) -> None:
    """Send each message on, as our agents send their outputs."""
    async for event in stream.events():
        await sink.send(key=event.message.key, value=event.message.value)


if __name__ == "__main__":
    app.main()
