"""The training engine against its own earlier revision, in one process: the same units
(64 variants, 300 steps, digits) trained by ``workers/engine.py`` of git revision ``--rev``
and by the working tree's, the best of 3 each, and whether the results agree bit for bit.

    OMP_NUM_THREADS=1 python bench/engine_revision.py --rev 5da3de0

Prints a Markdown table (BENCHMARKS.md records it with the command).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = (("mlp", 8), ("mlp", 64), ("mlp", 256), ("cnn", 8))


def engine_at(rev: str):
    """``workers/engine.py`` of revision ``rev``, imported as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:workers/engine.py"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    path = Path(tempfile.mkdtemp()) / "engine_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("engine_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_at_rev"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from doodl.workers.config import VariantConfig
    from doodl.workers.engine import train_unit

    old = engine_at(args.rev).train_unit
    print(f"| unit (64 variants, 300 steps) | {args.rev} (s) | working tree (s) | ratio | same results |")
    print("|---|---|---|---|---|")
    for model, width in CASES:
        configs = [VariantConfig(dataset="digits", test_fraction=0.2, split_seed=0, model=model, width=width, depth=2,
                                 optimizer="sgd", lr=0.05, train_fraction=1.0, weight_decay=0.0, batch_size=32,
                                 steps=300, seed=s, label_noise=0.0, record_every=10) for s in range(64)]
        train_unit(configs[:2]), old(configs[:2])  # warm
        before, after = [], []
        for _ in range(3):
            t = time.perf_counter()
            a = old(configs)
            before.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = train_unit(configs)
            after.append(time.perf_counter() - t)
        same = all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
                   for k in ("final_params", "loss", "test_acc", "snapshots"))
        print(f"| {model} width {width} | {min(before):.2f} | {min(after):.2f} | {min(after) / min(before):.2f}x "
              f"| {same} |", flush=True)


if __name__ == "__main__":
    main()
