"""Function-space coordinates against a plain forward pass, and their invariances."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from doodl.analysis._function_space import output_features, probe_inputs
from doodl.workers.config import VariantConfig
from doodl.workers.datasets import load_split
from doodl.workers.families import DataShape
from doodl.workers.models import build_model, flatten_params, init_params, param_count

torch.set_num_threads(1)

N_IN, N_OUT = 64, 10  # digits


def _row(**overrides) -> dict:
    """A variants.parquet row by hand (dataset options as JSON, as parquet stores them)."""
    cfg = VariantConfig(
        dataset="digits", test_fraction=0.25, split_seed=3, label_noise=0.0, train_fraction=1.0,
        model="mlp", width=8, depth=1, optimizer="sgd", lr=0.1, batch_size=32, weight_decay=0.0,
        steps=100,
    )
    d = {**cfg.to_dict(), **overrides}
    d["dataset_options"] = json.dumps(d["dataset_options"])
    return d


def _cfg(row: dict, **overrides) -> VariantConfig:
    return VariantConfig.from_dict({**row, **overrides})


SHAPE = DataShape((N_IN,), N_OUT)


def _snapshots(row: dict, t: int = 5, seed: int = 0) -> np.ndarray:
    """(t, P) snapshots: the variant's init plus growing random moves (float32, as recorded)."""
    theta0 = flatten_params(init_params(_cfg(row, seed=seed), SHAPE)).numpy()
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=0.3, size=(t, theta0.size)).cumsum(axis=0)
    return (theta0 + steps).astype(np.float32)


def _reference(row: dict, thetas: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Per snapshot: build_model, load_state_dict, forward, softmax."""
    model = build_model(_cfg(row), SHAPE).double()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    out = []
    for theta in thetas:
        parts = torch.split(torch.from_numpy(theta.astype(np.float64)), [int(np.prod(s)) for s in shapes.values()])
        model.load_state_dict({k: p.reshape(s) for (k, s), p in zip(shapes.items(), parts)})
        with torch.no_grad():
            out.append(torch.softmax(model(torch.from_numpy(probe).double()), -1).numpy().reshape(-1))
    return np.stack(out)


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_matches_plain_forward_pass(depth):
    row = _row(depth=depth)
    probe = probe_inputs(row, n_probe=50)
    thetas = _snapshots(row, t=7)
    feats = output_features(row, thetas, probe)
    assert feats.shape == (7, 50 * N_OUT) and feats.dtype == np.float64
    np.testing.assert_allclose(feats, _reference(row, thetas, probe), atol=1e-6)
    np.testing.assert_allclose(feats.reshape(7, 50, N_OUT).sum(-1), 1.0, atol=1e-9)


def test_chunking_does_not_change_results(monkeypatch):
    import doodl.analysis._function_space as fs

    row = _row(width=6)
    probe = probe_inputs(row, n_probe=20)
    thetas = _snapshots(row, t=9)
    whole = output_features(row, thetas, probe)
    monkeypatch.setattr(fs, "_CHUNK_BYTES", 1)  # one snapshot per chunk
    np.testing.assert_allclose(output_features(row, thetas, probe), whole, atol=1e-12)


def _permute_hidden(row: dict, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute every hidden layer's units: rows of W_l, b_l and columns of W_{l+1}."""
    names = list(init_params(_cfg(row), SHAPE))
    shapes = [v.shape for v in init_params(_cfg(row), SHAPE).values()]
    parts = np.split(theta, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
    p = {k: v.reshape(s).copy() for k, v, s in zip(names, parts, shapes)}
    linears = sorted({k.split(".")[0] for k in names}, key=int)
    for layer, nxt in zip(linears[:-1], linears[1:]):
        perm = rng.permutation(row["width"])
        p[f"{layer}.weight"] = p[f"{layer}.weight"][perm]
        p[f"{layer}.bias"] = p[f"{layer}.bias"][perm]
        p[f"{nxt}.weight"] = p[f"{nxt}.weight"][:, perm]
    return np.concatenate([p[k].reshape(-1) for k in names])


@pytest.mark.parametrize("depth", [1, 2])
def test_hidden_unit_permutation_leaves_features_unchanged(depth):
    row = _row(depth=depth, width=12)
    probe = probe_inputs(row, n_probe=40)
    thetas = _snapshots(row, t=4)
    rng = np.random.default_rng(5)
    permuted = np.stack([_permute_hidden(row, th, rng) for th in thetas])
    assert np.abs(permuted - thetas).max() > 0.1  # the weights really moved
    np.testing.assert_allclose(output_features(row, permuted, probe), output_features(row, thetas, probe),
                               atol=1e-12)


def test_probe_set_is_fixed_per_sweep_data():
    row = _row(seed=0)
    split = load_split("digits", 0.25, 3, ())
    a = probe_inputs(row)
    assert a.shape == (200, N_IN)
    np.testing.assert_array_equal(a, probe_inputs(row))
    # other seeds and other configs of the same data share the probe set
    np.testing.assert_array_equal(a, probe_inputs(_row(seed=7, width=32, depth=2, lr=0.5)))
    # its points are test points
    test = {r.tobytes() for r in split.x_test}
    assert all(r.tobytes() in test for r in a)
    # a different probe seed picks other points
    assert not np.array_equal(a, probe_inputs(row, seed=1))


def test_small_test_split_is_used_whole():
    row = _row()
    split = load_split("digits", 0.25, 3, ())
    assert len(split.x_test) < 1000
    probe = probe_inputs(row, n_probe=1000)
    assert probe.shape == split.x_test.shape
    assert {r.tobytes() for r in probe} == {r.tobytes() for r in split.x_test}


def test_projected_theta_raises():
    row = _row(width=8, depth=1, projection_dim=16)
    probe = probe_inputs(row, n_probe=10)
    n = param_count(_cfg(row), SHAPE)
    with pytest.raises(ValueError, match=rf"16 columns.*{n} parameters.*projection_dim=16") as err:
        output_features(row, np.zeros((3, 16)), probe)
    assert "\n" not in str(err.value)


def test_dict_dataset_options_and_generated_data():
    row = _row(dataset="blobs", dataset_options={"n_samples": 200, "n_features": 5, "centers": 3}, depth=0)
    probe = probe_inputs(row, n_probe=30)
    assert probe.shape == (30, 5)
    theta = flatten_params(init_params(_cfg(row, seed=1), DataShape((5,), 3))).numpy()[None]
    assert output_features(row, theta, probe).shape == (1, 90)
