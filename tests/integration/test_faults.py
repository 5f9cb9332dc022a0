"""Faults on a real broker: kill -9 mid-load, a group losing a member, restarts with and without local state.

Each test runs the scenario's kind of order mix, whose outcome counts are exact whatever the
processing order, through worker processes that are killed or restarted on the way, and then
checks the contract's guarantees 1-4 as the scenario does: one outcome per order, exact stock
and wallets, each confirmed order charged once, nothing dead-lettered.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from app.topic_names import all_topic_names
from app.web import ROUTE_TIMEOUT_S
from config.settings import Settings
from devtools.kafka_local import LocalKafka
from models.events import OrderPlaced
from support.faults import (
    FAST_FAILOVER,
    LOAD,
    check_balances,
    check_outcomes,
    check_routed_views,
    isolation_of,
    key_paths,
    kill_mid_load,
    seeded_views,
    served_view,
    settle,
    two_workers,
    wait_ready,
)
from support.scenario import (
    ALL_SKUS,
    CUSTOMERS,
    Mix,
    build_orders,
    copies,
    count_ended,
    seed,
    wait_for_seed,
)
from support.stats import check_stats, counted, stats
from support.topics import setup_topics, wait_quiet, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration


def _write_in_chunks(
    settings: Settings, events: list[OrderPlaced], size: int, pause: float, halfway: threading.Event
) -> None:
    """Write the events ``size`` at a time, ``pause`` seconds apart; set ``halfway`` once half are written."""
    for start in range(0, len(events), size):
        write_events(settings, events[start:start + size])
        if start + size >= len(events) // 2:
            halfway.set()
        time.sleep(pause)


def _sent_twice(orders: list[OrderPlaced]) -> list[OrderPlaced]:
    """Every 13th order again as it was, and every 17th again under a new event id (a client's retry)."""
    return [*orders[::13], *(dataclasses.replace(o, event_id=f"{o.event_id}-retry") for o in orders[::17])]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_mid_load_then_restart_loses_nothing_and_applies_nothing_twice(
    kafka: LocalKafka, tmp_path: Path, guarantee: str
) -> None:
    """Under exactly_once a read_committed reader also sees each of the application's events once."""
    # a short commit interval puts many commits in the restarted worker's first second, where a commit
    # racing the seek to committed offsets once lost inputs under either guarantee
    settings = new_settings(kafka.bootstrap, tmp_path, f"crash-{guarantee}", processing_guarantee=guarantee,
                            commit_interval_s=0.2, **FAST_FAILOVER)
    setup_topics(settings)
    write_events(settings, seed())
    log = tmp_path / "worker.log"
    worker = Worker(settings, log).start()
    restarted = Worker(settings, log)
    try:
        wait_for_seed(worker)
        orders, expected = build_orders(random.Random(400), LOAD)
        twice = _sent_twice(orders)
        # written over a few seconds: the worker dies once half are written, with the rest still to come
        halfway = threading.Event()
        writer = threading.Thread(target=_write_in_chunks, args=(settings, [*orders, *twice], 40, 0.5, halfway))
        writer.start()
        try:
            assert halfway.wait(120), "the orders were not written"
            worker.kill()
            at_kill = count_ended(kafka.bootstrap, settings.topic("order-events"), isolation_of(settings))
        finally:
            writer.join()
        assert at_kill < len(orders), "the kill came after the whole load; nothing was in flight"

        restarted.start()  # same settings, same data dir
        settle(kafka.bootstrap, settings, orders, "every order to end", restarted)

        outcome, outcome_copies = check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)
        check_balances(kafka.bootstrap, settings, restarted, orders, outcome)
        check_stats(restarted, orders, outcome)  # counted once however the kill split a saga's writes
        repeated = copies(kafka.bootstrap, settings, isolation_of(settings))
        print(f"\n[crash {guarantee}] {len(orders)} orders ({len(twice)} sent twice), kill -9 with {at_kill} ended"
              f" ended, 1 restart: 0 lost, {outcome_copies} outcome copies, copies by type {dict(repeated)}")
        if guarantee == "exactly_once":
            assert repeated == Counter(), "a read_committed reader sees every event of the application once"
    finally:
        worker.stop()
        restarted.stop()


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_group_member_killed_mid_load_the_other_takes_over(kafka: LocalKafka, tmp_path: Path, guarantee: str) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, f"group-{guarantee}", processing_guarantee=guarantee,
                            **FAST_FAILOVER)
    with two_workers(tmp_path, settings) as (first, second):
        # Idle: each worker answers for every key, its own or routed to the other.
        check_routed_views(first, second, seeded_views())

        orders, expected = build_orders(random.Random(4242), LOAD)
        write_events(settings, orders)
        seen, at_kill = kill_mid_load(kafka.bootstrap, settings, first, orders)

        settle(kafka.bootstrap, settings, orders, "the survivor to end every order", second)
        outcome, outcome_copies = check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)
        check_balances(kafka.bootstrap, settings, second, orders, outcome)

        # The killed member comes back with its stale local state; both answer alike again.
        first.start()
        wait_ready(first, second)
        settled = {path: served_view(second, path) for path in key_paths()}
        assert all(status == 200 for status, _ in settled.values()), settled
        check_routed_views(first, second, settled)
        wait_quiet(kafka.bootstrap, all_topic_names(settings), 60)
        assert check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)[0] == outcome
        check_balances(kafka.bootstrap, settings, first, orders, outcome)
        # both answer for the whole system, each gathering the other's partitions, and agree
        assert counted(check_stats(first, orders, outcome)) == counted(check_stats(second, orders, outcome))
        repeated = copies(kafka.bootstrap, settings, isolation_of(settings))
        if guarantee == "exactly_once":
            assert repeated == Counter(), "a read_committed reader sees every event once"
        print(f"\n[group {guarantee}] {len(orders)} orders on 2 workers, kill -9 of one at {seen}-{at_kill} ended, "
              f"survivor finished, killed one rejoined: 0 lost, {outcome_copies} outcome copies, "
              f"copies by type {dict(repeated)}, 0 effects twice")


