"""Helpers shared by the integration and end-to-end tests: broker, worker processes, topic I/O."""
