"""deploy/mlflow/mlflow.yaml: the tracking server, started with the manifest's own command
and arguments, answers API calls addressed to its Service's names (MLflow 3 refuses a Host
it does not allow with 403 "Invalid Host header", and by default allows only localhost and
private IPs, so `http://mlflow:5000`, the URI every doodl manifest uses, would be refused)."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
API = "/api/2.0/mlflow/experiments/search?max_results=1"


def _manifest_command() -> list[str]:
    docs = yaml.safe_load_all((DEPLOY / "mlflow" / "mlflow.yaml").read_text())
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return container["command"] + container["args"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(port: int, host_header: str, path: str = API) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host_header})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def manifest_server(tmp_path_factory):
    """`mlflow server` with the manifest's arguments; only where it stores (SQLite and a local
    directory for PostgreSQL and S3) and where it listens (a free port on loopback) differ."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    argv, port = _manifest_command(), _free_port()
    local = {"$(MLFLOW_BACKEND_STORE_URI)": f"sqlite:///{tmp / 'mlflow.db'}",
             "s3://doodl/mlflow-artifacts": str(tmp / "artifacts"), "0.0.0.0": "127.0.0.1", "5000": str(port)}
    argv = [local.get(a, a) for a in argv]
    assert argv[0] == "mlflow" and "--allowed-hosts" in argv
    argv[0] = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(argv, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "mlflow server exited"
            try:
                if _status(port, "localhost", "/health") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("host", ["mlflow:5000", "mlflow", "mlflow.doodl.svc:5000",
                                  "mlflow.doodl.svc.cluster.local:5000", "localhost:5000", "127.0.0.1:5000"])
def test_the_service_names_reach_the_api(manifest_server, host):
    assert _status(manifest_server, host) == 200


@pytest.mark.parametrize("host", ["attacker.example:5000", "mlflow.attacker.example:5000", "mlflowx:5000"])
def test_other_hosts_are_still_refused(manifest_server, host):
    assert _status(manifest_server, host) == 403
    assert _status(manifest_server, host, "/health") == 200  # why a health probe alone cannot tell


def test_without_the_flag_mlflow_would_refuse_the_service_name():
    from mlflow.server.security_utils import get_default_allowed_hosts, is_allowed_host_header

    assert not is_allowed_host_header(get_default_allowed_hosts(), "mlflow:5000")
