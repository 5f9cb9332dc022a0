"""``streamsaga``'s operator commands: replay, dlq, tables, load, topics, schemas (``app.ops.cli``)."""
