"""Sweep throughput end to end: ``doodl sweep`` against what a user would run instead.

At each ``--widths`` (MLPs on digits, 64 inputs, two hidden layers of the width, 10
classes, batch 128, SGD momentum 0.9, ``--steps`` steps), in the same run:

* **loop**: one per-model loop (``nn.Module`` + ``torch.optim.SGD``, one model after another,
  one thread, nothing recorded, batches drawn before the timer) over ``--loop-variants``
  models: model-steps/s;
* **two loops**: two such loops side by side in two processes (the machine's 2 cores), each
  over ``--loop-variants`` models: their combined model-steps/s;
* **tune**: one Ray Tune trial per variant (the same loop inside a function trainable, one
  CPU each, the result reported once at the end) over ``--tune-trials`` trials; its rate is
  extrapolated per trial (the trial count is small: say so when quoting it);
* **doodl**: ``doodl.orchestrator.driver.run_sweep`` on a spec of ``--variants`` variants (seeds x
  learning rates), 2 actors, snapshots every 10 steps, held-out curves, Parquet shards and
  SQLite MLflow, timed from the call to its return (Ray is started before the timer, as on
  a cluster: its start-up is printed separately).

With ``--mlflow-cost`` the doodl sweep at width 64 (or the first width) is also run with
its tracking store unreachable (logging deferred), to measure what MLflow logging costs.

    python bench/sweep_throughput.py                      # widths 8, 32, 64, 256
    python bench/sweep_throughput.py --widths 64 --mlflow-cost --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

STEPS_DEFAULT = 500
BATCH = 128


def _configs(width: int, n: int, steps: int, seed0: int = 0):
    from doodl.workers.config import VariantConfig

    lrs = np.geomspace(0.005, 0.05, n)
    return [VariantConfig(dataset="digits", test_fraction=0.25, split_seed=0, label_noise=0.0, train_fraction=1.0,
                          model="mlp", width=width, depth=2, optimizer="sgd", lr=float(lrs[i]), batch_size=BATCH,
                          weight_decay=0.0, steps=steps, momentum=0.9, record_every=10, seed=seed0 + i)
            for i in range(n)]


def _loop(width: int, n: int, steps: int, seed0: int = 0) -> float:
    """Seconds for the per-model loop over ``n`` models (batches drawn before the timer)."""
    from doodl.workers.datasets import BatchStream, dataset_split, variant_data
    from doodl.workers.models import build_model, init_params

    torch.set_num_threads(1)
    jobs = []
    for cfg in _configs(width, n, steps, seed0):
        split = dataset_split(cfg)
        data = variant_data(split, cfg)
        model = build_model(cfg, split.shape)
        with torch.no_grad():
            for name, p in init_params(cfg, split.shape).items():
                model.get_parameter(name).copy_(p)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        x = torch.from_numpy(split.x_train[data.indices]).view(-1, *split.shape.input_shape)
        y = torch.from_numpy(data.labels)
        jobs.append((model, opt, x, y, torch.from_numpy(BatchStream(len(y), BATCH, cfg.seed).take(steps))))
    t0 = time.perf_counter()
    for model, opt, x, y, batches in jobs:
        for pos in batches:
            opt.zero_grad()
            F.cross_entropy(model(x[pos]), y[pos]).backward()
            opt.step()
    return time.perf_counter() - t0


def _loop_in_child(args) -> float:
    return _loop(*args)


def two_loops(width: int, n: int, steps: int) -> float:
    """Wall seconds of two loops of ``n`` models each, in two processes at once."""
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_loop_in_child, [(width, 2, 5, 0)] * 2)  # imports and data set, outside the timing
        t0 = time.perf_counter()
        pool.map(_loop_in_child, [(width, n, steps, 0), (width, n, steps, n)])
        return time.perf_counter() - t0


def _tune_trainable(config: dict) -> dict:
    from ray import tune

    seconds = _loop(config["width"], 1, config["steps"], config["seed"])
    tune.report({"train_seconds": seconds})


def tune_trials(width: int, n: int, steps: int) -> float:
    """Wall seconds of ``n`` Ray Tune trials, one per variant, 1 CPU each."""
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": 1}),
        param_space={"width": width, "steps": steps, "seed": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="tune-"), verbose=0),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    assert not results.errors, results.errors
    return time.perf_counter() - t0


def doodl_sweep(width: int, n: int, steps: int, workdir: str, tracking: str) -> tuple[float, float]:
    """Seconds of ``run_sweep`` of ``n`` variants (16 learning rates x seeds), 2 actors:
    the whole call, and its training (first unit handed out to last one committed)."""
    from doodl.orchestrator.driver import run_sweep
    from doodl.orchestrator.spec import parse_spec

    seeds = max(1, n // 16)
    spec = parse_spec({
        "name": f"w{width}n{n}",
        "dataset": {"name": "digits", "test_fraction": 0.25, "split_seed": 0},
        "model": {"family": "mlp", "width": width, "depth": 2},
        "optimizer": {"name": "sgd", "lr": [float(x) for x in np.geomspace(0.005, 0.05, 16)], "momentum": 0.9,
                      "batch_size": BATCH, "steps": steps},
        "seeds": seeds,
        "record": {"every": 10},
        "resources": {"num_actors": 2},
    })
    store = tempfile.mkdtemp(prefix="store-", dir=workdir)
    t0 = time.perf_counter()
    out = run_sweep(spec, store_uri=store, tracking_uri=tracking, show_progress=False)
    seconds = time.perf_counter() - t0
    assert out.trained_units == out.n_units and not out.failed_units, out
    assert (out.mlflow_error is None) == tracking.startswith("sqlite"), out.mlflow_error
    return seconds, out.train_seconds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="8,32,64,256")
    ap.add_argument("--steps", type=int, default=STEPS_DEFAULT)
    ap.add_argument("--variants", type=int, default=512, help="doodl sweep variants (256 at width 256)")
    ap.add_argument("--loop-variants", type=int, default=16, help="models per loop (the loop is linear in them)")
    ap.add_argument("--tune-trials", type=int, default=4)
    ap.add_argument("--mlflow-cost", action="store_true", help="also run width 64 (or the first) without MLflow")
    ap.add_argument("--write", help="append the table to this Markdown file")
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    import ray

    from doodl.orchestrator.session import connect

    t0 = time.perf_counter()
    connect(None)
    ray_start = time.perf_counter() - t0
    torch.set_num_threads(1)
    _loop(8, 1, 5)  # imports and the data set, outside the timing
    head = (f"torch {torch.__version__}, Ray {ray.__version__}, {platform.machine()}, {os.cpu_count()} cores; "
            f"MLPs 64-W-W-10 on digits, batch {BATCH}, SGD momentum 0.9, {args.steps} steps; Ray start {ray_start:.1f} s")
    print(head, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for width in widths:
            n = args.variants if width < 256 else args.variants // 2
            ms = args.steps
            loop = args.loop_variants * ms / _loop(width, args.loop_variants, ms)
            two = 2 * args.loop_variants * ms / two_loops(width, args.loop_variants, ms)
            tune_s = tune_trials(width, args.tune_trials, ms)
            tune = args.tune_trials * ms / tune_s
            sweep_s, train_s = doodl_sweep(width, n, ms, work, f"sqlite:///{work}/m{width}.db")
            doodl = n * ms / sweep_s
            row = {"width": width, "variants": n, "loop": loop, "two": two, "tune": tune, "doodl": doodl,
                   "seconds": sweep_s, "train_seconds": train_s}
            if args.mlflow_cost and width == (64 if 64 in widths else widths[0]):
                # a tracking server that refuses connections: the probe fails at once, logging is deferred
                row["no_mlflow_seconds"], row["no_mlflow_train_seconds"] = doodl_sweep(
                    width, n, ms, work, "http://127.0.0.1:9")
            rows.append(row)
            print(row, flush=True)
    table = ["| width | doodl variants | loop | two loops | Tune (per trial) | doodl sweep | doodl / loop | "
             "doodl / two loops | doodl / Tune |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['width']} | {r['variants']} ({r['seconds']:.0f} s) | {r['loop']:.0f} | {r['two']:.0f} | "
                     f"{r['tune']:.0f} | {r['doodl']:.0f} | **{r['doodl'] / r['loop']:.1f}x** | "
                     f"**{r['doodl'] / r['two']:.1f}x** | **{r['doodl'] / r['tune']:.0f}x** |")
    text = "\n".join(table)
    for r in rows:
        if "no_mlflow_seconds" in r:
            cost = r["train_seconds"] / r["no_mlflow_train_seconds"] - 1
            whole = r["seconds"] / r["no_mlflow_seconds"] - 1
            text += (f"\n\nMLflow cost at width {r['width']}, {r['variants']} variants: training took "
                     f"{r['train_seconds']:.1f} s with SQLite MLflow logging alongside, {r['no_mlflow_train_seconds']:.1f} s "
                     f"with logging deferred: **{100 * cost:+.1f}%**; the whole command (logging caught up) "
                     f"{r['seconds']:.1f} s against {r['no_mlflow_seconds']:.1f} s ({100 * whole:+.1f}%)")
    print("\nmodel-steps/s\n" + head + "\n" + text)
    if args.write:
        cmd = "python bench/sweep_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.write, "a") as f:
            f.write(f"\n```\n{cmd}\n```\n\n{head}; date {time.strftime('%Y-%m-%d')}\n\nmodel-steps/s\n\n{text}\n")


if __name__ == "__main__":
    main()
