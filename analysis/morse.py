"""Morse graphs and Conley indices of a map on a box, computed by CMGDB.

:func:`morse_graph` takes any vectorised map ``f: (n, d) -> (n, d)`` and a box
``[lower, upper]``, builds CMGDB's outer approximation of ``f`` on an adaptively subdivided
cubical grid, and returns a :class:`MorseGraph` made of plain data (numpy arrays, lists,
strings): CMGDB's own objects cannot be pickled, so nothing of them leaves this module.

What the result means:

- a *Morse set* (node) is a recurrent region of the combinatorial map: a fixed point, a
  periodic orbit, a saddle, or a region the grid cannot resolve;
- an edge ``u -> v`` says some trajectory leaves ``u`` and later enters ``v`` (the Hasse
  diagram of that order, as CMGDB reports it);
- an *attractor* is a node with no outgoing edge whose Conley index is non-trivial (a sink
  with a trivial or undefined index is *unresolved*: the grid cannot say what it is, and
  it is never reported as an attractor);
- the *basin* (region of attraction) of an attractor is the set of grid cells from which
  the combinatorial map reaches that attractor and no other; cells that reach several
  attractors (near a separatrix, or where the enclosure is wide) belong to no basin;
- the *Conley index* of a node is the homology of an index pair, one rank per dimension:
  ``[1, 0, 0]`` a stable fixed point, ``[0, 1, 0]`` a saddle with one unstable direction,
  ``[0, 0, 1]`` a repeller in the plane, ``[1, 1, 0]`` an attracting periodic orbit, all
  zeros a Morse set with trivial index (typically an artefact of a coarse grid). ``None``
  means the index is undefined: images of the set's boxes left the domain.

Grid choices (measured on the known-answer maps in ``tests/analysis/test_morse.py``): the
grid starts uniform at ``subdiv_min`` (CMGDB's ``subdiv_init = subdiv_min``: starting
coarser lets reachability found on coarse boxes add false edges), and Morse sets are
refined up to ``subdiv_max``; refinement only prunes sets that vanish, the reported boxes
are those of level ``subdiv_min``. Depth counts bisections of the whole box, so level
``k`` in ``d`` dimensions has ``2**k`` boxes, ``2**(k/d)`` per axis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_DIM = 6
# basin labels of points that are in no attractor's basin
NO_ATTRACTOR = -1  # the map leads only to unresolved sets
SEVERAL = -2  # more than one attractor is reachable: the point is on (or near) a separatrix
OUTSIDE = -3  # the point lies outside the box
_TERM = re.compile(r"([+-]?)(\d*)(x(?:\^(\d+))?)?")


class MorseError(ValueError):
    """A map or domain that CMGDB cannot be given (bad shapes, non-finite values)."""


def conley_ranks(strings: Sequence[str] | None) -> list[int] | None:
    """Ranks per dimension from CMGDB's Conley-index strings.

    CMGDB writes each dimension as the invariant factors of the index map with powers of
    ``x`` removed (its shift-equivalence class), concatenated without a separator:
    ``'0'`` is rank 0, ``'x-1'`` rank 1, ``'x^2-1'`` rank 2 (a period-two swap),
    ``'x-1x-1'`` rank 2. The rank is the sum of the factors' degrees. Each factor is monic
    with strictly falling degrees, so a term whose degree does not fall starts a new
    factor (``'-1x'`` in ``'x-1x-1'`` is the constant of one factor, then the next).
    An empty list (undefined index) gives ``None``.
    """
    if not strings:
        return None
    return [_rank_of(s) for s in strings]


def _rank_of(text: str) -> int:
    text = text.replace(" ", "").replace("*", "")
    if text in ("", "0"):
        return 0
    rank, last_degree = 0, None  # degree of the previous term of the current factor
    for m in _TERM.finditer(text):
        if not m.group(0):
            continue
        sign, coeff, xterm, power = m.groups()
        degree = (int(power) if power else 1) if xterm else 0
        if xterm and coeff and last_degree is not None and degree >= last_degree:
            last_degree = None  # the digits were the previous factor's constant term
            sign, coeff = "", ""
        if xterm and (last_degree is None or degree >= last_degree or not sign):
            rank += degree  # a new factor starts with its leading term
        last_degree = None if degree == 0 else degree
    return rank


@dataclass(frozen=True)
class MorseGraph:
    """A Morse graph as plain data; see the module docstring for what it means."""

    lower: np.ndarray
    upper: np.ndarray
    nodes: list[int]
    edges: list[tuple[int, int]]
    boxes: dict[int, np.ndarray]  # node -> (k, 2d) rows of d lower then d upper bounds
    conley_strings: dict[int, list[str]]
    subdiv_min: int
    subdiv_max: int
    seconds: float = 0.0
    # the leaf cells of the adaptive grid and, per cell, the attractor whose basin holds it
    # (or NO_ATTRACTOR / SEVERAL); empty when the graph was built without them
    cells: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False, compare=False)
    cell_basin: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False, compare=False)
    _children: dict[int, list[int]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        for u in self.nodes:
            self._children[u] = sorted(v for a, v in self.edges if a == u)

    @property
    def dim(self) -> int:
        return len(self.lower)

    @property
    def sinks(self) -> list[int]:
        """Nodes with no outgoing edge (attractors and unresolved sinks)."""
        return [u for u in self.nodes if not self._children[u]]

    @property
    def attractors(self) -> list[int]:
        """Sinks with a non-trivial Conley index."""
        return [u for u in self.sinks if self.conley_index(u) is not None and not self.is_trivial(u)]

    @property
    def unresolved(self) -> list[int]:
        """Morse sets whose Conley index is trivial or undefined (artefacts or sets the grid
        cannot resolve): never attractors."""
        return [u for u in self.nodes if self.conley_index(u) is None or self.is_trivial(u)]

    def successors(self, node: int) -> list[int]:
        return list(self._children[node])

    def conley_index(self, node: int) -> list[int] | None:
        """Ranks of the Conley index by dimension (``None`` when undefined)."""
        return conley_ranks(self.conley_strings[node])

    def is_trivial(self, node: int) -> bool:
        """True when the Conley index is defined and zero in every dimension."""
        ranks = self.conley_index(node)
        return ranks is not None and not any(ranks)

    def node_of(self, points: np.ndarray) -> np.ndarray:
        """For each point (rows of an (n, d) array), the node whose boxes contain it, or -1.

        Boxes are closed; a point on a face shared by two Morse sets goes to the lower id.
        """
        points = np.atleast_2d(np.asarray(points, dtype=float))
        out = np.full(len(points), -1, dtype=np.int64)
        d = self.dim
        for u in sorted(self.nodes, reverse=True):
            b = self.boxes[u]
            inside = ((points[:, None, :] >= b[None, :, :d]) & (points[:, None, :] <= b[None, :, d:])).all(-1).any(-1)
            out[inside] = u
        return out

    def basin_of(self, points: np.ndarray) -> np.ndarray:
        """For each point, the attractor whose basin holds it; ``SEVERAL`` when the map
        reaches more than one attractor from its cell, ``NO_ATTRACTOR`` when none,
        ``OUTSIDE`` when the point is outside the box."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        out = np.full(len(points), OUTSIDE, dtype=np.int64)
        if not len(self.cells):
            raise ValueError("this Morse graph was built without its cells; basins are unknown")
        d = self.dim
        # cells tile the box; a point on a shared face takes the first cell that holds it
        for a in range(0, len(points), 256):
            p = points[a : a + 256]
            inside = (p[:, None, :] >= self.cells[None, :, :d]) & (p[:, None, :] <= self.cells[None, :, d:])
            inside = inside.all(-1)
            hit = inside.any(1)
            out[a : a + 256][hit] = self.cell_basin[inside.argmax(1)[hit]]
        return out

    def to_dot(self, *, verdict: bool = True) -> str:
        """Graphviz DOT text: attractors at the bottom, labels carry the Conley index, the
        graph's label the notation and the styles; ``verdict=False`` (too few runs to resolve
        basins) marks no node as an attractor, as :func:`render_graph` does."""
        styles = node_styles(self, verdict=verdict)
        looks = {"attractor": ", peripheries=2", "unresolved": ', style="filled,dashed"', "nontrivial": ""}
        key = [f"{text} ({STYLE_LOOKS[s][0]})" if s else text for s, text in picture_key(verdict=verdict)]
        key_label = "".join(line + "\\l" for line in key)  # \l: a left-justified line
        lines = ["digraph morse {", '  node [shape=ellipse, style=filled, fontname="Helvetica"];',
                 f'  graph [labelloc=b, labeljust=l, fontsize=10, fontname="Helvetica", label="{key_label}"];']
        for u in self.nodes:
            label = f"{_label(self, u)}\\n{len(self.boxes[u])} boxes"
            lines.append(f'  {u} [label="{label}", fillcolor="{_node_colour(u)}"{looks[styles[u]]}];')
        sinks = [u for u, s in styles.items() if s == "attractor"]
        if sinks:
            lines.append("  { rank=sink; " + " ".join(str(u) for u in sinks) + " }")
        for a, b in self.edges:
            lines.append(f"  {a} -> {b};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_record(self) -> dict:
        """The graph as a dict of plain lists (for Parquet and JSON)."""
        return {
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "nodes": list(self.nodes),
            "edges": [list(e) for e in self.edges],
            "attractors": self.attractors,
            "unresolved": self.unresolved,
            "conley_strings": [self.conley_strings[u] for u in self.nodes],
            "conley_ranks": [self.conley_index(u) for u in self.nodes],
            "boxes": [self.boxes[u].ravel().tolist() for u in self.nodes],
            "n_boxes": [len(self.boxes[u]) for u in self.nodes],
        }


def morse_graph(
    f: Callable[[np.ndarray], np.ndarray],
    lower: Sequence[float],
    upper: Sequence[float],
    *,
    subdiv_min: int = 10,
    subdiv_max: int = 16,
    subdiv_limit: int = 10_000,
    chunk: int = 16_384,
    widen: Callable[[np.ndarray], np.ndarray] | None = None,
) -> MorseGraph:
    """The Morse graph of ``f`` on the box ``[lower, upper]`` (CMGDB, batched box map).

    ``f`` maps an (n, d) array of points to an (n, d) array of images; it is called on the
    corners of many boxes at once (``chunk`` boxes per call), never once per box, and a
    box's image is the bounding box of its corners' images. A map that knows its box images
    itself (an object with ``box_images(rects) -> (n, 2d)``, such as
    :class:`doodl.analysis._pair_map.PairMap`) gives them directly. Images outside the box are
    allowed (those boxes map out of the domain). A non-finite or wrongly shaped image
    raises :class:`MorseError` instead of silently giving a wrong graph.

    ``widen(centres) -> (n, d)`` (optional) is a non-negative radius added on every side of
    each box's image, evaluated at the box centres: with a surrogate's posterior standard
    deviation times a factor, the box map encloses what the data allow, not just the mean.
    The result carries the grid's leaf cells and each cell's basin (:meth:`MorseGraph.basin_of`).
    """
    import CMGDB

    lo = np.asarray(lower, dtype=float).ravel()
    hi = np.asarray(upper, dtype=float).ravel()
    d = len(lo)
    if d < 1 or d > MAX_DIM or len(hi) != d:
        raise MorseError(f"lower and upper must have the same length between 1 and {MAX_DIM}, got {len(lo)} and {len(hi)}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise MorseError(f"need finite bounds with upper > lower, got {lo.tolist()} and {hi.tolist()}")
    if not (1 <= subdiv_min <= subdiv_max <= 60):
        raise MorseError(f"need 1 <= subdiv_min <= subdiv_max <= 60, got {subdiv_min} and {subdiv_max}")

    def checked(points: np.ndarray) -> np.ndarray:
        # neighbouring boxes share corners: on a grid about 2**d boxes meet at each, so f
        # (the cost of the graph when it is a fitted model) runs once per distinct corner
        unique, inverse = np.unique(points, axis=0, return_inverse=True)
        images = np.asarray(f(unique), dtype=float)
        if images.shape != unique.shape:
            raise MorseError(f"f returned shape {images.shape} for input of shape {unique.shape}")
        if not np.all(np.isfinite(images)):
            raise MorseError("f returned NaN or infinite values")
        return images[inverse.reshape(-1)]

    box_images = getattr(f, "box_images", None)
    checked(np.vstack([lo, hi, (lo + hi) / 2]))  # fail before CMGDB on an obviously bad f

    def batch(rects):
        if box_images is None:
            images = CMGDB.BoxMapBatch(checked, rects)
        else:
            images = np.asarray(box_images(np.asarray(rects, dtype=float)), dtype=float)
            if images.shape != (len(rects), 2 * d) or not np.all(np.isfinite(images)):
                raise MorseError(f"box_images returned non-finite values or shape {images.shape} for {len(rects)} boxes")
        if widen is not None:
            rects = np.asarray(rects, dtype=float)
            radius = np.asarray(widen((rects[:, :d] + rects[:, d:]) / 2), dtype=float)
            radius = np.broadcast_to(radius.reshape(len(rects), -1), (len(rects), d))
            if not np.all(np.isfinite(radius)) or (radius < 0).any():
                raise MorseError("widen returned negative or non-finite radii")
            images = np.hstack([images[:, :d] - radius, images[:, d:] + radius])
        return images

    def single(rect):  # CMGDB wants a per-box map too; the batched one is what runs
        return batch(np.asarray([rect]))[0].tolist()

    model = CMGDB.Model(subdiv_min, subdiv_max, subdiv_min, subdiv_limit, lo.tolist(), hi.tolist(), single)
    model.set_batch_map(batch)
    t0 = time.perf_counter()
    mg, map_graph = CMGDB.ComputeConleyMorseGraph(model, batch_chunk_size=chunk, cache_map_graph=True)
    nodes = list(mg.vertices())
    conley = {u: list(mg.annotations(u)) for u in nodes}
    n_cells = map_graph.num_vertices()
    cells = np.asarray([mg.phase_space_box(v) for v in range(n_cells)], dtype=float).reshape(n_cells, 2 * d)
    attractors = [u for u in nodes if not mg.adjacencies(u) and any(conley_ranks(conley[u]) or [])]
    cell_basin = _cell_basins(CMGDB, mg, map_graph, nodes, attractors)
    seconds = time.perf_counter() - t0  # the graph, its Conley indices and the basins
    return MorseGraph(
        lower=lo,
        upper=hi,
        nodes=nodes,
        edges=sorted((int(a), int(b)) for a, b in mg.edges()),
        boxes={u: np.asarray(mg.morse_set_boxes(u), dtype=float).reshape(-1, 2 * d) for u in nodes},
        conley_strings=conley,
        subdiv_min=subdiv_min,
        subdiv_max=subdiv_max,
        seconds=seconds,
        cells=cells,
        cell_basin=cell_basin,
    )


def _cell_basins(CMGDB, mg, map_graph, nodes: list[int], attractors: list[int]) -> np.ndarray:
    """Per grid cell: the one attractor the combinatorial map reaches from it, else
    ``SEVERAL`` or ``NO_ATTRACTOR``. CMGDB's native reachability masks hold 64 Morse sets;
    beyond that, a reverse breadth-first search from each attractor over the cell graph."""
    n = map_graph.num_vertices()
    if not attractors:
        return np.full(n, NO_ATTRACTOR, dtype=np.int64)
    hits = None
    if max(nodes) < 64:
        try:
            masks = np.asarray(CMGDB.MorseReachabilityMasks(map_graph, mg, list(range(n))), dtype=np.uint64)
            hits = np.stack([(masks >> np.uint64(a)) & np.uint64(1) for a in attractors], axis=1).astype(bool)
        except RuntimeError:
            pass  # it refuses cell graphs with cycles outside the Morse sets (seen on refined grids)
    if hits is None:
        parents: list[list[int]] = [[] for _ in range(n)]
        for v in range(n):
            for w in map_graph.adjacencies(v):
                parents[w].append(v)
        hits = np.zeros((n, len(attractors)), dtype=bool)
        for k, a in enumerate(attractors):
            stack = list(mg.morse_set(a))
            hits[stack, k] = True
            while stack:
                for v in parents[stack.pop()]:
                    if not hits[v, k]:
                        hits[v, k] = True
                        stack.append(v)
    count = hits.sum(1)
    out = np.where(count == 0, NO_ATTRACTOR, SEVERAL).astype(np.int64)
    out[count == 1] = np.asarray(attractors)[hits[count == 1].argmax(1)]
    return out


# --- pictures -----------------------------------------------------------------------

_PALETTE = ["#1f77b4", "#e6550d", "#31a354", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#6a3d9a", "#b15928", "#fb8072", "#80b1d3", "#fdb462", "#b3de69"]
# share of the palette colour in a node's fill, the rest white: light enough that labels,
# trajectories and hatches stay readable over it, and opaque, so that a Morse set has one
# and the same colour in the graph, in the sets picture and in the DOT export
_TINT = 0.55

# what the pictures (and the report, beside them) say about their notation
CONLEY_NOTATION = ("CI (a, b, c): ranks of the Conley index in dimensions 0, 1, 2; (1, 0, 0) a stable fixed point, "
                   "(0, 1, 0) a saddle with one unstable direction, all zero: trivial")
NODE_STYLES = {  # a node's style (see node_styles) -> what it means
    "attractor": "attractor: a sink with a non-trivial index",
    "nontrivial": "saddle or other non-trivial Morse set",
    "unresolved": "unresolved: trivial or undefined index",
}
STYLE_LOOKS = {  # how each picture draws a style: (the graph, the sets picture)
    "attractor": ("double border", "dark outline"),
    "nontrivial": ("single border", "no outline"),
    "unresolved": ("dashed border, hatched", "hatched"),
}
NO_VERDICT_NOTE = "too few runs to resolve basins: an illustration, no attractor or basin verdict"


def _node_colour(u: int) -> str:
    """The fill of Morse set ``u`` in every picture: its palette colour lightened (``_TINT``)."""
    hex_colour = _PALETTE[u % len(_PALETTE)]
    rgb = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(255 - _TINT * (255 - c)):02x}" for c in rgb)


def node_styles(mg: MorseGraph, *, verdict: bool = True) -> dict[int, str]:
    """How each node is drawn: ``attractor``, ``unresolved`` or ``nontrivial`` (any other).

    Without a verdict (too few runs to resolve basins) no node is an attractor: a sink with
    a non-trivial index is drawn as any other non-trivial Morse set.
    """
    attractors, unresolved = set(mg.attractors) if verdict else set(), set(mg.unresolved)
    return {u: "attractor" if u in attractors else "unresolved" if u in unresolved else "nontrivial"
            for u in mg.nodes}


def picture_key(*, verdict: bool = True) -> list[tuple[str | None, str]]:
    """The key both pictures carry, as (style or None, text) rows: the styles, the Conley
    index notation and, without a verdict, why the picture is only an illustration."""
    rows: list[tuple[str | None, str]] = [] if verdict else [(None, NO_VERDICT_NOTE)]  # read first
    rows += [(s, text) for s, text in NODE_STYLES.items() if verdict or s != "attractor"]
    return rows + [(None, CONLEY_NOTATION)]


def _label(mg: MorseGraph, u: int) -> str:
    ranks = mg.conley_index(u)
    return f"{u}: CI {tuple(ranks) if ranks is not None else 'undefined'}"


def graph_figure(mg: MorseGraph, *, title: str | None = None, verdict: bool = True):
    """The Morse graph as a matplotlib Figure (see :func:`render_graph`)."""
    from doodl.analysis._graph_drawing import draw_morse_graph

    styles = node_styles(mg, verdict=verdict)
    labels = {u: f"{_label(mg, u)}\n{len(mg.boxes[u])} boxes" for u in mg.nodes}
    return draw_morse_graph(mg.nodes, mg.edges, labels, {u: _node_colour(u) for u in mg.nodes},
                            [u for u, s in styles.items() if s == "attractor"],
                            unresolved={u for u, s in styles.items() if s == "unresolved"}, title=title,
                            key=picture_key(verdict=verdict))


def render_graph(mg: MorseGraph, path: str | Path | None = None, *, title: str | None = None,
                 verdict: bool = True) -> bytes:
    """Draw the Morse graph with matplotlib (a layered layout, attractors at the bottom,
    labels with the Conley index, a key to the styles and the notation under it; no system
    program needed). ``verdict=False`` (too few runs to resolve basins) draws no node as an
    attractor and says the picture is an illustration. Returns PNG bytes, also written to
    ``path`` when given."""
    from doodl.analysis.figures import png

    data = png(graph_figure(mg, title=title, verdict=verdict))
    if path is not None:
        Path(path).write_bytes(data)
    return data


def plot_morse_sets(
    mg: MorseGraph,
    trajectories: Sequence[np.ndarray] = (),
    *,
    path: str | Path | None = None,
    ax=None,
    title: str | None = None,
    axis_labels: Sequence[str] = ("PC1", "PC2"),
    verdict: bool = True,
):
    """Morse sets as coloured boxes over the trajectories (first two coordinates).

    Each trajectory is a (T, d) array; it is drawn as a grey line with its start hollow
    and its end filled. A set has the colour it has in :func:`render_graph`; attractors are
    outlined dark, unresolved sets hatched. A legend names the sets; a key under the axes
    gives the styles and the Conley index notation, and with ``verdict=False`` (too few runs
    to resolve basins) no set is drawn or named as an attractor and the key says why.
    Patch collections carry the id (``gid``) ``morse-set-U``. Returns the matplotlib figure
    (saved to ``path`` when given).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    d = mg.dim
    own = ax is None
    fig, ax = (plt.subplots(figsize=(6, 5), dpi=110) if own else (ax.figure, ax))
    styles = node_styles(mg, verdict=verdict)
    handles = []
    for u in mg.nodes:
        b = mg.boxes[u]
        x0, y0 = b[:, 0], (b[:, 1] if d > 1 else np.zeros(len(b)))
        w = b[:, d] - b[:, 0]
        h = (b[:, d + 1] - b[:, 1]) if d > 1 else np.full(len(b), (mg.upper[0] - mg.lower[0]) / 50)
        rects = [Rectangle((x0[i], y0[i]), w[i], h[i]) for i in range(len(b))]
        look = _set_look(_node_colour(u), styles[u])
        ax.add_collection(PatchCollection(rects, gid=f"morse-set-{u}", **look))
        name = " attractor" if styles[u] == "attractor" else ""
        handles.append(_swatch(look, f"{_label(mg, u)}{name}"))
    for traj in trajectories:
        traj = np.atleast_2d(traj)
        ys = traj[:, 1] if d > 1 else np.zeros(len(traj))
        ax.plot(traj[:, 0], ys, color="0.25", linewidth=0.7, alpha=0.8)
        ax.plot(traj[0, 0], ys[0], "o", mfc="none", mec="0.25", ms=4)
        ax.plot(traj[-1, 0], ys[-1], "o", color="black", ms=4)
    ax.set_xlim(mg.lower[0], mg.upper[0])
    if d > 1:
        ax.set_ylim(mg.lower[1], mg.upper[1])
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1] if d > 1 else "")
    if title:
        ax.set_title(title, fontsize=9)
    if handles:
        ax.add_artist(ax.legend(handles=handles[:12], fontsize=7, loc="best", framealpha=0.8))
    _sets_key(ax, verdict)
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
        if own:
            plt.close(fig)
    return fig


def _set_look(colour: str, style: str) -> dict:
    """PatchCollection keywords of a Morse set's boxes in the sets picture."""
    look = {"facecolor": colour, "edgecolor": colour, "linewidth": 0.3}
    if style == "attractor":
        look.update(edgecolor="#202020", linewidth=0.9)
    elif style == "unresolved":
        look.update(edgecolor=(0, 0, 0, 0.35), hatch="////")  # the hatch takes the edge colour
    return look


def _swatch(look: dict, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=look["facecolor"], edgecolor=look["edgecolor"], hatch=look.get("hatch"),
                 linewidth=max(look["linewidth"], 0.6), label=label)


def _sets_key(ax, verdict: bool) -> None:
    """The key of the sets picture, under the axes: a swatch per style, then the notes."""
    import textwrap

    from matplotlib.patches import Patch
    from matplotlib.transforms import offset_copy

    rows = [_swatch(_set_look("#d9d9d9", style), textwrap.fill(text, 95)) if style
            else Patch(visible=False, label=textwrap.fill(text, 95))  # a note: text, no swatch
            for style, text in picture_key(verdict=verdict)]
    # below the tick labels and the axis label, a fixed distance whatever the axes' height
    under = offset_copy(ax.transAxes, fig=ax.figure, y=-40, units="points")
    ax.legend(handles=rows, fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.0), bbox_transform=under,
              frameon=False, handlelength=1.6, borderaxespad=0.0)
