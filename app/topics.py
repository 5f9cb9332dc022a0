"""Every topic the app reads or writes, as Faust topics of raw bytes."""

from __future__ import annotations

from dataclasses import dataclass

from faust.types import AppT, TopicT

from app.topic_names import INTERNAL_TOPICS
from config.settings import Settings
from models.topics import PUBLIC_TOPICS, dead_letter_name


@dataclass(frozen=True)
class Topics:
    """The public and internal topics by logical name, and every topic (DLQs too) by full name."""

    public: dict[str, TopicT]
    internal: dict[str, TopicT]
    by_name: dict[str, TopicT]


def declare_topics(app: AppT, settings: Settings) -> Topics:
    """Declare every topic with the configured partitions and replicas."""

    def declare(name: str) -> TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=settings.partitions,
                         replicas=settings.replicas, internal=True)

    public = {name: declare(settings.topic(name)) for name in PUBLIC_TOPICS}
    internal = {name: declare(settings.internal_topic(name)) for name in INTERNAL_TOPICS}
    by_name = {topic.get_topic_name(): topic for topic in [*public.values(), *internal.values()]}
    by_name.update({dead_letter_name(full): declare(dead_letter_name(full)) for full in list(by_name)})
    return Topics(public, internal, by_name)
