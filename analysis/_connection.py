"""Morse sets, Conley indices and connection matrices of a map on a uniform grid (pychomp).

The box ``[lower, upper]`` in ``d`` dimensions is cut into ``n`` cells per axis. A cell is
named by its flat index ``i_0 + n i_1 + n^2 i_2 + ...`` (axis 0 fastest): pychomp's own
order of top cells, restricted to the box. Points are placed in cells half-open,
``[lower + i h, lower + (i+1) h)`` (the upper face counts in the last cell).

A *combinatorial map* gives each cell the set of cells its image meets:

- :func:`grid_images` encloses a vectorised map: the bounding box of the images of the
  cell's corners, optionally widened, and the closed cells meeting it;
- :func:`data_images` is the map of the snapshot pairs ``x[i] -> y[i]`` alone (a cell
  without data has no image).

:func:`connection_matrix` turns either into plain data: the Morse sets (recurrent strongly
connected components), their order, the ranks of their Conley indices and the connection
matrix (which Morse sets must be joined by connecting orbits).

The outside. Whatever leaves the box, and every cell whose image is empty (non-finite,
wholly outside the box, or no data: its future is unknown), is one extra node that flows
nowhere. It is never a Morse set; Morse sets that can reach it are flagged (``leaves``).

Grading (why not ``pychomp.FlowGradedComplex``). pychomp's cubical complex wraps round and
has no cells on its far side: its last layer is a fringe that the matching drops. Its
``FlowGradedComplex`` grades every strong component (trivial ones and empty-image cells,
which become singleton sinks, included) in its own Tarjan order, so the fringe and empty
cells land anywhere in the order; faces of Morse sets next to them become exits and the
ranks come out wrong (0.5 x on an 8x8 grid: generators on six graded pieces, one of rank 2
in dimension 0, where the answer is one point). Here strong components come from scipy,
and cells are graded by attracting blocks of the Morse decomposition: the Morse sets and
the outside are ranked sinks first, the outside above every set that cannot reach it; a
cell reached from them takes the lowest rank among those reaching it (a set's block is
everything it flows into); a cell reached from none (a transient) gets a grade of its own
just above its successors, so homology left there (``stray_generators``) is never charged
to a Morse set. The box sits inside a ring of cells graded as the outside where the
neighbouring box cell's image leaves, and above everything elsewhere: a box face is an
exit exactly where the map leaves. The grading goes to pychomp's ``construct_grading``,
``GradedComplex`` and ``ConnectionMatrix``.

Reading the ranks. They are ranks of the relative homology of an index pair (what pychomp
computes); for a map the Conley index also has an index map, which pychomp does not give,
so a rank can include a nilpotent part. A single uniform grid also gives recurrent
components with all-zero ranks (cells near a slowly contracting fixed point map partly
into themselves); they are Morse sets of the combinatorial map but never attractors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pychomp
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

OUTSIDE = -1  # in an index list of data_images: the image leaves the box


@dataclass(frozen=True)
class ConnectionResult:
    """Morse decomposition and connection matrix of a combinatorial map, as plain data.

    Morse sets are numbered by their place in the grading (sinks first).
    ``order`` holds ``(u, v)``: flow goes from Morse set ``u`` down to ``v`` (Hasse
    diagram). ``conley_ranks[m][k]`` is the number of connection-matrix generators of set
    ``m`` in dimension ``k``. ``boundary`` holds ``(from, to, k)``: a nonzero entry from a
    ``k``-dimensional generator of ``from`` to a ``(k-1)``-dimensional one of ``to`` (a
    connecting orbit that must exist). ``leaves[m]``: set ``m`` can reach the outside.
    ``stray_generators`` counts generators the grading leaves on transient cells (in no
    Morse set, not outside): they hold no invariant set (their index map is nilpotent);
    many of them say the map is far from an outer enclosure (typically data).
    """

    morse_sets: list[list[int]]
    order: list[tuple[int, int]]
    conley_ranks: list[list[int]]
    boundary: list[tuple[int, int, int]]
    leaves: list[bool]
    n_per_axis: int
    dim: int
    stray_generators: int
    seconds: float

    @property
    def nontrivial(self) -> list[int]:
        """Morse sets with a nonzero Conley index."""
        return [m for m, r in enumerate(self.conley_ranks) if any(r)]

    @property
    def attractors(self) -> list[int]:
        """Morse sets with no outgoing edge, a nontrivial index, that cannot leave."""
        has_out = {u for u, _ in self.order}
        return [m for m in self.nontrivial if m not in has_out and not self.leaves[m]]


def _box(lower, upper) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.asarray(lower, float).ravel(), np.asarray(upper, float).ravel()
    if lo.shape != hi.shape or not (hi > lo).all():
        raise ValueError("lower and upper need the same length and upper > lower")
    return lo, hi


def _coords(n: int, d: int) -> np.ndarray:
    """(n^d, d) integer coordinates of the cells in flat order (axis 0 fastest)."""
    return np.stack(np.unravel_index(np.arange(n**d), (n,) * d, order="F"), axis=1)


def _flat(coords: np.ndarray, n: int) -> np.ndarray:
    return (coords * n ** np.arange(coords.shape[-1])).sum(axis=-1)


def grid_images(
    f: Callable[[np.ndarray], np.ndarray],
    lower,
    upper,
    n_per_axis: int,
    widen: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Enclose a vectorised map ``f: (m, d) -> (m, d)`` on the uniform grid.

    ``f`` is called once, on all ``(n+1)^d`` grid vertices (each cell's ``2^d`` corners are
    among them). A cell's image is the bounding box of its corners' images (or, for a map
    with ``box_images(rects)``, such as :class:`doodl.analysis._pair_map.PairMap`, the box it
    gives), widened by ``widen(centres)`` (a nonnegative radius per cell, shape ``(m,)`` or
    ``(m, d)``), and the closed cells meeting that box (a box ending exactly on a grid line
    meets the cells on both sides, as an outer enclosure must).

    Returns ``(ranges, leaves)``: ``ranges`` is ``(n^d, 2d)`` int, ``[lo_0..lo_{d-1},
    hi_0..hi_{d-1}]`` inclusive per-axis cell indices clipped to the grid, rows in flat
    cell order; a row with ``hi < lo`` is an empty image (non-finite, or wholly outside the
    box). ``leaves`` is ``(n^d,)`` bool: the image box is not inside the box.
    """
    lower, upper = _box(lower, upper)
    d, n = lower.size, int(n_per_axis)
    h = (upper - lower) / n
    cells = _coords(n, d)
    if hasattr(f, "box_images"):
        img = np.asarray(f.box_images(np.hstack([lower + cells * h, lower + (cells + 1) * h])), float)
        if img.shape != (len(cells), 2 * d):
            raise ValueError(f"box_images returned shape {img.shape}, expected {(len(cells), 2 * d)}")
        lo, hi = img[:, :d], img[:, d:]
    else:
        vertices = _coords(n + 1, d)
        values = np.asarray(f(lower + vertices * h), float)
        if values.shape != (len(vertices), d):
            raise ValueError(f"f returned shape {values.shape}, expected {(len(vertices), d)}")
        # the 2^d corners of each cell, as vertex indices
        corners = _flat(cells[:, None, :] + _coords(2, d)[None], n + 1)
        img = values[corners]  # (N, 2^d, d)
        lo, hi = img.min(axis=1), img.max(axis=1)
    if widen is not None:
        r = np.asarray(widen(lower + (cells + 0.5) * h), float)
        r = np.broadcast_to(r.reshape(len(cells), -1), lo.shape)
        if not (r >= 0).all():  # also refuses NaN
            raise ValueError("widen must return nonnegative finite radii")
        lo, hi = lo - r, hi + r
    bad = ~(np.isfinite(lo).all(axis=1) & np.isfinite(hi).all(axis=1))
    leaves = bad | (lo < lower).any(axis=1) | (hi > upper).any(axis=1)
    with np.errstate(invalid="ignore"):
        # clip in grid units before converting, so huge images cannot overflow
        u_lo = np.clip((lo - lower) / h, -1, n + 1)
        u_hi = np.clip((hi - lower) / h, -1, n + 1)
    k_lo = np.ceil(np.nan_to_num(u_lo)).astype(np.int64) - 1
    k_hi = np.floor(np.nan_to_num(u_hi)).astype(np.int64)
    empty = bad | (k_lo > n - 1).any(axis=1) | (k_hi < 0).any(axis=1)
    ranges = np.concatenate([np.clip(k_lo, 0, n - 1), np.clip(k_hi, 0, n - 1)], axis=1)
    ranges[empty] = np.r_[np.zeros(d, np.int64), -np.ones(d, np.int64)]
    return ranges, leaves


