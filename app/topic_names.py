"""Full names of every topic, without Faust, so plain clients and the app agree on them."""

from __future__ import annotations

from config.settings import Settings
from models import commands
from models.handlers import TABLES
from models.topics import INPUT_TOPICS, PUBLIC_TOPICS, dead_letter_name

INTERNAL_TOPICS = (commands.SAGA, commands.STOCK, commands.WALLET, commands.CUSTOMER)


def full_name(settings: Settings, name: str) -> str:
    """The full name of a public or internal topic given by its logical name."""
    return settings.internal_topic(name) if name in INTERNAL_TOPICS else settings.topic(name)


def input_topic_names(settings: Settings) -> list[str]:
    """Every topic the agents consume, with full names: the public inputs and the internal topics."""
    return [settings.topic(name) for name in INPUT_TOPICS] + [settings.internal_topic(name) for name in INTERNAL_TOPICS]


def changelog_names(settings: Settings) -> list[str]:
    """Faust's changelog topic of each table (the app's group id, the table, ``-changelog``)."""
    return [f"{settings.group_id}-{table}-changelog" for table in TABLES]


def all_topic_names(settings: Settings) -> list[str]:
    """Every topic the app needs, with full names: public, internal and their dead letters."""
    names = [settings.topic(name) for name in PUBLIC_TOPICS]
    names += [settings.internal_topic(name) for name in INTERNAL_TOPICS]
    return names + [dead_letter_name(name) for name in names]
