"""Errors of the compute side the CLI reports as one line (exit 1). Declared apart from the
modules that raise them so the CLI can catch them without importing Ray and torch (which
`doodl status` and `doodl sync` do not need)."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The Ray cluster named by ``--address`` cannot be reached."""


class PlacementError(RuntimeError):
    """No actor of the pool could be placed: the cluster lacks what one actor needs."""
