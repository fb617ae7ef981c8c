"""Model families: the one registry of what doodl can train (no torch at import).

Adding a family is one entry in ``FAMILIES``: how it is built from a variant's config and
the data's shape, which inputs it takes, which depths it allows and which model axes it
reads. The spec validates against this registry without loading torch; the modules
themselves live in ``doodl.workers._architectures`` and are imported when a model is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from doodl.workers.config import VariantConfig


@dataclass(frozen=True)
class DataShape:
    """What a data set fixes about a model: one input's shape, the classes, the vocabulary."""

    input_shape: tuple[int, ...]  # (features,), (channels, height, width) or (sequence length,)
    n_out: int
    vocab: int = 0  # > 0: inputs are token ids below it

    @property
    def kind(self) -> str:
        """``tokens``, ``images`` or ``features``."""
        if self.vocab:
            return "tokens"
        return "images" if len(self.input_shape) == 3 else "features"


def _arch():
    import doodl.workers._architectures as arch  # torch only when a model is really built

    return arch


@dataclass(frozen=True)
class Family:
    """How one model family is built and what it accepts."""

    build: Callable[[VariantConfig, DataShape], nn.Module]
    inputs: tuple[str, ...]  # data kinds it takes: features, images, tokens
    depths: tuple[int, int]  # smallest and largest ``depth``
    uses: tuple[str, ...] = ()  # model axes beyond width and depth that it reads (others must stay default)
    doc: str = ""


FAMILIES: dict[str, Family] = {
    "mlp": Family(
        build=lambda c, s: _arch().MLP(math.prod(s.input_shape), c.width, c.depth, s.n_out),
        inputs=("features", "images"), depths=(0, 64),
        doc="depth hidden ReLU layers of width units; depth 0 is softmax regression"),
    "cnn": Family(
        build=lambda c, s: _arch().CNN(s.input_shape, s.n_out, c.width, c.depth),
        inputs=("images",), depths=(1, 6),
        doc="depth conv3x3-ReLU-maxpool blocks with width*2^i channels, global pooling, linear read-out"),
    "resnet": Family(
        build=lambda c, s: _arch().ResNet(s.input_shape, s.n_out, c.width, c.depth, norm=c.norm),
        inputs=("images",), depths=(1, 4), uses=("norm",),
        doc="ResNet-18 style (depth 4 is ResNet-18) with channels w, 2w, 4w, 8w and GroupNorm"),
    "transformer": Family(
        build=lambda c, s: _arch().Transformer(s.vocab, s.input_shape[0], s.n_out, c.width, c.depth, c.heads),
        inputs=("tokens",), depths=(1, 12), uses=("heads",),
        doc="decoder-style: depth pre-LN blocks of causal attention, read-out at the last position"),
}


def family(name: str) -> Family:
    """The registry entry of a family; an unknown name raises ValueError listing the known."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None
