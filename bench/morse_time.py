"""Time per group of the Morse analysis (``group_morse``: coordinates, map, Morse graph and the
held-out refits), on a fixed set of groups, for the code at ``--code`` (default: this checkout).

    python bench/morse_time.py --store STORE                    # this checkout
    git worktree add /tmp/doodl-before 843ae2b
    python bench/morse_time.py --store STORE --code /tmp/doodl-before   # the same groups, older code

The groups: the known-answer suite at 16 and 32 runs (7 cases each, from
``tests/analysis/known_dynamics.py``) and every group of the sweeps ``quickstart`` and ``morse``
in ``STORE`` (train them first: ``doodl sweep examples/quickstart.yaml --store STORE`` and
likewise ``examples/morse.yaml``). Each code's own default settings; one process, one thread.
Prints the median and the per-set medians; run both codes in one session and compare the
ratio (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="store holding the sweeps quickstart and morse")
    ap.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="repository whose analysis is timed")
    ap.add_argument("--sweeps", default="quickstart,morse")
    args = ap.parse_args()
    sys.path.insert(0, args.code)
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    from doodl.analysis.dynamics import group_morse
    from doodl.analysis.morse_task import read_group_runs
    from tests.analysis.known_dynamics import descend
    from tests.analysis.test_dynamics import CASES

    groups: dict[str, list] = {"known answers, 16 runs": [], "known answers, 32 runs": []}
    for n in (16, 32):
        for kw in CASES.values():
            kw = dict(kw)
            groups[f"known answers, {n} runs"].append(descend(kw.pop("landscape"), n, seed=n, **kw)[0])
    for sweep in args.sweeps.split(","):
        root = f"{args.store}/{sweep}"
        by_group: dict[str, list[dict]] = {}
        for row in pq.read_table(f"{root}/variants.parquet").to_pylist():
            by_group.setdefault(row["group_id"], []).append(row)
        groups[sweep] = [read_group_runs(root, sorted({r["unit_id"] for r in rows}), rows, function_space=True)
                         for rows in by_group.values()]
    times: dict[str, list[float]] = {}
    with threadpool_limits(1):
        for name, runs_list in groups.items():
            for runs in runs_list:
                t0 = time.perf_counter()
                group_morse(runs)
                times.setdefault(name, []).append(time.perf_counter() - t0)
    every = [t for ts in times.values() for t in ts]
    print(f"code: {args.code}")
    for name, ts in times.items():
        print(f"{name}: {len(ts)} groups, median {statistics.median(ts):.2f} s (min {min(ts):.2f}, max {max(ts):.2f})")
    print(f"all: {len(every)} groups, median {statistics.median(every):.2f} s per group")


if __name__ == "__main__":
    main()
