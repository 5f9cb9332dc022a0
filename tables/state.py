"""RocksDB-backed tables with changelog topics; values are JSON bytes of the domain records."""

from __future__ import annotations

from faust.types import TableT

from app.faust_app import app, settings


def _table(name: str, help_text: str) -> TableT:
    """A table keyed by a string id, holding raw JSON bytes, partitioned like its feed."""
    return app.Table(
        name, default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions, help=help_text
    )


sagas = _table("sagas", "Saga state by order id.")
stock = _table("stock", "Stock, holds and finished orders by sku.")
wallets = _table("wallets", "Balance, charges and refunds by customer id.")
customers = _table("customers", "Registered customers by customer id.")
saga_deadlines = _table("saga_deadlines", "Deadline of each saga in progress by order id; the timeout scan reads this.")
