"""Two drivers on one sweep at once (a RayJob resubmitted while the first still runs, a cron
audit overlapping a manual one): the second refuses with one line and exit 2, the first
finishes, and the store and MLflow are exactly what a single run makes. The race is held
open by the test-only hold hook: the first driver cannot finish before the second starts."""

from __future__ import annotations

import os
import subprocess
import time

from doodl.orchestrator.store import SweepStore
from tests.conftest import tiny_spec_dict, write_spec
from tests.orchestrator.test_cli import DOODL
from tests.reliability.test_worker_and_driver_death import _rows, _run, _stop, _wait_for_commits


def _mlflow_roles(db) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("twice")
    roles: dict[str, int] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        role = run.data.tags.get("doodl.role")
        roles[role] = roles.get(role, 0) + 1
    return roles


def test_a_second_driver_on_a_running_sweep_refuses_and_nothing_is_duplicated(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec_dict(name="twice", resources={"variants_per_unit": 1,
                                                                             "num_actors": 1}))
    release = tmp_path / "release"
    first = subprocess.Popen(
        [DOODL, "sweep", str(spec_path), "--store", str(tmp_path / "store"), "--no-progress",
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DOODL_FAULT_HOLD_FILE": str(release), "DOODL_FAULT_HOLD_AFTER": "1"},
    )
    try:
        _wait_for_commits(first, tmp_path / "store" / "twice" / "_commits", 1)  # the first is mid-sweep, held
        second = _run(tmp_path, spec_path, timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        line = [ln for ln in second.stderr.splitlines() if ln.startswith("doodl: error:")]
        assert len(line) == 1 and "sweep 'twice' is already being trained by" in line[0]
        release.touch()
        out, err = first.communicate(timeout=300)
    finally:
        _stop(first)
    assert first.returncode == 0, err[-3000:]
    assert "trained 8, already done 0, failed 0; logged 8 MLflow runs" in out
    assert _mlflow_roles(tmp_path / "m.db") == {"parent": 1, "child": 8}

    reference = tmp_path / "reference"
    reference.mkdir()
    assert _run(reference, spec_path).returncode == 0
    got, want = SweepStore(str(tmp_path / "store"), "twice"), SweepStore(str(reference / "store"), "twice")
    assert got.read_variants().equals(want.read_variants())
    for kind in ("finals", "trajectories"):
        assert _rows(got, kind) == _rows(want, kind)
    assert not (tmp_path / "store" / "twice" / "_leases" / "training.json").exists()  # released


def test_sync_merges_duplicate_runs_left_by_drivers_that_ran_at_once(tmp_path, ray_session):
    """MLflow views made before sweeps had a lease can hold a parent and children twice."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import run_cli

    spec_path = write_spec(tmp_path, tiny_spec_dict(name="twice"))
    db = tmp_path / "m.db"
    common = ["--store", str(tmp_path / "store"), "--tracking-uri", f"sqlite:///{db}"]
    code, _, err = run_cli(["sweep", str(spec_path), *common, "--no-progress"])
    assert code == 0, err
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("twice")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = next(r for r in runs if r.data.tags["doodl.role"] == "parent")
    twin = client.create_run(exp.experiment_id, tags={"doodl.sweep_id": "twice", "doodl.role": "parent"})
    children = [r for r in runs if r.data.tags["doodl.role"] == "child"][:3]
    for child in children:  # a second driver's children: not fully logged, under the second parent
        client.create_run(exp.experiment_id, tags={**{k: v for k, v in child.data.tags.items()
                                                        if k.startswith("doodl.") and k != "doodl.logged"},
                                                     "mlflow.parentRunId": twin.info.run_id})
    assert _mlflow_roles(db) == {"parent": 2, "child": 11}

    code, out, err = run_cli(["sync", "twice", *common])
    assert code == 0, err
    assert "merged 4 duplicate runs" in out
    assert _mlflow_roles(db) == {"parent": 1, "child": 8}
    kept = client.search_runs([exp.experiment_id], max_results=1000)
    assert {r.info.run_id for r in kept} == {r.info.run_id for r in runs}  # the fully logged originals
    assert {r.data.tags.get("mlflow.parentRunId") for r in kept if r.data.tags["doodl.role"] == "child"} == {
        parent.info.run_id}
    code, out, _ = run_cli(["sync", "twice", *common])
    assert "merged" not in out and "logged 0 MLflow runs" in out


def test_reduce_while_the_sweep_trains_leaves_one_run_per_variant(tmp_path):
    """`doodl reduce` while `doodl sweep` of the same sweep still trains (the README allows
    it): both log the committed variants. The sweep's logging thread is held after it read
    the (empty) MLflow view and training is held after two units, so the reduction creates
    the runs of the committed variants first and the sweep's view is stale when it logs: it
    must find them, not create them again. Checked through MLflow's API."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import FAST_REDUCE

    spec_path = write_spec(tmp_path, tiny_spec_dict(name="twice", reduce=FAST_REDUCE,
                                                    resources={"variants_per_unit": 2, "num_actors": 1}))
    release, logging_release = tmp_path / "release", tmp_path / "logging-release"
    db = f"sqlite:///{tmp_path / 'm.db'}"
    sweep = subprocess.Popen(
        [DOODL, "sweep", str(spec_path), "--store", str(tmp_path / "store"), "--no-progress", "--tracking-uri", db],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DOODL_FAULT_HOLD_FILE": str(release), "DOODL_FAULT_HOLD_AFTER": "2",
             "DOODL_FAULT_HOLD_LOGGING_FILE": str(logging_release)})
    try:
        _wait_for_commits(sweep, tmp_path / "store" / "twice" / "_commits", 2)
        held = tmp_path / "logging-release.held"
        for _ in range(1200):  # the logger has read the view and waits
            if held.exists():
                break
            assert sweep.poll() is None
            time.sleep(0.1)
        assert held.exists()
        reduce = subprocess.run(
            [DOODL, "reduce", "twice", "--store", str(tmp_path / "store"), "--tracking-uri", db, "--no-progress"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert reduce.returncode == 0, reduce.stderr[-3000:]
        assert "group(s) have units not yet trained" in reduce.stderr  # it ran mid-sweep
        release.touch()
        logging_release.touch()
        out, err = sweep.communicate(timeout=300)
    finally:
        _stop(sweep)
    assert sweep.returncode == 0, err[-3000:]
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("twice").experiment_id], max_results=1000)
    children = [r.data.tags["doodl.run_id"] for r in runs if r.data.tags["doodl.role"] == "child"]
    variants = SweepStore(str(tmp_path / "store"), "twice").read_variants()["run_id"].to_pylist()
    assert sorted(children) == sorted(variants)  # exactly one run per variant
    assert all(r.data.tags.get("doodl.logged") == "1" for r in runs if r.data.tags["doodl.role"] == "child")
    assert _mlflow_roles(tmp_path / "m.db") == {"parent": 1, "child": 8, "group": 4}
    # the sweep logged only what the reduction had not: 8 between them
    n_sweep = int(out.split("logged ")[1].split(" MLflow runs")[0])
    assert 0 < n_sweep < 8
