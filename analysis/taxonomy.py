"""The connectivity taxonomy of Yang et al. (NeurIPS 2021) for each group of a sweep.

Per group (the seeds of one config), from the final parameters in ``finals/``:

- training loss and accuracy on each seed's own training set (noisy labels included) and
  test accuracy on the sweep's held-out split: as the worker measured them at the end of
  training (``finals``);
- top Hessian eigenvalue (power iteration) and trace (Hutchinson, Rademacher vectors) of
  the mean cross-entropy on a fixed batch of each seed's training set (``hessian_batch``
  points chosen by ``seed``): all seeds in one vmapped call per Hessian-vector product;
- mode connectivity ``mc`` between pairs of seeds along a trained quadratic Bezier curve,
  and the barrier and ``mc`` of the straight line. Seeds of a group train on different
  subsets with different flipped labels, so a pair's curve is trained and judged on the
  points both seeds trained on with the same label (our choice: on the clean labels, a
  curve that does not memorise the flips would look better than its ends, and on one
  seed's labels the other end would look worse);
- linear CKA between the softmax outputs of every pair of seeds on a fixed probe set of
  mixup points of the training split, and the mean L2 distance between seeds' parameters.

:func:`classify_phase` turns the group means into a phase, with thresholds from the spec.
Everything runs in float64 on the CPU: the models are small and the Hessian estimates are
then accurate to the tolerance asked of them.
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from doodl.analysis._connectivity import (
    CurveFitter,
    linear_barrier,
    linear_cka,
    mc_from_errors,
)
from doodl.analysis._curvature import batched_hvp, hutchinson_trace, top_eigenvalue
from doodl.analysis.settings import PhaseThresholds, TaxonomySettings
from doodl.workers.config import VariantConfig
from doodl.workers.datasets import dataset_split, variant_data
from doodl.workers.models import build_model, init_params
from doodl.workers.seeds import seed_stream
from doodl.analysis.registry import error_runs, task_error

PHASES = ("I", "II", "III", "IV-A", "IV-B")
METHOD_VERSION = 2  # bump when a change alters results: stored results of older versions are redone
_STREAM_TAXONOMY = 101  # random stream of the analysis (batches, probes, starts), apart from training's


def classify_phase(train_loss: float, mc: float, cka: float, hessian_top: float,
                   thresholds: PhaseThresholds = PhaseThresholds()) -> str:
    """The phase of a configuration: one of ``I``, ``II``, ``III``, ``IV-A``, ``IV-B``.

    - high training loss and ``mc < 0``: I (poorly trained, poorly connected);
    - high training loss and ``mc >= 0``: II;
    - low training loss and ``mc < -mc_tolerance``: III (barriers between good minima);
    - low training loss and ``mc >= -mc_tolerance`` (about 0, or a curve better than its
      ends): IV, split by CKA into IV-A (below ``cka``) and IV-B (at or above).

    ``hessian_top`` does not move a boundary: in the paper it separates sharp (I, II) from
    flat (III, IV) along with the loss, and it is reported beside the phase; it must be
    finite like the others.
    """
    values = {"train_loss": train_loss, "mc": mc, "cka": cka, "hessian_top": hessian_top}
    bad = [k for k, v in values.items() if v is None or not math.isfinite(v)]
    if bad:
        raise ValueError(f"cannot classify with non-finite {', '.join(bad)}")
    if train_loss > thresholds.train_loss:
        return "I" if mc < 0 else "II"
    if mc < -thresholds.mc_tolerance:
        return "III"
    return "IV-B" if cka >= thresholds.cka else "IV-A"


def _stack(thetas: np.ndarray, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    flat = torch.from_numpy(np.asarray(thetas, dtype=np.float64))
    sizes = [int(np.prod(s)) for s in shapes.values()]
    parts = torch.split(flat, sizes, dim=1)
    return {k: p.reshape(len(flat), *s) for (k, s), p in zip(shapes.items(), parts)}


def group_taxonomy(configs: list[VariantConfig], thetas: np.ndarray, finals: list[dict],
                   settings: TaxonomySettings = TaxonomySettings()) -> dict:
    """All metrics and the phase of one group; ``thetas`` (S, P) are the seeds' final
    parameters and ``finals`` their finals rows (for loss and accuracy), in the same order."""
    if len(configs) < 2:
        raise ValueError(f"needs at least 2 seeds trained to the end (not diverged or stopped) for mode connectivity "
                         f"and CKA, got {len(configs)}")
    t0 = time.perf_counter()
    cfg = configs[0]
    split = dataset_split(cfg)
    model = build_model(cfg, split.shape).double()
    shapes = {k: v.shape for k, v in init_params(cfg, split.shape).items()}
    params = _stack(thetas, shapes)
    rng = seed_stream(settings.seed, _STREAM_TAXONOMY)

    # Hessian: a fixed batch of each seed's own training set (labels as it trained)
    xs, ys, datas = [], [], []
    for c in configs:
        data = variant_data(split, c)
        datas.append(data)
        pick = np.sort(seed_stream(settings.seed, _STREAM_TAXONOMY + 1).permutation(len(data.indices))
                       [: settings.hessian_batch])
        xs.append(split.x_train[data.indices[pick]])
        ys.append(data.labels[pick])
    xh = torch.from_numpy(np.stack(xs)).double()
    yh = torch.from_numpy(np.stack(ys))

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    hvp = batched_hvp(loss)
    eig, iters = top_eigenvalue(hvp, params, xh, yh, tol=settings.power_tol, max_iter=settings.power_iters,
                                seed=settings.seed)
    trace, samples = hutchinson_trace(hvp, params, xh, yh, tol=settings.trace_tol,
                                      max_samples=settings.trace_samples, seed=settings.seed)
    t_hess = time.perf_counter()

    # mode connectivity for up to mc_pairs pairs of seeds, each on the data its seeds share
    pairs = list(itertools.combinations(range(len(configs)), 2))
    mc_pairs = pairs[: settings.mc_pairs]
    flat = torch.from_numpy(np.asarray(thetas, dtype=np.float64))
    a = flat[[i for i, _ in mc_pairs]]
    b = flat[[j for _, j in mc_pairs]]
    x, y, n = _shared_data(split, [datas[i] for i, _ in mc_pairs], [datas[j] for _, j in mc_pairs])
    fitter = CurveFitter(model, shapes)
    line_err = fitter.errors(a, b, (a + b) / 2, x, y, n)
    c = fitter.fit(a, b, x, y, n, steps=settings.curve_steps, lr=settings.curve_lr,
                   momentum=settings.curve_momentum, batch=settings.curve_batch, seed=settings.seed)
    curve_err = fitter.errors(a, b, c, x, y, n)
    mcs = [mc_from_errors(e) for e in curve_err]
    t_mc = time.perf_counter()

    # CKA on mixup points of the training split (token ids do not mix: training points
    # themselves); L2 between parameter vectors
    n = len(split.x_train)
    i, j = rng.integers(0, n, settings.cka_probe), rng.integers(0, n, settings.cka_probe)
    lam = rng.uniform(0, 1, (settings.cka_probe, 1))
    mixed = split.x_train[i] if split.vocab else lam * split.x_train[i] + (1 - lam) * split.x_train[j]
    probe = torch.from_numpy(np.asarray(mixed)).double()
    with torch.no_grad():
        outs = [torch.softmax(functional_call(model, {k: v[s] for k, v in params.items()}, (probe,)), -1).numpy()
                for s in range(len(configs))]
    ckas = [linear_cka(outs[p], outs[q]) for p, q in pairs]
    l2s = [float(np.linalg.norm(thetas[p] - thetas[q])) for p, q in pairs]
    t_end = time.perf_counter()

    train_loss = [float(f["final_train_loss"]) for f in finals]
    row = {
        "n_seeds": len(configs),
        "train_loss": float(np.mean(train_loss)),
        "train_acc": float(np.mean([f["final_train_acc"] for f in finals])),
        "test_acc": float(np.mean([f["final_test_acc"] for f in finals])),
        "hessian_top": float(eig.mean()),
        "hessian_trace": float(trace.mean()),
        "mc": float(np.mean(mcs)),
        "line_mc": float(np.mean([mc_from_errors(e) for e in line_err])),
        "line_barrier": float(np.mean([linear_barrier(e) for e in line_err])),
        "cka": float(np.mean(ckas)),
        "l2": float(np.mean(l2s)),
        "train_loss_seeds": train_loss,
        "test_acc_seeds": [float(f["final_test_acc"]) for f in finals],
        "hessian_top_seeds": eig.tolist(),
        "hessian_iters_seeds": iters.tolist(),
        "hessian_trace_seeds": trace.tolist(),
        "trace_samples_seeds": samples.tolist(),
        "mc_pairs": mcs,
        "curve_errors": curve_err.tolist(),
        "line_errors": line_err.tolist(),
        "cka_pairs": ckas,
        "l2_pairs": l2s,
        "hessian_s": t_hess - t0,
        "mc_s": t_mc - t_hess,
        "cka_s": t_end - t_mc,
        "total_s": t_end - t0,
    }
    row["phase"] = classify_phase(row["train_loss"], row["mc"], row["cka"], row["hessian_top"], settings.thresholds)
    return row


def _shared_data(split, first, second) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pair, the training points both seeds trained on with the same label, padded to
    one length: ``x`` (K, N, F), ``y`` (K, N) and the counts ``n`` (K,)."""
    pools = []
    for da, db in zip(first, second):
        label_b = dict(zip(db.indices.tolist(), db.labels.tolist()))
        keep = [(i, la) for i, la in zip(da.indices.tolist(), da.labels.tolist()) if label_b.get(i) == la]
        if not keep:
            raise ValueError("two seeds share no training point with the same label")
        pools.append(keep)
    size = max(len(p) for p in pools)
    x = np.zeros((len(pools), size, split.n_features))
    y = np.zeros((len(pools), size), dtype=np.int64)
    for k, pool in enumerate(pools):
        idx = np.array([i for i, _ in pool])
        x[k, : len(pool)] = split.x_train[idx]
        y[k, : len(pool)] = [la for _, la in pool]
    return torch.from_numpy(x), torch.from_numpy(y), torch.tensor([len(p) for p in pools])


