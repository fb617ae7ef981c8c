"""Independent random streams derived from a variant's seed: the one list of them.

Each stream is a numpy generator seeded by ``SeedSequence([seed, stream])``, so adding a
stream never changes the draws of another, and a variant's draws never depend on which
other variants share its unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a generator is made, not on import
    import torch

STREAM_INIT, STREAM_SUBSET, STREAM_NOISE, STREAM_BATCHES, STREAM_PROJECTION = range(5)
STREAM_IMBALANCE, STREAM_PAIR_NOISE, STREAM_AUGMENT, STREAM_INPUT_NOISE = range(10, 14)


def seed_stream(seed: int, stream: int) -> np.random.Generator:
    """Return the numpy generator of one named random stream of a seed."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def torch_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU torch generator for one named stream of a seed (for draws made in torch)."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(seed_stream(seed, stream).integers(2**62)))
    return g