def _cell_of(points: np.ndarray, lower: np.ndarray, upper: np.ndarray, n: int) -> np.ndarray:
    """Flat cell index of each point, -1 outside the box (the upper face counts as inside)."""
    p = np.asarray(points, float).reshape(-1, lower.size)
    with np.errstate(invalid="ignore"):
        inside = ((p >= lower) & (p <= upper)).all(axis=1)
    u = (np.where(inside[:, None], p, lower) - lower) / (upper - lower) * n
    k = np.clip(np.floor(u), 0, n - 1)
    return np.where(inside, _flat(k.astype(np.int64), n), -1)


def data_images(x: np.ndarray, y: np.ndarray, lower, upper, n_per_axis: int) -> list[np.ndarray]:
    """The combinatorial map of snapshot pairs ``x[i] -> y[i]`` (both ``(m, d)``).

    A cell's image is the sorted set of cells holding ``y[i]`` for the pairs with ``x[i]``
    in it; :data:`OUTSIDE` (-1) stands for a ``y[i]`` outside the box or non-finite. Pairs
    with ``x[i]`` outside the box are ignored. A cell with no data gets an empty image:
    :func:`connection_matrix` counts it as outside (its future is unknown): it is in no
    Morse set, and a set that cannot reach it keeps the side they share (not an exit).
    """
    lower, upper = _box(lower, upper)
    n = int(n_per_axis)
    src, dst = _cell_of(x, lower, upper, n), _cell_of(y, lower, upper, n)
    if len(src) != len(dst):
        raise ValueError("x and y must hold the same number of points")
    keep = src >= 0
    pairs = np.unique(np.stack([src[keep], dst[keep]], axis=1), axis=0)
    images = [np.empty(0, np.int64) for _ in range(n**lower.size)]
    starts = np.searchsorted(pairs[:, 0], np.unique(pairs[:, 0]))
    for chunk in np.split(pairs, starts[1:]):
        if len(chunk):
            images[chunk[0, 0]] = chunk[:, 1].copy()
    return images


