"""Every model family through `doodl sweep --reduce`: CNN on digits images, ResNet on a
generated CIFAR-10 directory (the binary format, a few hundred images), a transformer on
modular addition. Small enough for the default run; the full examples run in bench/."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli, tiny_spec_dict, write_spec
from tests.workers.image_fixtures import write_cifar_bin

REDUCE_FAST = {"morse": {"subdiv_min": 6, "subdiv_max": 8, "folds": 2},
               "taxonomy": {"power_iters": 20, "trace_samples": 10, "curve_steps": 30, "mc_pairs": 1,
                            "cka_probe": 64, "hessian_batch": 32},
               "ntk": {"probe": 16, "max_kernels": 4}}


def _cifar_dir(root, n_train: int = 300) -> str:
    """A CIFAR-10 binary directory: ``n_train`` training and 60 test images of noise under
    stripes whose width and orientation are set by the class (a texture that global pooling
    and normalisation keep: learnable, so a falling loss is a signal)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-bin"

    def images(n):
        labels = rng.integers(0, 10, n)
        bright = (np.arange(32)[None, :] // (labels[:, None] // 2 + 1)) % 2 == 0  # (n, 32) stripe mask
        vertical = bright[:, None, :].repeat(32, 1)
        pattern = np.where((labels % 2 == 1)[:, None, None], vertical, vertical.transpose(0, 2, 1))
        return (rng.integers(0, 100, (n, 3, 32, 32)) + 120 * pattern[:, None]).astype(np.uint8), labels

    x, y = images(n_train)
    write_cifar_bin(str(folder / "data_batch_1.bin"), x, y)
    xt, yt = images(60)
    write_cifar_bin(str(folder / "test_batch.bin"), xt, yt)
    return str(root)


def _sweep(tmp_path, spec: dict) -> tuple[str, list[dict], list[dict]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'm.db'}"
    path = write_spec(tmp_path, spec)
    code, out, err = run_cli(["sweep", str(path), "--store", store, "--tracking-uri", db, "--no-progress", "--reduce"])
    assert code == 0, err[-3000:]
    root = f"{store}/{spec['name']}/reduction"
    for name in ("koopman", "ntk"):  # every family's kernel (per-sample jacrev) and spectrum
        rows = pq.read_table(f"{root}/{name}.parquet").to_pylist()
        assert rows and all(r["error"] is None for r in rows), name
    return out, pq.read_table(f"{root}/taxonomy.parquet").to_pylist(), pq.read_table(f"{root}/morse.parquet").to_pylist()


def _family_spec(name, dataset, model, **extra):
    return tiny_spec_dict(name, dataset=dataset, model=model, seeds=2, reduce=REDUCE_FAST,
                          resources={"variants_per_unit": 4, "num_actors": 2}, **extra)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.slow  # in the nightly run (.ci/nightly): the families train in tests/workers; end to end nightly
def test_resnet_trains_and_reduces_on_a_cifar10_directory(tmp_path):
    spec = _family_spec("resnet", {"name": "cifar10", "path": _cifar_dir(tmp_path)},
                        {"family": "resnet", "width": [2, 4], "depth": 1},
                        data={"label_noise": 0.0, "augment": [False, True]},
                        optimizer={"name": "sgd", "lr": 0.05, "batch_size": 32, "steps": 80, "schedule": "cosine",
                                   "warmup": 5, "weight_decay": 5e-4})
    out, tax, morse = _sweep(tmp_path, spec)
    assert "8 variants" in out
    assert len(tax) == 4 and all(r["error"] is None and r["phase"] for r in tax)
    assert all(np.isfinite(r["hessian_top"]) and np.isfinite(r["hessian_trace"]) for r in tax)
    assert len(morse) == 4 and all(r["error"] is None for r in morse)
    finals = pq.read_table(tmp_path / "store" / "resnet" / "finals").to_pylist()
    assert len(finals) == 8 and all(f["status"] == "ok" for f in finals)
    # 80 steps on stripe-coded classes: every variant's loss fell from ln(10) (guessing)
    assert all(f["final_train_loss"] < 2.2 for f in finals), [f["final_train_loss"] for f in finals]
    traj = pq.read_table(tmp_path / "store" / "resnet" / "trajectories", columns=["step", "lr"]).to_pylist()
    lr = {r["step"]: r["lr"] for r in traj}  # every variant shares the schedule: warm-up, then cosine
    assert lr[0] == pytest.approx(0.01) and lr[5] == pytest.approx(0.05) and lr[79] < 0.001


@pytest.mark.usefixtures("ray_session")
def test_cnn_and_transformer_sweeps_reduce_every_group(tmp_path):
    cnn = _family_spec("cnn", {"name": "digits", "test_fraction": 0.2},
                       {"family": "cnn", "width": [2, 4], "depth": 2},
                       data={"label_noise": 0.1, "input_noise": [0.0, 0.3]},
                       optimizer={"name": "sgd", "lr": 0.05, "batch_size": 32, "steps": 40})
    out, tax, morse = _sweep(tmp_path / "c", cnn)
    assert len(tax) == 4 and all(r["error"] is None for r in tax)
    assert len(morse) == 4 and all(r["error"] is None for r in morse)
    tr = _family_spec("modadd", {"name": "modular", "test_fraction": 0.5, "options": {"p": 11}},
                      {"family": "transformer", "width": 16, "depth": 1, "heads": [2, 4]},
                      data={"label_noise": 0.0, "train_fraction": [0.6, 1.0]},
                      optimizer={"name": "adamw", "lr": 3e-3, "weight_decay": 0.5, "betas": [0.9, 0.98],
                                 "batch_size": 16, "steps": 40})
    out, tax, morse = _sweep(tmp_path / "t", tr)
    assert len(tax) == 4 and all(r["error"] is None for r in tax)
    assert len(morse) == 4 and all(r["error"] is None for r in morse)