def taxonomy_for_group(sweep_root_uri: str, group_id: str, unit_ids: list[str], variants: list[dict],
                       settings: dict) -> dict:
    """Run :func:`group_taxonomy` on one group of a sweep from its committed finals.

    ``variants`` are the group's rows of ``variants.parquet``. Returns plain data (a Ray
    task result): ``row`` for the group table and ``runs`` (one row per seed); an error is
    recorded in ``row["error"]`` instead of raised.
    """
    import pyarrow.compute as pc

    from doodl.workers import shards

    torch.set_num_threads(1)
    started = time.perf_counter()
    cfg = TaxonomySettings(**settings)
    thresholds = cfg.thresholds
    run_ids = [v["run_id"] for v in variants]
    row: dict = {"group_id": group_id, "run_ids": run_ids, "error": None,
                 **{f"threshold_{k}": v for k, v in thresholds.model_dump().items()},
                 **{f"param_{k}": v for k, v in cfg.computation().items() if k != "thresholds"}}
    runs = error_runs(group_id, run_ids)
    try:
        fs, root = shards.resolve_filesystem(sweep_root_uri)
        table = shards.read_units(fs, root, shards.FINALS, unit_ids, filter=pc.field("run_id").isin(run_ids))
        finals = {r["run_id"]: r for r in table.to_pylist()}
        ok = [v for v in variants if finals[v["run_id"]]["status"] == "ok"]
        configs = [VariantConfig.from_dict(v) for v in ok]
        thetas = np.stack([np.asarray(finals[v["run_id"]]["theta"], dtype=np.float64) for v in ok]) if ok \
            else np.empty((0, 0))
        result = group_taxonomy(configs, thetas, [finals[v["run_id"]] for v in ok], cfg)
    except Exception as exc:  # reported per group; the reduction goes on
        row.update(error=task_error(exc), seconds=time.perf_counter() - started)
        return {"row": row, "runs": runs, "pictures": {}}
    row.update(result, seconds=time.perf_counter() - started)
    seeds = {v["run_id"]: k for k, v in enumerate(ok)}
    runs = []
    for v in variants:
        k = seeds.get(v["run_id"])
        f = finals[v["run_id"]]
        runs.append({
            "run_id": v["run_id"], "group_id": group_id, "status": f["status"],
            "train_loss": float(f["final_train_loss"]) if f["final_train_loss"] is not None else None,
            "test_acc": float(f["final_test_acc"]) if f["final_test_acc"] is not None else None,
            "hessian_top": result["hessian_top_seeds"][k] if k is not None else None,
            "hessian_trace": result["hessian_trace_seeds"][k] if k is not None else None,
        })
    return {"row": row, "runs": runs, "pictures": {}}
