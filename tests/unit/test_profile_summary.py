"""make profile's summary: py-spy's collapsed stacks attributed to the right functions and packages."""

from __future__ import annotations

from bench.profile import package_of, summarize

RAW = "\n".join([
    "<module> (streamsaga:6);run_forever (asyncio/base_events.py:607);own_keys (agents/owner_loop.py:46);"
    "saga_step (models/handlers.py:73) 30",
    "<module> (streamsaga:6);run_forever (asyncio/base_events.py:607);Stream._c_aiter (faust/streams.py:1180) 50",
    "Thread._bootstrap (threading.py:1002);Fetcher._fetcher (faust/transport/consumer.py:177);"
    "select (selectors.py:468) 20",
    "garbage without a count",
])


def test_package_is_the_first_path_component_and_ours_are_named() -> None:
    assert package_of("Stream._c_aiter (faust/streams.py:1180)") == "faust"
    assert package_of("saga_step (models/handlers.py:73)") == "streamsaga.models"
    assert package_of("select (selectors.py:468)") == "selectors"
    assert package_of("<module> (streamsaga:6)") == "streamsaga"


def test_own_and_total_time_are_shares_of_all_samples() -> None:
    text = summarize(RAW, top=10)
    assert text.splitlines()[0] == "100 samples"
    own = text.split("own time by function:")[1].split("total time by function:")[0]
    assert "50.0%  Stream._c_aiter faust/streams.py:1180" in own
    assert "30.0%  saga_step models/handlers.py:73" in own
    total = text.split("total time by function:")[1]
    assert "80.0%  run_forever asyncio/base_events.py:607" in total
    packages = text.split("own time by package:")[1].split("own time by function:")[0]
    assert "50.0%  faust" in packages and "30.0%  streamsaga.models" in packages and "20.0%  selectors" in packages


def test_no_samples_says_so() -> None:
    assert summarize("", top=5) == "no samples"
