"""The dashboard in a real headless Chromium (Debian's), while orders flow: what it shows is what /stats says."""

from __future__ import annotations

import random
import re
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from devtools.kafka_local import LocalKafka
from support.browser import chromium
from support.scenario import Mix, build_orders, seed, wait_for_seed
from support.stats import stats, totals
from support.topics import setup_topics, wait_until, write_events
from support.worker import Worker, new_settings

pytestmark = pytest.mark.e2e
SHOWN = ("placed", "confirmed", "cancelled-OUT_OF_STOCK", "cancelled-PAYMENT_DECLINED", "cancelled-TIMEOUT")


class Shown(HTMLParser):
    """The text inside each element with an id, and each one's data attributes, from a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.data: dict[str, dict[str, str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        ident = found.get("id")
        if ident is not None:
            self.data[ident] = {k[5:]: v or "" for k, v in found.items() if k.startswith("data-")}
        if tag not in ("br", "meta", "line", "polyline", "i"):
            self._open.append(ident)

    def handle_endtag(self, tag: str) -> None:
        if tag not in ("br", "meta", "line", "polyline", "i") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident is not None:
                self.text[ident] = self.text.get(ident, "") + data


def count(window: dict[str, Any] | None, ident: str) -> int:
    """What /stats says for a number the page shows by this id (``cancelled-TIMEOUT``: a reason's count)."""
    if window is None:
        return 0
    field, _, reason = ident.partition("-")
    return int(window[field][reason] if reason else window[field])


def test_the_dashboard_shows_what_stats_says_while_orders_flow(kafka: LocalKafka, tmp_path: Path) -> None:
    settings = new_settings(kafka.bootstrap, tmp_path, "dashboard", metrics_interval_s=1.0)
    setup_topics(settings)
    write_events(settings, seed())
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        wait_for_seed(worker)
        with urllib.request.urlopen(f"{worker.url}/dashboard", timeout=10) as response:
            page = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert not re.search(r"""(src|href)\s*=|@import|https?://(?!www\.w3\.org/2000/svg)""", page), \
            "the page loads nothing from elsewhere"

        orders, _ = build_orders(random.Random(5), Mix(ok=300, out_of_stock=60, broke=60, scarce=60, tight=20))
        flow = threading.Thread(target=lambda: [write_events(settings, orders[n:n + 50])
                                                for n in range(0, len(orders), 50)])
        flow.start()
        try:
            wait_until(lambda: totals(stats(worker)[:2])["placed"] > 0, 60, "the first orders to be counted", 0.5)
            # the lag gauges come from a broker probe every metrics interval; its first pass may outlast the above
            inputs = re.escape(settings.topic("order-events"))
            lag_line = re.compile(rf'^streamsaga_consumer_lag_messages\{{[^}}]*topic="{inputs}"', re.MULTILINE)
            wait_until(lambda: lag_line.search(str(worker.get("/metrics")[1])), 60,
                       "the first lag gauges of this worker's inputs", 0.5)
            before = stats(worker)
            dumped = chromium("--dump-dom", f"{worker.url}/dashboard")
            after = stats(worker)
        finally:
            flow.join()
        assert dumped.returncode == 0, dumped.stderr[-2000:]
        shown = Shown()
        shown.feed(dumped.stdout)
        assert 'data-loaded="yes"' in dumped.stdout, f"the page did not render /stats: {shown.text.get('problem')}"
        start = shown.data["current"]["start"]
        low = next((w for w in before if w["start"] == start), None)
        high = next(w for w in after if w["start"] == start)
        for ident in SHOWN:
            assert count(low, ident) <= int(shown.text[ident]) <= count(high, ident), (ident, shown.text, low, high)
        assert int(shown.text["five-placed"]) > 0, "the last five minutes hold the orders counted so far"
        lag_rows = shown.text.get("lag", "")
        assert settings.topic("order-events") in lag_rows, "the lag table lists this worker's input topics"

        screenshot = tmp_path / "dashboard.png"
        shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,1000", f"{worker.url}/dashboard")
        assert shot.returncode == 0 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot.stderr[-2000:]
        print(f"\n[dashboard] showed placed {shown.text['placed']} in {start} (/stats: {count(low, 'placed')}.."
              f"{count(high, 'placed')}); "
              f"screenshot {screenshot} ({screenshot.stat().st_size} bytes)")
    finally:
        worker.stop()
