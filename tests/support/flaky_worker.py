"""``streamsaga worker`` whose wallet agent fails for one customer while a file exists.

A fault that goes away (an outage, a bug fixed and deployed), for the dead-letter redrive test:
while ``STREAMSAGA_TEST_FAULT_FILE`` exists, a charge to customer ``flaky`` raises, is retried and
then dead-lettered; once the file is gone the same command goes through.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from app import cli
from models import handlers
from models.effects import Effects, Incoming

FLAKY_CHARGE = (b'"kind":"ChargeWallet"', b'"customer_id":"flaky"')
REAL_WALLET = handlers.wallet


def flaky_wallet(exactly_once: bool) -> handlers.Handler:
    """The real wallet handler, failing for the flaky customer while the fault file exists."""
    real = REAL_WALLET(exactly_once)
    fault = Path(os.environ["STREAMSAGA_TEST_FAULT_FILE"])

    def handle(record: Incoming, read: handlers.Reader, now: datetime) -> Effects:
        if fault.exists() and all(part in (record.value or b"") for part in FLAKY_CHARGE):
            raise OSError("wallet store unavailable (a fault the test injected)")
        return real(record, read, now)

    return handle


if __name__ == "__main__":
    handlers.wallet = flaky_wallet  # type: ignore[assignment]  # agents/wallet.py looks it up when it registers
    cli.main()
