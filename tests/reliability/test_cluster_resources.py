"""Clusters as users run them: an autoscaling cluster that starts with no workers, a GPU
cluster with fewer GPUs than CPUs, and actors that can never be placed. The pool asks the
autoscaler for what it wants and grows as nodes arrive; a unit is handed only to an actor
that has started; nothing hangs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import ray

from doodl.orchestrator.actor_pool import ActorPool
from doodl.orchestrator.spec import ResourcesSpec
from tests.conftest import run_cli, tiny_spec_dict, write_spec


@ray.remote(num_cpus=1)
class _Idle:
    def ping(self):
        return "ok"


def test_the_pool_asks_the_autoscaler_and_grows_as_nodes_arrive(ray_session, monkeypatch):
    import ray.autoscaler.sdk as sdk

    requests = []
    monkeypatch.setattr(sdk, "request_resources", lambda bundles: requests.append(bundles))
    cluster = {"CPU": 1.0}
    monkeypatch.setattr(ray, "cluster_resources", lambda: dict(cluster))
    pool = ActorPool(_Idle, (), ResourcesSpec(), n_units=4)
    try:
        assert requests == [[{"CPU": 1.0}] * 4]  # a bundle per wanted actor
        assert len(pool.live) == 1  # what the cluster holds now
        cluster["CPU"] = 3.0  # a node arrived
        pool.grow(force=True)
        assert len(pool.live) == 3
        cluster["CPU"] = 64.0
        pool.grow(force=True)
        assert len(pool.live) == 4  # never beyond one actor per unit
    finally:
        pool.shutdown()
    assert requests[-1] == [] and pool.live == []  # the request is withdrawn


def test_actors_that_can_never_be_placed_fail_the_sweep_instead_of_hanging(tmp_path, ray_session):
    spec = write_spec(tmp_path, tiny_spec_dict(name="nogpu", resources={"gpus_per_actor": 1,
                                                                        "placement_timeout": 3}))
    code, out, err = run_cli(["sweep", str(spec), "--store", str(tmp_path / "store"), "--no-progress",
                              "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert code == 1
    assert "no actor could be placed within 3 s: each needs {'CPU': 1.0, 'GPU': 1.0}, the cluster has" in err
    code, out, err = run_cli(["status", "nogpu", "--store", str(tmp_path / "store")])
    assert code == 0 and "8 pending of 8 variants" in out  # nothing lost: a later run trains them


def test_a_cluster_with_fewer_gpus_than_cpus_trains_every_unit_on_its_gpu_actors(tmp_path):
    """2 CPUs and 1 GPU (declared to Ray; the actor then trains on the CPU, as no CUDA is
    here): the pool holds one actor, not one per CPU, and every unit is trained."""
    spec = write_spec(tmp_path, tiny_spec_dict(name="onegpu", resources={"gpus_per_actor": 1}))
    script = textwrap.dedent(f"""
        import ray
        from doodl.orchestrator.driver import run_sweep
        from doodl.orchestrator.spec import load_spec
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
        out = run_sweep(load_spec({str(spec)!r}), store_uri={str(tmp_path / 'store')!r},
                        tracking_uri="sqlite:///{tmp_path / 'm.db'}", show_progress=False)
        print("RESULT", out.trained_units, out.n_actors, len(out.failed_units))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT 3 1 0" in done.stdout


@ray.remote(num_cpus=1)
class _DiesOnStart:
    def __init__(self):
        raise OSError("cannot open the store from this node")

    def ping(self):
        return "never"


def test_actors_that_die_before_they_start_are_replaced_a_few_times_then_reported(ray_session):
    """A store the workers cannot open kills every new actor in its constructor: the pool
    replaces it up to max_retries times and then says why, instead of looping forever."""
    import pytest

    from doodl.orchestrator.errors import PlacementError

    pool = ActorPool(_DiesOnStart, (), ResourcesSpec(max_retries=2, num_actors=1), n_units=3)
    try:
        with pytest.raises(PlacementError, match="3 training actors died before they started.*cannot open the store"):
            while True:
                ready, _ = ray.wait(list(pool.pending), num_returns=1, timeout=60)
                assert ready, "an actor neither started nor died within 60 s"
                if pool.became_ready(ready[0]) is None:
                    pool.add()
    finally:
        pool.shutdown()
