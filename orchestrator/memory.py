"""Memory before training: each unit's estimate (:mod:`doodl.workers.unit_memory`) against
what a node has, shared by ``variants_per_unit: auto`` (units sized to fit), ``doodl sweep
--dry-run`` (the figure, and a refusal) and the sweep's pre-flight check (a refusal before
any actor allocates).

A node's memory is its physical memory, or its container's limit when lower (cgroups), on
this machine; on a Ray cluster, the largest alive node's ``memory`` and object store. An
actor's share is the node's memory, less :data:`HEADROOM` for Ray and the driver, divided
among the actors the node places.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from doodl.orchestrator.spec import ResourcesSpec, SpecError
from doodl.workers.config import VariantConfig
from doodl.workers.unit_memory import UnitMemory, estimate_memory, human_bytes

HEADROOM = 0.2  # of a node's memory, left to Ray's processes, its object store and the driver


def local_memory() -> int:
    """This machine's memory in bytes: physical, or the container's limit when lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            physical = min(physical, int(text))
    return physical


def cluster_node_memory() -> int:
    """The memory of the connected Ray cluster's largest alive node (``memory`` plus its
    object store, what Ray shares out of the node's memory)."""
    import ray

    sizes = [n["Resources"].get("memory", 0) + n["Resources"].get("object_store_memory", 0)
             for n in ray.nodes() if n.get("Alive")]
    return int(max(sizes, default=0)) or local_memory()


def actors_per_node(res: ResourcesSpec, cpus: float) -> int:
    """Actors a node of ``cpus`` CPUs holds, at most ``num_actors``."""
    fits = max(1, int(cpus // res.cpus_per_actor))
    return min(fits, res.num_actors) if res.num_actors else fits


def actor_memory(res: ResourcesSpec, node_memory: int | None = None, cpus: float | None = None) -> int:
    """The memory one actor may use on a node (this machine by default)."""
    node_memory = node_memory or local_memory()
    per_node = actors_per_node(res, cpus if cpus is not None else float(os.cpu_count() or 1))
    return int(node_memory * (1 - HEADROOM) / per_node)


def largest_units(units: Iterable) -> list[UnitMemory]:
    """The estimate of each shape class's largest unit (``units``: work units)."""
    largest: dict[tuple, tuple[VariantConfig, int]] = {}
    for u in units:
        key = u.variants[0].shape_key
        if key not in largest or len(u.variants) > largest[key][1]:
            largest[key] = (u.variants[0], len(u.variants))
    return [estimate_memory(cfg, n) for cfg, n in largest.values()]


def check_fits(estimates: list[UnitMemory], node_memory: int, where: str) -> None:
    """Refuse (:class:`SpecError`, exit 2) a unit whose actor needs more than a node has."""
    est = max(estimates, key=lambda e: e.actor_bytes, default=None)
    if est is None or est.actor_bytes <= node_memory:
        return
    one = estimate_memory(est.config, 1)
    if one.actor_bytes <= node_memory:
        fix = f"set resources.variants_per_unit to {fitting_size(est.config, est.variants, node_memory)} or less"
    else:
        fix = (f"a single variant needs {human_bytes(one.actor_bytes)}: use a smaller model or batch, or "
               "record.projection_dim")
    raise SpecError(f"{est.describe()}: more than {where}'s {human_bytes(node_memory)} of memory; {fix}")


def fitting_size(cfg: VariantConfig, size: int, budget: int) -> int:
    """``size`` halved until a unit of that many variants like ``cfg`` fits ``budget`` bytes
    per actor (at least 1: a single variant that does not fit is refused later)."""
    while size > 1 and estimate_memory(cfg, size).actor_bytes > budget:
        size //= 2
    return size
