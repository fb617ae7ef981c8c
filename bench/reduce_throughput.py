"""Reduction throughput: Morse graphs per group, batched box map against one call per box.

On a sweep in a store (by default the example sweep ``examples/quickstart.yaml``, trained
first into a temporary store if ``--store`` does not hold it):

* per group, in this process, one thread: read the group's snapshots (and the models'
  outputs on the probe set, as ``doodl reduce`` does for function-space coordinates), run
  ``group_morse`` with the defaults. Reports the median time of the Morse graph step (CMGDB
  with the batched box map of distinct corners, what ``doodl reduce`` runs) and of the
  whole group (held-out validation included);
* peer baseline, on the same map (the group's pair map) and box: CMGDB with its per-box map
  (one Python call per box), as a user of CMGDB's documented single-box interface would
  write it. Same grid and map, so the same Morse graph; the ratio is the speed-up;
* groups per second of ``doodl reduce`` (Ray tasks on the local cores, store writes and
  pictures included, MLflow off, Ray already started, ``--force`` so every group is
  redone): Morse graphs alone, then the default reduction (Morse graphs and taxonomy).

    python bench/reduce_throughput.py                 # trains the example sweep first
    python bench/reduce_throughput.py --store ./doodl-store --sweep quickstart
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from _sweeps import ROOT, ensure_sweep, groups_of


def per_box_morse_graph(box_images, lower, upper, subdiv_min, subdiv_max):
    """The baseline: CMGDB driven through a Python call per box (``box_images`` of one box)."""
    import CMGDB

    def box(rect):
        return box_images(np.asarray([rect]))[0].tolist()

    model = CMGDB.Model(subdiv_min, subdiv_max, subdiv_min, 10_000, list(lower), list(upper), box)
    t0 = time.perf_counter()
    mg, _ = CMGDB.ComputeConleyMorseGraph(model)
    return time.perf_counter() - t0, mg.num_vertices()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None, help="store holding the sweep (default: train it into a temp dir)")
    p.add_argument("--sweep", default="quickstart")
    p.add_argument("--spec", default=str(ROOT / "examples" / "quickstart.yaml"))
    p.add_argument("--dims", type=int, default=2)
    p.add_argument("--baseline-groups", type=int, default=3, help="groups timed with the per-box baseline")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    root, _tmp = ensure_sweep(args.store, args.sweep, args.spec)
    groups = groups_of(root)

    from doodl.analysis.dynamics import MorseSettings, group_morse
    from doodl.analysis.morse_task import read_group_runs

    settings = MorseSettings(dims=args.dims)
    morse_s, total_s, batched, baseline, same_nodes, acc, chance = [], [], [], [], [], [], []
    first = next(iter(groups.values()))
    group_morse(read_group_runs(root, sorted({r["unit_id"] for r in first}), first, function_space=True),
                settings)  # warm-up: imports
    for k, (_gid, rows) in enumerate(groups.items()):
        t0 = time.perf_counter()
        runs = read_group_runs(root, sorted({r["unit_id"] for r in rows}), rows, function_space=True)
        res = group_morse(runs, settings)
        total_s.append(time.perf_counter() - t0)
        morse_s.append(res.graph.seconds)
        acc.append(res.outcome_accuracy)
        chance.append(res.outcome_chance)
        if k < args.baseline_groups:
            g = res.graph
            secs, n = per_box_morse_graph(res.fitted.pair_map.box_images, g.lower, g.upper, settings.subdiv_min,
                                          settings.subdiv_max)
            baseline.append(secs)
            batched.append(g.seconds)
            same_nodes.append(n == len(g.nodes))

    import ray

    from doodl.orchestrator.session import connect
    from doodl.orchestrator.reduce import run_reduce
    from doodl.orchestrator.store import SweepStore

    connect(None)  # Ray start-up is not the reduction's cost
    walls = {}
    for analyses in (("morse",), ("morse", "taxonomy")):
        t0 = time.perf_counter()
        outcome = run_reduce(SweepStore(os.path.dirname(root), args.sweep), tracking_uri=None, settings=None,
                             analyses=analyses, force=True, show_progress=False)
        walls[analyses] = time.perf_counter() - t0
        assert not outcome.failed, outcome.failed
    cpus = int(ray.cluster_resources().get("CPU", 0))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"sweep {args.sweep}: {len(groups)} groups of {len(next(iter(groups.values())))} runs; d={args.dims}, "
          f"depth {settings.subdiv_min}..{settings.subdiv_max}")
    print(f"one group, Morse graph (batched box map): median {statistics.median(morse_s):.3f} s "
          f"(min {min(morse_s):.3f}, max {max(morse_s):.3f})")
    print(f"one group, read + outputs + PCA + pair map + Morse graph + held-out refits: "
          f"median {statistics.median(total_s):.3f} s")
    if baseline:
        ratio = statistics.median(b / a for a, b in zip(batched, baseline))
        print(f"per-box baseline on {len(baseline)} groups: median {statistics.median(baseline):.3f} s vs batched "
              f"{statistics.median(batched):.3f} s -> batched is {ratio:.1f}x faster "
              f"(same node count: {all(same_nodes)})")
    for analyses, wall in walls.items():
        print(f"doodl reduce --force --only {' --only '.join(analyses)}, {cpus} Ray CPUs: {len(groups)} groups in "
              f"{wall:.1f} s wall = {len(groups) / wall:.2f} groups/s")
    print(f"held-out outcome accuracy per group: {np.round(acc, 2).tolist()} (chance {np.round(chance, 2).tolist()}; "
          "NaN below the minimum of runs)")


if __name__ == "__main__":
    main()
