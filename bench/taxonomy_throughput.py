"""Taxonomy cost per group: all seeds at once (torch.func vmap) against one seed at a time.

On a stored sweep (default: the example ``examples/taxonomy.yaml``, trained into a temp
store first), for each group, in this process, one thread:

* batched, what ``doodl reduce`` runs: :func:`doodl.analysis.taxonomy.group_taxonomy`, i.e. the
  Hessian-vector products vmapped over seeds (and over Hutchinson's probe vectors), the
  Bezier curves of all seed pairs trained as one vmapped step;
* peer baseline, the same estimators called seed by seed and pair by pair (what
  PyHessian-style per-model code does): power iteration and Hutchinson with one seed
  (one probe vector per call), one curve at a time.

Both use the same settings, data and seeds; the ratio is the speed-up of batching.

    python bench/taxonomy_throughput.py                      # trains the example sweep first
    python bench/taxonomy_throughput.py --store ./doodl-store --sweep taxonomy --groups 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from _sweeps import ROOT, ensure_sweep, groups_of


def per_seed_baseline(configs, thetas, settings) -> dict[str, float]:
    """The metric set computed seed by seed (S=1 calls) and pair by pair (K=1 curves)."""
    import torch.nn.functional as F
    from torch.func import functional_call

    from doodl.analysis._connectivity import CurveFitter
    from doodl.analysis._curvature import batched_hvp, hutchinson_trace, top_eigenvalue
    from doodl.analysis.taxonomy import _shared_data, _stack
    from doodl.workers.datasets import dataset_split, variant_data
    from doodl.workers.models import build_model, init_params
    from doodl.workers.seeds import seed_stream

    cfg = configs[0]
    split = dataset_split(cfg)
    model = build_model(cfg, split.shape).double()
    shapes = {k: v.shape for k, v in init_params(cfg, split.shape).items()}

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    hvp = batched_hvp(loss)
    datas = [variant_data(split, c) for c in configs]
    t0 = time.perf_counter()
    for s, data in enumerate(datas):
        pick = np.sort(seed_stream(settings.seed, 102).permutation(len(data.indices))[: settings.hessian_batch])
        x = torch.from_numpy(split.x_train[data.indices[pick]])[None].double()
        y = torch.from_numpy(data.labels[pick])[None]
        p = _stack(thetas[s : s + 1], shapes)
        top_eigenvalue(hvp, p, x, y, tol=settings.power_tol, max_iter=settings.power_iters, seed=settings.seed)
        hutchinson_trace(hvp, p, x, y, tol=settings.trace_tol, max_samples=settings.trace_samples, block=1,
                         seed=settings.seed)
    t1 = time.perf_counter()
    import itertools

    pairs = list(itertools.combinations(range(len(configs)), 2))[: settings.mc_pairs]
    flat = torch.from_numpy(np.asarray(thetas, dtype=np.float64))
    fitter = CurveFitter(model, shapes)
    for i, j in pairs:
        x, y, n = _shared_data(split, [datas[i]], [datas[j]])
        a, b = flat[i : i + 1], flat[j : j + 1]
        fitter.errors(a, b, (a + b) / 2, x, y, n)
        c = fitter.fit(a, b, x, y, n, steps=settings.curve_steps, lr=settings.curve_lr,
                       momentum=settings.curve_momentum, batch=settings.curve_batch, seed=settings.seed)
        fitter.errors(a, b, c, x, y, n)
    t2 = time.perf_counter()
    return {"hessian_s": t1 - t0, "mc_s": t2 - t1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--sweep", default="taxonomy")
    p.add_argument("--spec", default=str(ROOT / "examples" / "taxonomy.yaml"))
    p.add_argument("--groups", type=int, default=6, help="groups measured (spread over the sweep)")
    args = p.parse_args()
    torch.set_num_threads(1)

    root, _tmp = ensure_sweep(args.store, args.sweep, args.spec)
    groups = groups_of(root)
    import pyarrow.parquet as pq

    from doodl.analysis.taxonomy import TaxonomySettings, group_taxonomy
    from doodl.workers.config import VariantConfig

    finals = {r["run_id"]: r for r in pq.ParquetDataset(f"{root}/finals").read().to_pylist()}
    chosen = list(groups)[:: max(1, len(groups) // args.groups)][: args.groups]
    settings = TaxonomySettings()
    rows, base = [], []
    for gid in chosen:
        vs = [v for v in groups[gid] if finals[v["run_id"]]["status"] == "ok"]
        configs = [VariantConfig.from_dict({**v, "dataset_options": json.loads(v["dataset_options"])}) for v in vs]
        thetas = np.stack([np.asarray(finals[v["run_id"]]["theta"], dtype=np.float64) for v in vs])
        rows.append(group_taxonomy(configs, thetas, [finals[v["run_id"]] for v in vs], settings))
        base.append(per_seed_baseline(configs, thetas, settings))
    med = statistics.median
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, 1 thread; sweep {args.sweep}: {len(chosen)} "
          f"groups of {len(groups[chosen[0]])} seeds; {settings.curve_steps} curve steps, {settings.mc_pairs} pairs")
    print(f"batched, whole metric set per group: median {med(r['total_s'] for r in rows):.2f} s "
          f"(Hessian {med(r['hessian_s'] for r in rows):.2f}, curves {med(r['mc_s'] for r in rows):.2f}, "
          f"CKA {med(r['cka_s'] for r in rows):.3f})")
    h = med(b["hessian_s"] / r["hessian_s"] for b, r in zip(base, rows))
    m = med(b["mc_s"] / r["mc_s"] for b, r in zip(base, rows))
    print(f"seed-by-seed baseline: Hessian {med(b['hessian_s'] for b in base):.2f} s -> batched {h:.1f}x faster; "
          f"curves {med(b['mc_s'] for b in base):.2f} s -> batched {m:.1f}x faster")


if __name__ == "__main__":
    main()
