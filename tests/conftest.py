"""Shared fixtures: one local Ray for the whole session, and small specs on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A new local Ray (never a stray `ray start` cluster), started once and reused by the driver."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# Cheap reduction settings for tests whose assertions are about what a reduction writes,
# logs or refuses (files, MLflow results, drift reports, torn units), not about the
# analyses' accuracy: those are tested in tests/analysis and tests/orchestrator/test_reduce.py
# with the defaults. The same files and rows as the defaults, in a fraction of the time.
FAST_REDUCE = {
    "morse": {"subdiv_min": 6, "subdiv_max": 8, "compose": 2, "folds": 2},
    "taxonomy": {"power_iters": 20, "trace_samples": 10, "curve_steps": 30, "mc_pairs": 1, "cka_probe": 64,
                 "hessian_batch": 32},
    "koopman": {"delays": 1, "rank": 2},
    "ntk": {"probe": 10, "max_kernels": 4},
}


def tiny_spec_dict(name: str = "tiny", **overrides) -> dict:
    """A spec that trains in seconds: 8 variants of a small MLP on generated blobs."""
    spec = {
        "name": name,
        "dataset": {"name": "blobs", "test_fraction": 0.25, "split_seed": 1,
                    "options": {"n_samples": 400, "n_features": 6, "centers": 3}},
        "data": {"label_noise": [0.0, 0.25], "train_fraction": 1.0},
        "model": {"family": "mlp", "width": 8, "depth": 1},
        "optimizer": {"name": "sgd", "lr": [0.05, 0.1], "batch_size": 16, "steps": 23},
        "seeds": 2,
        "record": {"every": 5},
        "resources": {"variants_per_unit": 3, "num_actors": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def early_blobs_spec(name: str = "blobs", seeds: int | list[int] = 32, **overrides) -> dict:
    """One hidden unit or eight on two blobs (tests/analysis/real_training.py): a unit dead
    at initialisation stays dead, so the width-1 runs end in two outcomes."""
    from tests.analysis.real_training import data_file

    return {"name": name, "dataset": {"name": data_file("two_blobs"), "test_fraction": 0.2, "split_seed": 0},
            "model": {"family": "mlp", "width": [1, 8], "depth": 1},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "batch_size": 32, "steps": 1000},
            "seeds": seeds, "record": {"every": 20}, "resources": {"variants_per_unit": 32}, **overrides}


@pytest.fixture(scope="session")
def early_blobs(tmp_path_factory, ray_session) -> Path:
    """The directory of a store and MLflow database (``m.db``) holding the sweep ``blobs``
    (:func:`early_blobs_spec`), reduced with the early analysis: the known answers of
    tests/analysis/test_early_task.py and the predictor of tests/orchestrator/test_early_stop.py."""
    tmp = tmp_path_factory.mktemp("early")
    spec = write_spec(tmp, early_blobs_spec())
    common = ["--store", str(tmp / "store"), "--tracking-uri", f"sqlite:///{tmp / 'm.db'}", "--no-progress"]
    code, _, err = run_cli(["sweep", str(spec), *common])
    assert code == 0, err
    code, out, err = run_cli(["reduce", "blobs", *common, "--only", "early"])
    assert code == 0, err
    return tmp


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run ``doodl ARGS`` in this process; return (exit code, stdout, stderr)."""
    import contextlib
    import io

    from doodl.orchestrator.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def write_spec(directory: Path, spec: dict, filename: str = "spec.yaml") -> Path:
    path = Path(directory) / filename
    path.write_text(yaml.safe_dump(spec))
    return path
