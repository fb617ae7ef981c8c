"""A model that cannot fit: `doodl sweep --dry-run` and `doodl sweep` estimate a unit's
memory before anything allocates and refuse with the figure against the node's memory, in
one line (exit 2), with nothing written; `auto` unit sizes shrink to fit."""

from __future__ import annotations

import subprocess
import time

from tests.conftest import write_spec
from tests.orchestrator.test_cli import DOODL


def _huge(tmp_path, width: int, per_unit) -> str:
    return write_spec(tmp_path, {
        "name": "huge", "dataset": {"name": "digits"}, "model": {"family": "mlp", "width": width, "depth": 4},
        "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 32, "steps": 100}, "seeds": 64,
        "resources": {"variants_per_unit": per_unit}})


def _refused(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doodl: error: ~"), result.stderr
    return lines[0]


def test_dry_run_of_a_model_that_cannot_fit_is_refused_with_the_figure(tmp_path):
    spec = _huge(tmp_path, 200_000, 64)
    start = time.monotonic()
    result = subprocess.run([DOODL, "sweep", str(spec), "--dry-run", "--store", str(tmp_path / "store")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    line = _refused(result)
    assert time.monotonic() - start < 120  # nothing was trained to find out
    # 120 billion parameters: the figure, what makes it up, the machine's memory and the way out
    assert "per actor for units of 64 x mlp width 200000 depth 4 (120,015,600,010 parameters" in line
    assert "PB" in line and "more than this machine's" in line
    assert "a single variant needs" in line and "record.projection_dim" in line
    assert not (tmp_path / "store").exists()


def test_a_sweep_whose_units_cannot_fit_is_refused_before_anything_is_written(tmp_path):
    spec = _huge(tmp_path, 6_000, 64)
    result = subprocess.run([DOODL, "sweep", str(spec), "--store", str(tmp_path / "store"), "--no-progress",
                             "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    line = _refused(result)
    assert "units of 64 x mlp width 6000 depth 4" in line and "set resources.variants_per_unit to" in line
    assert not (tmp_path / "store" / "huge" / "sweep.json").exists()  # nothing recorded: a smaller size may follow
    assert not (tmp_path / "m.db").exists()
