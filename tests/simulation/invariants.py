"""The contract's guarantees 1-5, checked on what a simulated run left behind.

Read from the outside, the way a client sees the system: the public topics (deduplicated by
event id, as the contract tells consumers to), the tables as their changelogs restore them, every
value ever written to a changelog, the dead letters and, in external mode, the gateway's ledger.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from models import paged, stats
from models.events import BadMessage, OrderPlaced, decode_event, parse_time
from models.measures import Ended, Placed
from models.saga import SagaState
from models.stock import MEMORY as STOCK_MEMORY
from models.stock import Stock
from models.topics import INVENTORY_EVENTS, ORDER_EVENTS, PAYMENT_EVENTS, PUBLIC_TOPICS
from models.wallet import MEMORY as WALLET_MEMORY
from models.wallet import Wallet
from simulation.scenario import at_time
from simulation.simulator import CUSTOMERS, DEADLINES, SAGAS, STATS, STOCK, WALLETS, Result

ZERO = Decimal("0.00")
#: events of which an order has at most one (by event id) however often it is re-sent
ONCE_PER_ORDER = (
    "OrderConfirmed", "OrderCancelled", "InventoryReserved", "InventoryReservationFailed", "PaymentRequested",
    "PaymentProcessed", "PaymentFailed", "PaymentRefunded", "SagaCompleted", "SagaFailed", "SagaTimedOut",
    "CompensationCompleted", "CustomerNotified",
)
T = TypeVar("T", int, Decimal)
TERMINAL_SAGA_EVENTS = {"SagaCompleted": "COMPLETED", "SagaFailed": "FAILED", "SagaTimedOut": "TIMED_OUT"}


def check(result: Result) -> list[str]:
    """Every broken guarantee, one line each; empty when the run kept them all."""
    problems = list(result.problems)
    orders, invalid = _orders(result)
    events = _published(result, problems)
    sagas = {key: orjson.loads(value) for key, value in result.tables[SAGAS].items()}
    outcome = _one_outcome_each(orders, events, sagas, problems)
    confirmed = {order_id for order_id, kind in outcome.items() if kind == "OrderConfirmed"}
    cancelled = {order_id for order_id, kind in outcome.items() if kind == "OrderCancelled"}
    _invalid_orders(result, invalid, orders, sagas, problems)
    _stock(result, sagas, confirmed, problems)
    if result.scenario.config.payment_mode == "internal":
        _wallets(result, orders, confirmed, cancelled, problems)
    else:
        _gateway(result, orders, confirmed, cancelled, problems)
    _timeouts(result, sagas, events, problems)
    _customers(result, problems)
    _windows(result, sagas, problems)
    return problems


def _orders(result: Result) -> tuple[dict[str, OrderPlaced], set[str]]:
    """Valid orders by id (the first written wins, later ones are resends), and invalid order ids."""
    orders: dict[str, OrderPlaced] = {}
    invalid: set[str] = set()
    for each in result.scenario.inputs:
        if each.topic != ORDER_EVENTS:
            continue
        try:
            event = decode_event(each.value)
        except BadMessage:
            invalid.add(each.key)
            continue
        assert isinstance(event, OrderPlaced)
        orders.setdefault(event.order_id, event)
    return orders, invalid - set(orders)


def _published(result: Result, problems: list[str]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Events the application wrote, deduplicated by id: order id -> event type -> distinct events.

    Copies of one event id must tell the same thing (only ``occurred_at`` may differ).
    """
    seen: dict[str, dict[str, Any]] = {}
    by_order: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    exactly_once = result.scenario.config.guarantee == "exactly_once"
    for topic in PUBLIC_TOPICS:
        for record in result.topics[topic].records():
            assert record.value is not None
            body = orjson.loads(record.value)
            if record.note.startswith(("outside", "gateway")):
                continue
            same = {k: v for k, v in body.items() if k != "occurred_at"}
            first = seen.setdefault(body["event_id"], same)
            if first is not same:
                if first != same:
                    problems.append(f"G4: event id {body['event_id']} was sent with two bodies: {first} and {same}")
                elif exactly_once:
                    problems.append(f"EOS: {body['event_type']} {body['event_id']} of {body.get('order_id')}"
                                    f" was published twice")
                continue
            if "order_id" in body:
                by_order[body["order_id"]][body["event_type"]].append(body)
    return by_order


