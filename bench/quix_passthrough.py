"""The Quix Streams pass-through for the benchmark: what a user would pick instead of Faust, per record.

Run as ``python bench/quix_passthrough.py`` with ``BENCH_BROKER`` (host:port), ``BENCH_APP_ID``,
``BENCH_SOURCE`` and ``BENCH_SINK`` set; SIGTERM stops it. The producer has the worker's settings
(acks=all, idempotent, the same linger), so its rate sits beside the Faust floor's like for like.
"""

from __future__ import annotations

import os

from quixstreams import Application


def main() -> None:
    """Copy every record of the source topic to the sink topic until stopped."""
    app = Application(
        broker_address=os.environ["BENCH_BROKER"],
        consumer_group=os.environ["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=1.0,
        use_changelog_topics=False,
        producer_extra_config={"acks": "all", "enable.idempotence": True,
                               "linger.ms": float(os.environ.get("BENCH_LINGER_MS", "5"))},
        loglevel="WARNING",
    )
    source = app.topic(os.environ["BENCH_SOURCE"], key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(os.environ["BENCH_SINK"], key_serializer="bytes", value_serializer="bytes")
    app.dataframe(source).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
