"""The Faust floor for the benchmark: one agent that sends every message it reads on, nothing else.

Run as ``python bench/faust_passthrough.py worker -l warn`` with ``BENCH_BROKER``, ``BENCH_APP_ID``,
``BENCH_SOURCE``, ``BENCH_SINK`` and ``BENCH_DATA_DIR`` set, and the worker's ``STREAMSAGA_*``
settings in the environment. The app is the worker's own (``app.faust_app.create_app``: its
transport, consumer, producer settings and log level), so its rate is what Faust allows per
message as we configure it, before any of our agents' code runs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from faust.types import StreamT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import log_level  # noqa: E402
from app.faust_app import create_app  # noqa: E402
from config.settings import Settings  # noqa: E402
from devtools.kafka_local import free_port  # noqa: E402

settings = dataclasses.replace(
    Settings.from_env(),
    broker=os.environ["BENCH_BROKER"], app_id=os.environ["BENCH_APP_ID"], topic_prefix="",
    data_dir=Path(os.environ["BENCH_DATA_DIR"]), web_port=free_port(), log_level="warn",
)
settings.data_dir.mkdir(parents=True, exist_ok=True)
app = create_app(settings)
log_level.register(app)
source = app.topic(os.environ["BENCH_SOURCE"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["BENCH_SINK"], key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def passthrough(stream: StreamT) -> None:
    """Send each message on, as our agents send their outputs."""
    async for event in stream.events():
        await sink.send(key=event.message.key, value=event.message.value)


if __name__ == "__main__":
    app.main()
