"""NTK evolution of one group of a sweep, as a Ray task (plain data in and out).

Per run that did not diverge, from its full parameter snapshots: the kernel on a fixed
probe set of the sweep's training split at each recorded step (thinned to at most
``max_kernels``, evenly in log time, the first and last kept), its distance to the initial and the final
kernel, its velocity and the transition step (:mod:`doodl.analysis.ntk`). Per group: the mean
curves over seeds at their common steps, and the median transition step.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from doodl.analysis.ntk import kernel_path
from doodl.analysis.registry import error_runs, task_error

_PROBE_STREAM = 0x7E6C  # spawn key of the probe's permutation, apart from every other use of the seed


def probe_training_inputs(variant: dict, n_probe: int, seed: int) -> np.ndarray:
    """``n_probe`` points of the sweep's training split (every run of a sweep, whatever its
    seed, gets the same ones: the permutation depends only on ``seed``), in split order."""
    from doodl.workers.config import VariantConfig
    from doodl.workers.datasets import dataset_split

    x_train = dataset_split(VariantConfig.from_dict(variant)).x_train
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _PROBE_STREAM]))
    return np.ascontiguousarray(x_train[np.sort(rng.permutation(len(x_train))[:n_probe])])


def thin(n: int, at_most: int) -> np.ndarray:
    """Indices ``0..n-1`` thinned to at most ``at_most``, evenly in log time (dense early,
    where the kernel moves fast; sparse late, where it moves slowly), first and last kept."""
    if n <= at_most:
        return np.arange(n)
    picked = np.arange(1)
    for points in range(at_most, 4 * n):
        trial = np.unique(np.round(np.geomspace(1, n, points)).astype(np.int64) - 1)
        if len(trial) > at_most:
            break
        picked = trial
    return picked


def ntk_for_group(sweep_root_uri: str, group_id: str, unit_ids: list[str], variants: list[dict],
                  settings: dict, title: str = "") -> dict:
    """One group's kernel paths. ``settings``: the ``reduce.ntk`` section (``probe``,
    ``max_kernels``, ``seed``). Returns ``row``, ``runs`` and ``pictures`` (``ntk.png``);
    errors (e.g. projected snapshots) go in ``row["error"]``."""
    from doodl.analysis.morse_task import read_group_runs
    from doodl.workers.config import VariantConfig
    from doodl.workers.datasets import dataset_split
    from doodl.workers.models import build_model

    torch.set_num_threads(1)
    started = time.perf_counter()
    run_ids = [v["run_id"] for v in variants]
    row: dict = {"group_id": group_id, "run_ids": run_ids, "n_runs": len(variants), "error": None}
    runs = error_runs(group_id, run_ids)
    pictures = {}
    try:
        if int(variants[0].get("projection_dim") or 0):
            raise ValueError(f"the sweep recorded projected snapshots (projection_dim="
                             f"{variants[0]['projection_dim']}): the NTK needs the full parameters")
        cfg = VariantConfig.from_dict(variants[0])
        model = build_model(cfg, dataset_split(cfg).shape).float()  # float32: 2x faster, distances to ~1e-7
        probe = torch.from_numpy(probe_training_inputs(variants[0], int(settings["probe"]), int(settings["seed"])))
        paths = {}
        status = {}
        for t in read_group_runs(sweep_root_uri, unit_ids, variants):
            status[t.run_id] = t.status
            if t.status == "ok" and len(t.steps) >= 2:
                keep = thin(len(t.steps), int(settings["max_kernels"]))
                paths[t.run_id] = kernel_path(model, t.theta[keep], t.steps[keep], probe, dtype=torch.float32)
        if not paths:
            raise ValueError("no run trained without diverging")
        row.update(_group_curves(list(paths.values())), n_probe=len(probe))
        runs = []
        for rid in run_ids:
            p = paths.get(rid)
            runs.append({"run_id": rid, "group_id": group_id, "status": status.get(rid, "error"),
                         **({"steps": p.steps.tolist(), "distance_init": p.distance_init.tolist(),
                             "distance_final": p.distance_final.tolist(), "velocity": _nulls(p.velocity),
                             "transition_step": p.transition} if p is not None else {})})
        pictures["ntk.png"] = plot_kernel_paths(paths, row, title or group_id)
    except Exception as exc:  # reported per group; the reduction goes on
        row["error"] = task_error(exc)
    row["seconds"] = time.perf_counter() - started
    return {"row": row, "runs": runs, "pictures": pictures}


def _nulls(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]


def _group_curves(paths: list) -> dict:
    """Mean curves over seeds at the steps every seed recorded (None where no seed has a
    value: the first velocity); the median transition."""
    common = sorted(set.intersection(*(set(p.steps.tolist()) for p in paths)))

    def mean(attr):
        table = np.array([[getattr(p, attr)[p.steps.tolist().index(s)] for s in common] for p in paths])
        return [float(col[np.isfinite(col)].mean()) if np.isfinite(col).any() else None for col in table.T]

    transitions = [p.transition for p in paths if p.transition is not None]
    return {
        "steps": common, "distance_init": mean("distance_init"), "distance_final": mean("distance_final"),
        "velocity": mean("velocity"),
        "transition_step": int(np.median(transitions)) if transitions else None,
        "transition_steps": [p.transition for p in paths],
        "final_distance_init": float(np.mean([p.distance_init[-1] for p in paths])),
    }


def plot_kernel_paths(paths: dict, row: dict, title: str) -> bytes:
    """Distance to the initial kernel and kernel velocity over training, seeds overlaid,
    the group's transition step marked."""
    from doodl.analysis.figures import png, pyplot

    plt = pyplot()
    fig, (ax_d, ax_v) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    for k, p in enumerate(paths.values()):
        ax_d.plot(p.steps, p.distance_init, color=f"C{k % 10}", lw=1.2, alpha=0.8)
        ax_v.plot(p.steps[1:], np.maximum(p.velocity[1:], 1e-12), color=f"C{k % 10}", lw=1.2, alpha=0.8)
    if row.get("transition_step") is not None:
        for ax in (ax_d, ax_v):
            ax.axvline(row["transition_step"], color="k", ls=":", lw=1)
        ax_d.text(row["transition_step"], ax_d.get_ylim()[1] * 0.95, " transition", va="top", fontsize=8)
    ax_d.set_xlabel("step")
    ax_d.set_ylabel("kernel distance to initial")
    ax_v.set_xlabel("step")
    ax_v.set_ylabel("kernel velocity (distance / step)")
    ax_v.set_yscale("log")
    fig.suptitle(f"NTK evolution: {title}", fontsize=10)
    fig.tight_layout()
    return png(fig)