def _one_outcome_each(
    orders: dict[str, OrderPlaced],
    events: dict[str, dict[str, list[dict[str, Any]]]],
    sagas: dict[str, dict[str, Any]],
    problems: list[str],
) -> dict[str, str]:
    """G1: every valid order ends in exactly one OrderConfirmed or OrderCancelled, matching its saga."""
    outcome: dict[str, str] = {}
    for order_id in orders:
        mine = events.get(order_id, {})
        for kind in ONCE_PER_ORDER:
            if len(mine.get(kind, [])) > 1:
                problems.append(f"G4: {order_id} has {len(mine[kind])} distinct {kind} events")
        results = [(kind, body) for kind in ("OrderConfirmed", "OrderCancelled") for body in mine.get(kind, [])]
        saga = sagas.get(order_id)
        if saga is None:
            problems.append(f"G1: {order_id} was placed but has no saga")
            continue
        if saga["status"] == "IN_PROGRESS":
            problems.append(f"G1: {order_id} is still in progress at step {saga['step']} once all is quiet")
        if len(results) != 1:
            problems.append(f"G1: {order_id} ended in {[kind for kind, _ in results]} (saga {saga['status']})")
            continue
        kind, body = results[0]
        outcome[order_id] = kind
        if (kind == "OrderConfirmed") != (saga["status"] == "COMPLETED"):
            problems.append(f"G1: {order_id} published {kind} but its saga is {saga['status']}")
        if kind == "OrderCancelled" and body["reason"] != saga["reason"]:
            problems.append(f"G1: {order_id} cancelled for {body['reason']} but its saga says {saga['reason']}")
        ends = [name for name in TERMINAL_SAGA_EVENTS for _ in mine.get(name, [])]
        if ends != [_saga_event(saga["status"])]:
            problems.append(f"G1: {order_id} ({saga['status']}) published the saga endings {ends}")
        if kind == "OrderCancelled":
            for needed in ("CustomerNotified", "CompensationCompleted"):
                if not mine.get(needed):
                    problems.append(f"G1: cancelled {order_id} has no {needed}")
    strays = set(sagas) - set(orders)
    if strays:
        problems.append(f"G1: sagas for orders never validly placed: {sorted(strays)[:5]}")
    return outcome


def _saga_event(status: str) -> str:
    return {v: k for k, v in TERMINAL_SAGA_EVENTS.items()}.get(status, "-")


def _invalid_orders(
    result: Result, invalid: set[str], orders: dict[str, OrderPlaced], sagas: dict[str, Any], problems: list[str]
) -> None:
    """A bad OrderPlaced is dead-lettered and starts nothing; nothing else is dead-lettered."""
    lettered = {key for topic, key, _ in result.dead_letters if topic == ORDER_EVENTS}
    for order_id in sorted(invalid):
        if order_id not in lettered:
            problems.append(f"DLQ: invalid order {order_id} is not in the dead letters")
        if order_id in sagas:
            problems.append(f"DLQ: invalid order {order_id} started a saga")
    for topic, key, reason in result.dead_letters:
        if not (topic == ORDER_EVENTS and key in invalid):
            problems.append(f"DLQ: {topic}[{key}] was dead-lettered: {reason}")


def _input_totals(result: Result, topic: str, field: str, kind: type[T]) -> dict[str, T]:
    """What the scenario's inputs on ``topic`` added per key, each event id counted once."""
    totals: dict[str, Any] = defaultdict(kind)
    ids: set[str] = set()
    for each in result.scenario.inputs:
        if each.topic == topic and each.body["event_id"] not in ids:
            ids.add(each.body["event_id"])
            totals[each.key] += kind(each.body[field])
    return totals


