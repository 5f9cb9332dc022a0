"""Debian's headless Chromium, for the tests that open the dashboard as a person would."""

from __future__ import annotations

import base64
import shutil
import subprocess


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with the flags a container needs, given time to run the page's script."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: `make test` installs Debian's chromium package"
    command = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--virtual-time-budget=8000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def basic_authorization(user: str, password: str) -> dict[str, str]:
    """The ``Authorization: Basic`` header a browser sends once it was given a user name and password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
