"""A worker that dies mid-unit is retried on a fresh actor; Ctrl-C cancels cleanly and
the next run finishes only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pyarrow.compute as pc

from orchestrator.expand import expand, pack
from orchestrator.spec import load_spec
from orchestrator.store import SweepStore
from tests.conftest import tiny_spec_dict, write_spec
from tests.orchestrator.test_cli import DOODL


def _run(tmp_path, spec, env=None, timeout=300):
    return subprocess.run(
        [DOODL, "sweep", str(spec), "--store", str(tmp_path / "store"), "--no-progress",
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def test_dead_worker_unit_is_retried_on_a_fresh_actor(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec_dict(name="faulty"))
    spec = load_spec(spec_path)
    victim = pack(expand(spec), spec.resources.variants_per_unit)[1].unit_id
    done = _run(tmp_path, spec_path, env={"DOODL_FAULT_EXIT_UNIT": victim})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"unit {victim} failed" in done.stderr and "retry 1/2" in done.stderr
    assert "trained 3, already done 0, failed 0" in done.stdout
    store = SweepStore(str(tmp_path / "store"), "faulty")
    states = store.unit_states([u.unit_id for u in pack(expand(spec), 3)])
    assert states[victim].attempt == 2 and {s.state for s in states.values()} == {"committed"}
    traj = store.read_unit_rows("trajectories", list(states), ["run_id", "step"])
    keys = pc.binary_join_element_wise(traj["run_id"], pc.cast(traj["step"], "string"), ":")
    assert len(pc.unique(keys)) == traj.num_rows == 8 * 24  # every (run_id, step) exactly once


def test_ctrl_c_cancels_and_the_next_run_resumes(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec_dict(
        name="cancel", optimizer={"steps": 800}, resources={"variants_per_unit": 1, "num_actors": 1}))
    proc = subprocess.Popen(
        [DOODL, "sweep", str(spec_path), "--store", str(tmp_path / "store"), "--no-progress",
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    commits = tmp_path / "store" / "cancel" / "_commits"
    deadline = time.time() + 180
    while not (commits.exists() and any(commits.glob("*.json"))):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "cancelled" in err and "run the same command again" in err
    n_done = len(list(commits.glob("*.json")))
    assert 1 <= n_done < 8
    again = _run(tmp_path, spec_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"trained {8 - n_done}, already done {n_done}, failed 0" in again.stdout
