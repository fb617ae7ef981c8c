"""Training throughput: the batched engine against a plain per-model loop.

Both sides train the same ``--variants`` models of ``--family`` (default: MLPs on digits,
64 inputs, ``--depth`` hidden layers of ``--width``, 10 classes; ``cnn`` on digits as 1x8x8
images, ``transformer`` on modular addition mod 97 with 4 heads) with SGD momentum 0.9 at
batch size ``--batch``, on one thread, in the same process. Throughput is reported as model-steps per second: one
model-step is one optimiser update of one model.

* batched: ``doodl.workers.engine.train_unit`` timed end to end, i.e. including parameter
  initialisation, per-variant training sets and minibatch sampling, recording of loss /
  accuracy / gradient norm every step and of parameter snapshots every ``record_every``
  steps, and the final full-set evaluation. Only the ``steps`` updates are counted (the
  extra forward/backward at step T that records the final loss is not).
* per-model: what a user would write without doodl: for each variant in turn, an
  ``nn.Module`` + ``torch.optim.SGD(momentum=0.9)`` loop over the same seeded minibatches
  (batch indices drawn up front, outside the timed region; no recording at all). This
  favours the baseline.

Each side runs a short warm-up (20 steps), then ``--repeats`` full runs, alternating
between the sides; the best run is reported (the least disturbed by other processes),
with the median alongside.

    python bench/train_throughput.py --variants 64 --steps 500 --repeats 3
    python bench/train_throughput.py --family cnn --width 8 --variants 16 --steps 200

``--record-cost`` adds a third side: ``train_unit`` recording parameters (and held-out
loss and accuracy) only at the first and last step, so that the cost of recording every
``--record-every`` steps is the ratio of the two batched sides. ``--batched-only`` skips
the per-model loop (to compare unit sizes: ``--variants`` 8 ... 256). ``--side-by-side``
adds a side that runs the batched unit in two processes at once (two actors on two
cores): how far a second process scales this machine.

    python bench/train_throughput.py --width 8 --record-cost
    python bench/train_throughput.py --width 64 --variants 32 --steps 100 --repeats 2 --batched-only
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from doodl.workers.config import VariantConfig
from doodl.workers.datasets import BatchStream, dataset_split, variant_data
from doodl.workers.engine import train_unit
from doodl.workers.models import build_model, init_params


# where both sides run: the GPU when there is one (the bench runs unchanged on a GPU machine)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# the data set each family is measured on, and its options
FAMILY_DATA = {"mlp": ("digits", ()), "cnn": ("digits", ()), "resnet": ("digits", ()),
               "transformer": ("modular", (("op", "add"), ("p", 97)))}


def make_configs(args, steps: int) -> list[VariantConfig]:
    """``variants`` models of one family that differ in seed and learning rate."""
    lrs = np.geomspace(0.005, 0.05, args.variants)
    dataset, options = FAMILY_DATA[args.family]
    return [
        VariantConfig(dataset=dataset, dataset_options=options, test_fraction=0.25, split_seed=0, label_noise=0.0,
                      train_fraction=1.0, model=args.family, width=args.width, depth=args.depth,
                      optimizer="sgd", lr=float(lrs[i]), batch_size=args.batch, weight_decay=0.0,
                      steps=steps, momentum=0.9, record_every=args.record_every, seed=i)
        for i in range(args.variants)
    ]


def run_batched(cfgs: list[VariantConfig]) -> float:
    t0 = time.perf_counter()
    result = train_unit(cfgs, DEVICE)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    assert result.status == ["ok"] * len(cfgs), result.status
    return elapsed


def prepare_per_model(cfgs: list[VariantConfig]):
    """Models, optimisers and minibatches for the per-model loop (built outside the timing)."""
    out = []
    for cfg in cfgs:
        split = dataset_split(cfg)
        data = variant_data(split, cfg)
        model = build_model(cfg, split.shape).to(DEVICE)
        with torch.no_grad():
            for name, p in init_params(cfg, split.shape).items():
                model.get_parameter(name).copy_(p)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
        x = torch.from_numpy(split.x_train[data.indices]).view(-1, *split.shape.input_shape).to(DEVICE)
        y = torch.from_numpy(data.labels).to(DEVICE)
        batches = torch.from_numpy(BatchStream(len(data.indices), cfg.batch_size, cfg.seed).take(cfg.steps))
        batches = batches.to(DEVICE)
        out.append((model, opt, x, y, batches))
    return out


def run_per_model(cfgs: list[VariantConfig]) -> float:
    jobs = prepare_per_model(cfgs)
    t0 = time.perf_counter()
    for model, opt, x, y, batches in jobs:  # one model after another
        for pos in batches:
            opt.zero_grad()
            F.cross_entropy(model(x[pos]), y[pos]).backward()
            opt.step()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(sides: dict, warmup_cfgs, cfgs, repeats: int) -> dict[str, list[float]]:
    """Seconds per full run of each side; repeats alternate between the sides so that a
    burst of load from other processes does not land on one side only."""
    for fn in sides.values():
        fn(warmup_cfgs)  # short warm-up: data set cache, allocator, lazy imports and inits
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(fn(cfgs))
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=sorted(FAMILY_DATA), default="mlp")
    ap.add_argument("--variants", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500, help="optimiser updates per model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--record-every", type=int, default=10, help="batched side: snapshot interval")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--record-cost", action="store_true",
                    help="also time train_unit recording only the first and last step")
    ap.add_argument("--batched-only", action="store_true", help="skip the per-model loop")
    ap.add_argument("--side-by-side", action="store_true", help="also run the batched unit in two processes at once")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfgs = make_configs(args, args.steps)
    warmup = make_configs(args, min(args.steps, 20))
    model_steps = args.variants * args.steps

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)")
    model = (f"MLPs digits 64-{'-'.join([str(args.width)] * args.depth)}-10" if args.family == "mlp" else
             f"{args.family} width {args.width} depth {args.depth} on {FAMILY_DATA[args.family][0]}")
    print(f"{args.variants} {model}, batch {args.batch}, SGD momentum 0.9, {args.steps} steps each, "
          f"best of {args.repeats} after a short warm-up")

    sides = {"batched": run_batched} if args.batched_only else {"per-model": run_per_model, "batched": run_batched}
    if args.record_cost:
        def unrecorded(cs):  # snapshots and held-out evaluation at steps 0 and T only
            return run_batched([dataclasses.replace(c, record_every=c.steps) for c in cs])

        sides["unrecorded"] = unrecorded
    if args.side_by_side:
        pool = mp.get_context("spawn").Pool(2, initializer=torch.set_num_threads, initargs=(1,))
        pool.map(run_batched, [warmup, warmup])

        def two_processes(cs):  # the same unit in each process: wall time for both, counted as one unit
            t0 = time.perf_counter()
            pool.map(run_batched, [cs, cs])
            return (time.perf_counter() - t0) / 2

        sides["2 processes"] = two_processes
    times = measure(sides, warmup, cfgs, args.repeats)
    best = {name: model_steps / min(t) for name, t in times.items()}
    median = {name: model_steps / statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:>9}: {best[name]:8.0f} model-steps/s best ({median[name]:.0f} median; "
              f"runs {', '.join(f'{x:.2f}' for x in t)} s)")
    print("  batched = train_unit end to end: init, data sampling, per-step loss/acc/grad-norm "
          "recording, snapshots, final evaluation")
    print("per-model = nn.Module + torch.optim.SGD loop only (batches drawn up front, no recording)")
    if "per-model" in best:
        print(f"    ratio: {best['batched'] / best['per-model']:.2f}x best "
              f"({median['batched'] / median['per-model']:.2f}x median)")
    if args.side_by_side:
        pool.close()
        print(f"two processes side by side: {best['2 processes'] / best['batched']:.2f}x one process's throughput")
    if args.record_cost:
        print(f"recording every {args.record_every} steps costs {100 * (best['unrecorded'] / best['batched'] - 1):.1f}%"
              f" of the unrecorded time ({100 * (median['unrecorded'] / median['batched'] - 1):.1f}% on medians)")

if __name__ == "__main__":
    main()
