"""Pictures of the taxonomy across a sweep: the phase diagram and one heatmap per metric.

Both take the taxonomy's group rows (dicts with the group's config values, ``phase`` and
the metrics) and two axis names (a load-like and a temperature-like axis, e.g. ``width``
and ``batch_size``). Groups that differ in other swept axes go to separate panels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from doodl.analysis.figures import png, pyplot

PHASE_COLOURS = {"I": "#d62728", "II": "#ff7f0e", "III": "#9467bd", "IV-A": "#2ca02c", "IV-B": "#1f77b4"}
METRICS = ("train_loss", "test_acc", "hessian_top", "hessian_trace", "mc", "cka", "l2")


def _panels(rows: list[dict], x: str, y: str, others: Sequence[str]):
    keys = sorted({tuple(r[o] for o in others) for r in rows})
    xs = sorted({r[x] for r in rows})
    ys = sorted({r[y] for r in rows})
    return keys, xs, ys


def _figure(n_panels: int):
    plt = pyplot()
    cols = min(n_panels, 3)
    rows = int(np.ceil(n_panels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    return plt, fig, axes.ravel()


def _setup_axis(ax, x, y, xs, ys, title):
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    if title:
        ax.set_title(title, fontsize=9)


def plot_phase_diagram(rows: list[dict], x: str, y: str, others: Sequence[str] = (), title: str = "") -> bytes:
    """Phases as coloured cells over ``x`` (columns) and ``y`` (rows); PNG bytes.

    Each cell is labelled with its phase and mean test accuracy; failed groups are grey.
    """
    from matplotlib.patches import Patch, Rectangle

    keys, xs, ys = _panels(rows, x, y, others)
    plt, fig, axes = _figure(len(keys))
    for ax, key in zip(axes, keys):
        for r in rows:
            if tuple(r[o] for o in others) != key:
                continue
            i, j = xs.index(r[x]), ys.index(r[y])
            phase = r.get("phase")
            ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, color=PHASE_COLOURS.get(phase, "#bbbbbb"), alpha=0.85))
            label = phase or "failed"
            if r.get("test_acc") is not None and phase:
                label += f"\ntest {r['test_acc']:.2f}"
            ax.text(i, j, label, ha="center", va="center", fontsize=8, color="white" if phase else "black")
        sub = ", ".join(f"{o} {v:g}" for o, v in zip(others, key))
        _setup_axis(ax, x, y, xs, ys, f"{title}{' - ' if title and sub else ''}{sub}")
    fig.legend(handles=[Patch(color=c, label=p) for p, c in PHASE_COLOURS.items()], loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=8, title="phase")
    return png(fig)


def plot_metric_heatmap(rows: list[dict], metric: str, x: str, y: str, others: Sequence[str] = ()) -> bytes:
    """One metric as a heatmap over ``x`` and ``y`` with the values written in; PNG bytes."""
    keys, xs, ys = _panels(rows, x, y, others)
    plt, fig, axes = _figure(len(keys))
    values = [r[metric] for r in rows if r.get(metric) is not None and np.isfinite(r[metric])]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    image = None
    for ax, key in zip(axes, keys):
        grid = np.full((len(ys), len(xs)), np.nan)
        for r in rows:
            if tuple(r[o] for o in others) == key and r.get(metric) is not None:
                grid[ys.index(r[y]), xs.index(r[x])] = r[metric]
        image = ax.imshow(grid, origin="lower", cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for j, i in itertools.product(range(len(ys)), range(len(xs))):
            if np.isfinite(grid[j, i]):
                ax.text(i, j, f"{grid[j, i]:.3g}", ha="center", va="center", fontsize=7, color="white")
        sub = ", ".join(f"{o} {v:g}" for o, v in zip(others, key))
        _setup_axis(ax, x, y, xs, ys, f"{metric}{' - ' if sub else ''}{sub}")
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(keys)]), shrink=0.8)
    return png(fig)