def test_a_paused_worker_that_comes_back_after_its_partitions_moved_is_fenced(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """A zombie: SIGSTOP one of two workers under exactly_once until the group gives its partitions to
    the other, then SIGCONT it. Its open transaction times out (it holds back the new owner that long),
    and its offsets name a generation the group has left, so nothing it did while it was away is
    committed: every order still ends once, read_committed, with exact balances and no copy of any event."""
    settings = new_settings(kafka.bootstrap, tmp_path, "zombie", processing_guarantee="exactly_once",
                            commit_interval_s=0.2, **FAST_FAILOVER)
    with two_workers(tmp_path, settings) as (first, second):
        orders, expected = build_orders(random.Random(777), LOAD)
        write_events(settings, [*orders, *_sent_twice(orders)])
        order_topic = settings.topic("order-events")
        wait_until(lambda: count_ended(kafka.bootstrap, order_topic, "read_committed") >= len(orders) // 4, 120,
                   "a quarter of the orders to end", every=0.2)
        assert first.process is not None
        assignments = _assignments(second)
        os.killpg(first.process.pid, signal.SIGSTOP)
        paused_at = count_ended(kafka.bootstrap, order_topic, "read_committed")
        try:
            # the group drops the silent member after its session timeout; the other owns everything
            wait_until(lambda: _assignments(second) > assignments, 120, "the group to give the other everything")
            taken_over = count_ended(kafka.bootstrap, order_topic, "read_committed")
            # 20 more outcomes, or every one when fewer are left: both workers may have been nearly done
            going_on = min(taken_over + 20, len(orders))
            wait_until(lambda: count_ended(kafka.bootstrap, order_topic, "read_committed") >= going_on, 120,
                       f"the other worker to go on with the zombie's orders ({paused_at} of {len(orders)} had ended"
                       f" at the pause, {taken_over} at the takeover)", every=0.5)
        finally:
            os.killpg(first.process.pid, signal.SIGCONT)
        settle(kafka.bootstrap, settings, orders, "every order to end after the zombie came back", second)
        outcome, _ = check_outcomes(kafka.bootstrap, settings, orders, expected, LOAD)
        check_balances(kafka.bootstrap, settings, second, orders, outcome)
        assert copies(kafka.bootstrap, settings, isolation_of(settings)) == Counter()
        fenced = first.log_path.read_text(errors="replace").count("This worker was fenced")
        print(f"\n[zombie] {len(orders)} orders on 2 workers, one paused at {paused_at} ended, taken over at"
              f" {taken_over}, and back: 0 lost, 0 copies read_committed, balances exact; the zombie fenced"
              f" {fenced} times, exit status {first.process.poll()}")


def _assignments(worker: Worker) -> int:
    """How many assignments the worker has taken up so far, by its log."""
    return worker.log_path.read_text(errors="replace").count("Executing _on_partitions_assigned")



def test_restart_keeps_views_with_data_dir_kept_and_rebuilt_from_changelogs(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "restart")
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log")
    mix = Mix(ok=120, out_of_stock=20, broke=20, scarce=50, tight=30)
    try:
        worker.start()
        wait_for_seed(worker)
        orders, expected = build_orders(random.Random(240), mix)
        write_events(settings, orders)
        settle(kafka.bootstrap, settings, orders, "every order to end", worker)
        outcome, _ = check_outcomes(kafka.bootstrap, settings, orders, expected, mix)
        check_balances(kafka.bootstrap, settings, worker, orders, outcome)

        paths = [f"/inventory/{sku}" for sku in ALL_SKUS] + [f"/wallets/{c}" for c in CUSTOMERS]
        paths += [f"/customers/{c}" for c in CUSTOMERS] + [f"/orders/{o.order_id}" for o in orders[::5]]
        paths += ["/inventory/SKU-UNKNOWN", "/wallets/nobody", "/customers/nobody", "/orders/no-such-order"]
        before = {path: served_view(worker, path) for path in paths}
        assert all(status == 200 for status, _ in list(before.values())[:-4]), before
        assert all(status == 404 for status, _ in list(before.values())[-4:]), before
        windows = counted(check_stats(worker, orders, outcome))

        worker.stop()
        worker.start()  # local state kept
        assert {path: served_view(worker, path) for path in paths} == before
        assert counted(stats(worker)) == windows

        worker.stop()
        shutil.rmtree(settings.data_dir)
        assert not settings.data_dir.exists()
        worker.start()  # nothing local: every table rebuilt from its changelog
        assert {path: served_view(worker, path) for path in paths} == before
        assert counted(stats(worker)) == windows
        print(f"\n[restart] {len(orders)} orders, {len(paths)} views equal after a restart with the data dir "
              "and after one without it")
    finally:
        worker.stop()


def test_bulk_restore_catches_up_from_an_old_copy_and_from_nothing(kafka: LocalKafka, tmp_path: Path) -> None:
    """With the bulk threshold at one record, every far-behind partition is rebuilt by our store, not Faust's."""
    settings = new_settings(kafka.bootstrap, tmp_path, "bulk", bulk_restore_min_records=1)
    setup_topics(settings)
    write_events(settings, seed())
    log = tmp_path / "worker.log"
    worker = Worker(settings, log)
    mix = Mix(ok=80, out_of_stock=20, broke=20, scarce=20, tight=20)
    orders, expected = build_orders(random.Random(77), mix)
    snapshot = tmp_path / "snapshot"
    try:
        worker.start()
        wait_for_seed(worker)
        write_events(settings, orders[:60])
        settle(kafka.bootstrap, settings, orders[:60], "the first 60 orders to end", worker)
        worker.stop()
        shutil.copytree(settings.data_dir, snapshot)  # local state as it was after 60 orders

        worker.start()
        write_events(settings, orders[60:])
        settle(kafka.bootstrap, settings, orders, "every order to end", worker)
        outcome, _ = check_outcomes(kafka.bootstrap, settings, orders, expected, mix)
        check_balances(kafka.bootstrap, settings, worker, orders, outcome)
        paths = key_paths() + [f"/orders/{o.order_id}" for o in orders]
        before = {path: served_view(worker, path) for path in paths}
        assert all(status == 200 for status, _ in before.values()), before

        for label, local in (("an old copy", snapshot), ("nothing", None)):
            worker.stop()
            shutil.rmtree(settings.data_dir)
            if local is not None:
                shutil.copytree(local, settings.data_dir)
            restored_before = log.read_text().count("restored ")
            worker.start()
            assert {path: served_view(worker, path) for path in paths} == before, label
            assert log.read_text().count("restored ") > restored_before, f"no bulk restore from {label}"
        # The rebuilt tables go on working: a repeat of every order changes nothing and re-sends its outcome.
        write_events(settings, orders)
        wait_quiet(kafka.bootstrap, all_topic_names(settings), 60)
        assert check_outcomes(kafka.bootstrap, settings, orders, expected, mix)[0] == outcome
        check_balances(kafka.bootstrap, settings, worker, orders, outcome)
    finally:
        worker.stop()


def test_a_view_routed_to_a_worker_that_stopped_answering_is_a_503_not_a_hang(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    """The owner of a key paused (as a zombie is, or a worker deep in a GC pause): the other answers 503 in
    ``ROUTE_TIMEOUT_S``, where the routed request used to wait for aiohttp's 5 minutes."""
    settings = new_settings(kafka.bootstrap, tmp_path, "paused-owner")  # the default session timeout: still a member
    with two_workers(tmp_path, settings) as (first, second):
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGSTOP)
        try:
            answers = {}
            for path in key_paths():
                started = time.monotonic()
                status, body = second.get(path, timeout=ROUTE_TIMEOUT_S + 20)
                answers[path] = (status, round(time.monotonic() - started, 1))
                if status == 503:
                    assert "the worker that owns this key did not answer (TimeoutError)" in body["error"], body
                    break
            else:
                raise AssertionError(f"no key of the paused worker among {answers}")
        finally:
            os.killpg(first.process.pid, signal.SIGCONT)
        print(f"\n[paused owner] a view of the paused worker's key answered 503 after {answers[path][1]} s")
