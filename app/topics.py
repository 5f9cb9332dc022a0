"""Every topic the app reads or writes as a Faust topic, each created when missing."""

from __future__ import annotations

from faust.types import TopicT

from app.faust_app import app, settings
from app.topic_names import INTERNAL_TOPICS, dead_letter_name
from models.events import Event
from models.topics import PUBLIC_TOPICS, topic_of


def _declare(name: str) -> TopicT:
    """A topic of raw bytes with the configured partitions and replicas."""
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        replicas=settings.replication_factor,
        internal=True,
    )


public = {name: _declare(settings.topic(name)) for name in PUBLIC_TOPICS}
internal = {name: _declare(settings.internal_topic(name)) for name in INTERNAL_TOPICS}
dead_letters = {
    full: _declare(dead_letter_name(full))
    for full in [settings.topic(n) for n in PUBLIC_TOPICS] + [settings.internal_topic(n) for n in INTERNAL_TOPICS]
}


def topic_for_event(event: Event) -> TopicT:
    """Where the application writes an event of this type."""
    return public[topic_of(event.event_type)]
