"""Process deaths: a worker that dies mid-unit is retried on a fresh actor; Ctrl-C
cancels cleanly; a SIGKILLed driver resumes to exactly the store an uninterrupted run
makes. The next run always finishes only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
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


def _wait_for_commits(proc, commits, n, timeout=180):
    deadline = time.time() + timeout
    while not (commits.exists() and len(list(commits.glob("*.json"))) >= n):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)


def _rows(store: SweepStore, kind: str) -> dict:
    units = sorted(set(store.read_variants()["unit_id"].to_pylist()))
    table = store.read_unit_rows(kind, units).sort_by([("run_id", "ascending")] +
                                                       ([("step", "ascending")] if kind == "trajectories" else []))
    return table.to_pydict()


def test_killed_driver_resumes_to_the_same_store(tmp_path):
    spec_dict = tiny_spec_dict(name="killed", optimizer={"steps": 300},
                               resources={"variants_per_unit": 1, "num_actors": 1})
    spec_path = write_spec(tmp_path, spec_dict)
    reference = tmp_path / "reference"
    reference.mkdir()
    done = _run(reference, spec_path)
    assert done.returncode == 0, done.stderr[-3000:]

    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        [DOODL, "sweep", str(spec_path), "--store", str(work / "store"), "--no-progress",
         "--tracking-uri", f"sqlite:///{work / 'm.db'}"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    commits = work / "store" / "killed" / "_commits"
    _wait_for_commits(proc, commits, 2)
    proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
    proc.wait(timeout=30)
    time.sleep(1.0)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the local Ray it started (its actors could still commit)
    except ProcessLookupError:
        pass
    before = {p.name: p.read_bytes() for p in commits.glob("*.json")}
    assert 2 <= len(before) < 8

    again = _run(work, spec_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"trained {8 - len(before)}, already done {len(before)}, failed 0" in again.stdout
    for name, payload in before.items():  # committed units were not trained again
        assert (commits / name).read_bytes() == payload

    ref = SweepStore(str(reference / "store"), "killed")
    got = SweepStore(str(work / "store"), "killed")
    for kind in ("trajectories", "finals"):
        a, b = _rows(ref, kind), _rows(got, kind)
        assert a.keys() == b.keys()
        for column in a:
            if column == "theta":
                for x, y in zip(a[column], b[column]):
                    assert (x is None and y is None) or np.array_equal(np.asarray(x), np.asarray(y))
            else:
                assert a[column] == b[column], column
