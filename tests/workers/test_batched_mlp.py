"""The hand-batched MLP: the same loss, gradients, accuracy and per-sample metrics as each
variant's ``nn.Module`` differentiated by autograd, one model at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from doodl.workers._architectures import MLP
from doodl.workers._batched_mlp import BatchedMLP

torch.set_num_threads(1)

V, B, C = 4, 16, 5


def _variants(depth: int, in_shape=(1, 4, 4), dtype=torch.float64):
    """``V`` MLPs with PyTorch's own initialisation, their stacked parameters, and batches."""
    n_in = int(torch.tensor(in_shape).prod())
    models = []
    for v in range(V):
        torch.manual_seed(v)
        models.append(MLP(n_in, 6, depth, C).to(dtype))
    stacked = {k: torch.stack([m.get_parameter(k).detach() for m in models]) for k, _ in models[0].named_parameters()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(V, B, *in_shape, generator=gen, dtype=dtype)
    y = torch.randint(0, C, (V, B), generator=gen)
    return models, stacked, x, y


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_loss_gradients_and_accuracy_equal_autograd_per_model(depth):
    models, stacked, x, y = _variants(depth)
    net = BatchedMLP(stacked)
    loss, acc = net.loss_and_grad(x, y)
    for v, model in enumerate(models):
        model.zero_grad()
        logits = model(x[v])
        ref = F.cross_entropy(logits, y[v])
        ref.backward()
        assert abs(loss[v].item() - ref.item()) < 1e-12
        assert acc[v].item() == (logits.argmax(-1) == y[v]).double().mean().item()
        for name, p in model.named_parameters():
            torch.testing.assert_close(net.named_grad[name][v], p.grad, rtol=0, atol=1e-12)
    # the flat buffers are the module's parameter order: what snapshots record
    flat_ref = torch.cat([p.detach().flatten() for p in models[2].parameters()])
    assert torch.equal(net.flat()[2], flat_ref)
    assert net.grads["flat"].shape == net.flat().shape


def test_parameters_are_views_of_one_buffer_updated_in_place():
    _, stacked, x, y = _variants(2)
    net = BatchedMLP(stacked)
    before, _ = net.loss_and_grad(x, y)
    net.params["flat"].sub_(0.5 * net.grads["flat"])  # a gradient step on the one tensor
    after, _ = net.loss_and_grad(x, y)
    assert torch.all(after < before)  # every variant moved, through the named views too
    assert net.named["0.weight"].data_ptr() == net.flat_params.data_ptr()


def test_accuracy_breaks_ties_like_argmax():
    # zero weights: every logit equals its class's bias; classes 1 and 3 tie for the top,
    # so argmax (and the engine) predicts class 1, never 3
    _, stacked, x, _ = _variants(0)
    stacked = {k: torch.zeros_like(p) for k, p in stacked.items()}
    stacked["0.bias"][:] = torch.tensor([0.0, 2.0, 1.0, 2.0, -1.0], dtype=torch.float64)
    net = BatchedMLP(stacked)
    y = torch.tensor([[1] * 8 + [3] * 8] * V)
    _, acc = net.loss_and_grad(x, y)
    assert torch.equal(acc, torch.full((V,), 0.5, dtype=acc.dtype))
    _, hit = net.per_sample(x, y)
    assert torch.equal(hit[:, :8], torch.ones(V, 8, dtype=hit.dtype)) and not hit[:, 8:].any()


def test_per_sample_on_shared_inputs_equals_each_variant_on_its_own_copy():
    models, stacked, x, y = _variants(2)
    net = BatchedMLP(stacked)
    shared_loss, shared_hit = net.per_sample(x[0], y[0], shared=True)
    own_loss, own_hit = net.per_sample(x[0].expand(V, *x.shape[1:]), y[0].expand(V, -1))
    torch.testing.assert_close(shared_loss, own_loss, rtol=0, atol=1e-12)
    assert torch.equal(shared_hit, own_hit)
    ref = F.cross_entropy(models[3](x[0]), y[0], reduction="none")
    torch.testing.assert_close(shared_loss[3], ref.detach(), rtol=0, atol=1e-12)


def test_refuses_parameters_that_are_not_linear_layers():
    with pytest.raises(ValueError, match="Linear weights and biases"):
        BatchedMLP({"conv.weight": torch.zeros(2, 3, 1, 3, 3)})
