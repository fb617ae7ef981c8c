"""Where a group's runs ended, defined without the Morse graph: the runs' outcome modes.

A Morse graph is graded against these labels (``docs/methods.md``, "Outcomes"), so they
must not come from the graph: each run's *end state* is its final function
(the softmax outputs on the probe set, as a root mean square over its values) beside
its final train accuracy and loss, or, for runs without outputs, its final state (the
flattened parameters or a potential's coordinates). End states are clustered by single
linkage (scipy), which follows a continuum of ends (seeds that memorise different noisy
labels) as one mode, and cut where a merge is a *gap*: higher than ``GAP`` times the typical
merge of the group. The typical merge is the median merge height, but at least ``FLOOR``
of the median distance a run travels from its first snapshot to its end, so that runs of
full-batch gradient descent that end a hair apart (a median merge of 0.001 of their travel)
are not split by differences far below anything training resolves.

Measured (``BENCHMARKS.md``, "Outcomes"): on real training with known local minima the
merges between distinct ends are 0.38-1.0 of a run's travel and those inside a mode at most
0.07; on ``examples/morse.yaml``, whose seeds all learn one function, the largest merge is
1.1 times the median (label noise 0.3: every seed memorises its own flipped labels, so ends
are spread evenly over half a run's travel) and the groups are one mode each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GAP = 4.0  # a merge this many times the group's typical merge separates two outcome modes
FLOOR = 0.05  # the typical merge is at least this fraction of the median travel


@dataclass(frozen=True)
class Outcomes:
    """Each run's outcome mode (0 is the largest mode, then by size) and how they were cut."""

    labels: np.ndarray  # (n,) int
    cut: float  # merges above this height separate modes (in the end states' units)
    features: str  # "function" (outputs, accuracy, loss) or "state"

    @property
    def n_modes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def sizes(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.n_modes).tolist()

    @property
    def chance(self) -> float:
        """The share of runs in the largest mode: what always guessing it would score."""
        return max(self.sizes) / len(self.labels) if len(self.labels) else float("nan")


def end_features(finals: np.ndarray, starts: np.ndarray, extras: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, float]:
    """The end states as rows (the final ``finals`` beside the ``extras`` columns) and the
    median distance the runs travelled from ``starts`` to ``finals``."""
    finals = np.asarray(finals, dtype=np.float64)
    travel = float(np.median(np.linalg.norm(finals - np.asarray(starts, dtype=np.float64), axis=1)))
    cols = [finals] + [np.asarray(e, dtype=np.float64).reshape(len(finals), 1) for e in extras]
    return np.hstack(cols), travel


def outcome_modes(ends: np.ndarray, travel: float, features: str = "state") -> Outcomes:
    """Cluster end states (rows of ``ends``) into outcome modes; see the module docstring."""
    from scipy.cluster.hierarchy import fcluster, linkage

    ends = np.asarray(ends, dtype=np.float64)
    n = len(ends)
    if n == 0:
        return Outcomes(np.zeros(0, dtype=np.int64), float("nan"), features)
    if not np.all(np.isfinite(ends)):
        raise ValueError("end states contain NaN or infinite values")
    if n == 1:
        return Outcomes(np.zeros(1, dtype=np.int64), float("nan"), features)
    tree = linkage(ends, method="single")
    typical = max(float(np.median(tree[:, 2])), FLOOR * travel)
    cut = GAP * typical
    if cut <= 0:  # every run ended at one point and none moved
        return Outcomes(np.zeros(n, dtype=np.int64), 0.0, features)
    raw = fcluster(tree, t=cut, criterion="distance")
    # number modes by size (largest first; ties by first run) so labels are reproducible
    ids, counts = np.unique(raw, return_counts=True)
    first = np.array([np.flatnonzero(raw == i)[0] for i in ids])
    order = ids[np.lexsort((first, -counts))]
    relabel = {int(old): new for new, old in enumerate(order)}
    return Outcomes(np.array([relabel[int(r)] for r in raw], dtype=np.int64), cut, features)
