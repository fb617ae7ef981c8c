"""The example specs as a user runs them: `examples/taxonomy.yaml` end to end."""

from __future__ import annotations

import shutil
import time

import pyarrow.parquet as pq

from tests.orchestrator.test_cli import REPO, _doodl


def test_taxonomy_example_draws_a_phase_diagram_with_several_phases(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    t0 = time.perf_counter()
    done = _doodl("sweep", "examples/taxonomy.yaml", "--reduce", "--no-progress", cwd=tmp_path, timeout=900)
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < 15 * 60
    rows = pq.read_table(tmp_path / "doodl-store" / "taxonomy" / "reduction" / "taxonomy.parquet").to_pylist()
    assert len(rows) == 15 and all(r["error"] is None for r in rows)
    assert len({r["phase"] for r in rows}) >= 2
    assert (tmp_path / "doodl-store" / "taxonomy" / "reduction" / "plots" / "phase_diagram.png").stat().st_size > 10_000
