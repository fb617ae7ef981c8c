"""Convolutional, residual and attention model families for the batched engine.

Every class here is an ordinary ``nn.Module`` with PyTorch's default initialisation, and
each one is written so that the engine can train many variants at once by calling it as
``vmap(grad_and_value(loss_fn))`` with ``functional_call``. That means:

* no buffers at all, let alone ones updated in ``forward`` (no BatchNorm running stats),
  so a variant is fully described by its ``named_parameters()`` and ``load_state_dict``
  of those parameters restores it exactly;
* no in-place operations on inputs, no data-dependent Python control flow and no
  ``.item()``: all shape decisions are made once in ``__init__`` or from static shapes;
* construction works under ``with torch.device("meta"):`` so parameter counts of large
  configurations can be taken without allocating memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("group", "none")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _as_images(x: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """View ``x`` as a batch of ``in_shape`` images.

    The engine stores every data set as flat feature rows ``(B, C*H*W)``; accepting those
    as well as ``(B, C, H, W)`` lets image models share its data path. ``reshape`` is a
    view, never an in-place change of the input, so it is safe under ``vmap``.
    """
    return x.reshape(-1, *in_shape)


# --------------------------------------------------------------------------------------
# Plain CNN
# --------------------------------------------------------------------------------------


class MLP(nn.Sequential):
    """``depth`` hidden layers of ``width`` units with ReLU, then a linear read-out;
    ``depth=0`` is softmax regression (a convex model). Images are flattened."""

    def __init__(self, n_in: int, width: int, depth: int, n_out: int):
        layers: list[nn.Module] = []
        fan_in = n_in
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, n_out))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) images become (B, C*H*W); (B, F) features are unchanged
        return super().forward(x.flatten(1))


class CNN(nn.Module):
    """``depth`` blocks of Conv3x3 -> ReLU -> MaxPool2d(2), global average pool, Linear.

    Block ``i`` has ``width * 2**i`` channels, so ``width`` is a width multiplier of the
    whole network. The 2x2 max-pool of a block is skipped once the spatial size has
    dropped below 2, so that small inputs (8x8) still work with ``depth`` up to 4 and
    beyond.

    Args:
        in_shape: ``(channels, height, width)`` of one input image.
        n_out: number of outputs (classes).
        width: channels of the first block.
        depth: number of convolutional blocks (>= 1).
    """

    def __init__(self, in_shape: tuple[int, int, int], n_out: int, width: int, depth: int):
        super().__init__()
        _check_positive(n_out=n_out, width=width, depth=depth)
        self.in_shape = tuple(int(s) for s in in_shape)
        c, h, w = self.in_shape
        layers: list[nn.Module] = []
        for i in range(depth):
            out_c = width * 2**i
            layers += [nn.Conv2d(c, out_c, kernel_size=3, padding=1), nn.ReLU()]
            # decided from static shapes at construction: no data-dependent branching
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out_c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_out)`` of images ``(B, C, H, W)`` or flat rows ``(B, C*H*W)``."""
        z = self.features(_as_images(x, self.in_shape))
        # global average pooling: independent of the final spatial size
        return self.head(z.mean(dim=(-2, -1)))


# --------------------------------------------------------------------------------------
# ResNet-18 style network
# --------------------------------------------------------------------------------------


def _group_count(channels: int, max_groups: int = 8) -> int:
    """The largest group count ``<= max_groups`` dividing ``channels`` (1 always does)."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "group":
        # GroupNorm normalises each sample on its own and has no running statistics, so
        # a batched model of many variants is exact and points on a curve between two
        # solutions need no statistics recomputed.
        return nn.GroupNorm(_group_count(channels), channels)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with normalisation and a residual connection (ResNet v1).

    The shortcut is the identity, or a 1x1 convolution (plus normalisation) when the
    stride or the channel count changes the shape.
    """

    def __init__(self, in_c: int, out_c: int, stride: int, norm: str):
        super().__init__()
        # convolutions feeding a normalisation need no bias (it would be subtracted away,
        # as in ResNet-18); without normalisation they keep one so the net can shift.
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = _norm_layer(norm, out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, stride=1, padding=1, bias=bias)
        self.norm2 = _norm_layer(norm, out_c)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_c, out_c, 1, stride=stride, bias=bias), _norm_layer(norm, out_c)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))  # out-of-place add: x may be a vmap input


