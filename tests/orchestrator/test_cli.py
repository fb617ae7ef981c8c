"""The commands as a user types them, in fresh processes: the README quick start, and
joining a cluster started with `ray start --head`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from doodl.orchestrator.store import SweepStore
from tests.chromium import CHROMIUM, render
from tests.conftest import tiny_spec_dict, write_spec
from doodl.workers.engine import snapshot_steps

REPO = Path(__file__).resolve().parents[2]
DOODL = shutil.which("doodl") or str(Path(sys.executable).with_name("doodl"))


def _doodl(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DOODL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def assert_report_renders(cwd: Path, sweep: str, n_groups: int) -> None:
    """`doodl report SWEEP` as the README shows it; in Chromium (when installed) the page
    renders without console errors, with its phase diagram, every group and the audit table."""
    done = _doodl("report", sweep, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"report {sweep}: {n_groups} groups" in done.stdout and "logged on MLflow run" in done.stdout
    index = cwd / f"{sweep}-report" / "index.html"
    html = index.read_text()
    assert html.count('<details class="group"') == n_groups and 'id="audits-table"' in html
    if CHROMIUM is None:
        return
    page = render(index.as_uri(), cwd, screenshot=cwd / "report.png")
    assert page.console == []
    assert 'id="phase-diagram"' in page.dom and page.dom.count('<details class="group"') == n_groups
    assert (cwd / "report.png").stat().st_size > 20_000


def test_quickstart_as_in_the_readme(tmp_path):
    """`doodl sweep examples/quickstart.yaml --reduce` on the embedded defaults, its report,
    then the sweep again."""
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    done = _doodl("sweep", "examples/quickstart.yaml", "--reduce", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "24 variants" in done.stdout and "failed 0; logged 24 MLflow runs" in done.stdout
    assert "reduce quickstart: 8 groups; morse: reduced 8" in done.stdout and "taxonomy: reduced 8" in done.stdout
    assert (tmp_path / "doodl-store" / "quickstart" / "sweep.json").is_file()
    assert (tmp_path / "doodl-store" / "quickstart" / "reduction" / "plots" / "phase_diagram.png").is_file()
    assert (tmp_path / "doodl-mlflow.db").is_file() and (tmp_path / "mlartifacts").is_dir()

    store = SweepStore(str(tmp_path / "doodl-store"), "quickstart")
    variants = store.read_variants()
    units = sorted(set(variants["unit_id"].to_pylist()))
    traj = store.read_unit_rows("trajectories", units, ["run_id", "step"])
    snaps = store.read_snapshot_rows(units, ["run_id", "step", "theta", "test_acc"])
    steps, every = 300, 10
    for run_id in variants["run_id"].to_pylist():
        assert traj.filter(pc.equal(traj["run_id"], run_id)).num_rows == steps + 1
        rows = snaps.filter(pc.equal(snaps["run_id"], run_id))
        assert sorted(rows["step"].to_pylist()) == list(snapshot_steps(steps, every)) and rows.num_rows == 31
        assert rows["theta"].null_count == 0 and rows["test_acc"].null_count == 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'doodl-mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    roles = sorted(r.data.tags.get("doodl.role") for r in runs)
    assert roles == ["child"] * 24 + ["group"] * 8 + ["parent"]  # a run per seed, per group, per sweep

    # 3 seeds a group: the Morse graphs are illustrations, with no count or accuracy anywhere
    morse = pq.read_table(tmp_path / "doodl-store" / "quickstart" / "reduction" / "morse.parquet").to_pylist()
    assert len(morse) == 8 and all(g["no_verdict"] and g["n_attractors"] is None and g["outcome_accuracy"] is None
                                   for g in morse)
    group_runs = [r for r in runs if r.data.tags.get("doodl.role") == "group"]
    assert all("n_attractors" not in r.data.metrics and "outcome_accuracy" not in r.data.metrics
               and r.data.tags["doodl.morse_verdict"].startswith("too few runs") for r in group_runs)
    assert "Morse graphs: no group has enough runs for a verdict" in done.stdout

    assert_report_renders(tmp_path, "quickstart", n_groups=8)

    again = _doodl("sweep", "examples/quickstart.yaml", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "trained 0" in again.stdout and "logged 0 MLflow runs" in again.stdout
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == 24 + 8 + 1  # no new runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # in the nightly run (.ci/nightly): CI joins a real two-node cluster in deploy/local/run.sh
def test_sweep_joins_a_cluster_started_with_ray_start(tmp_path):
    """`ray start --head` then `doodl sweep --address HOST:PORT`: the cluster path."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    log = tmp_path / "head.log"
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        spec = write_spec(tmp_path, tiny_spec_dict(name="cluster"))
        # `ray start` enables token auth and keeps the token in ~/.ray/auth_token; a client
        # given an explicit address must be told to use it (`--address auto` learns it)
        done = _doodl("sweep", str(spec), "--address", f"127.0.0.1:{port}", "--no-progress",
                      "--store", str(tmp_path / "store"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                      cwd=tmp_path, env={"RAY_AUTH_MODE": "token"})
        assert done.returncode == 0, done.stderr[-3000:]
        assert "trained 3, already done 0, failed 0; logged 8 MLflow runs" in done.stdout
        status = _doodl("status", "cluster", "--store", str(tmp_path / "store"), cwd=tmp_path)
        assert "8 ok of 8 variants" in status.stdout
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops its cluster on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            pytest.fail("ray head did not stop on SIGTERM")


def test_status_loads_neither_torch_nor_ray(tmp_path):
    """`doodl status` reads the store only: the shard format does not pull in the training
    engine, nor the CLI the compute side (a second of imports on every call, and torch on a
    machine that only inspects a bucket)."""
    import subprocess
    import sys

    script = ("import sys; from doodl.orchestrator.cli import main; code = main(['status', 'none', '--store', "
              f"{str(tmp_path)!r}]); print(code, sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "2 []", done.stderr[-2000:]


def test_sweep_and_reduce_from_a_research_folder_with_its_own_packages(tmp_path):
    """A research repository commonly has its own ``analysis/``, ``workers/`` and
    ``orchestrator/`` packages. doodl installs under ``doodl.*``, so neither the driver nor
    a Ray worker (which puts the driver's folder on its path) imports the user's instead."""
    for package in ("analysis", "workers", "orchestrator"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(
            f"raise ImportError('the user\\'s own {package} package was imported by doodl')\n")
        (tmp_path / package / "engine.py").write_text("")
    write_spec(tmp_path, tiny_spec_dict("research", seeds=8, data={"label_noise": 0.0},
                                        optimizer={"lr": 0.1}))
    done = _doodl("sweep", "spec.yaml", "--reduce", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed 0" in done.stdout and "reduce research: 1 groups" in done.stdout
    assert "user's own" not in done.stdout + done.stderr
