"""Deliberately broken handlers and executors, each a bug the simulator must catch.

Each wraps the real code (``models.handlers``, ``agents.executor``) and breaks one rule of the
design; the tests in test_broken_handlers.py assert that the simulator finds each within a bounded
number of seeds.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from agents.executor import Executor
from models import handlers, paged, stats
from models.commands import ChargeWallet, PaymentCharged, RefundWallet, ReserveStock, SagaTimeout, StockReserved
from models.effects import NOTHING, Effects, Incoming, output
from models.events import BadMessage, PaymentRefunded
from models.handlers import SAGAS, STATS, STOCK, WALLETS, Handler, Reader
from models.saga import SagaPolicy
from models.stock import MEMORY as STOCK_MEMORY
from models.stock import Stock
from models.wallet import MEMORY as WALLET_MEMORY
from models.wallet import Wallet
from simulation.simulator import REAL, Handlers


def drops_sends_on_duplicate(handler: Handler, table: str) -> Handler:
    """A message that changes nothing in ``table`` sends nothing: a crash between the write and the sends loses them."""

    def broken(record: Incoming, read: Reader, now: datetime) -> Effects:
        effects = handler(record, read, now)
        return effects if any(write.table == table for write in effects.writes) else Effects(effects.writes)

    return broken


def saga_drops_sends_on_duplicate(policy: SagaPolicy, exactly_once: bool) -> Handler:
    return drops_sends_on_duplicate(handlers.saga(policy, exactly_once), SAGAS)


def saga_keeps_late_payments(policy: SagaPolicy, exactly_once: bool) -> Handler:
    """A payment that comes after the saga ended is recorded but never refunded."""
    real = handlers.saga(policy, exactly_once)

    def broken(record: Incoming, read: Reader, now: datetime) -> Effects:
        effects = real(record, read, now)
        kept = tuple(send for send in effects.sends if not isinstance(send.message, (RefundWallet, PaymentRefunded)))
        return Effects(effects.writes, kept)

    return broken


def stock_reserves_duplicates_again(exactly_once: bool) -> Handler:
    """A repeated ReserveStock holds the quantity a second time."""
    return lambda record, read, now: _reserve_again(record, read, now, handlers.stock(exactly_once))


def _reserve_again(record: Incoming, read: Reader, now: datetime, real: Handler) -> Effects:
    sku, message = handlers.owned_message(record)
    if isinstance(message, ReserveStock):
        head, stock = paged.load(read, STOCK, sku, Stock(sku=sku), STOCK_MEMORY, message.order_id)
        held = stock.holds.get(message.order_id)
        if held is not None and message.quantity <= stock.available:
            again = dataclasses.replace(
                stock,
                available=stock.available - message.quantity,
                holds={**stock.holds, message.order_id: held + message.quantity},
            )
            reply = StockReserved(order_id=message.order_id, sku=sku, quantity=message.quantity)
            writes = paged.store(read, STOCK, sku, head, again, Stock(sku=sku), STOCK_MEMORY, message.order_id)
            return Effects(tuple(writes), (output(reply),))
    return real(record, read, now)


def wallet_charges_duplicates_again(exactly_once: bool) -> Handler:
    """A repeated ChargeWallet takes the money a second time."""
    return lambda record, read, now: _charge_again(record, read, now, handlers.wallet(exactly_once))


def _charge_again(record: Incoming, read: Reader, now: datetime, real: Handler) -> Effects:
    customer_id, message = handlers.owned_message(record)
    if isinstance(message, ChargeWallet):
        blank = Wallet(customer_id=customer_id)
        head, wallet = paged.load(read, WALLETS, customer_id, blank, WALLET_MEMORY, message.order_id)
        charged = wallet.charges.get(message.order_id)
        if charged is not None and message.amount <= wallet.balance:
            again = dataclasses.replace(
                wallet,
                balance=wallet.balance - message.amount,
                charges={**wallet.charges, message.order_id: charged + message.amount},
            )
            reply = PaymentCharged(order_id=message.order_id, amount=message.amount)
            writes = paged.store(read, WALLETS, customer_id, head, again, blank, WALLET_MEMORY, message.order_id)
            return Effects(tuple(writes), (output(reply),))
    return real(record, read, now)


def saga_ignores_timeouts(policy: SagaPolicy, exactly_once: bool) -> Handler:
    """The timer's SagaTimeout is dropped: a saga with no answer waits forever."""
    real = handlers.saga(policy, exactly_once)

    def broken(record: Incoming, read: Reader, now: datetime) -> Effects:
        _, message = handlers.owned_message(record)
        return NOTHING if isinstance(message, SagaTimeout) else real(record, read, now)

    return broken


