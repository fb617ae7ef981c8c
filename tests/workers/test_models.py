"""The model-family registry: every family builds from a variant's config and the data's shape."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from doodl.workers.config import VariantConfig
from doodl.workers.families import FAMILIES, DataShape, family
from doodl.workers.models import build_model, init_params, param_count

CFG = VariantConfig(dataset="digits", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                    model="mlp", width=8, depth=2, optimizer="sgd", lr=0.1, batch_size=16, weight_decay=0.0,
                    steps=10)
SHAPES = {"features": DataShape((5,), 3), "images": DataShape((1, 8, 8), 10), "tokens": DataShape((3,), 7, vocab=8)}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_builds_for_every_input_it_accepts(name):
    fam = family(name)
    for kind in fam.inputs:
        shape = SHAPES[kind]
        cfg = replace(CFG, model=name, width=4, depth=max(1, fam.depths[0]), heads=2)
        model = build_model(cfg, shape)
        x = torch.randint(0, shape.vocab, (6, *shape.input_shape)) if shape.vocab else torch.randn(6, *shape.input_shape)
        assert model(x).shape == (6, shape.n_out)
        assert param_count(cfg, shape) == sum(p.numel() for p in model.parameters())
        # the seed alone fixes the initial parameters
        a, b = init_params(cfg, shape), init_params(cfg, shape)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(next(iter(a.values())), next(iter(init_params(replace(cfg, seed=1), shape).values())))


def test_mlp_param_count_is_the_layer_arithmetic_and_depth_0_is_softmax_regression():
    assert param_count(CFG, DataShape((64,), 10)) == (64 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    assert param_count(replace(CFG, depth=0), DataShape((64,), 10)) == 64 * 10 + 10
    # an MLP sees an image as its flattened pixels
    model = build_model(CFG, DataShape((1, 8, 8), 10))
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x), model(x.reshape(4, 64)))


def test_unknown_family_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model family 'vit'; known: mlp, cnn, resnet, transformer"):
        family("vit")
