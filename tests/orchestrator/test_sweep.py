"""`doodl sweep` end to end on a local Ray: store layout, MLflow view, idempotent re-runs."""

from __future__ import annotations

import contextlib
import io

import pyarrow.compute as pc
import pytest

from doodl.orchestrator.cli import main
from doodl.orchestrator.store import SweepStore
from tests.conftest import tiny_spec_dict, write_spec
from doodl.workers.engine import snapshot_steps


def _mlflow_runs(db):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("tiny")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    """One sweep shared by the tests below; a test that changes the store restores it."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    spec = write_spec(tmp_path, tiny_spec_dict())
    args = ["sweep", str(spec), "--store", str(tmp_path / "store"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--no-progress"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return tmp_path, args, out.getvalue()


def test_store_holds_every_variant_with_a_row_per_step(swept):
    tmp_path, _, out = swept
    assert "8 variants in 3 units; trained 3, already done 0, failed 0; logged 8 MLflow runs" in out
    store = SweepStore(str(tmp_path / "store"), "tiny")
    variants = store.read_variants()
    assert variants.num_rows == 8 and len(set(variants["group_id"].to_pylist())) == 4
    states = store.unit_states(sorted(set(variants["unit_id"].to_pylist())))
    assert {s.state for s in states.values()} == {"committed"}
    traj = store.read_unit_rows("trajectories", list(states))
    snaps = store.read_snapshot_rows(list(states))
    for run_id in variants["run_id"].to_pylist():
        rows = traj.filter(pc.equal(traj["run_id"], run_id))
        assert sorted(rows["step"].to_pylist()) == list(range(24))  # steps + 1 rows
        recorded = snaps.filter(pc.equal(snaps["run_id"], run_id))
        assert sorted(recorded["step"].to_pylist()) == list(snapshot_steps(23, 5))
    assert store.read_sweep()["n_variants"] == 8


def test_mlflow_has_one_parent_and_a_child_per_variant(swept):
    tmp_path, _, _ = swept
    client, runs = _mlflow_runs(tmp_path / "mlflow.db")
    parents = [r for r in runs if r.data.tags.get("doodl.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("doodl.role") == "child"]
    assert len(parents) == 1 and len(children) == 8
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    child = children[0]
    assert child.data.params["steps"] == "23" and child.data.params["model"] == "mlp"
    assert {"final_train_loss", "final_test_acc", "train_loss"} <= set(child.data.metrics)
    history = client.get_metric_history(child.info.run_id, "train_loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(24))
    assert child.info.status == "FINISHED"


def test_running_again_trains_nothing_and_adds_no_runs(swept, capsys):
    tmp_path, args, _ = swept
    _, before = _mlflow_runs(tmp_path / "mlflow.db")
    assert main(args) == 0
    assert "trained 0, already done 3, failed 0; logged 0 MLflow runs" in capsys.readouterr().out
    client, after = _mlflow_runs(tmp_path / "mlflow.db")
    assert sorted(r.info.run_id for r in after) == sorted(r.info.run_id for r in before)
    child = next(r for r in after if r.data.tags.get("doodl.role") == "child")
    assert len(client.get_metric_history(child.info.run_id, "train_loss")) == 24


def test_status_prints_a_summary_and_every_variant_with_all(swept, capsys):
    tmp_path, _, _ = swept
    run_ids = SweepStore(str(tmp_path / "store"), "tiny").read_variants()["run_id"].to_pylist()
    assert main(["status", "tiny", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "8 ok of 8 variants" in out and not any(r[:9] in out for r in run_ids)  # the summary only
    assert main(["status", "tiny", "--store", str(tmp_path / "store"), "--all"]) == 0
    out = capsys.readouterr().out
    assert "8 ok of 8 variants" in out and all(r[:9] in out for r in run_ids) and out.count(" ok ") >= 8


def test_changed_reduce_settings_do_not_make_a_new_sweep(swept):
    """Reduce settings change what is computed from the trajectories, not the trajectories."""
    tmp_path, args, _ = swept
    changed = write_spec(tmp_path, tiny_spec_dict(reduce={"morse": {"tau": 2, "dims": 3}}), "reduce.yaml")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sweep", str(changed), *args[2:]]) == 0
    assert "trained 0, already done 3" in out.getvalue()
