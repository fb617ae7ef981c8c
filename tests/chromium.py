"""Headless Chromium for tests that look at a page as a browser renders it (Debian's
``chromium`` package; ``.ci/run`` installs it). Without it those tests skip, saying why,
so the README's test command still passes on a bare machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get "
                                                             "install chromium); .ci/run installs it")
# as the machine's notes advise: no background connections (the network is closed), no sandbox as root
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--enable-logging=stderr", "--v=0"]
_CONSOLE = re.compile(r"CONSOLE[^\]]*\] (.*)")


@dataclass
class Rendered:
    dom: str  # the DOM after scripts ran
    console: list[str]  # every console message and uncaught error of the page
    screenshot: Path | None


def render(url: str, workdir: Path, screenshot: Path | None = None, size: str = "1280,2400",
           wait_ms: int = 0) -> Rendered:
    """Load ``url`` in headless Chromium: its DOM, its console, and optionally a screenshot.
    ``wait_ms`` lets a single-page app's scripts run that long (virtual time) first."""
    extra = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    def run(mode: list[str], profile: str) -> subprocess.CompletedProcess:
        return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={workdir / profile}", f"--window-size={size}",
                               *extra, *mode, url], capture_output=True, text=True, timeout=120)

    dumped = run(["--dump-dom"], "profile-dom")
    console = _CONSOLE.findall(dumped.stderr)
    if screenshot is not None:
        shot = run([f"--screenshot={screenshot}"], "profile-shot")
        console += _CONSOLE.findall(shot.stderr)
    return Rendered(dumped.stdout, console, screenshot)
