"""CNN, ResNet and Transformer families: shapes, batched == per-model loop, seeding,
causality, parameter counts on the meta device, and argument errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from doodl.workers._architectures import CNN, ResNet, Transformer

torch.set_num_threads(1)

V, B = 3, 4  # variants, examples per variant batch
SEEDS = (11, 12, 13)


def _make_images(shape):
    def make(gen: torch.Generator, lead: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(*lead, *shape, generator=gen, dtype=torch.float64)

    return make


def _make_tokens(vocab: int, seq_len: int):
    def make(gen: torch.Generator, lead: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, vocab, (*lead, seq_len), generator=gen)

    return make


# name -> (builder, input maker, n_out)
FAMILIES: dict[str, tuple[Callable[[], nn.Module], Callable, int]] = {
    "cnn": (lambda: CNN((1, 8, 8), 10, width=2, depth=4), _make_images((1, 8, 8)), 10),
    "resnet_d2_w2": (lambda: ResNet((3, 16, 16), 10, width=2, depth=2), _make_images((3, 16, 16)), 10),
    "resnet_w1_group": (lambda: ResNet((3, 8, 8), 5, width=1, depth=3, norm="group"), _make_images((3, 8, 8)), 5),
    "resnet_none": (lambda: ResNet((3, 8, 8), 5, width=2, depth=2, norm="none"), _make_images((3, 8, 8)), 5),
    "transformer": (lambda: Transformer(13, 3, 13, width=16, depth=2, heads=2), _make_tokens(13, 3), 13),
}


def _init(build: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    """One variant's parameters, as the engine initialises them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    return {k: p.detach().clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("family", FAMILIES)
def test_output_shape_and_no_buffers(family):
    build, make, n_out = FAMILIES[family]
    model = build()
    x = make(torch.Generator().manual_seed(0), (B,))
    if x.is_floating_point():
        model = model.double()
    assert model(x).shape == (B, n_out)
    # a variant must be fully described by its parameters
    assert list(model.buffers()) == []
    assert set(model.state_dict()) == {k for k, _ in model.named_parameters()}


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_equals_per_model_loop(family):
    build, make, _ = FAMILIES[family]
    model = build().double()
    inits = [{k: p.double() for k, p in _init(build, s).items()} for s in SEEDS]
    params = {k: torch.stack([p[k] for p in inits]) for k in inits[0]}
    gen = torch.Generator().manual_seed(1)
    x = make(gen, (V, B))
    y = torch.randint(0, FAMILIES[family][2], (V, B), generator=gen)

    def loss_fn(p, xb, yb):
        logits = functional_call(model, p, (xb,))
        return F.cross_entropy(logits, yb), logits

    grads, (loss, logits) = vmap(grad_and_value(loss_fn, has_aux=True))(params, x, y)

    for v in range(V):
        model.load_state_dict(inits[v])  # strict: the parameters are the whole state
        model.zero_grad()
        out = model(x[v])
        ref = F.cross_entropy(out, y[v])
        ref.backward()
        torch.testing.assert_close(loss[v], ref.detach(), rtol=0, atol=1e-10)
        torch.testing.assert_close(logits[v], out.detach(), rtol=0, atol=1e-10)
        for k, p in model.named_parameters():
            torch.testing.assert_close(grads[k][v], p.grad, rtol=0, atol=1e-10, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_initialisation(family):
    build = FAMILIES[family][0]
    a, b, c = _init(build, 5), _init(build, 5), _init(build, 6)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # every tensor that is randomly initialised differs (norm scales/offsets are constant)
    assert all(not torch.equal(a[k], c[k]) for k in a if k.endswith("weight") and a[k].dim() > 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_meta_device_param_count(family):
    build = FAMILIES[family][0]
    with torch.device("meta"):
        meta = build()
    assert all(p.is_meta for p in meta.parameters())
    assert sum(p.numel() for p in meta.parameters()) == sum(p.numel() for p in build().parameters())


def test_cnn_accepts_flat_rows_and_keeps_channel_scaling():
    model = CNN((1, 8, 8), 10, width=3, depth=4)
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(model(x.reshape(5, -1)), model(x), rtol=0, atol=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [3, 6, 12, 24]
    # 8 -> 4 -> 2 -> 1, then the fourth pool is skipped
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3


def test_resnet_group_counts_for_width_one():
    model = ResNet((3, 8, 8), 2, width=1, depth=4)
    groups = {m.num_channels: m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {1: 1, 2: 2, 4: 4, 8: 8}
    groups = {m.num_channels: m.num_groups for m in ResNet((3, 8, 8), 2, width=3, depth=4).modules()
              if isinstance(m, nn.GroupNorm)}
    assert groups == {3: 3, 6: 6, 12: 6, 24: 8}


def test_transformer_is_causal():
    torch.manual_seed(0)
    model = Transformer(13, 5, 7, width=16, depth=2, heads=2).double()
    x = torch.randint(0, 13, (4, 5))
    x2 = x.clone()
    x2[:, -1] = (x[:, -1] + 1) % 13  # change only the last token
    out, out2 = model(x, all_positions=True), model(x2, all_positions=True)
    assert out.shape == (4, 5, 7)
    torch.testing.assert_close(out[:, :-1], out2[:, :-1], rtol=0, atol=1e-12)
    assert (out[:, -1] - out2[:, -1]).abs().max() > 1e-6  # the last position does see it
    # the default read-out is the last position
    torch.testing.assert_close(model(x), out[:, -1], rtol=0, atol=0)
    # and the mask behaves the same under vmap
    params = {k: p.detach().unsqueeze(0).expand(2, *p.shape) for k, p in model.named_parameters()}
    vout = vmap(lambda p, t: functional_call(model, p, (t,), {"all_positions": True}))(
        params, torch.stack([x, x2])
    )
    torch.testing.assert_close(vout[0, :, :-1], vout[1, :, :-1], rtol=0, atol=1e-12)


def test_transformer_accepts_float_token_rows():
    model = Transformer(13, 3, 4, width=8, depth=1, heads=2)
    x = torch.randint(0, 13, (6, 3))
    torch.testing.assert_close(model(x.float()), model(x), rtol=0, atol=0)


def test_resnet18_parameter_count():
    with torch.device("meta"):
        model = ResNet((3, 32, 32), 10, width=64, depth=4)
    norm = lambda c: 2 * c  # GroupNorm affine scale + shift, as BatchNorm's  # noqa: E731
    conv = lambda ci, co, k: ci * co * k * k  # no bias: every conv feeds a norm  # noqa: E731

    def stage(ci, co):
        first = conv(ci, co, 3) + norm(co) + conv(co, co, 3) + norm(co)
        if ci != co:
            first += conv(ci, co, 1) + norm(co)  # projection shortcut
        second = 2 * (conv(co, co, 3) + norm(co))
        return first + second

    stem = conv(3, 64, 3) + norm(64)  # 1728 + 128
    stages = stage(64, 64) + stage(64, 128) + stage(128, 256) + stage(256, 512)
    # 147968 + 525568 + 2099712 + 8393728
    head = 512 * 10 + 10
    expected = stem + stages + head
    assert expected == 11_173_962  # the well-known CIFAR ResNet-18 count
    assert sum(p.numel() for p in model.parameters()) == expected


def test_errors():
    with pytest.raises(ValueError, match=r"unknown norm 'batch'; allowed: 'group', 'none'"):
        ResNet((3, 8, 8), 10, width=2, depth=2, norm="batch")
    with pytest.raises(ValueError, match=r"width \(10\) must be divisible by heads \(3\)"):
        Transformer(13, 3, 13, width=10, depth=1, heads=3)
    with pytest.raises(ValueError, match="depth"):
        ResNet((3, 8, 8), 10, width=2, depth=5)
    with pytest.raises(ValueError, match="depth"):
        CNN((1, 8, 8), 10, width=2, depth=0)
