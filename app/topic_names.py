"""Full names of every topic, without Faust, so plain clients and the app agree on them."""

from __future__ import annotations

from config.settings import Settings
from models import commands
from models.topics import PUBLIC_TOPICS

INTERNAL_TOPICS = (commands.SAGA, commands.STOCK, commands.WALLET, commands.CUSTOMER)
TABLES = ("sagas", "stock", "wallets", "customers", "saga_deadlines")


def changelog_names(settings: Settings) -> list[str]:
    """Faust's changelog topic of each table (app id, table, ``-changelog``)."""
    return [f"{settings.app_id}-{table}-changelog" for table in TABLES]


def dead_letter_name(topic: str) -> str:
    """The contract's dead-letter topic for a topic."""
    return f"{topic}.DLQ"


def all_topic_names(settings: Settings) -> list[str]:
    """Every topic the app needs, with full names: public, internal and their dead letters."""
    names = [settings.topic(name) for name in PUBLIC_TOPICS]
    names += [settings.internal_topic(name) for name in INTERNAL_TOPICS]
    return names + [dead_letter_name(name) for name in names]
