"""What ``GET /stats`` must say after a run with known outcomes: each order once, in its minute."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from models.events import OrderPlaced, parse_time
from support.scenario import Outcome
from support.worker import Worker

REASONS = ("OUT_OF_STOCK", "PAYMENT_DECLINED", "TIMEOUT")


def minute_start(occurred_at: str) -> str:
    """The start of the one-minute window an event time falls in, as ``/stats`` writes it."""
    moment = parse_time(occurred_at).replace(second=0, microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def stats(worker: Worker, window: str = "1m") -> list[dict[str, Any]]:
    """The windows a worker shows, newest first."""
    status, body = worker.get(f"/stats?window={window}")
    assert status == 200, body
    assert body["window"] == window and len(body["windows"]) == 60, body
    windows: list[dict[str, Any]] = body["windows"]
    return windows


def counted(windows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The windows that counted anything, by start: what two answers must agree on whenever they came."""
    return {w["start"]: w for w in windows
            if w["placed"] or w["saga_ms"]["count"] or any(w["dead_letters"].values())}


def totals(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every measure added up over the windows given."""
    return {
        "placed": sum(w["placed"] for w in windows),
        "confirmed": sum(w["confirmed"] for w in windows),
        "cancelled": {r: sum(w["cancelled"][r] for w in windows) for r in REASONS},
        "revenue": sum((Decimal(w["revenue"]) for w in windows), Decimal("0.00")),
        "sagas": sum(w["saga_ms"]["count"] for w in windows),
        "dead_letters": dict(sum((Counter(w["dead_letters"]) for w in windows), Counter())),
    }


def check_stats(worker: Worker, orders: list[OrderPlaced], outcome: dict[str, Outcome]) -> list[dict[str, Any]]:
    """Each order placed once in the minute of its ``occurred_at``, each outcome once, the revenue exact;
    the newest 5-minute window is the sum of the five newest one-minute windows. Returns the 1m windows."""
    minutes = stats(worker)
    placed = {w["start"]: w["placed"] for w in minutes if w["placed"]}
    assert placed == dict(Counter(minute_start(o.occurred_at) for o in orders)), placed
    confirmed = {o.order_id for o in orders if outcome[o.order_id][0] == "OrderConfirmed"}
    reasons = Counter(reason for kind, reason in (outcome[o.order_id] for o in orders) if kind == "OrderCancelled")
    assert totals(minutes) == {
        "placed": len(orders),
        "confirmed": len(confirmed),
        "cancelled": {r: reasons[r] for r in REASONS},
        "revenue": sum((o.total_amount for o in orders if o.order_id in confirmed), Decimal("0.00")),
        "sagas": len(orders),
        "dead_letters": {},
    }
    for w in minutes:
        ms = w["saga_ms"]
        assert ms["p50"] <= ms["p99"] <= ms["max"], w
    newest_five = stats(worker, "5m")[0]
    again = stats(worker)
    if again[0]["start"] == minutes[0]["start"]:  # no minute turned between the two answers
        five = totals(again[:5])
        assert (newest_five["placed"], newest_five["confirmed"], Decimal(newest_five["revenue"])) == (
            five["placed"], five["confirmed"], five["revenue"])
        assert newest_five["start"] == again[4]["start"] and newest_five["end"] == again[0]["end"]
    return minutes
