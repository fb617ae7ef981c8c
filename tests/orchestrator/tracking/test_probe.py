"""The probe calls the API and names what it got: down, refused (with the server's words
and, for a Host MLflow does not allow, the fix) or broken. A server whose /health answers
while its API refuses is never taken for up."""

from __future__ import annotations

import http.server
import threading
import urllib.request

import pytest

from doodl.orchestrator.tracking import TrackingUnavailable, probe
from tests.orchestrator.tracking.conftest import free_port


def test_a_server_that_refuses_the_host_is_refused_with_the_fix(host_refusing_server):
    url, _ = host_refusing_server
    assert urllib.request.urlopen(f"{url}/health", timeout=5).status == 200  # what the old probe saw
    with pytest.raises(TrackingUnavailable) as info:
        probe(url)
    assert info.value.kind == "refused"
    message = str(info.value)
    assert "refused the API with 403 (Invalid Host header" in message
    assert f"--allowed-hosts {url.removeprefix('http://')}" in message


class _Answer(http.server.BaseHTTPRequestHandler):
    status, body = 200, b"{}"

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def answering():
    """A server that answers every call with the given status and body."""
    servers = []

    def start(status: int, body: bytes) -> str:
        handler = type("Handler", (_Answer,), {"status": status, "body": body})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("status, body, kind, words", [
    (500, b'{"error_code": "INTERNAL_ERROR", "message": "database is gone"}', "broken",
     "its API answered 500 (database is gone)"),
    (503, b"upstream unavailable", "broken", "its API answered 503 (upstream unavailable)"),
    (401, b"Unauthorized", "refused", "refused the API with 401 (Unauthorized); set MLFLOW_TRACKING_TOKEN"),
    (404, b"Not Found", "refused", "an MLflow tracking server (no /api/2.0/mlflow/experiments/search)?"),
])
def test_errors_are_named_for_what_they_are(answering, status, body, kind, words):
    url = answering(status, body)
    with pytest.raises(TrackingUnavailable) as info:
        probe(url)
    assert info.value.kind == kind and words in str(info.value)


def test_an_answer_is_up_and_the_probe_sends_the_token(monkeypatch):
    seen = {}

    class Recording(_Answer):
        def do_POST(self):  # noqa: N802
            seen["auth"] = self.headers.get("Authorization")
            seen["path"] = self.path
            super().do_POST()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
        probe(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert seen == {"auth": "Bearer s3cret", "path": "/api/2.0/mlflow/experiments/search"}


def test_nothing_listening_is_down():
    with pytest.raises(TrackingUnavailable) as info:
        probe(f"http://127.0.0.1:{free_port()}")
    assert info.value.kind == "down" and "no answer from" in str(info.value)
