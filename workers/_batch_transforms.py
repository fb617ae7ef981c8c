"""Transforms of drawn batches: Gaussian input noise and image augmentation.

They act on batches at training time and draw from a ``torch.Generator`` the caller owns
(the engine gives each variant generators of its own seed). Each has a neutral setting
(``std=0``; ``pad=0`` and no flips) that returns the batch unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def input_noise(x: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return ``x + std * N(0, 1)``: a noisy measurement channel, fresh noise at every call.

    ``x`` has shape ``(V, B, *feature_shape)`` (variants first), ``std`` shape ``(V,)``. The
    noise is drawn from ``generator`` for the whole tensor, including variants with
    ``std == 0``, so a variant's noise depends only on the generator state and its slot, not
    on the other variants' std values. Variants with ``std == 0`` are returned untouched
    (bit-for-bit, ``-0.0`` included). If every std is 0, ``x`` itself is returned and nothing
    is drawn, so such a sweep is bit-identical to one without the axis.
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape (V, B, ...), got {tuple(x.shape)}")
    std = torch.as_tensor(std, device=x.device)
    if std.shape != (x.shape[0],):
        raise ValueError(f"std must have shape ({x.shape[0]},), got {tuple(std.shape)}")
    if (std < 0).any():
        raise ValueError("std must be >= 0")
    if not bool((std != 0).any()):
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    scale = std.to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
    # where() rather than x + 0 * noise: adding +0.0 would turn -0.0 into +0.0
    return torch.where(scale != 0, x + scale * noise, x)


def _crop(
    x: torch.Tensor,
    dy: torch.Tensor | int,
    dx: torch.Tensor | int,
    pad: int,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop each image of ``x`` (``(N, C, H, W)``) at ``(dy, dx)`` of its zero-padded copy.

    The result is ``F.pad(x, (pad,) * 4)[n, :, dy[n]:dy[n] + H, dx[n]:dx[n] + W]`` for every
    ``n``, mirrored left-right where ``flip[n]`` is true. ``dy``/``dx`` are ints or ``(N,)``
    integer tensors in ``[0, 2 * pad]``. One gather for the whole batch, no loop over samples.
    """
    n, _, h, w = x.shape
    dev = x.device
    dy = torch.as_tensor(dy, dtype=torch.long, device=dev).expand(n)
    dx = torch.as_tensor(dx, dtype=torch.long, device=dev).expand(n)
    if ((dy < 0) | (dy > 2 * pad) | (dx < 0) | (dx > 2 * pad)).any():
        raise ValueError(f"crop offsets must lie in [0, {2 * pad}]")
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = dy[:, None] + torch.arange(h, device=dev)  # (N, H)
    col_order = torch.arange(w, device=dev).expand(n, w)
    if flip is not None:
        # the flip is folded into the column index: reading columns right-to-left mirrors
        # the crop at no extra cost
        col_order = torch.where(flip.to(dev, torch.bool)[:, None], w - 1 - col_order, col_order)
    cols = dx[:, None] + col_order  # (N, W)
    samples = torch.arange(n, device=dev)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    return padded[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]


def augment_images(
    x: torch.Tensor,
    generator: torch.Generator,
    pad: int = 4,
    *,
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standard CIFAR augmentation of a batch ``x`` of shape ``(N, C, H, W)``.

    Each image is cropped back to ``H x W`` from its copy zero-padded by ``pad`` on every
    side, at offsets ``dy, dx`` uniform in ``[0, 2 * pad]``, then mirrored left-right where
    ``flip`` is true. Draw order from ``generator``: ``dy`` (N,), ``dx`` (N,), then, only when
    ``flip`` is None, the flips as ``rand(N) < 0.5`` (per-sample Bernoulli(0.5)). Passing a
    ``(N,)`` bool ``flip`` forces the flips (and skips their draw). Shape, dtype and device
    are preserved; a new tensor is returned.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    n = x.shape[0]
    if flip is not None and tuple(flip.shape) != (n,):
        raise ValueError(f"flip must have shape ({n},), got {tuple(flip.shape)}")
    gdev = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev)
    if flip is None:
        flip = torch.rand(n, generator=generator, device=gdev) < 0.5
    return _crop(x, dy.to(x.device), dx.to(x.device), pad, flip)


def augment_per_variant(x: torch.Tensor, generators: list[torch.Generator | None], pad: int = 4) -> torch.Tensor:
    """Augment a stacked batch ``x`` of shape ``(V, B, C, H, W)``: variant ``v`` as
    :func:`augment_images` with ``generators[v]`` would (same draws, same order), variants
    whose generator is None unchanged, in one crop over every augmented image."""
    v_count, b = x.shape[:2]
    chosen = [v for v, g in enumerate(generators) if g is not None]
    if not chosen:
        return x
    draws = []
    for v in chosen:  # per variant only the tiny offset draws: each from its own generator
        g = generators[v]
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device)
        draws.append((dy, dx, torch.rand(b, generator=g, device=g.device) < 0.5))
    dy, dx, flip = (torch.cat(parts).to(x.device) for parts in zip(*draws))
    idx = torch.tensor(chosen, device=x.device)
    out = x.clone()
    out[idx] = _crop(x[idx].flatten(0, 1), dy, dx, pad, flip).view(len(chosen), b, *x.shape[2:])
    return out
