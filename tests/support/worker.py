"""Run the real ``streamsaga worker`` as a child process, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.faust_app import bearer_headers
from config.settings import Settings
from devtools.devstack import start_worker, stop_process
from devtools.kafka_local import free_port


@dataclass
class Worker:
    """One worker process with its own web port and data directory, started as ``make run`` starts it."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    #: what to run instead of ``streamsaga`` (a test's launcher), and extra environment
    program: list[str] | None = None
    env: dict[str, str] | None = None

    @property
    def url(self) -> str:
        """Base URL of this worker's web views."""
        return self.settings.web_url

    def start(self) -> Worker:
        """Start the worker and wait until it says it is ready; a failure shows the log's end."""
        try:
            self.process = start_worker(self.settings, self.log_path, self.program, self.env)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None
        return self

    def stop(self) -> None:
        """Stop gracefully, then by force if it does not go."""
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        """``kill -9``: no chance to commit, flush or close anything."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def get(self, path: str, timeout: float = 30.0, token: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """GET a web view with the worker's web token (or ``token``, "" for none, or these ``headers`` instead).

        Returns status and decoded JSON.
        """
        token = self.settings.web_token if token is None else token
        request = urllib.request.Request(f"{self.url}{path}", headers=bearer_headers(token) if headers is None
                                         else headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())

    def post(self, path: str, body: bytes, timeout: float = 30.0,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST raw bytes to a web view with the worker's web token (or these ``headers`` instead).

        Returns status and decoded JSON.
        """
        sent = bearer_headers(self.settings.web_token) if headers is None else headers
        request = urllib.request.Request(f"{self.url}{path}", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **sent})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())

    def log_tail(self, lines: int = 60) -> str:
        """The end of the worker's log, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _decode(raw: bytes) -> Any:
    """JSON where the body is JSON, else the text, so a failure message shows what came back."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


def new_settings(bootstrap: str, tmp: Path, name: str, **overrides: Any) -> Settings:
    """Settings for an isolated app: its own topics, app id, data directory and web port."""
    base = dict(
        broker=f"kafka://{bootstrap}",
        app_id=f"ss-{name}",
        topic_prefix=f"{name}.",
        partitions=4,
        data_dir=tmp / name,
        web_port=free_port(),
        demo_orders=False,
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]
