"""The GPU path on paper: what a packed GPU would do with doodl's batched engine.

No GPU is used. For each model family and width below this counts, on the CPU, what one
variant costs the batched engine (``doodl.workers.engine.train_unit``: V variants train as one
model under ``torch.func.vmap``, float32, stacked parameters, SGD momentum or Adam state
per variant, one forward+backward of a ``(V, B, *input)`` batch per step):

* parameters per variant: ``doodl.workers.models.param_count`` (built on the meta device);
* training FLOPs per sample: ``torch.utils.flop_counter.FlopCounterMode`` around one real
  forward and one real backward of a batch of ``--probe-batch`` samples, divided by the
  batch. It counts matmul and convolution FLOPs only (2 per multiply-add; elementwise ops,
  normalisation, softmax, the loss and the optimiser update are not counted);
* activation bytes per sample: the distinct storages saved for backward during that
  forward (``torch.autograd.graph.saved_tensors_hooks``), parameters excluded, divided
  by the batch;
* bytes resident per variant during training: float32 parameters + gradients + optimiser
  state (SGD momentum: 1 buffer, Adam: 2) + activations of a batch of B.

Then, for each GPU (``--gpu``, defaults an A100 80 GB and an L4 24 GB) and the family's
batch size (``--batch``): how many variants fit (after a ``--reserve`` of memory), the
arithmetic intensity of a step (FLOPs / bytes moved; bytes moved = parameters, gradients
and optimiser state read and written once plus activations written and read once), whether
the step is compute- or memory-bound on the fp32 roofline, the roofline-predicted
model-steps per second of the whole packed GPU (one model-step = one optimiser update of
one variant) and whether bf16 autocast would help. One markdown table per GPU.

    python bench/gpu_plan.py
    python bench/gpu_plan.py --gpu H100-80GB:80:989:67:3.35 --batch resnet=256
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from doodl.workers.config import VariantConfig
from doodl.workers.families import DataShape
from doodl.workers.models import build_model, param_count

F32 = 4  # bytes of a float32

# (family, data label, data shape, widths, depth): the models the plan covers
CASES = [
    ("mlp", "digits (64,)", DataShape((64,), 10), (32, 256, 1024), 2),
    ("cnn", "digits (1,8,8)", DataShape((1, 8, 8), 10), (8, 32, 128), 2),
    ("cnn", "mnist (1,28,28)", DataShape((1, 28, 28), 10), (8, 32, 128), 2),
    ("resnet", "cifar10 (3,32,32)", DataShape((3, 32, 32), 10), (4, 16, 64), 4),
    ("transformer", "modular p=97 (seq 3)", DataShape((3,), 97, vocab=98), (64, 128, 256), 2),
]
HEADS = 4
DEFAULT_BATCH = {"mlp": 128, "cnn": 128, "resnet": 128, "transformer": 512}
# name:memory GB:bf16 dense TFLOP/s:fp32 (non-tensor-core) TFLOP/s:HBM TB/s
DEFAULT_GPUS = ["A100-80GB:80:312:19.5:2.0", "L4-24GB:24:121:30:0.3"]
OPT_STATE = {"SGD": 1, "Adam": 2}  # float32 buffers per parameter


@dataclass(frozen=True)
class GPU:
    name: str
    mem: float  # bytes
    bf16: float  # FLOP/s
    fp32: float  # FLOP/s
    bw: float  # bytes/s

    @classmethod
    def parse(cls, text: str) -> GPU:
        try:
            name, mem, bf16, fp32, bw = text.split(":")
            return cls(name, float(mem) * 1e9, float(bf16) * 1e12, float(fp32) * 1e12, float(bw) * 1e12)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--gpu {text!r}: expected NAME:MEM_GB:BF16_TFLOPS:FP32_TFLOPS:TB_PER_S") from None


@dataclass(frozen=True)
class Facts:
    """What one variant of a model costs, independent of the GPU and the batch size."""

    family: str
    data: str
    width: int
    depth: int
    params: int
    fwd_flops: float  # per sample
    train_flops: float  # per sample, forward + backward
    act_bytes: float  # per sample, saved for backward


def _config(family: str, width: int, depth: int) -> VariantConfig:
    return VariantConfig(dataset="plan", test_fraction=0.25, split_seed=0, label_noise=0.0, train_fraction=1.0,
                         model=family, width=width, depth=depth, optimizer="sgd", lr=0.05, batch_size=1,
                         weight_decay=0.0, steps=1, heads=HEADS, norm="group")


def measure(family: str, data: str, shape: DataShape, width: int, depth: int, batch: int) -> Facts:
    """Parameters (meta device), FLOPs and saved activations (one real step of ``batch``)."""
    cfg = _config(family, width, depth)
    torch.manual_seed(0)
    model = build_model(cfg, shape)
    if shape.vocab:
        x = torch.randint(0, shape.vocab, (batch, *shape.input_shape))
    else:
        x = torch.randn(batch, *shape.input_shape)
    y = torch.randint(0, shape.n_out, (batch,))

    param_storage = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}  # storage address -> bytes; views and re-saves count once

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_storage:  # weights (and views of them) are counted as state
            saved[s.data_ptr()] = max(saved.get(s.data_ptr(), 0), s.nbytes())
        return t

    with FlopCounterMode(display=False) as fwd:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = F.cross_entropy(model(x), y)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    f_fwd, f_bwd = fwd.get_total_flops(), bwd.get_total_flops()
    return Facts(family, data, width, depth, param_count(cfg, shape),
                 f_fwd / batch, (f_fwd + f_bwd) / batch, sum(saved.values()) / batch)


@dataclass(frozen=True)
class Plan:
    """One variant at batch ``B`` with one optimiser on one GPU."""

    resident: float  # bytes per variant
    fit: int  # variants in (1 - reserve) of the memory
    intensity: float  # FLOP per byte moved
    compute_bound: bool
    steps_per_s: float  # model-steps/s of the packed GPU (roofline, fp32)
    packed_step: float  # seconds per step of the packed unit
    bf16_gain: float  # roofline speed-up of bf16 autocast


def plan(f: Facts, B: int, n_state: int, gpu: GPU, reserve: float, snapshots: int) -> Plan:
    state = F32 * f.params * (2 + n_state)  # parameters + gradients + optimiser buffers
    acts = f.act_bytes * B
    resident = state + acts + snapshots * F32 * f.params
    flops = f.train_flops * B
    moved = 2 * state + 2 * acts
    t32 = max(flops / gpu.fp32, moved / gpu.bw)
    # autocast keeps fp32 weights, gradients and optimiser state; only activations halve
    t16 = max(flops / gpu.bf16, (2 * state + acts) / gpu.bw)
    fit = int((1 - reserve) * gpu.mem // resident)
    return Plan(resident, fit, flops / moved, flops / gpu.fp32 >= moved / gpu.bw, 1 / t32, fit * t32, t32 / t16)


def _si(x: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1e3:.3g} ms"


def _pair(a, b) -> str:
    return a if a == b else f"{a} / {b}"


def gpu_table(facts: list[Facts], gpu: GPU, batch: dict[str, int], reserve: float, snapshots: int) -> list[str]:
    ridge32, ridge16 = gpu.fp32 / gpu.bw, gpu.bf16 / gpu.bw
    lines = [
        f"### {gpu.name}: {gpu.mem / 1e9:.0f} GB, {gpu.fp32 / 1e12:g} TFLOP/s fp32, "
        f"{gpu.bf16 / 1e12:g} TFLOP/s bf16, {gpu.bw / 1e12:g} TB/s "
        f"(ridge {ridge32:.3g} FLOP/B fp32, {ridge16:.3g} FLOP/B bf16)",
        "",
        "| model | data | B | params | FLOP/sample fwd / train | activations/sample | bytes/variant SGD / Adam "
        "| variants that fit SGD / Adam | FLOP/B SGD / Adam | fp32 step | model-steps/s SGD / Adam "
        "| packed step SGD | bf16 autocast (SGD) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in facts:
        B = batch[f.family]
        sgd, adam = (plan(f, B, OPT_STATE[o], gpu, reserve, snapshots) for o in ("SGD", "Adam"))
        bound = _pair(*("compute" if p.compute_bound else "memory" for p in (sgd, adam)))
        gain = sgd.bf16_gain
        if sgd.compute_bound:
            verdict = f"yes, {gain:.1f}x" if gain >= 1.5 else f"little, {gain:.2f}x"
        else:
            verdict = f"little, {gain:.2f}x (memory-bound)" if gain < 1.5 else f"some, {gain:.2f}x (memory-bound)"
        lines.append(
            f"| {f.family} w{f.width} d{f.depth} | {f.data} | {B} | {_si(f.params)} "
            f"| {_si(f.fwd_flops)} / {_si(f.train_flops)} | {_si(f.act_bytes, 'B')} "
            f"| {_si(sgd.resident, 'B')} / {_si(adam.resident, 'B')} | {sgd.fit:,} / {adam.fit:,} "
            f"| {sgd.intensity:.3g} / {adam.intensity:.3g} | {bound} "
            f"| {sgd.steps_per_s:,.0f} / {adam.steps_per_s:,.0f} | {_ms(sgd.packed_step)} | {verdict} |"
        )
    return lines


ASSUMPTIONS = """\
Assumptions. FLOPs are FlopCounterMode's count on one real forward+backward of a batch of {probe} \
(plain module; vmap stacks V copies of the same work, but turns convolutions into grouped ones whose \
weight gradient FlopCounterMode counts groups = V times over): matmul and convolution FLOPs only, 2 per \
multiply-add, so GroupNorm/LayerNorm, activations, softmax, the loss and the optimiser update are \
not in them. Activations are the distinct storages saved for backward in one forward of {probe} \
samples, parameters excluded, input included; the transient gradients of activations during \
backward, the optimiser's temporaries and the engine's per-step grad-norm pass are not counted. \
Resident bytes per variant = float32 (parameters + gradients + optimiser state: SGD momentum 1 \
buffer, Adam 2) + activations x B{snap}; {reserve:.0%} of the memory (GB = 1e9 bytes) is held back \
for the CUDA context, the data set kept on the device, the allocator and the final evaluation. Bytes \
moved per step = state read and written once + activations written and read once: a lower bound, so \
the model-steps/s are roofline upper bounds; they do not depend on V once the GPU is full, and \
assume perfect packing (no kernel-launch or Python overhead, small per-variant matmuls at peak). The \
engine trains in float32, so the compute roof is the plain fp32 figure given, although PyTorch runs \
fp32 convolutions on TF32 tensor cores by default (torch.backends.cudnn.conv.fp32_precision == \
'{tf32}'), which lifts the cnn/resnet ceiling; vmap turns a convolution with per-variant weights \
into one grouped convolution (groups = V), which cuDNN runs well below peak. bf16 autocast: compute \
roof becomes the bf16 tensor-core figure, activations halve, weights, gradients and optimiser state \
stay float32; the gain shown is the roofline ratio (memory-bound steps gain at most 2x)."""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="append", type=GPU.parse, default=None, metavar="NAME:GB:BF16:FP32:TBS",
                    help="a GPU: memory GB, bf16 dense TFLOP/s, fp32 TFLOP/s, HBM TB/s (repeatable; "
                         f"default {' and '.join(DEFAULT_GPUS)})")
    ap.add_argument("--batch", action="append", default=[], metavar="FAMILY=B",
                    help=f"batch size of a family (repeatable; default {DEFAULT_BATCH})")
    ap.add_argument("--reserve", type=float, default=0.2, help="fraction of GPU memory held back")
    ap.add_argument("--probe-batch", type=int, default=8, help="real batch for the FLOP and activation counts")
    ap.add_argument("--snapshots", type=int, default=0,
                    help="parameter snapshots held on the device per variant (the engine keeps them there "
                         "until the end of the unit; unprojected each is a float32 copy of the parameters)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    gpus = args.gpu or [GPU.parse(g) for g in DEFAULT_GPUS]
    batch = dict(DEFAULT_BATCH)
    for item in args.batch:
        fam, _, b = item.partition("=")
        if fam not in batch or not b.isdigit():
            ap.error(f"--batch {item!r}: expected FAMILY=B with FAMILY one of {', '.join(batch)}")
        batch[fam] = int(b)

    t0 = time.perf_counter()
    facts = [measure(fam, data, shape, w, depth, args.probe_batch)
             for fam, data, shape, widths, depth in CASES for w in widths]
    elapsed = time.perf_counter() - t0

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s); "
          f"counts took {elapsed:.1f} s on the CPU, no GPU used")
    print(f"batch sizes: {', '.join(f'{k} {v}' for k, v in batch.items())}; transformer heads {HEADS}, "
          "resnet GroupNorm")
    print()
    tf32 = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", "tf32")
    snap = (f" + {args.snapshots} parameter snapshots" if args.snapshots else
            " (parameter snapshots, which the engine holds on the device, are not counted: --snapshots)")
    print(ASSUMPTIONS.format(probe=args.probe_batch, reserve=args.reserve, tf32=tf32, snap=snap))
    for gpu in gpus:
        print()
        print("\n".join(gpu_table(facts, gpu, batch, args.reserve, args.snapshots)))


if __name__ == "__main__":
    main()