def _stock(result: Result, sagas: dict[str, Any], confirmed: set[str], problems: list[str]) -> None:
    """G2: never below zero; added minus sold is what is available once no saga runs; nothing held."""
    for record in result.changelogs[STOCK].records():
        assert record.value is not None
        body = orjson.loads(record.value)
        if body["available"] < 0 or any(qty <= 0 for qty in body["holds"].values()):
            problems.append(f"G2: {record.key} went to {body['available']} available, holds {body['holds']}")
            break
    added = _input_totals(result, INVENTORY_EVENTS, "quantity", int)
    sold: dict[str, int] = defaultdict(int)
    for order_id in confirmed:
        for sku, qty in sagas[order_id]["lines"].items():
            sold[sku] += qty
    stock = {sku: orjson.loads(whole.to_json())
             for sku, whole in paged.whole(result.tables[STOCK].items(), Stock, STOCK_MEMORY).items()}
    for sku in sorted(set(added) | set(sold) | set(stock)):
        state = stock.get(sku, {"available": 0, "holds": {}, "finished": {}})
        if state["holds"]:
            problems.append(f"G2: {sku} still holds {state['holds']} once no saga is in progress")
        if state["available"] != added[sku] - sold[sku]:
            problems.append(
                f"G2: {sku} has {state['available']} available, but {added[sku]} added - {sold[sku]} sold"
                f" = {added[sku] - sold[sku]}"
            )
        committed = {order_id for order_id, how in state["finished"].items() if how == "C"}
        expected = {order_id for order_id in confirmed if sku in sagas[order_id]["lines"]}
        if committed != expected:
            problems.append(
                f"G2: {sku} sold to {sorted(committed - expected)} not confirmed, not to {sorted(expected - committed)}"
            )


def _wallets(
    result: Result, orders: dict[str, OrderPlaced], confirmed: set[str], cancelled: set[str], problems: list[str]
) -> None:
    """G3 (internal): never below zero, each confirmed order charged once, a cancelled one costs nothing."""
    for record in result.changelogs[WALLETS].records():
        assert record.value is not None
        body = orjson.loads(record.value)
        if Decimal(body["balance"]) < 0:
            problems.append(f"G3: wallet {record.key} went to {body['balance']}")
            break
    funded = _input_totals(result, PAYMENT_EVENTS, "amount", Decimal)
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for order_id in confirmed:
        spent[orders[order_id].customer_id] += orders[order_id].total_amount
    wallets = {key: orjson.loads(whole.to_json())
               for key, whole in paged.whole(result.tables[WALLETS].items(), Wallet, WALLET_MEMORY).items()}
    for customer in sorted(set(funded) | set(spent) | set(wallets)):
        wallet = wallets.get(customer, {"balance": "0.00", "charges": {}, "refunds": {}})
        balance = Decimal(wallet["balance"])
        if balance != funded[customer] - spent[customer]:
            problems.append(
                f"G3: wallet {customer} holds {balance}, but {funded[customer]} funded - {spent[customer]} spent"
                f" = {funded[customer] - spent[customer]}"
            )
        for order_id, amount in wallet["charges"].items():
            net = Decimal(amount) - Decimal(wallet["refunds"].get(order_id, "0"))
            if order_id in confirmed and net != orders[order_id].total_amount:
                problems.append(f"G3: confirmed {order_id} cost {net}, not {orders[order_id].total_amount}")
            if order_id in cancelled and net != ZERO:
                problems.append(f"G3: cancelled {order_id} cost {net}")
    for order_id in sorted(confirmed):
        wallet = wallets.get(orders[order_id].customer_id, {"charges": {}})
        if order_id not in wallet["charges"]:
            problems.append(f"G3: confirmed {order_id} was never charged")


def _gateway(
    result: Result, orders: dict[str, OrderPlaced], confirmed: set[str], cancelled: set[str], problems: list[str]
) -> None:
    """G3 (external): the gateway charged each confirmed order once and got back what cancelled ones paid."""
    ledger = result.gateway
    for order_id in ledger.extra_refunds:
        problems.append(f"G3: {order_id} was refunded twice under different event ids")
    for order_id in sorted(set(ledger.charged) | set(ledger.refunded)):
        net = ledger.charged.get(order_id, ZERO) - ledger.refunded.get(order_id, ZERO)
        if order_id in confirmed and (net != orders[order_id].total_amount or order_id in ledger.refunded):
            problems.append(f"G3: confirmed {order_id} cost {net} at the gateway")
        elif order_id in cancelled and net != ZERO:
            problems.append(f"G3: cancelled {order_id} cost {net} at the gateway")
        elif net < ZERO:
            problems.append(f"G3: {order_id} was refunded more than charged")
    for order_id in sorted(confirmed):
        if order_id not in ledger.charged:
            problems.append(f"G3: confirmed {order_id} was never charged by the gateway")