def _edges(images, n: int, d: int, leaves) -> tuple[np.ndarray, np.ndarray]:
    """Edges over nodes 0..N-1 (cells) and N (the outside), from ranges or index lists."""
    N = n**d
    if isinstance(images, np.ndarray) and images.ndim == 2:
        if images.shape != (N, 2 * d):
            raise ValueError(f"ranges must have shape {(N, 2 * d)}")
        lo, hi = images[:, :d].astype(np.int64), images[:, d:].astype(np.int64)
        length = np.maximum(hi - lo + 1, 0)
        count = length.prod(axis=1)
        src = np.repeat(np.arange(N), count)
        # position of each edge inside its cell's box, unravelled axis by axis
        t = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        dst = np.zeros_like(src)
        for k in range(d):
            L = length[src, k]
            dst += (lo[src, k] + t % L) * n**k
            t //= L
        empty = count == 0
        out = np.zeros(N, bool) if leaves is None else np.asarray(leaves, bool)
    else:
        if len(images) != N:
            raise ValueError(f"need one image per cell ({N})")
        count = np.fromiter((len(i) for i in images), np.int64, N)
        src = np.repeat(np.arange(N), count)
        dst = np.concatenate([np.asarray(i, np.int64) for i in images]) if count.sum() else src
        empty = count == 0
        out = np.zeros(N, bool) if leaves is None else np.asarray(leaves, bool).copy()
        np.logical_or.at(out, src, dst == OUTSIDE)
        src, dst = src[dst != OUTSIDE], dst[dst != OUTSIDE]
    if dst.size and (dst.min() < 0 or dst.max() >= N):
        raise ValueError("image cell index outside the grid")
    # empty cells join the outside: outside -> empty cell -> outside is one component
    emp = np.flatnonzero(empty)
    leave = np.flatnonzero(out | empty)
    src = np.concatenate([src, leave, np.full(emp.size, N)])
    dst = np.concatenate([dst, np.full(leave.size, N), emp])
    return src, dst