class ResNet(nn.Module):
    """ResNet-18 style network for small images, with a width multiplier.

    CIFAR-style stem (3x3 convolution, stride 1, ``width`` channels, no max-pool), then
    ``depth`` stages of two :class:`BasicBlock` each with ``width``, ``2 width``,
    ``4 width``, ``8 width`` channels; the first block of stages 2-4 has stride 2. Global
    average pooling and a Linear read-out follow. ``depth=4`` is ResNet-18 and
    ``width=64`` its standard width (the width-k ResNet-18 family of Yang et al.).

    Args:
        in_shape: ``(channels, height, width)`` of one input image.
        n_out: number of outputs (classes).
        width: channels of the stem and the first stage.
        depth: number of stages, 1 to 4.
        norm: ``"group"`` (GroupNorm with the largest group count <= 8 dividing the
            channel count, so it works down to ``width=1``) or ``"none"`` (identity).
    """

    def __init__(
        self, in_shape: tuple[int, int, int], n_out: int, width: int, depth: int, norm: str = "group"
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(repr(n) for n in NORMS)}")
        _check_positive(n_out=n_out, width=width)
        if not 1 <= depth <= 4:
            raise ValueError(f"ResNet depth (number of stages) must be in 1..4, got {depth}")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.norm = norm
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_shape[0], width, 3, stride=1, padding=1, bias=norm == "none"),
            _norm_layer(norm, width),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        in_c = width
        for s in range(depth):
            out_c = width * 2**s
            stride = 1 if s == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_c, out_c, stride, norm), BasicBlock(out_c, out_c, 1, norm)))
            in_c = out_c
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_c, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_out)`` of images ``(B, C, H, W)`` or flat rows ``(B, C*H*W)``."""
        z = self.stages(self.stem(_as_images(x, self.in_shape)))
        return self.head(z.mean(dim=(-2, -1)))


# --------------------------------------------------------------------------------------
# Small decoder-style Transformer
# --------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention written with plain tensor operations.

    ``F.scaled_dot_product_attention(is_causal=True)`` gives the same values under
    ``vmap`` but has no batching rule on the CPU (torch 2.13): it falls back to a slow
    per-variant loop with a warning, so the attention is spelled out here instead.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads != 0:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.heads = heads
        self.d_head = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, width) -> (B, L, width)``; position ``t`` only sees positions ``<= t``."""
        b, n, w = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, L, d_head)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
        # Built from the static length (no buffer to carry or to cast). The diagonal is
        # never masked, so no row is all -inf and softmax stays finite.
        future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        att = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, n, w)
        return self.proj(out)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Small decoder-style Transformer classifying a token sequence by its last position.

    Token embedding plus a learned position embedding, ``depth`` pre-LayerNorm blocks of
    causal multi-head self-attention and a ``width -> 4 width -> width`` ReLU MLP (ReLU as
    in the grokking studies: measured here, GELU halves the delay before generalisation), a
    final LayerNorm and a Linear read-out.

    Args:
        vocab: number of token ids.
        seq_len: maximum sequence length (size of the position embedding).
        n_out: number of outputs (classes).
        width: model (embedding) width; must be divisible by ``heads``.
        depth: number of blocks (>= 1).
        heads: number of attention heads.
    """

    def __init__(self, vocab: int, seq_len: int, n_out: int, width: int, depth: int, heads: int):
        super().__init__()
        _check_positive(vocab=vocab, seq_len=seq_len, n_out=n_out, width=width, depth=depth, heads=heads)
        if width % heads != 0:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.seq_len = seq_len
        self.tok_emb = nn.Embedding(vocab, width)
        self.pos_emb = nn.Embedding(seq_len, width)
        self.blocks = nn.Sequential(*(TransformerBlock(width, heads) for _ in range(depth)))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor, all_positions: bool = False) -> torch.Tensor:
        """Logits ``(B, n_out)`` read out at the last position of tokens ``(B, L)``,
        ``L <= seq_len``; with ``all_positions=True``, ``(B, L, n_out)`` at every position
        (each depends only on the tokens up to it)."""
        # The engine keeps data sets as float feature rows; token ids stored there are
        # exact small integers, so casting back is lossless (a no-op for int64 input).
        tokens = x.long()
        n = tokens.shape[-1]
        # slicing the weight (rather than an arange lookup) keeps it a plain view
        h = self.tok_emb(tokens) + self.pos_emb.weight[:n]
        h = self.ln_f(self.blocks(h))
        if not all_positions:
            h = h[:, -1]
        return self.head(h)
