"""``make bench`` prints each throughput target beside this run's figure, met or not."""

from __future__ import annotations

import re

from bench.run import Report, table, targets


def _report() -> Report:
    return Report(
        default_guarantee="exactly_once",
        faust_floor={"messages_per_s": 5000},
        quix_floor={"messages_per_s": 40000},
        throughput={"exactly_once": {"sagas_per_s": 2000, "sagas_per_s_from_start": 1500},
                    "at_least_once": {"sagas_per_s": 2400, "sagas_per_s_from_start": 2000}},
        latency={"p99_ms": 7456.6},
    )


def test_each_target_is_the_ratio_of_this_runs_figures_met_or_not() -> None:
    rows = dict(targets(_report()))

    assert rows["  sagas/s (exactly_once) / Faust floor"] == "0.4 against >= 0.37: met"
    assert rows["  Faust floor / Quix Streams"] == "0.125 against >= 0.25: NOT met"
    assert rows["  p99 at half the maximum rate"] == "7,457 ms against < 250 ms: NOT met"
    assert rows["  exactly_once / at_least_once"] == "0.75 against >= 0.8: NOT met"


def test_a_target_whose_figures_were_not_measured_says_so() -> None:
    report = _report()
    report.quix_floor, report.latency = {}, {}

    rows = dict(targets(report))

    assert rows["  Faust floor / Quix Streams"] == "not measured (target >= 0.25)"
    assert rows["  p99 at half the maximum rate"] == "not measured (target < 250 ms)"


def test_latency_at_a_rate_chosen_by_hand_is_not_judged_against_the_target() -> None:
    report = _report()
    report.latency = {"p99_ms": 120.0, "half_the_maximum_rate": False}  # --latency-rate: any rate passes

    assert dict(targets(report))["  p99 at half the maximum rate"] == "not measured (target < 250 ms)"


def test_the_hot_key_run_is_printed_beside_the_others() -> None:
    report = Report(default_guarantee="exactly_once", ceiling={"messages_per_s": 20000, "message_bytes": 370},
                    hot_key={"sagas_per_s": 180, "orders": 10000, "sagas_per_s_from_start": 170,
                             "worker_cores": 0.9, "worker_peak_rss_mb": 250})
    lines = [line.strip() for line in table(report).splitlines()]
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines if "  " in line)
    assert rows["exactly_once, one sku and wallet"] == (
        "180 sagas/s over 10,000 orders (170/s from the worker's start); worker 0.9 cores, peak RSS 250 MiB")
