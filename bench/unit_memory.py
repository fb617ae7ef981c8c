"""A unit's memory: doodl's estimate (``doodl.workers.unit_memory``) against the peak
measured while an actor's work on the unit runs: ``train_unit`` and then ``write_unit`` of its
result, in a fresh process on one torch thread.

The peak is the process's resident high-water mark (``VmHWM``), reset just before the unit
(``/proc/self/clear_refs``) and read after it, minus the resident size at the reset: the
memory the unit itself takes, above the imported libraries and the loaded data set (the
estimate counts the data set apart). Linux only.

    python bench/unit_memory.py                      # the table in BENCHMARKS.md
    python bench/unit_memory.py --family cnn --width 16 --depth 2 --variants 32 --batch 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

# (family, width, depth, variants, batch, optimiser, steps, record_every): units whose own
# memory is hundreds of MB, so that the allocator's few MB of slack do not decide the ratio
CASES = [
    ("mlp", 1024, 2, 16, 64, "sgd", 4, 2),
    ("mlp", 2048, 1, 8, 32, "adam", 4, 1),
    ("mlp", 256, 2, 64, 512, "sgd", 3, 1),
    ("cnn", 16, 2, 32, 256, "sgd", 3, 1),
    ("cnn", 32, 2, 16, 128, "adam", 3, 1),
    ("cnn", 64, 1, 8, 512, "sgd", 3, 1),
]


def unit_configs(family: str, width: int, depth: int, variants: int, batch: int, optimizer: str, steps: int,
                 record_every: int, dataset: str = "digits"):
    """The variants of one unit: ``variants`` seeds of one model on ``dataset``."""
    from doodl.orchestrator.expand import expand
    from doodl.orchestrator.spec import SweepSpec

    spec = SweepSpec.model_validate({
        "name": "memory", "dataset": {"name": dataset},
        "model": {"family": family, "width": width, "depth": depth},
        "optimizer": {"name": optimizer, "lr": 0.01, "batch_size": batch, "steps": steps},
        "seeds": variants, "record": {"every": record_every}})
    return expand(spec)


def measure(case: tuple) -> dict:
    """Run one case in a fresh process; its estimate and measured peak, in bytes."""
    code = f"""
import json, os, tempfile
import torch
torch.set_num_threads(1)
import pyarrow.fs as pafs
from bench.unit_memory import unit_configs
from doodl.workers.datasets import dataset_split
from doodl.workers.engine import train_unit
from doodl.workers.shards import write_unit
from doodl.workers.unit_memory import estimate_unit_memory

configs = unit_configs(*{case!r})
dataset_split(configs[0])  # the data set is loaded before the unit, as in a long-lived actor
estimate = estimate_unit_memory(configs)

def rss():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {{k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}}

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark to the current resident size
base = rss()["VmRSS"]
result = train_unit(configs)
trained = rss()["VmHWM"] - base
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
with tempfile.TemporaryDirectory() as tmp:
    write_unit(pafs.LocalFileSystem(), tmp, "u", result)
written = rss()["VmHWM"] - base
print(json.dumps({{"estimate": estimate.unit_bytes, "training": estimate.training_bytes,
                   "writing": estimate.writing, "measured_training": trained, "measured_writing": written,
                   "measured": max(trained, written), "line": estimate.describe()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family")
    ap.add_argument("--width", type=int)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--variants", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--optimizer", default="sgd")
    args = ap.parse_args()
    cases = CASES if args.family is None else [
        (args.family, args.width, args.depth, args.variants, args.batch, args.optimizer, 3, 1)]
    print("| family | width | depth | variants | batch | optimiser | estimate MB | measured MB | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        m = measure(case)
        print(f"| {' | '.join(str(c) for c in case[:6])} | {m['estimate'] / 1e6:.0f} | {m['measured'] / 1e6:.0f} | "
              f"{m['estimate'] / m['measured']:.2f} |", flush=True)
        print(f"<!-- training: estimate {m['training'] / 1e6:.0f} MB, measured {m['measured_training'] / 1e6:.0f} "
              f"MB; writing: estimate {m['writing'] / 1e6:.0f} MB, measured {m['measured_writing'] / 1e6:.0f} MB; "
              f"{m['line']} -->", flush=True)


if __name__ == "__main__":
    main()
