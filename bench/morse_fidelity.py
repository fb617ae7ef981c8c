"""How the Morse graph's fidelity moves with the method's choices, on a stored sweep.

Fidelity: the fraction of (non-diverged) runs whose final point lies in an attractor of
their group's Morse graph. For each setting in the grid below every group of the sweep is
reduced in this process (no Ray, no files written) and the sweep's fidelity, the mean
number of Morse sets and attractors per group and the median seconds per group are
printed as a Markdown table.

    python bench/morse_fidelity.py --store ./doodl-store --sweep quickstart
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--sweep", default="quickstart")
    p.add_argument("--dims", default="2,3,4")
    p.add_argument("--tau", default="1,2,4")
    p.add_argument("--depth", default="8:14,10:16,12:18", help="subdiv_min:subdiv_max pairs (at d=2; "
                   "scaled by d/2 for higher d so boxes per axis stay comparable)")
    p.add_argument("--far-field", default="0.5")
    p.add_argument("--padding", default="0.1")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import pyarrow.parquet as pq

    from analysis.dynamics import MorseSettings, group_morse, read_group_runs

    root = f"{os.path.abspath(args.store)}/{args.sweep}"
    groups: dict[str, list[dict]] = {}
    for v in pq.read_table(f"{root}/variants.parquet").to_pylist():
        groups.setdefault(v["group_id"], []).append(v)
    data = {g: read_group_runs(root, sorted({r["unit_id"] for r in rows}), [r["run_id"] for r in rows])
            for g, rows in groups.items()}
    print("| d | tau | depth | far_field | padding | fidelity | Morse sets / group | attractors / group "
          "| s / group (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    grid = itertools.product(
        [int(x) for x in args.dims.split(",")], [int(x) for x in args.tau.split(",")], args.depth.split(","),
        [float(x) for x in args.far_field.split(",")], [float(x) for x in args.padding.split(",")])
    for d, tau, depth, far, pad in grid:
        lo, hi = (int(x) for x in depth.split(":"))
        lo, hi = lo * d // 2, hi * d // 2
        settings = MorseSettings(dims=d, tau=tau, subdiv_min=lo, subdiv_max=hi, far_field=far, padding=pad)
        ins, nodes, attrs, secs = [], [], [], []
        for runs in data.values():
            try:
                res = group_morse(runs, settings)
            except ValueError as exc:
                print(f"<!-- d={d} tau={tau}: {exc} -->")
                continue
            ins += [v.in_attractor for v in res.verdicts if v.status == "ok"]
            nodes.append(len(res.graph.nodes))
            attrs.append(len(res.graph.attractors))
            secs.append(res.timings["total_s"])
        if not secs:
            continue
        print(f"| {d} | {tau} | {lo}..{hi} | {far:g} | {pad:g} | {np.mean(ins):.2f} ({sum(ins)}/{len(ins)}) | "
              f"{np.mean(nodes):.1f} | {np.mean(attrs):.1f} | {statistics.median(secs):.2f} |", flush=True)


if __name__ == "__main__":
    main()
