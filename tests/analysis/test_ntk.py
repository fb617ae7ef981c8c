"""The empirical NTK and its evolution, checked where the answer is known: a model linear
in its parameters has a constant kernel, the kernel is J J^T, a wide network trained
gently stays lazy while a narrow one trained hard moves."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from doodl.analysis.ntk import empirical_ntk, kernel_distance, kernel_path, transition_step
from doodl.workers.models import flatten_params


def _mlp(width: int, depth: int, n_in: int = 8, n_out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers, fan_in = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, n_out)).double()


def _data(n: int = 40, n_in: int = 8, n_out: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64)
    y = (x[:, :n_out] + 0.3 * torch.randn(n, n_out, generator=g, dtype=torch.float64)).argmax(1)
    return x, y


def _train(model: nn.Module, x, y, lr: float, steps: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on cross-entropy; flattened parameters every ``every`` steps."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    snaps, steps_at = [], []
    for step in range(steps + 1):
        if step % every == 0:
            snaps.append(flatten_params(dict(model.named_parameters())).detach().numpy().copy())
            steps_at.append(step)
        if step == steps:
            break
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return np.stack(snaps), np.array(steps_at)


def test_the_kernel_is_the_logit_jacobian_times_its_transpose():
    """Against ``torch.func.jacrev`` of the whole batch's logits: K = sum_c J_c J_c^T."""
    model = _mlp(width=6, depth=2)
    x, _ = _data(n=7)
    params = {k: v.detach() for k, v in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)  # name -> (n, C, *shape)
    j = torch.cat([v.reshape(7, 3, -1) for v in jac.values()], dim=2)  # (n, C, P)
    expected = torch.einsum("icp,jcp->ij", j, j)
    torch.testing.assert_close(empirical_ntk(model, params, x), expected, rtol=1e-12, atol=1e-12)


def test_chunks_of_probe_points_give_the_same_kernel(monkeypatch):
    from doodl.analysis import ntk

    model = _mlp(width=5, depth=1)
    x, _ = _data(n=11)
    params = {k: v.detach() for k, v in model.named_parameters()}
    whole = empirical_ntk(model, params, x)
    monkeypatch.setattr(ntk, "_CHUNK_BYTES", 1)  # one probe point per chunk
    torch.testing.assert_close(empirical_ntk(model, params, x), whole, rtol=1e-12, atol=1e-12)


def test_a_model_linear_in_its_parameters_has_a_kernel_that_never_moves():
    """Softmax regression (depth 0): the logits are linear in the parameters, so J and the
    kernel do not depend on them, however far training goes."""
    model = _mlp(width=1, depth=0)
    x, y = _data()
    thetas, steps = _train(model, x, y, lr=1.0, steps=200, every=20)
    assert np.linalg.norm(thetas[-1] - thetas[0]) > 1.0  # the parameters did move
    path = kernel_path(_mlp(width=1, depth=0), thetas, steps, x)
    assert np.abs(path.distance_init).max() < 1e-12
    assert np.abs(path.distance_final).max() < 1e-12
    assert np.nanmax(np.abs(path.velocity)) < 1e-12
    assert path.transition is None  # no movement, no transition


def test_a_wide_network_trained_gently_is_lazy_and_a_narrow_one_trained_hard_is_not():
    x, y = _data(n=60)
    wide, narrow = _mlp(width=2048, depth=1), _mlp(width=8, depth=1)
    lazy = kernel_path(_mlp(width=2048, depth=1), *_train(wide, x, y, lr=0.01, steps=100, every=25), x)
    rich = kernel_path(_mlp(width=8, depth=1), *_train(narrow, x, y, lr=1.0, steps=100, every=25), x)
    assert lazy.distance_init[-1] < 1e-3
    assert rich.distance_init[-1] > 20 * lazy.distance_init[-1]
    # distances to the start grow from 0 and distances to the end fall to 0
    assert lazy.distance_init[0] == 0.0 and rich.distance_final[-1] == pytest.approx(0.0, abs=1e-12)


def test_kernel_distance_ignores_scale_and_sees_rotation():
    k = np.array([[2.0, 1.0], [1.0, 2.0]])
    assert kernel_distance(k, 5 * k) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(np.eye(2), np.array([[0.0, 0.0], [0.0, 1.0]])) == pytest.approx(1 - 1 / np.sqrt(2))
    with pytest.raises(ValueError, match="zero kernel"):
        kernel_distance(np.zeros((2, 2)), k)


def test_the_transition_is_where_the_velocity_falls_to_a_tenth_of_its_peak():
    steps = np.arange(0, 200, 10)
    # rises to a peak at step 20, falls below a tenth of it at step 60, then decays slowly
    velocity = np.r_[np.nan, 0.5, 1.0, 0.6, 0.3, 0.2, 0.02, 0.02, np.geomspace(0.018, 0.01, 12)]
    velocity[3] = 0.05  # a single low recording at step 30 is noise: the running median ignores it
    assert transition_step(steps, velocity) == 60
    assert transition_step(steps, np.r_[np.nan, np.full(19, 0.01)]) is None  # steady throughout: no fast phase
    assert transition_step(steps[:3], velocity[:3]) is None  # too few recordings


def test_projected_snapshots_are_refused_with_the_reason():
    model = _mlp(width=4, depth=1)
    x, _ = _data(n=5)
    with pytest.raises(ValueError, match="full .*snapshots"):
        kernel_path(model, np.zeros((3, 7)), np.array([0, 10, 20]), x)
