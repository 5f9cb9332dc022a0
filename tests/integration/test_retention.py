"""Finished sagas are forgotten after their retention: gone from the views, tombstoned in the changelogs,
still gone after a rebuild, and a copy of a forgotten order is dead-lettered instead of charged again."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from devtools.kafka_local import LocalKafka
from support.faults import check_balances, check_outcomes
from support.scenario import CUSTOMERS, Mix, build_orders, seed, terminal, wait_for_seed
from support.topics import Record, read_topic, setup_topics, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.integration

#: long enough for every saga of the mix to be seen before it is forgotten, short enough to wait for
RETENTION_S = 30
MIX = Mix(ok=30, out_of_stock=5, broke=5, scarce=5, tight=25)  # the tight wallet runs dry at 20


def _last_values(records: list[Record]) -> dict[bytes, bytes | None]:
    """Each key's last value in a changelog, as compaction will keep it (None: a tombstone)."""
    return {record.key: record.value for record in records if record.key is not None}


def test_finished_sagas_are_forgotten_after_their_retention_and_a_late_copy_is_dead_lettered(
    kafka: LocalKafka, tmp_path: Path
) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "retention", saga_retention=f"{RETENTION_S}s",
                            timeout_check_interval_s=1.0)
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_for_seed(worker)
        orders, expected = build_orders(random.Random(14), MIX)
        write_events(settings, orders)
        order_topic = settings.topic("order-events")
        wait_until(lambda: len(terminal(read_topic(kafka.bootstrap, order_topic))) >= len(orders), 120,
                   "every order to end", every=0.5)
        outcome, _ = check_outcomes(kafka.bootstrap, settings, orders, expected, MIX)
        check_balances(kafka.bootstrap, settings, worker, orders, outcome)  # every saga is still there to check

        sagas_changelog = f"{settings.group_id}-sagas-changelog"
        expiry_changelog = f"{settings.group_id}-saga_expiry-changelog"
        entries: dict[bytes, bytes] = {key: value for key, value in
                                       _last_values(read_topic(kafka.bootstrap, expiry_changelog)).items()
                                       if value is not None}
        assert sorted(entries.values()) == sorted(o.order_id.encode() for o in orders), "one entry per saga"
        assert all(key.decode().endswith(f"|{value.decode()}") for key, value in entries.items())

        def all_forgotten() -> bool:
            return all(worker.get(f"/orders/{o.order_id}")[0] == 404 for o in orders)

        wait_until(all_forgotten, RETENTION_S + 60, "every finished saga to be forgotten", every=2.0)
        sagas = _last_values(read_topic(kafka.bootstrap, sagas_changelog))
        assert {key.decode() for key, value in sagas.items() if value is None} == {o.order_id for o in orders}
        assert [key for key, value in sagas.items() if value is not None] == []
        expiry = _last_values(read_topic(kafka.bootstrap, expiry_changelog))
        assert set(expiry) == set(entries) and set(expiry.values()) == {None}, "every entry tombstoned"

        # A copy of a forgotten order: dead-lettered, not a second saga or charge.
        copy = orders[0]
        wallets = {c: worker.get(f"/wallets/{c}")[1] for c in CUSTOMERS}
        write_events(settings, [copy])
        dead = wait_until(lambda: read_topic(kafka.bootstrap, f"{order_topic}.DLQ"), 60, "the copy's dead letter")
        assert [(r.key, r.headers["failure.class"]) for r in dead] == [(copy.order_id.encode(), b"ExpiredOrder")]
        assert b"STREAMSAGA_SAGA_RETENTION" in dead[0].headers["failure.reason"]
        ended = terminal(read_topic(kafka.bootstrap, order_topic))
        assert len(ended[copy.order_id]) == 1, "no second outcome"
        assert worker.get(f"/orders/{copy.order_id}")[0] == 404
        assert {c: worker.get(f"/wallets/{c}")[1] for c in CUSTOMERS} == wallets

        # Rebuilt from the changelogs, the tables still hold no forgotten saga, and the rest is intact.
        worker.stop()
        shutil.rmtree(settings.data_dir)
        worker.start()
        assert [o.order_id for o in orders if worker.get(f"/orders/{o.order_id}")[0] != 404] == []
        assert {c: worker.get(f"/wallets/{c}")[1] for c in CUSTOMERS} == wallets
    finally:
        worker.stop()
