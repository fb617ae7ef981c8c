"""One training step's forward and backward, three ways: ``torch.func`` vmap (the engine's
path for every family but MLPs), the same under ``torch.compile``, and the hand-batched
MLP (MLPs' path). Milliseconds per step of ``--variants`` stacked MLPs, one thread, after
warm-up; the compile time is printed apart. ``torch.compile`` needs a C++ compiler on the
machine (inductor), which doodl's set-up does not assume: it is measured, not used.

    python bench/compile_step.py --width 64
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, vmap

from doodl.workers._architectures import MLP
from doodl.workers._batched_mlp import BatchedMLP


def per_call_ms(fn, n: int = 50) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--variants", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    V, B, W = args.variants, args.batch, args.width
    models = [MLP(64, W, 2, 10) for _ in range(V)]
    params = {k: torch.stack([m.get_parameter(k).detach() for m in models]) for k, _ in models[0].named_parameters()}
    x, y = torch.randn(V, B, 64), torch.randint(0, 10, (V, B))

    def loss_fn(p, xb, yb):
        logits = functional_call(models[0], p, (xb,))
        return F.cross_entropy(logits, yb), logits

    step = vmap(grad_and_value(loss_fn, has_aux=True))
    compiled = torch.compile(step)
    t0 = time.perf_counter()
    compiled(params, x, y)
    compile_s = time.perf_counter() - t0
    net = BatchedMLP(params)
    times = {"vmap": per_call_ms(lambda: step(params, x, y)),
             "vmap + torch.compile": per_call_ms(lambda: compiled(params, x, y)),
             "hand-batched MLP": per_call_ms(lambda: net.loss_and_grad(x, y))}
    print(f"{V} MLPs 64-{W}-{W}-10, batch {B}, one thread; torch.compile took {compile_s:.1f} s to compile")
    for name, ms in times.items():
        print(f"{name:>22}: {ms:6.2f} ms/step ({times['vmap'] / ms:.2f}x vmap)")


if __name__ == "__main__":
    main()
