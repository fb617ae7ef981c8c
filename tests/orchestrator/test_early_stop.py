"""``doodl sweep --predictor``: a sweep whose doomed runs stop at a tenth of training, with
a rule fitted on a reduced sweep of the same setup (``blobs``, tests/conftest.py). Stopped
runs are committed as ``stopped`` and show as such in the store, ``doodl status``, MLflow
and the report; a killed sweep resumes to the store an uninterrupted one makes."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from doodl.orchestrator.store import SweepStore
from doodl.workers.early_stop import StopRule
from tests.conftest import early_blobs_spec, run_cli, write_spec
from tests.reliability.test_worker_and_driver_death import _rows, _run, _start_held, _stop, _wait_for_commits

STOP_AT = 100  # a tenth of the 1,000 steps
TARGET = {"seeds": list(range(100, 116)), "resources": {"variants_per_unit": 8, "num_actors": 1}}


def _common(tmp) -> list[str]:
    return ["--store", str(tmp / "store"), "--tracking-uri", f"sqlite:///{tmp / 'm.db'}", "--no-progress"]


@pytest.fixture(scope="module")
def stopped_sweep(early_blobs):
    """``target``: 16 new seeds of each width, trained with the rule fitted on ``blobs``."""
    tmp = early_blobs
    spec = write_spec(tmp, early_blobs_spec("target", early_stop={"at": 0.1, "keep": 0.5}, **TARGET), "target.yaml")
    code, out, err = run_cli(["sweep", str(spec), *_common(tmp), "--predictor", "blobs"])
    assert code == 0, err
    store = SweepStore(str(tmp / "store"), "target")
    finals = _rows(store, "finals")
    return tmp, spec, out + err, store, finals


def test_doomed_runs_stop_at_a_tenth_and_the_rest_train_to_the_end(stopped_sweep):
    _, _, said, store, finals = stopped_sweep
    status, steps = finals["status"], finals["steps"]
    assert "early stop at 10% of training" in said and "ridge fitted on sweep 'blobs'" in said
    assert 0 < status.count("stopped") < len(status) and "diverged" not in status
    assert {s for st, s in zip(status, steps) if st == "stopped"} == {STOP_AT}
    assert {s for st, s in zip(status, steps) if st == "ok"} == {1000}
    traj = _rows(store, "trajectories")
    for rid, st in zip(finals["run_id"], status):
        rows = [k for k, r in enumerate(traj["run_id"]) if r == rid]
        assert len(rows) == (STOP_AT + 1 if st == "stopped" else 1001)
        assert traj["status"][rows[-1]] == st
    # sweep.json records the rule, where it came from and its held-out figures there
    doc = json.loads(store.fs.open_input_stream(store.layout.sweep_json).read())
    recorded = doc["early_stop_rule"]
    assert recorded["predictor"] == "blobs" and recorded["n_groups"] == 2
    assert set(recorded["validation"]) >= {"mae", "chance_mae", "stopped_in_bottom", "top_kept"}
    StopRule.from_dict(recorded["rule"])  # plain numbers that make a rule
    best = max(a for a, st in zip(finals["final_test_acc"], status) if st == "ok")
    assert best > 0.9


def test_stopped_runs_show_in_status_mlflow_and_the_report(stopped_sweep):
    from mlflow.tracking import MlflowClient

    tmp, _, _, _, finals = stopped_sweep
    n_stopped = finals["status"].count("stopped")
    code, out, err = run_cli(["status", "target", "--store", str(tmp / "store")])
    assert code == 0, err
    assert "stopped" in out and f"{n_stopped} stopped" in out

    client = MlflowClient(f"sqlite:///{tmp / 'm.db'}")
    exp = client.get_experiment_by_name("target")
    children = client.search_runs([exp.experiment_id], "tags.`doodl.role` = 'child'", max_results=100)
    by_status = {}
    for run in children:
        by_status.setdefault(run.data.tags["doodl.status"], set()).add(run.info.status)
    assert by_status == {"ok": {"FINISHED"}, "stopped": {"KILLED"}}
    parent = client.search_runs([exp.experiment_id], "tags.`doodl.role` = 'parent'")[0]
    assert parent.data.metrics["n_stopped"] == n_stopped

    code, out, err = run_cli(["report", "target", "--store", str(tmp / "store"), "--out", str(tmp / "report"),
                              "--tracking-uri", f"sqlite:///{tmp / 'm.db'}"])
    assert code == 0, err
    html = (tmp / "report" / "index.html").read_text()
    assert 'id="early-stop"' in html and "stopped" in html
    assert "not ok" not in html  # stopped on purpose: not listed with failures


def test_another_predictor_is_a_changed_spec(stopped_sweep):
    tmp, spec, _, _, _ = stopped_sweep
    code, _, err = run_cli(["sweep", str(spec), *_common(tmp), "--predictor", "other"])
    assert code == 2 and "early_stop.predictor" in err


def test_a_predictor_without_early_results_is_refused_in_one_line(early_blobs, tmp_path):
    spec = write_spec(tmp_path, early_blobs_spec("lonely", **TARGET))
    code, _, err = run_cli(["sweep", str(spec), *_common(early_blobs), "--predictor", "target"])
    assert code == 2 and "has no early results" in err and "Traceback" not in err


def test_a_killed_sweep_with_early_stopping_resumes_to_the_same_store(stopped_sweep):
    tmp, _, _, reference, _ = stopped_sweep
    spec = write_spec(tmp, early_blobs_spec("target-killed", early_stop={"at": 0.1, "keep": 0.5, "predictor": "blobs"},
                                            **TARGET), "killed.yaml")
    proc = _start_held(tmp, spec, hold_after=2, start_new_session=True)
    commits = tmp / "store" / "target-killed" / "_commits"
    try:
        _wait_for_commits(proc, commits, 2)  # the third unit is held: the run cannot finish first
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(1.0)
    finally:
        _stop(proc)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    again = _run(tmp, spec)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained 2, already done 2, failed 0" in again.stdout
    got = SweepStore(str(tmp / "store"), "target-killed")
    for kind in ("trajectories", "finals"):
        a, b = _rows(reference, kind), _rows(got, kind)
        for column in ("run_id", "status", "step" if kind == "trajectories" else "steps"):
            assert a[column] == b[column], column


def test_a_stopped_groups_phase_is_its_nearest_predictor_groups():
    """Known answer: groups in three clusters of mean early features, one phase per cluster."""
    from doodl.orchestrator.early_stop import fit_phase_model, predict_phase

    rng = np.random.default_rng(0)
    centres = {"I": [0.0, 0.0, 5.0], "III": [3.0, 0.0, 0.0], "IV-A": [0.0, 4.0, 0.0]}
    labels = [p for p in centres for _ in range(10)]
    means = np.array([np.array(centres[p]) + rng.normal(scale=0.2, size=3) for p in labels])
    model = fit_phase_model(means, labels)
    assert model["held_out_accuracy"] == 1.0 and model["chance"] == pytest.approx(1 / 3)
    runs = np.array(centres["III"]) + rng.normal(scale=0.3, size=(3, 3))  # a new group's runs
    assert predict_phase(model, runs) == "III"
    shuffled = fit_phase_model(means, list(rng.permutation(labels)))  # phases unrelated to the features
    assert shuffled["held_out_accuracy"] < shuffled["chance"] + 0.15


def test_reduce_leaves_out_groups_early_stopping_left_with_one_run(stopped_sweep, tmp_path):
    tmp = stopped_sweep[0]
    spec = write_spec(tmp, early_blobs_spec("few", early_stop={"at": 0.1, "keep": 0.1, "predictor": "blobs"},
                                            seeds=[200, 201], resources={"variants_per_unit": 4}), "few.yaml")
    code, _, err = run_cli(["sweep", str(spec), *_common(tmp)])
    assert code == 0, err
    finals = _rows(SweepStore(str(tmp / "store"), "few"), "finals")
    assert finals["status"].count("ok") < 2  # both groups: fewer than 2 runs trained to the end
    code, out, err = run_cli(["reduce", "few", *_common(tmp), "--only", "taxonomy"])
    assert code == 0, err
    assert "2 group(s) have fewer than 2 runs trained to the end" in out + err and "stopped early 2" in out
    phases = pq.read_table(tmp / "store" / "few" / "reduction" / "stopped_phases.parquet").to_pylist()
    assert len(phases) == 2 and all(p["predicted_phase"] is None for p in phases)  # blobs has no taxonomy
