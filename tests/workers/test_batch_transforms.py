"""Batch transforms (input noise, augmentation): known answers, neutral settings are identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from doodl.workers._batch_transforms import _crop, augment_images, augment_per_variant, input_noise


# --- input noise -----------------------------------------------------------------------------


def test_input_noise_with_all_std_zero_returns_x_itself():
    x = torch.randn(3, 4, 5)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert input_noise(x, torch.zeros(3), g) is x
    assert torch.equal(g.get_state(), state)  # nothing was drawn


def test_input_noise_has_the_variant_std_and_leaves_std_zero_variants_untouched():
    x = torch.zeros(3, 1000, 100)
    x[1] = -0.0  # even a negative zero survives bit-for-bit
    std = torch.tensor([0.5, 0.0, 2.0])
    y = input_noise(x, std, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y[1], x[1]) and torch.signbit(y[1]).all()
    for v in (0, 2):
        assert abs(y[v].std().item() / std[v].item() - 1) < 0.02
        assert abs(y[v].mean().item()) < 0.02 * std[v].item()


def test_input_noise_is_fresh_per_call_and_reproducible_per_generator_seed():
    x = torch.randn(2, 8, 3)
    std = torch.tensor([0.1, 1.0])
    a = input_noise(x, std, torch.Generator().manual_seed(5))
    b = input_noise(x, std, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(5)
    first, second = input_noise(x, std, g), input_noise(x, std, g)
    assert torch.equal(first, a) and not torch.equal(first, second)
    # known answer: the draw is one randn over the whole (V, B, ...) shape
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, x + std[:, None, None] * noise)


# --- image augmentation ----------------------------------------------------------------------


def _images(n: int = 6, c: int = 3, h: int = 5, w: int = 7) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1


def test_augment_with_no_pad_and_no_flips_is_the_identity():
    x = _images()
    y = augment_images(x, torch.Generator().manual_seed(0), pad=0, flip=torch.zeros(6, dtype=torch.bool))
    assert torch.equal(y, x) and y.dtype == x.dtype and y.shape == x.shape


def test_augment_with_flips_forced_is_a_horizontal_mirror():
    x = _images()
    y = augment_images(x, torch.Generator().manual_seed(0), pad=0, flip=torch.ones(6, dtype=torch.bool))
    assert torch.equal(y, torch.flip(x, dims=[-1]))


def test_crop_at_known_offsets_equals_slicing_the_padded_image():
    x, pad = _images(), 2
    padded = F.pad(x, (pad,) * 4)
    dy = torch.tensor([0, 4, 1, 2, 3, 4])
    dx = torch.tensor([4, 0, 3, 2, 1, 4])
    flip = torch.tensor([False, True, False, True, False, False])
    out = _crop(x, dy, dx, pad, flip)
    for n in range(6):
        want = padded[n, :, dy[n] : dy[n] + 5, dx[n] : dx[n] + 7]
        assert torch.equal(out[n], torch.flip(want, dims=[-1]) if flip[n] else want)
    # the corner offsets see the zero border: dy=0 puts two zero rows on top
    assert torch.equal(_crop(x, 0, 2, pad)[:, :, :2], torch.zeros(6, 3, 2, 7))
    with pytest.raises(ValueError):
        _crop(x, 5, 0, pad)


def test_augment_draws_offsets_then_flips_from_the_generator():
    x, pad = _images(n=32), 4
    y = augment_images(x, torch.Generator().manual_seed(3), pad=pad)
    g = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 2 * pad + 1, (32,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (32,), generator=g)
    flip = torch.rand(32, generator=g) < 0.5
    assert torch.equal(y, _crop(x, dy, dx, pad, flip))
    assert torch.equal(y, augment_images(x, torch.Generator().manual_seed(3), pad=pad))
    assert not torch.equal(y, augment_images(x, torch.Generator().manual_seed(4), pad=pad))


def test_augment_preserves_shape_and_dtype():
    for dtype in (torch.float32, torch.float64, torch.uint8):
        x = torch.randint(0, 255, (4, 3, 8, 8)).to(dtype)
        y = augment_images(x, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.dtype == dtype


def test_augment_flips_about_half_the_samples():
    n = 20_000
    # 1x2 images [0, 1]: a flipped one reads [1, 0]
    x = torch.tensor([0.0, 1.0]).expand(n, 1, 1, 2).contiguous()
    y = augment_images(x, torch.Generator().manual_seed(0), pad=0)
    flipped = int((y[:, 0, 0, 0] == 1).sum())
    assert abs(flipped - n / 2) < 4 * math.sqrt(n * 0.25)


def test_augment_offsets_cover_the_whole_range_uniformly():
    # a 1x1 image of value 1 padded by 1 lands in the output only at offset (1, 1): p = 1/9
    n = 18_000
    y = augment_images(torch.ones(n, 1, 1, 1), torch.Generator().manual_seed(0), pad=1)
    hits = int(y.sum())
    p = 1 / 9
    assert abs(hits - n * p) < 4 * math.sqrt(n * p * (1 - p))


def test_augment_rejects_the_old_argument_order():
    x = _images()
    with pytest.raises(TypeError):
        augment_images(x, torch.zeros(6, dtype=torch.bool), torch.Generator())  # type: ignore[arg-type]


def test_per_variant_augmentation_is_each_variants_own_augment_images():
    """One crop over a stacked (V, B, ...) batch equals augment_images per variant with its
    own generator (same draws, same order); a variant without a generator is untouched."""
    x = torch.randn(3, 5, 2, 6, 6)
    gens = [torch.Generator().manual_seed(1), None, torch.Generator().manual_seed(3)]
    out = augment_per_variant(x, gens, pad=2)
    again = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(3)]
    torch.testing.assert_close(out[0], augment_images(x[0], again[0], pad=2), rtol=0, atol=0)
    torch.testing.assert_close(out[1], x[1], rtol=0, atol=0)
    torch.testing.assert_close(out[2], augment_images(x[2], again[1], pad=2), rtol=0, atol=0)
    assert augment_per_variant(x, [None, None, None]) is x
