"""RocksDB-backed tables with changelog topics; values are JSON bytes of the domain records."""

from __future__ import annotations

from faust.types import AppT, TableT

from config.settings import Settings
from models.handlers import CUSTOMERS, DEADLINES, EXPIRY, SAGAS, STATS, STOCK, WALLETS

HELP = {
    SAGAS: "Saga state by order id.",
    STOCK: "Stock and holds by sku; what each order came to in pages of the sku (models/paged.py).",
    WALLETS: "Balance by customer id; charges, refunds and declines in pages of the wallet (models/paged.py).",
    CUSTOMERS: "Registered customers by customer id.",
    DEADLINES: "Deadline of each saga in progress by order id; the timeout scan reads this.",
    EXPIRY: "When each finished saga is forgotten, keyed '<time>|<order id>'; the retention scan reads what is due.",
    STATS: "Outcome counts per minute and input partition, for the windows of GET /stats (models/stats.py).",
}


def declare_tables(app: AppT, settings: Settings) -> dict[str, TableT]:
    """Every table, keyed by a string id, holding raw JSON bytes, partitioned like its feed."""
    return {
        name: app.Table(name, default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                        help=help_text)
        for name, help_text in HELP.items()
    }
