"""Topic names the admin client creates agree with the ones the Faust app uses."""

from __future__ import annotations


def test_the_tables_admin_creates_changelogs_for_are_the_apps_tables() -> None:
    """ensure_topics creates changelogs by name; a table added without its name would race again."""
    from app.topic_names import TABLES, changelog_names
    from config.settings import Settings
    from tables.state import app

    assert set(app.tables) == set(TABLES)
    names = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
    assert names == set(changelog_names(Settings()))
