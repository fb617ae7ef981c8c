"""Shard writing: ``doodl.workers.shards.write_unit`` against a plain pyarrow peer, as MB/s.

One unit of ``--variants`` MLPs on digits (64-W-W-10, ``--steps`` SGD steps, a snapshot
every ``--record-every`` steps) is trained once; then, best of ``--repeats``, alternating:

* doodl: ``write_unit`` to a local directory: trajectory, snapshot and finals shards
  (zstd, byte-stream-split floats) and the commit marker, with ``record.dtype`` float32
  and float16;
* peer: ``pyarrow.parquet.write_table`` with its defaults (snappy, dictionary encoding) of
  the same three tables, no marker: what a user would write by hand.

Throughput is the snapshot bytes (float32, as trained) over the wall time of the whole
write.

    python bench/shard_write.py --variants 64 --steps 500 --record-every 10 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import pyarrow.parquet as pq
import torch

from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.engine import train_unit


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--record-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    cfgs = [VariantConfig(dataset="digits", test_fraction=0.25, split_seed=0, label_noise=0.0, train_fraction=1.0,
                          model="mlp", width=args.width, depth=2, optimizer="sgd", lr=0.01, batch_size=128,
                          weight_decay=0.0, steps=args.steps, record_every=args.record_every, seed=i)
            for i in range(args.variants)]
    result = train_unit(cfgs)
    half = dataclasses.replace(result, snapshots=result.snapshots.astype("float16"))
    mb = result.snapshots.nbytes / 1e6

    def doodl(res):
        def run(d):
            fs, root = shards.resolve_filesystem(d)
            return sum(f["bytes"] for f in shards.write_unit(fs, root, "u", res)["files"].values())
        return run

    def peer(d):
        tables = (shards.trajectory_table(result), shards.snapshot_table(result), shards.finals_table(result))
        for i, t in enumerate(tables):
            pq.write_table(t, f"{d}/part-{i}.parquet")
        return sum(os.path.getsize(f"{d}/part-{i}.parquet") for i in range(len(tables)))

    sides = {"doodl float32": doodl(result), "doodl float16": doodl(half), "pyarrow defaults": peer}
    best: dict[str, float] = {}
    size: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                size[name] = fn(d)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    print(f"{args.variants} MLPs 64-{args.width}-{args.width}-10, {args.steps} steps, snapshot every "
          f"{args.record_every}: {mb:.0f} MB of float32 snapshots; best of {args.repeats}")
    print("| side | seconds | MB/s of snapshots | bytes on disk |")
    print("|---|---|---|---|")
    for name in sides:
        print(f"| {name} | {best[name]:.2f} | {mb / best[name]:.0f} | {size[name] / 1e6:.1f} MB |")
    t, b = best["doodl float32"] / best["pyarrow defaults"], size["doodl float32"] / size["pyarrow defaults"]
    print(f"doodl float32 against pyarrow defaults: {t:.2f}x the time, {b:.2f}x the bytes "
          f"(doodl also checksums every shard and writes each atomically, with its marker)")


if __name__ == "__main__":
    main()
