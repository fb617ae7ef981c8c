"""Shared by the reduction benchmarks: a stored sweep to measure on, and its groups."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_sweep(store: str | None, sweep: str, spec: str) -> tuple[str, tempfile.TemporaryDirectory]:
    """The sweep root; trains ``spec`` into a temporary store first when ``store`` lacks it.
    Keep the returned temporary directory alive while the sweep is used."""
    from doodl.orchestrator.store import SweepStore

    tmp = tempfile.TemporaryDirectory()
    store = store or os.path.join(tmp.name, "store")
    if not SweepStore(store, sweep).exists():
        print(f"training {spec} into {store} ...", flush=True)
        subprocess.run([sys.executable, "-m", "doodl.orchestrator.cli", "sweep", spec, "--store", store,
                        "--tracking-uri", f"sqlite:///{tmp.name}/m.db", "--no-progress"], check=True, cwd=ROOT)
    return SweepStore(store, sweep).root, tmp


def groups_of(root: str) -> dict[str, list[dict]]:
    """The sweep's variants (rows of variants.parquet) by group id."""
    import pyarrow.parquet as pq

    from doodl.orchestrator.store import SweepLayout

    groups: dict[str, list[dict]] = {}
    for v in pq.read_table(SweepLayout(root).variants).to_pylist():
        groups.setdefault(v["group_id"], []).append(v)
    return groups
