"""Thin agents: read a message, call the pure domain, write the table, send the outputs."""
