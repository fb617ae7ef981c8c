"""Tracking servers for the tracking tests: real `mlflow server` processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")  # started once for the probe and the view-check tests
def host_refusing_server(tmp_path_factory):
    """A real `mlflow server` that allows only another host name: what a default server
    behind a Kubernetes Service is to a client that calls it by the Service's name."""
    tmp = tmp_path_factory.mktemp("refusing")
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp / 'm.db'}",
                             "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", "--allowed-hosts", "mlflow.example.internal"],
                            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "mlflow server exited"
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield url, tmp
    finally:
        proc.terminate()
        proc.wait(timeout=30)
