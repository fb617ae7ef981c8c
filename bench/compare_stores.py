"""Are two stores of the same sweep the same, timing aside? For refactors that promise
bit-for-bit results: train and reduce one spec with the code before (a worktree) and after,
then compare every unit's shards (equal Arrow tables) and every reduction table and
``variants.parquet`` (equal rows once columns of seconds and timestamps are left out).

    git worktree add /tmp/old REV
    (cd A && PYTHONPATH=/tmp/old python -c "from orchestrator.cli import main; main([...])")  # before issue 24
    (cd B && doodl sweep examples/quickstart.yaml --reduce --store store)
    python bench/compare_stores.py A/store B/store --sweep quickstart
"""

from __future__ import annotations

import argparse
import glob
import os

import pyarrow.parquet as pq


def _timing(column: str) -> bool:
    return column.endswith(("_s", "seconds")) or column in ("timings", "written_at", "created")


def _key(row: dict) -> str:
    return "|".join(str(row.get(k)) for k in ("group_id", "run_id", "group_a", "group_b"))


def compare(a: str, b: str, sweep: str) -> int:
    """Print what differs; return how many files differ."""
    bad = shards = 0
    for fa in sorted(glob.glob(f"{a}/{sweep}/*/unit=*/*.parquet")):
        shards += 1
        if not pq.read_table(fa).equals(pq.read_table(fa.replace(a, b, 1))):
            bad += 1
            print("shard differs:", fa)
    tables = sorted(glob.glob(f"{a}/{sweep}/reduction/*.parquet")) + [f"{a}/{sweep}/variants.parquet"]
    for fa in tables:
        ta, tb = pq.read_table(fa), pq.read_table(fa.replace(a, b, 1))
        cols = [c for c in ta.column_names if not _timing(c)]
        if sorted(cols) != sorted(c for c in tb.column_names if not _timing(c)):
            bad += 1
            print("columns differ:", os.path.basename(fa), sorted(set(cols) ^ set(tb.column_names)))
            continue
        if sorted(ta.select(cols).to_pylist(), key=_key) != sorted(tb.select(cols).to_pylist(), key=_key):
            bad += 1
            print("rows differ:", os.path.basename(fa))
    print(f"{shards} shards and {len(tables)} tables compared; {bad} differ")
    return bad


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--sweep", default="quickstart")
    args = p.parse_args()
    raise SystemExit(1 if compare(args.a, args.b, args.sweep) else 0)