def _timeouts(
    result: Result, sagas: dict[str, Any], events: dict[str, dict[str, list[dict[str, Any]]]], problems: list[str]
) -> None:
    """G5: a saga with no answer ends TIMED_OUT and is compensated; none times out before its deadline."""
    never = {each.key for each in result.scenario.inputs if each.gateway and each.gateway["answer"] == "never"}
    for order_id, saga in sagas.items():
        if saga["status"] == "TIMED_OUT":
            if saga["reason"] != "TIMEOUT":
                problems.append(f"G5: {order_id} timed out for {saga['reason']}")
            if parse_time(saga["updated_at"]) < parse_time(saga["deadline"]):
                problems.append(f"G5: {order_id} timed out at {saga['updated_at']}, before {saga['deadline']}")
            if not events.get(order_id, {}).get("CompensationCompleted"):
                problems.append(f"G5: timed out {order_id} was not compensated")
        reserved = saga["steps"].get("INVENTORY_RESERVATION") == "COMPLETED"
        if order_id in never and reserved and saga["status"] != "TIMED_OUT":
            problems.append(f"G5: {order_id} got no payment answer but ended {saga['status']}")
    if result.tables[DEADLINES]:
        problems.append(f"G5: the deadline index still lists {sorted(result.tables[DEADLINES])[:5]}")


def _customers(result: Result, problems: list[str]) -> None:
    """Every registration is kept (once)."""
    for each in result.scenario.inputs:
        if each.body.get("event_type") == "UserRegistered":
            stored = result.tables[CUSTOMERS].get(each.key)
            if stored is None or orjson.loads(stored)["email"] != each.body["email"]:
                problems.append(f"customer {each.key} is not registered")


def summary(result: Result) -> dict[str, int]:
    """How the orders ended, for progress lines and for tuning the scenarios."""
    counts: dict[str, int] = defaultdict(int)
    for value in result.tables[SAGAS].values():
        saga = orjson.loads(value)
        counts[saga["status"] if saga["status"] != "FAILED" else saga["reason"]] += 1
    return dict(counts)


def copies(result: Result) -> int:
    """How many public records the application wrote that repeat an event id it had already written."""
    ids = [orjson.loads(record.value or b"{}")["event_id"] for topic in PUBLIC_TOPICS
           for record in result.topics[topic].records() if not record.note.startswith(("outside", "gateway"))]
    return len(ids) - len(set(ids))



def _windows(result: Result, sagas: dict[str, dict[str, Any]], problems: list[str]) -> None:
    """W: each order counts once per measure in the minute of its event time; each dead letter once.

    A run longer than the retention may have dropped its first buckets: then nothing is checked.
    """
    if timedelta(seconds=result.end_time) >= stats.RETENTION - stats.BUCKET:
        return
    counted: dict[int, stats.Bucket] = defaultdict(stats.Bucket)
    for key, value in result.tables[STATS].items():
        parsed = stats.parse_bucket_key(key)
        if parsed is not None:
            counted[parsed[0]] += stats.Bucket.from_json(value)
    expected: dict[int, stats.Bucket] = defaultdict(stats.Bucket)
    for saga in sagas.values():
        state = SagaState.from_json(orjson.dumps(saga))
        placed_at = parse_time(state.placed_at)
        expected[stats.minute_of(placed_at)] += stats.added(stats.Bucket(), Placed(placed_at))
        if state.is_terminal:
            ended_at = parse_time(state.ended_at)
            ended = Ended(ended_at, state.status, state.reason, state.total_amount,
                          ended_at - parse_time(state.started_at))
            expected[stats.minute_of(ended_at)] += stats.added(stats.Bucket(), ended)
    for minute in sorted(counted.keys() | expected.keys()):
        mine, wanted = _outcomes(counted[minute]), _outcomes(expected[minute])
        if mine != wanted:
            problems.append(f"W: minute {minute} counted {mine}, not {wanted}")
    lettered = dict(Counter(origin[0] for origin in result.dead_letter_origins))
    counted_letters = sum((counted[minute] for minute in counted), stats.Bucket()).dead_letters
    if {topic: n for topic, n in counted_letters.items() if n} != lettered:
        problems.append(f"W: dead letters counted {counted_letters}, not {lettered}")


def _outcomes(bucket: stats.Bucket) -> dict[str, Any]:
    """A bucket's view without its dead letters (their minute follows the record's timestamp)."""
    return {key: value for key, value in bucket.view(at_time(0), at_time(0)).items()
            if key not in ("start", "end", "dead_letters")}
