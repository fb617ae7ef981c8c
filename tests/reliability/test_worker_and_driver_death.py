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

from doodl.orchestrator.expand import expand, pack
from doodl.orchestrator.spec import load_spec
from doodl.orchestrator.store import SweepStore
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


def _start_held(tmp_path, spec, hold_after: int, **popen) -> subprocess.Popen:
    """Start a sweep in the background whose actors hold every unit once the store holds
    ``hold_after`` committed units (the test-only ``DOODL_FAULT_HOLD_FILE`` hook of
    ``doodl.workers.actor``; its file is never created, so the held work waits until the actor
    is killed). With ``num_actors: 1`` exactly ``hold_after`` units commit and the run
    cannot finish before the test's signal, however busy the machine. Ray's local workers
    inherit the driver's environment, so the variables reach the actors."""
    env = {**os.environ, "DOODL_FAULT_HOLD_FILE": str(tmp_path / "never-created"),
           "DOODL_FAULT_HOLD_AFTER": str(hold_after)}
    return subprocess.Popen(
        [DOODL, "sweep", str(spec), "--store", str(tmp_path / "store"), "--no-progress",
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen,
    )


def _wait_for_commits(proc, commits, n, timeout=180):
    deadline = time.time() + timeout
    while not (commits.exists() and len(list(commits.glob("*.json"))) >= n):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()  # a held run never ends by itself: do not wait on it
            _, err = proc.communicate(timeout=60)
            raise AssertionError(f"{n} commits not seen (exit {proc.returncode}): {err[-3000:]}")
        time.sleep(0.1)


def _stop(proc) -> None:
    """Kill a sweep a failed test left running (its held actor would wait on)."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=60)


def test_ctrl_c_cancels_and_the_next_run_resumes(tmp_path):
    spec_path = write_spec(tmp_path, tiny_spec_dict(
        name="cancel", optimizer={"steps": 100}, resources={"variants_per_unit": 1, "num_actors": 1}))
    proc = _start_held(tmp_path, spec_path, hold_after=1)
    try:
        commits = tmp_path / "store" / "cancel" / "_commits"
        _wait_for_commits(proc, commits, 1)
        proc.send_signal(signal.SIGINT)  # the second unit is held: the run cannot finish first
        out, err = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 130, err[-3000:]
    assert "cancelled" in err and "run the same command again" in err
    assert len(list(commits.glob("*.json"))) == 1
    again = _run(tmp_path, spec_path)  # without the hook
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained 7, already done 1, failed 0" in again.stdout


def _rows(store: SweepStore, kind: str) -> dict:
    units = sorted(set(store.read_variants()["unit_id"].to_pylist()))
    table = store.read_unit_rows(kind, units).sort_by([("run_id", "ascending")] +
                                                       ([("step", "ascending")] if kind != "finals" else []))
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
    proc = _start_held(work, spec_path, hold_after=2, start_new_session=True)
    commits = work / "store" / "killed" / "_commits"
    try:
        _wait_for_commits(proc, commits, 2)  # the third unit is held: the run cannot finish first
        proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        proc.wait(timeout=30)
        time.sleep(1.0)
    finally:
        _stop(proc)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the local Ray it started (its held actor too)
        except ProcessLookupError:
            pass
    before = {p.name: p.read_bytes() for p in commits.glob("*.json")}
    assert len(before) == 2

    again = _run(work, spec_path)  # without the hook
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained 6, already done 2, failed 0" in again.stdout
    for name, payload in before.items():  # committed units were not trained again
        assert (commits / name).read_bytes() == payload

    ref = SweepStore(str(reference / "store"), "killed")
    got = SweepStore(str(work / "store"), "killed")
    for kind in ("trajectories", "snapshots", "finals"):
        a, b = _rows(ref, kind), _rows(got, kind)
        assert a.keys() == b.keys()
        for column in a:
            if column == "theta":
                for x, y in zip(a[column], b[column]):
                    assert (x is None and y is None) or np.array_equal(np.asarray(x), np.asarray(y))
            else:
                assert a[column] == b[column], column