def _sinks_first(pred: csr_matrix, out_deg: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Components in a linear extension of their order, sinks first; those in ``above``
    (the ones that can reach the outside, and the outside) as late as possible."""
    n_comp, out_deg = len(out_deg), out_deg.copy()
    ready = {a: list(np.flatnonzero((out_deg == 0) & (above == a))) for a in (False, True)}
    order = np.empty(n_comp, np.int64)
    for i in range(n_comp):
        # components that cannot reach the outside never wait for those that can
        v = ready[False].pop() if ready[False] else ready[True].pop()
        order[i] = v
        for u in pred.indices[pred.indptr[v] : pred.indptr[v + 1]]:
            out_deg[u] -= 1
            if out_deg[u] == 0:
                ready[bool(above[u])].append(u)
    return order


def connection_matrix(images, n_per_axis: int, d: int, leaves=None) -> ConnectionResult:
    """Morse sets, their order, Conley indices and connection matrix of a combinatorial map.

    ``images`` is either the ``(n^d, 2d)`` range array of :func:`grid_images` (pass its
    ``leaves`` too) or one index list per cell as from :func:`data_images` (``-1`` =
    outside). Cells with an empty image count as outside (see the module docstring).
    """
    start = time.perf_counter()
    n, N = int(n_per_axis), int(n_per_axis) ** d
    src, dst = _edges(images, n, d, leaves)
    graph = csr_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(N + 1, N + 1))
    n_comp, label = connected_components(graph, directed=True, connection="strong")
    outside = label[N]
    cs, cd = label[src], label[dst]
    cross = cs != cd
    key = np.unique(cs[cross].astype(np.int64) * n_comp + cd[cross])  # 1-D unique is fast
    pairs = np.stack([key // n_comp, key % n_comp], axis=1)
    succ = csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_comp, n_comp))
    pred = succ.T.tocsr()
    above = np.zeros(n_comp, bool)
    above[breadth_first_order(pred, outside, directed=True, return_predecessors=False)] = True
    order_c = _sinks_first(pred, np.diff(succ.indptr), above)

    # Morse sets: recurrent components (several cells, or one with a self-loop), numbered
    # sinks first; the outside is never one
    size = np.bincount(label, minlength=n_comp)
    recurrent = size > 1
    recurrent[cs[src == dst]] = True
    recurrent[outside] = False
    comps = [int(c) for c in order_c if recurrent[c]]
    set_of_comp = np.full(n_comp, -1)
    set_of_comp[comps] = np.arange(len(comps))
    cell_label = label[:N]
    by_label = np.argsort(cell_label, kind="stable")
    first = np.searchsorted(cell_label[by_label], comps)
    morse_sets = [by_label[i : i + size[c]].tolist() for i, c in zip(first, comps)]

    # reachability as bitsets over Morse sets (bit len(comps) = the outside), sinks first
    out_bit = 1 << len(comps)
    reach = [0] * n_comp
    for v in order_c:
        r = 0
        for s in succ.indices[succ.indptr[v] : succ.indptr[v + 1]]:
            m = set_of_comp[s]
            r |= reach[s] | (1 << int(m) if m >= 0 else out_bit if s == outside else 0)
        reach[v] = r
    below = [reach[c] for c in comps]
    order = []
    for u, r in enumerate(below):
        members = [w for w in range(len(comps)) if r >> w & 1]
        via = 0
        for w in members:
            via |= below[w]
        # Hasse diagram: drop v when it is reached through another set below u
        order += [(u, v) for v in members if not via >> v & 1]

    # Grading by attracting blocks. The Morse sets and the outside ("keys") are ranked in
    # the linear extension above; a cell reached from keys gets the lowest rank among
    # them, so each block is everything reachable from a down set and a cell flowing out
    # of a Morse set joins that set's grade. A cell no key reaches (a pure transient) gets
    # a grade of its own just above its highest successor, so whatever relative homology
    # it carries is not charged to a Morse set. (Grading each component apart is also a
    # filtration, but for a map that jumps more than a cell per step it leaves homology on
    # transient cells between Morse sets.) Grades are doubled: keys even, transients odd.
    keys = [c for c in order_c if recurrent[c] or c == outside]
    rank = np.full(n_comp, np.iinfo(np.int64).max)
    rank[keys] = 2 * np.arange(len(keys))
    for v in order_c[::-1]:  # sources first: predecessors are final before v
        p = pred.indices[pred.indptr[v] : pred.indptr[v + 1]]
        if p.size:
            rank[v] = min(rank[v], rank[p].min())
    unreached = rank == np.iinfo(np.int64).max
    for v in order_c:  # sinks first: successors are final before v
        if unreached[v]:
            rank[v] = (rank[succ.indices[succ.indptr[v] : succ.indptr[v + 1]]] | 1).max()
    owner = np.full(2 * len(keys) + 2, -1)  # grade -> component (-1: transients, ring)
    owner[0 : 2 * len(keys) : 2] = keys
    outside_grade, top_grade = rank[outside], 2 * len(keys) + 1

    # pychomp's cubical complex has no cells on its far side (it wraps round), so the box
    # sits at 1..n inside n+3 cells per axis: a ring of cells around it, then the fringe.
    # A ring cell takes the outside's grade where its box neighbour's image leaves the box
    # (that face is an exit), else a grade above all (that face belongs to the box cell).
    direct = np.zeros(N, bool)
    direct[src[dst == N]] = True
    direct |= cell_label == outside
    pad = _coords(n + 3, d)
    inner = _flat(np.clip(pad - 1, 0, n - 1), n)
    in_box = ((pad >= 1) & (pad <= n)).all(axis=1)
    ring = ~in_box & (pad <= n + 1).all(axis=1)
    top = np.full(len(pad), top_grade, np.int64)
    top[in_box] = rank[cell_label[inner[in_box]]]
    top[ring & direct[inner]] = outside_grade
    cc = pychomp.CubicalComplex([n + 3] * d)
    offset = cc.size() - cc.size(d)
    top_list = top.tolist()
    grading = pychomp.construct_grading(cc, lambda v: top_list[v - offset])
    cm = pychomp.ConnectionMatrix(pychomp.GradedComplex(cc, grading))
    cx = cm.complex()
    ranks = [[0] * (d + 1) for _ in comps]
    boundary, stray = set(), 0
    for k in range(d + 1):
        for g in cx(k):
            c = owner[cm.value(g)]
            if c < 0 or c == outside:
                stray += cm.value(g) % 2 == 1 and cm.value(g) != top_grade
                continue
            m = int(set_of_comp[c])
            ranks[m][k] += 1
            for b in cx.boundary({g}):
                to = owner[cm.value(b)]
                if to >= 0 and to != outside:
                    boundary.add((m, int(set_of_comp[to]), k))
    return ConnectionResult(
        morse_sets=morse_sets,
        order=order,
        conley_ranks=ranks,
        boundary=sorted(boundary),
        leaves=[bool(b & out_bit) for b in below],
        n_per_axis=n,
        dim=d,
        stray_generators=int(stray),
        seconds=time.perf_counter() - start,
    )


def set_of_points(result: ConnectionResult, points, lower, upper, n_per_axis: int) -> np.ndarray:
    """Index of the Morse set holding each point (``(m, d)``), -1 if none or outside the box."""
    lower, upper = _box(lower, upper)
    table = np.full(int(n_per_axis) ** lower.size + 1, -1)  # last entry: outside the box
    for m, cells in enumerate(result.morse_sets):
        table[cells] = m
    return table[_cell_of(points, lower, upper, int(n_per_axis))]
