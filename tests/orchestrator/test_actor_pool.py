"""The actor pool's sizing: by GPUs when actors need GPUs, by CPUs otherwise, never more
actors than units. (Its behaviour on clusters, growth, the autoscaler and actors that
cannot be placed, is in ``tests/reliability/test_cluster_resources.py``.)"""

from __future__ import annotations

from doodl.orchestrator.actor_pool import actor_bundle, placeable, wanted
from doodl.orchestrator.spec import ResourcesSpec


def test_pools_are_sized_by_gpus_when_actors_need_them():
    gpu = ResourcesSpec(gpus_per_actor=1)
    assert actor_bundle(gpu) == {"CPU": 1.0, "GPU": 1.0}
    assert placeable(gpu, {"CPU": 16.0, "GPU": 2.0}) == 2  # not 16: a GPU cluster has fewer GPUs than CPUs
    assert placeable(gpu, {"CPU": 16.0}) == 0
    assert placeable(ResourcesSpec(cpus_per_actor=2), {"CPU": 9.0, "GPU": 4.0}) == 4
    assert placeable(ResourcesSpec(gpus_per_actor=0.5), {"CPU": 8.0, "GPU": 2.0}) == 4
    assert wanted(ResourcesSpec(), 7) == 7 and wanted(ResourcesSpec(num_actors=3), 7) == 3
    assert wanted(ResourcesSpec(num_actors=30), 7) == 7
