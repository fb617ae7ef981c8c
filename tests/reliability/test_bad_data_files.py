"""Bad data files (issue 25): `doodl sweep` and `--dry-run` refuse each with exit code 2 and
one line naming the file and the fault, before anything is written (no store, no MLflow
database). Each case is a small data set written here, with one fault."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from doodl.orchestrator.spec import parse_spec
from tests.conftest import run_cli, tiny_spec_dict, write_spec
from tests.workers.image_fixtures import write_cifar_bin, write_idx

MNIST_NAMES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
               "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _npz(folder: Path, **arrays) -> dict:
    """A good .npz (200 samples, 5 features, 3 classes), with ``arrays`` replacing x or y."""
    rng = np.random.default_rng(0)
    good = {"x": rng.normal(size=(200, 5)), "y": rng.integers(0, 3, 200)}
    np.savez(folder / "data.npz", **{**good, **arrays})
    return {"name": str(folder / "data.npz")}


def _npz_bytes(content: bytes):
    def write(folder: Path) -> dict:
        (folder / "data.npz").write_bytes(content)
        return {"name": str(folder / "data.npz")}
    return write


def _with_nan(folder: Path) -> dict:
    x = np.random.default_rng(1).normal(size=(200, 5))
    x[17, 2] = np.nan
    return _npz(folder, x=x)


def _truncated_npz(folder: Path) -> dict:
    _npz(folder)
    path = folder / "data.npz"
    path.write_bytes(path.read_bytes()[:300])
    return {"name": str(path)}


def _mnist(folder: Path, skip: str = "", **replace) -> dict:
    """Four small MNIST idx files (8x8 images, 10 classes); ``skip`` leaves one out and
    ``replace`` gives one of them other bytes."""
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(0, 256, (120, 8, 8), dtype=np.uint8), "train_y": np.arange(120, dtype=np.uint8) % 10,
              "test_x": rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), "test_y": np.arange(30, dtype=np.uint8) % 10}
    for role, name in MNIST_NAMES.items():
        if role == skip:
            continue
        if role in replace:
            value = replace[role]
            if isinstance(value, bytes):
                (folder / name).write_bytes(value)
            else:
                write_idx(str(folder / name), value)
        else:
            write_idx(str(folder / name), arrays[role])
    return {"name": "mnist", "path": str(folder)}


def _mnist_truncated(folder: Path) -> dict:
    _mnist(folder)
    path = folder / MNIST_NAMES["train_x"]
    path.write_bytes(path.read_bytes()[:-100])
    return {"name": "mnist", "path": str(folder)}


def _cifar(folder: Path, skip: tuple[str, ...] = ()) -> dict:
    """A CIFAR-10 binary directory of five 20-image training batches and a test batch."""
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        if name not in skip:
            write_cifar_bin(str(folder / name), rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8),
                            np.arange(20) % 10)
    return {"name": "cifar10", "path": str(folder)}


# (id, writer of the faulty data set -> spec's dataset section, file named, fault in the line)
FAULTS = [
    ("npz-nan-in-x", _with_nan, "data.npz", "x has 1 NaN or infinite value (first in row 17)"),
    ("npz-x-longer-than-y", lambda f: _npz(f, y=np.arange(180) % 3), "data.npz", "x has 200 rows but y has 180"),
    ("npz-y-longer-than-x", lambda f: _npz(f, x=np.ones((180, 5))), "data.npz", "x has 180 rows but y has 200"),
    ("npz-float-labels", lambda f: _npz(f, y=np.linspace(0, 2, 200)), "data.npz",
     "y must hold whole-number class labels; 198 are not (first 0.01005"),
    ("npz-2d-labels", lambda f: _npz(f, y=np.zeros((200, 2), dtype=np.int64)), "data.npz",
     "y must be 1-D, one class label per sample; got shape (200, 2)"),
    ("npz-empty-file", _npz_bytes(b""), "data.npz", "empty file, not an .npz archive"),
    ("npz-not-a-zip", _npz_bytes(b"PK\x03\x04 these bytes are no zip archive"), "data.npz", "not a readable .npz archive"),
    ("npz-truncated", _truncated_npz, "data.npz", "not a readable .npz archive"),
    ("cifar-missing-batch", lambda f: _cifar(f, skip=("data_batch_3.bin",)), "data_batch_3.bin",
     "missing data_batch_3.bin"),
    ("mnist-missing-file", lambda f: _mnist(f, skip="test_y"), "t10k-labels-idx1-ubyte", "missing MNIST files"),
    ("mnist-wrong-magic", lambda f: _mnist(f, train_y=b"\x12\x34\x08\x01" + bytes(8)), MNIST_NAMES["train_y"],
     "not an IDX file: magic starts 1234"),
    ("mnist-count-mismatch", lambda f: _mnist(f, train_y=np.arange(110, dtype=np.uint8) % 10), MNIST_NAMES["train_y"],
     "train split has 120 images"),
    ("mnist-truncated", _mnist_truncated, MNIST_NAMES["train_x"], "truncated IDX data"),
]


def _spec(dataset: dict) -> dict:
    spec = tiny_spec_dict(optimizer={"batch_size": 8})
    spec["dataset"] = {"test_fraction": 0.25, **dataset}
    return spec


def _files(root: Path) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("dry_run", [False, True], ids=["sweep", "dry-run"])
@pytest.mark.parametrize("write, named, fault", [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_bad_data_file_is_refused_with_one_line_and_nothing_written(tmp_path, write, named, fault, dry_run):
    data = tmp_path / "data"
    data.mkdir()
    dataset = write(data)
    spec = write_spec(tmp_path, _spec(dataset))
    store, db = tmp_path / "store", tmp_path / "mlflow.db"
    before = _files(tmp_path)
    code, _, err = run_cli(["sweep", str(spec), "--store", str(store), "--tracking-uri", f"sqlite:///{db}",
                            "--no-progress", *(["--dry-run"] if dry_run else [])])
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("doodl: error: ") and named in lines[0] and fault in lines[0], lines[0]
    assert not store.exists() and not db.exists()
    assert _files(tmp_path) == before


@pytest.mark.parametrize("write", [_npz, _mnist, _cifar, lambda f: _cifar(f, skip=("data_batch_5.bin",))],
                         ids=["npz", "mnist", "cifar10", "cifar10-first-four-batches"])
def test_the_same_files_without_the_fault_are_accepted(tmp_path, write):
    """The writers above make valid data sets, so each refusal is the fault's alone; a CIFAR-10
    directory holding the first batches only (a deliberate subset) is still read."""
    spec = parse_spec(_spec(write(tmp_path)))
    assert spec.dataset.name in ("mnist", "cifar10") or spec.dataset.name.endswith("data.npz")
