"""Table definitions: the whole state of the system, readable in one place."""
