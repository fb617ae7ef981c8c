"""The taxonomy's metrics against exact answers, and the phase classifier's textbook cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from doodl.analysis._connectivity import (
    CurveFitter,
    linear_barrier,
    linear_cka,
    mc_from_errors,
)
from doodl.analysis._curvature import batched_hvp, hutchinson_trace, top_eigenvalue
from doodl.analysis.taxonomy import PhaseThresholds, classify_phase
from doodl.workers.config import VariantConfig
from doodl.workers.families import DataShape
from doodl.workers.models import build_model, init_params


@pytest.fixture(scope="module")
def tiny():
    """Two seeds of a 4-5-3 MLP (43 parameters) on random data, with their exact Hessians."""
    torch.manual_seed(0)
    cfg = VariantConfig(dataset="blobs", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                        model="mlp", width=5, depth=1, optimizer="sgd", lr=0.1, batch_size=8, weight_decay=0.0,
                        steps=1)
    shape = DataShape((4,), 3)
    model = build_model(cfg, shape).double()
    seeds = [init_params(replace(cfg, seed=s), shape) for s in (1, 2)]
    params = {k: torch.stack([p[k] for p in seeds]).double() for k in seeds[0]}
    x = torch.randn(2, 64, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 64))
    names, shapes = list(params), [v.shape[1:] for v in params.values()]
    sizes = [int(np.prod(s)) for s in shapes]

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(model, p, (xb,)), yb)

    def exact(s):
        flat0 = torch.cat([params[k][s].flatten() for k in names])

        def f(flat):
            parts = torch.split(flat, sizes)
            return loss({k: v.reshape(sh) for k, v, sh in zip(names, parts, shapes)}, x[s], y[s])

        return torch.autograd.functional.hessian(f, flat0).numpy()

    return model, params, x, y, batched_hvp(loss), [exact(0), exact(1)]


def test_power_iteration_matches_the_exact_top_eigenvalue(tiny):
    _, params, x, y, hvp, hessians = tiny
    eig, iters = top_eigenvalue(hvp, params, x, y, tol=1e-6, max_iter=1000)
    for s, h in enumerate(hessians):
        ev = np.linalg.eigvalsh(h)
        expected = ev[np.argmax(np.abs(ev))]
        assert eig[s].item() == pytest.approx(expected, rel=1e-2)
    assert (iters >= 2).all()


def test_hutchinson_matches_the_exact_trace(tiny):
    _, params, x, y, hvp, hessians = tiny
    trace, samples = hutchinson_trace(hvp, params, x, y, tol=0.0, max_samples=4000, block=500)
    assert (samples == 4000).all()
    for s, h in enumerate(hessians):
        # the estimator's standard error with 4000 vectors, from the exact Hessian
        off = np.sum(h**2) - np.sum(np.diag(h) ** 2)
        stderr = np.sqrt(2 * off / 4000)
        assert abs(trace[s].item() - np.trace(h)) <= max(1e-2 * abs(np.trace(h)), 4 * stderr)
        assert 4 * stderr < 0.1 * abs(np.trace(h))  # the check above is a tight one


def test_cka_known_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 10))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)  # invariant to orthogonal transforms
    assert linear_cka(x, 3.0 * x + 1.0) == pytest.approx(1.0)  # and to scale and shift
    assert linear_cka(x, rng.normal(size=(500, 10))) < 0.05  # independent features


def test_mc_and_barrier_formulas():
    assert mc_from_errors([10, 30, 50, 30, 10]) == -40  # a barrier in the middle
    assert mc_from_errors([20, 10, 5, 10, 20]) == 15  # the curve beats its ends
    assert mc_from_errors([4, 5, 4, 3, 6]) == 2  # ends average 5; the largest deviation is e(0.75) = 3
    assert linear_barrier([10, 30, 50, 30, 10]) == 40
    assert linear_barrier([10, 12, 14, 16, 18]) == 0  # a straight rise is no barrier


def test_mc_ignores_the_order_of_the_pair():
    # [10, 20, 20, 20, 30] is issue 11's case: the ends won t* and gave +10 one way, -10 the other
    for errors in ([10, 20, 20, 20, 30], [10, 20, 40, 20, 30], [4, 5, 4, 3, 6], [10, 15, 10, 5, 10],
                   [3.5, 7.25, 1.0, 9.5, 2.0]):
        assert mc_from_errors(errors) == mc_from_errors(errors[::-1])


def test_mc_is_zero_without_a_barrier_between_different_ends():
    assert mc_from_errors([10, 20, 20, 20, 30]) == 0.0  # flat at the ends' mean
    assert mc_from_errors([10, 15, 20, 25, 30]) == 0.0  # straight line: +5 and -5 tie at t=.25, .75
    assert mc_from_errors([30, 25, 20, 15, 10]) == 0.0
    assert mc_from_errors([10, 15, 10, 5, 10]) == 0.0  # a bump and a dip of the same size cancel


def test_mc_of_a_known_bump_and_dip():
    # ends 10 and 30 average 20; the bump reaches 40 at t = 0.5: a barrier of 20, either way round
    assert mc_from_errors([10, 25, 40, 25, 30]) == -20
    assert mc_from_errors([30, 25, 40, 25, 10]) == -20
    # a dip to 5 at t = 0.5: the curve beats its ends' mean by 15
    assert mc_from_errors([10, 10, 5, 10, 30]) == 15
    assert mc_from_errors([30, 10, 5, 10, 10]) == 15
    with pytest.raises(ValueError, match="at least 3"):
        mc_from_errors([10, 30])


def test_mc_of_a_fitted_curve_ignores_the_order_of_the_pair(tiny):
    model, params, x, y, _, _ = tiny
    shapes = {k: v.shape[1:] for k, v in params.items()}
    flat = torch.cat([v.flatten(1) for v in params.values()], dim=1)
    a, b = flat[:1], flat[1:]
    fitter = CurveFitter(model, shapes)
    n = torch.tensor([x.shape[1]])
    c = fitter.fit(a, b, x[:1], y[:1], n, steps=20, lr=0.01, momentum=0.9, batch=16, seed=0)
    forward = fitter.errors(a, b, c, x[:1], y[:1], n)[0]
    backward = fitter.errors(b, a, c, x[:1], y[:1], n)[0]
    assert np.array_equal(backward, forward[::-1])  # g_ba(t) = g_ab(1 - t) on T_GRID
    assert forward[0] != forward[-1]  # ends of different error: the case the order used to flip
    assert mc_from_errors(forward) == mc_from_errors(backward)


def test_a_model_is_connected_to_itself(tiny):
    model, params, x, y, _, _ = tiny
    shapes = {k: v.shape[1:] for k, v in params.items()}
    flat = torch.cat([v[:1].flatten(1) for v in params.values()], dim=1)
    fitter = CurveFitter(model, shapes)
    n = torch.tensor([x.shape[1]])
    line = fitter.errors(flat, flat, flat, x[:1], y[:1], n)
    c = fitter.fit(flat, flat, x[:1], y[:1], n, steps=20, lr=0.01, momentum=0.9, batch=16, seed=0)
    curve = fitter.errors(flat, flat, c, x[:1], y[:1], n)
    for errors in (line[0], curve[0]):
        assert mc_from_errors(errors) == 0.0 and linear_barrier(errors) == 0.0
    assert np.allclose(line, line[0, 0])


T = PhaseThresholds(train_loss=0.01, mc_tolerance=2.0, cka=0.68)


@pytest.mark.parametrize(
    "train_loss, mc, cka, hessian_top, phase",
    [
        (0.9, -15.0, 0.3, 80.0, "I"),  # under-trained, sharp, barriers between seeds
        (0.7, 5.0, 0.4, 60.0, "II"),  # under-trained, but the curve between seeds is better
        (0.001, -12.0, 0.5, 5.0, "III"),  # fits the data, seeds separated by barriers
        (0.002, -0.5, 0.3, 2.0, "IV-A"),  # fits, connected, different functions
        (0.002, 0.8, 0.9, 1.0, "IV-B"),  # fits, connected, similar functions: the best test accuracy
    ],
)
def test_textbook_phases(train_loss, mc, cka, hessian_top, phase):
    assert classify_phase(train_loss, mc, cka, hessian_top, T) == phase


def test_thresholds_move_the_boundaries_and_bad_values_are_refused():
    assert classify_phase(0.05, 0.5, 0.9, 1.0, T) == "II"
    assert classify_phase(0.05, 0.5, 0.9, 1.0, PhaseThresholds(train_loss=0.1)) == "IV-B"
    assert classify_phase(0.001, -3.0, 0.9, 1.0, PhaseThresholds(mc_tolerance=5.0)) == "IV-B"
    with pytest.raises(ValueError, match="mc"):
        classify_phase(0.001, float("nan"), 0.9, 1.0, T)