def saga_counts_only_on_change(policy: SagaPolicy, exactly_once: bool) -> Handler:
    """Counts an order only when its saga changes: a crash after the saga write and before the
    count's loses the count, as the redelivery finds the saga changed already."""
    real = handlers.saga(policy, exactly_once)

    def broken(record: Incoming, read: Reader, now: datetime) -> Effects:
        effects = real(record, read, now)
        if effects.measures:
            return effects
        return Effects(tuple(write for write in effects.writes if write.table != STATS), effects.sends)

    return broken


def saga_counts_every_delivery(policy: SagaPolicy, exactly_once: bool) -> Handler:
    """Forgets which input a bucket counted last: a redelivery counts its order again."""
    real = handlers.saga(policy, exactly_once)

    def forgetful(read: Reader) -> Reader:
        def read_forgetting(table: str, key: str) -> bytes | None:
            value = read(table, key)
            if table != STATS or value is None or stats.parse_bucket_key(key) is None:
                return value
            return dataclasses.replace(stats.Bucket.from_json(value), last_input=-1).to_json()

        return read_forgetting

    return lambda record, read, now: real(record, forgetful(read), now)


class ExecutorWritingOneTable(Executor):
    """Applies only the first table write of a message, as if each agent had one table: the saga's
    deadline index is never written for a new saga, so a saga with no answer never times out."""

    async def apply(self, effects: Effects) -> None:
        await super().apply(Effects(effects.writes[:1], effects.sends))


class ExecutorDroppingBadMessages(Executor):
    """Logs a message the handler rejects and goes on, instead of dead-lettering it: dropped silently."""

    async def dead_letter(self, record: Incoming, reason: str, failure_class: str) -> None:
        if failure_class != BadMessage.__name__:
            await super().dead_letter(record, reason, failure_class)


BROKEN: dict[str, Handlers] = {
    "drop-outputs-on-duplicate": dataclasses.replace(
        REAL,
        saga=saga_drops_sends_on_duplicate,
        stock=lambda eos: drops_sends_on_duplicate(handlers.stock(eos), STOCK),
        wallet=lambda eos: drops_sends_on_duplicate(handlers.wallet(eos), WALLETS),
    ),
    "saga-drops-outputs-on-duplicate": dataclasses.replace(REAL, saga=saga_drops_sends_on_duplicate),
    "late-payment-not-refunded": dataclasses.replace(REAL, saga=saga_keeps_late_payments),
    "stock-reserves-duplicates-again": dataclasses.replace(REAL, stock=stock_reserves_duplicates_again),
    "wallet-charges-duplicates-again": dataclasses.replace(REAL, wallet=wallet_charges_duplicates_again),
    "saga-ignores-timeouts": dataclasses.replace(REAL, saga=saga_ignores_timeouts),
    "executor-writes-one-table": dataclasses.replace(REAL, executor=ExecutorWritingOneTable),
    "executor-drops-bad-messages": dataclasses.replace(REAL, executor=ExecutorDroppingBadMessages),
    "sends-outside-the-transaction": dataclasses.replace(REAL, sends_in_transaction=False),
    "tables-survive-an-abort": dataclasses.replace(REAL, drops_tables_after_abort=False),
    "zombies-not-fenced": dataclasses.replace(REAL, fences_zombies=False),
    "counts-only-on-change": dataclasses.replace(REAL, saga=saga_counts_only_on_change),
    "counts-every-delivery": dataclasses.replace(REAL, saga=saga_counts_every_delivery),
}
