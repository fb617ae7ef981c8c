"""Morse graph pictures with matplotlib alone: a layered (Sugiyama-style) layout and a drawing.

Graphviz's ``dot`` is a system program that ``pip install`` does not bring, so the graph is
laid out here in Python and drawn with matplotlib's Agg canvas:

1. layers: a node's layer is the length of its longest path to a sink, so attractors sit
   at the bottom (layer 0) and every edge points down;
2. an edge spanning several layers gets a dummy point per layer it crosses, so crossing
   reduction sees it and the drawn arrow bends around the boxes in between;
3. within a layer, nodes are ordered by a few barycentre sweeps plus adjacent swaps, keeping
   the order with the fewest crossings; layers are centred;
4. weakly connected components are laid out alone and placed side by side.

Node styles (``STYLES``): an attractor has a double border, an unresolved node a dashed
border over a hatch, any other node a single border. A node keeps the fill colour it is
given whatever its style, so a Morse set looks the same here as in any other picture. An
optional key under the graph shows a sample box of each style beside its meaning, and notes.
"""

from __future__ import annotations

from bisect import bisect_right, insort
import textwrap
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

_SWEEPS = 12  # barycentre sweeps (alternating down / up); small graphs settle in two or three
_DUMMY_WIDTH = 0.3  # room a passing edge takes in a layer, in node widths
_PLACE_ROUNDS = 6  # rounds of pulling items towards their neighbours
_COMPONENT_GAP = 0.5  # extra room between side-by-side components, in node widths

_FONT_SIZE = 9.0  # points; the figure grows instead of the text shrinking
_PAD = (0.12, 0.08)  # box padding around the label, inches (x, y)
_GAP = (0.3, 0.55)  # room between boxes of one layer / between layers, inches
_MARGIN = 0.2  # around the drawing, inches
_RING = 0.05  # offset of an attractor's outer border, inches
_EDGE_COLOUR = "#404040"
_KEY_FONT_SIZE = 8.0  # points: the key is smaller than the node labels
_KEY_SAMPLE = (0.36, 0.2)  # a style's sample box, inches
_KEY_ROW_GAP = 0.07  # between key rows, inches
_KEY_MIN_WIDTH = 5.0  # inches: a key narrower than this is wrapped at this width at most

# how a node may be drawn; the key names them, ``None`` marks a key line without a sample
STYLES = ("attractor", "nontrivial", "unresolved")

Item = Hashable  # a node (int) or a dummy point (u, v, layer) of a long edge


@dataclass
class _Layout:
    """Positions in layout units (x in node widths, y in layers) and each edge's route."""

    pos: dict[int, tuple[float, float]]
    routes: dict[tuple[int, int], list[tuple[float, float]]]  # from u's centre to v's centre


# --- layout ---------------------------------------------------------------------------


def layered_layout(nodes: list[int], edges: list[tuple[int, int]]) -> dict[int, tuple[float, float]]:
    """``x, y`` per node: ``y`` is the layer, sinks (attractors) at the bottom (``y = 0``).

    Every edge points downward (``y[u] > y[v]``): the layer of a node is the length of the
    longest path from it to a sink. Within a layer, nodes are ordered to reduce crossings
    (a few barycentre sweeps) and centred; ``x`` is in node widths. The result depends only
    on the input (order included). Raises ValueError on a cycle or an edge to an unknown node.
    """
    return _layout(nodes, edges).pos


def _layout(nodes: Iterable[int], edges: Iterable[tuple[int, int]]) -> _Layout:
    order = list(dict.fromkeys(nodes))  # drop repeats, keep the caller's order
    edge_list = list(dict.fromkeys((u, v) for u, v in edges))
    succ: dict[int, list[int]] = {u: [] for u in order}
    for u, v in edge_list:
        if u not in succ or v not in succ:
            raise ValueError(f"edge {u} -> {v} names a node that is not in the graph")
        succ[u].append(v)
    cycle = _find_cycle(order, succ)
    if cycle:
        raise ValueError("the Morse graph has a cycle " + " -> ".join(map(str, cycle))
                         + "; its edges must form a partial order (a DAG)")
    layer = _longest_path_layers(order, succ)

    pos: dict[Item, tuple[float, float]] = {}
    routes: dict[tuple[int, int], list[Item]] = {}
    right = None  # right end of the components placed so far
    for comp in _components(order, edge_list):
        comp_edges = [(u, v) for u, v in edge_list if u in comp]
        rows, chains = _rows_with_dummies([u for u in order if u in comp], comp_edges, layer)
        up, down = _links(rows, chains)
        _reduce_crossings(rows, up, down)
        comp_pos = _place(rows, up, down)
        left = min(x - _width(it) / 2 for it, (x, _) in comp_pos.items())
        shift = 0.0 if right is None else right + _COMPONENT_GAP - left
        pos.update({it: (x + shift, y) for it, (x, y) in comp_pos.items()})
        right = max(x + _width(it) / 2 for it, (x, _) in pos.items())
        routes.update(chains)
    # centre the whole drawing on x = 0 (one component already is)
    mid = (min(x for x, _ in pos.values()) + max(x for x, _ in pos.values())) / 2 if pos else 0.0
    pos = {it: (x - mid, y) for it, (x, y) in pos.items()}
    return _Layout(pos={u: pos[u] for u in order},
                   routes={e: [pos[it] for it in chain] for e, chain in routes.items()})


def _find_cycle(order: list[int], succ: dict[int, list[int]]) -> list[int] | None:
    """One cycle as ``[a, b, ..., a]``, or None; iterative DFS (no recursion limit)."""
    state = dict.fromkeys(order, 0)  # 0 unseen, 1 on the current path, 2 finished
    for root in order:
        if state[root]:
            continue
        state[root] = 1
        path, stack = [root], [iter(succ[root])]
        while stack:
            v = next(stack[-1], None)
            if v is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[v] == 1:
                return path[path.index(v):] + [v]
            elif state[v] == 0:
                state[v] = 1
                path.append(v)
                stack.append(iter(succ[v]))
    return None


def _longest_path_layers(order: list[int], succ: dict[int, list[int]]) -> dict[int, int]:
    """Length of the longest path from each node to a sink (the graph is acyclic)."""
    layer: dict[int, int] = {}
    for root in order:
        stack = [root]
        while stack:  # post-order: a node is set once all its successors are
            u = stack[-1]
            todo = [v for v in succ[u] if v not in layer]
            if todo:
                stack.extend(todo)
            else:
                layer[u] = 1 + max((layer[v] for v in succ[u]), default=-1)
                stack.pop()
    return layer


def _components(order: list[int], edges: list[tuple[int, int]]) -> list[set[int]]:
    """Weakly connected components, ordered by their first node in ``order``."""
    nbrs: dict[int, list[int]] = {u: [] for u in order}
    for u, v in edges:
        nbrs[u].append(v)
        nbrs[v].append(u)
    seen: set[int] = set()
    comps = []
    for root in order:
        if root in seen:
            continue
        comp, stack = {root}, [root]
        while stack:
            for v in nbrs[stack.pop()]:
                if v not in comp:
                    comp.add(v)
                    stack.append(v)
        seen |= comp
        comps.append(comp)
    return comps


def _rows_with_dummies(order: list[int], edges: list[tuple[int, int]], layer: dict[int, int]):
    """Rows (one list per layer, bottom first) in input order, and each edge's chain of items.

    A long edge ``u -> v`` becomes ``u, (u, v, k), ..., v`` with a dummy in every layer ``k``
    strictly between, so every link of a chain joins adjacent layers.
    """
    rows: list[list[Item]] = [[] for _ in range(max(layer[u] for u in order) + 1)]
    for u in order:
        rows[layer[u]].append(u)
    chains = {}
    for u, v in edges:
        dummies = [(u, v, k) for k in range(layer[u] - 1, layer[v], -1)]
        for d in dummies:
            rows[d[2]].append(d)
        chains[(u, v)] = [u, *dummies, v]
    return rows, chains


def _links(rows: list[list[Item]], chains: dict) -> tuple[dict, dict]:
    """Each item's neighbours one layer up and one layer down."""
    up: dict[Item, list[Item]] = {it: [] for row in rows for it in row}
    down: dict[Item, list[Item]] = {it: [] for row in rows for it in row}
    for chain in chains.values():
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)
    return up, down


def _reduce_crossings(rows: list[list[Item]], up: dict, down: dict) -> None:
    """Reorder ``rows`` in place: barycentre sweeps and adjacent swaps, best order kept."""
    best, best_crossings = [r[:] for r in rows], _crossings(rows, down)
    for sweep in range(_SWEEPS):
        if best_crossings == 0:
            break
        if sweep % 2 == 0:  # top to bottom: each layer follows the one above it
            for k in range(len(rows) - 2, -1, -1):
                rows[k] = _by_barycentre(rows[k], rows[k + 1], up)
        else:
            for k in range(1, len(rows)):
                rows[k] = _by_barycentre(rows[k], rows[k - 1], down)
        _transpose(rows, up, down)
        crossings = _crossings(rows, down)
        if crossings < best_crossings:
            best, best_crossings = [r[:] for r in rows], crossings
    rows[:] = best


def _by_barycentre(row: list[Item], ref: list[Item], nbrs: dict[Item, list[Item]]) -> list[Item]:
    """``row`` sorted by the mean position of each item's neighbours in ``ref``; items
    without any keep their place (ties keep the current order: deterministic)."""
    at = {it: i for i, it in enumerate(ref)}
    scale = len(ref) / max(len(row), 1)  # so a lone item's own index is comparable

    def key(i_it):
        i, it = i_it
        ns = nbrs[it]
        return (sum(at[n] for n in ns) / len(ns) if ns else i * scale, i)

    return [it for _, it in sorted(enumerate(row), key=key)]


def _transpose(rows: list[list[Item]], up: dict, down: dict) -> None:
    """Swap neighbours in a layer while that removes crossings with the layers around it."""
    for _ in range(len(max(rows, key=len))):  # bounded: each pass can only remove crossings
        improved = False
        for k, row in enumerate(rows):
            at_up = {it: i for i, it in enumerate(rows[k + 1])} if k + 1 < len(rows) else {}
            at_down = {it: i for i, it in enumerate(rows[k - 1])} if k > 0 else {}
            for i in range(len(row) - 1):
                a, b = row[i], row[i + 1]
                if _pair_crossings(b, a, up, at_up, down, at_down) < _pair_crossings(a, b, up, at_up, down, at_down):
                    row[i], row[i + 1] = b, a
                    improved = True
        if not improved:
            return


def _pair_crossings(a, b, up, at_up, down, at_down) -> int:
    """Crossings between the edges of ``a`` and those of ``b`` when ``a`` is left of ``b``."""
    n = sum(at_up[x] > at_up[y] for x in up[a] for y in up[b])
    return n + sum(at_down[x] > at_down[y] for x in down[a] for y in down[b])


def _crossings(rows: list[list[Item]], down: dict[Item, list[Item]]) -> int:
    """Edge crossings of the whole drawing (sum over pairs of adjacent layers)."""
    total = 0
    for upper, lower in zip(rows[1:], rows[:-1]):
        at = {it: i for i, it in enumerate(lower)}
        # links sorted by upper end, then lower: a crossing is an inversion of the lower ends
        links = sorted((i, at[b]) for i, a in enumerate(upper) for b in down[a])
        seen: list[int] = []
        for _, e in links:
            total += len(seen) - bisect_right(seen, e)
            insort(seen, e)
    return total


def _width(it: Item) -> float:
    return _DUMMY_WIDTH if isinstance(it, tuple) else 1.0


def _place(rows: list[list[Item]], up: dict, down: dict) -> dict[Item, tuple[float, float]]:
    """x of every item: layers start packed and centred on 0 (a node takes one width, a dummy
    less), then a few rounds move each item towards the mean x of its neighbours, keeping the
    order and the spacing, so edges run straight where they can; the result is re-centred."""
    x = {}
    for row in rows:
        xs = _packed(row)
        x.update({it: xi - xs[-1] / 2 for it, xi in zip(row, xs)})
    for _ in range(_PLACE_ROUNDS):
        for row in rows[::-1] + rows:  # downward then upward sweep
            want = [sum(x[n] for n in up[it] + down[it]) / len(up[it] + down[it])
                    if up[it] or down[it] else x[it] for it in row]
            x.update(zip(row, _fit_in_order(want, _packed(row))))
    mid = (min(x.values()) + max(x.values())) / 2
    return {it: (x[it] - mid, float(y)) for y, row in enumerate(rows) for it in row}


def _packed(row: list[Item]) -> list[float]:
    """Positions of ``row``'s items side by side from 0, each spaced by their half widths."""
    xs = [0.0]
    for a, b in zip(row, row[1:]):
        xs.append(xs[-1] + (_width(a) + _width(b)) / 2)
    return xs


def _fit_in_order(want: list[float], packed: list[float]) -> list[float]:
    """Positions closest to ``want`` (least squares) that keep at least the gaps of ``packed``.

    With ``z_i = x_i - packed_i`` the gaps hold iff ``z`` is non-decreasing, so this is an
    isotonic regression of ``want - packed``: pool adjacent violators.
    """
    blocks: list[list[float]] = []  # [mean, count]
    for w, p in zip(want, packed):
        blocks.append([w - p, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks[-1]
            blocks[-1] = [(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2]
    z = [m for m, n in blocks for _ in range(int(n))]
    return [zi + p for zi, p in zip(z, packed)]


# --- drawing --------------------------------------------------------------------------

KeyRow = tuple[str | None, str]  # (a style of STYLES, or None for a note without a sample; its text)


def draw_morse_graph(
    nodes: list[int],
    edges: list[tuple[int, int]],
    labels: dict[int, str],
    colours: dict[int, str],
    attractors: set[int] | list[int],
    *,
    unresolved: set[int] | frozenset[int] = frozenset(),
    title: str | None = None,
    key: Sequence[KeyRow] = (),
    ax=None,
):
    """Draw a Morse graph with matplotlib and return the Figure (nothing is shown).

    Nodes are rounded boxes holding their label (several lines are fine), filled with
    ``colours[u]`` whatever their style: attractors get a double border, ``unresolved`` nodes
    a dashed border over a hatch. Arrows run from box edge to box edge, bending around boxes
    when they skip layers. ``key`` rows are drawn under the graph: a sample box of the row's
    style beside its text, or the text alone (long texts are wrapped). Without ``ax`` a new
    figure is made whose size follows the widest layer and the number of layers, so the
    text keeps its size however large the graph; with ``ax`` the drawing is scaled to fit it.
    The patches carry ids (``gid``): ``node-U`` a node's fill, ``ring-U`` an attractor's
    outer border, ``key-STYLE`` a key's sample.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layout = _layout(nodes, edges)
    order = list(layout.pos)
    if not order:  # still a picture, so callers need no special case
        return _draw_node_less(ax, title, [text for style, text in key if style is None])
    text = {u: labels.get(u, str(u)) for u in order}
    size = _text_sizes(text, _FONT_SIZE)  # label extents in inches
    box = {u: (w + 2 * _PAD[0], h + 2 * _PAD[1]) for u, (w, h) in size.items()}
    # one pitch for the whole drawing: the widest / tallest box plus a gap
    pitch_x = max(w for w, _ in box.values()) + _GAP[0]
    pitch_y = max(h for _, h in box.values()) + _GAP[1]
    centre = {u: (x * pitch_x, y * pitch_y) for u, (x, y) in layout.pos.items()}
    x0 = min(centre[u][0] - box[u][0] / 2 for u in order) - _MARGIN - _RING
    x1 = max(centre[u][0] + box[u][0] / 2 for u in order) + _MARGIN + _RING
    y0 = min(centre[u][1] - box[u][1] / 2 for u in order) - _MARGIN - _RING
    y1 = max(centre[u][1] + box[u][1] / 2 for u in order) + _MARGIN + _RING
    rows = _key_rows(key, max(x1 - x0 - 2 * _MARGIN, _KEY_MIN_WIDTH))
    if rows:
        key_w = max(offset + w for _, offset, w, _, _ in rows) + 2 * _MARGIN
        extra = max(0.0, key_w - (x1 - x0)) / 2  # the graph stays centred over a wider key
        x0, x1 = x0 - extra, x1 + extra
        key_top = y0
        y0 -= sum(h + _KEY_ROW_GAP for _, _, _, h, _ in rows) + _MARGIN / 2

    if ax is None:
        # data units are inches: the axes fills the figure below the title, one inch per unit
        title_w, title_h = _text_sizes({0: title}, _FONT_SIZE + 2)[0] if title else (0.0, 0.0)
        title_h += 0.25 if title else 0.0
        extra = max(0.0, title_w + 2 * _MARGIN - (x1 - x0)) / 2  # widen for a long title
        x0, x1 = x0 - extra, x1 + extra
        fig = Figure(figsize=(x1 - x0, y1 - y0 + title_h))
        FigureCanvasAgg(fig)  # Agg renders it; no pyplot, no global state
        ax = fig.add_axes((0, 0, 1, (y1 - y0) / (y1 - y0 + title_h)))
        scale = 1.0
    else:
        fig = ax.figure
        bb = ax.get_position()
        fw, fh = fig.get_size_inches()
        scale = min(bb.width * fw / (x1 - x0), bb.height * fh / (y1 - y0))
        ax.set_aspect("equal", adjustable="box")  # the axes shrinks to the drawing
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=_FONT_SIZE + 2, pad=6, parse_math=False)  # outside: not scaled

    attractor_set, unresolved_set = set(attractors), set(unresolved)
    for (u, v), route in layout.routes.items():
        pts = [(x * pitch_x, y * pitch_y) for x, y in route]
        ring_v = _RING if v in attractor_set else 0.0
        pts[0] = _leave_box(pts[0], pts[1], box[u], 0.03 + (_RING if u in attractor_set else 0.0))
        pts[-1] = _leave_box(pts[-1], pts[-2], box[v], 0.04 + ring_v)
        ax.add_patch(_arrow(pts, scale))
    for u in order:
        _draw_node(ax, centre[u], box[u], text[u], colours.get(u, "#d9d9d9"),
                   attractor=u in attractor_set, unresolved=u in unresolved_set, scale=scale,
                   fill_id=f"node-{u}", ring_id=f"ring-{u}")
    if rows:
        _draw_key(ax, rows, x0 + _MARGIN, key_top, scale)
    return fig


def _key_rows(key: Sequence[KeyRow], width: float) -> list[tuple[str | None, float, float, float, str]]:
    """Each key row as (style, text offset, text width, row height, text), lengths in
    inches, the text wrapped so that the row is at most ``width`` wide."""
    rows = []
    for style, line in key:
        if style is not None and style not in STYLES:
            raise ValueError(f"key style {style!r} is not one of {STYLES}")
        offset = _KEY_SAMPLE[0] + 0.12 if style else 0.0
        line = _wrapped(line, width - offset)
        w, h = _text_sizes({0: line}, _KEY_FONT_SIZE)[0]
        rows.append((style, offset, w, max(h, _KEY_SAMPLE[1] if style else 0.0), line))
    return rows


def _wrapped(line: str, width: float) -> str:
    """``line`` broken at spaces so that it is at most ``width`` inches wide (measured)."""
    w, _ = _text_sizes({0: line}, _KEY_FONT_SIZE)[0]
    if w <= width:
        return line
    chars = max(20, int(len(line) * width / w))
    while True:
        out = textwrap.fill(line, chars)
        if chars <= 20 or _text_sizes({0: out}, _KEY_FONT_SIZE)[0][0] <= width:
            return out
        chars -= 4


def _draw_key(ax, rows, left: float, top: float, scale: float) -> None:
    """The key under the graph: rows from ``top`` down, samples and texts from ``left``."""
    y = top
    for style, offset, _, h, line in rows:
        y -= _KEY_ROW_GAP
        mid = y - h / 2
        if style:
            _draw_node(ax, (left + _KEY_SAMPLE[0] / 2, mid), _KEY_SAMPLE, "", "#f2f2f2",
                       attractor=style == "attractor", unresolved=style == "unresolved", scale=scale,
                       fill_id=f"key-{style}", ring_id=f"key-{style}-ring")
        ax.text(left + offset, mid, line, ha="left", va="center", fontsize=_KEY_FONT_SIZE * scale,
                color="#202020", parse_math=False, gid="key-text")
        y -= h


def _draw_node_less(ax, title: str | None, notes: Sequence[str] = ()):
    """The picture of a graph without nodes: a short note (and the key's notes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    text = "\n".join(["(no Morse sets)", *(textwrap.fill(n, 70) for n in notes)])
    if ax is None:
        fig = Figure(figsize=(5 if notes else 3, 1.2 + 0.3 * text.count("\n")))
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 0.75 if title else 1))
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=_FONT_SIZE, parse_math=False)
    if title:
        ax.set_title(title, fontsize=_FONT_SIZE + 2, parse_math=False)
    return ax.figure


def _text_sizes(texts: dict, fontsize: float) -> dict:
    """Width and height in inches of each (possibly multi-line) text, measured by Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=72)  # at 72 dpi a pixel is a point
    renderer = FigureCanvasAgg(fig).get_renderer()
    out = {}
    for key, s in texts.items():
        bb = fig.text(0, 0, s, fontsize=fontsize, multialignment="center", parse_math=False).get_window_extent(renderer)
        out[key] = (bb.width / 72, bb.height / 72)
    return out


def _leave_box(c: tuple[float, float], towards: tuple[float, float], wh: tuple[float, float],
               gap: float) -> tuple[float, float]:
    """Where the ray from a box's centre ``c`` towards ``towards`` leaves the box (plus gap)."""
    dx, dy = towards[0] - c[0], towards[1] - c[1]
    hw, hh = wh[0] / 2 + gap, wh[1] / 2 + gap
    t = min(hw / abs(dx) if dx else float("inf"), hh / abs(dy) if dy else float("inf"))
    return c[0] + t * dx, c[1] + t * dy


def _arrow(pts: list[tuple[float, float]], scale: float):
    """An arrow along ``pts``: straight for two points, else a smooth curve through every
    point (Catmull-Rom pieces as cubic Beziers): passing through the dummy points keeps the
    curve clear of the boxes beside them."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    verts, codes = [pts[0]], [Path.MOVETO]
    ext = [pts[0], *pts, pts[-1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1:i + 3]
        c1 = (p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6)
        c2 = (p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6)
        verts += [c1, c2, p2]
        codes += [Path.CURVE4] * 3
    return FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>", mutation_scale=12 * scale,
                           color=_EDGE_COLOUR, linewidth=1.1 * scale, zorder=1)


def _draw_node(ax, c, wh, text: str, colour: str, *, attractor: bool, unresolved: bool, scale: float,
               fill_id: str | None = None, ring_id: str | None = None) -> None:
    """One node: rounded box filled with ``colour``, label, and the attractor ring or the
    unresolved hatch and dashed border. ``fill_id`` and ``ring_id`` name the fill's and the
    ring's patches (matplotlib's ``gid``), so a test can find them."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import FancyBboxPatch

    def rounded(grow: float, **kw):
        w, h = wh[0] + 2 * grow, wh[1] + 2 * grow
        return FancyBboxPatch((c[0] - w / 2, c[1] - h / 2), w, h,
                              boxstyle=f"round,pad=0,rounding_size={0.08 + grow}", **kw)

    # the fill is the node's own colour in every style: a Morse set is recognised by it
    # across pictures, and the style shows in the border and the hatch
    ax.add_patch(rounded(0, facecolor=colour, edgecolor="none", zorder=2, gid=fill_id))
    r, g, b = to_rgb(colour)
    fg = "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"  # luminance
    if unresolved:
        # the hatch is its own patch: its colour follows its edge colour on every matplotlib
        ax.add_patch(rounded(0, facecolor="none", edgecolor=(0, 0, 0, 0.3), hatch="///", linewidth=0, zorder=2))
        ax.add_patch(rounded(0, facecolor="none", edgecolor="#404040", linestyle="--",
                             linewidth=1.3 * scale, zorder=3))
    else:
        ax.add_patch(rounded(0, facecolor="none", edgecolor="#202020", linewidth=1.0 * scale, zorder=3))
    if attractor:  # a double border, as graphviz's peripheries=2
        ax.add_patch(rounded(_RING, facecolor="none", edgecolor="#202020", linewidth=1.6 * scale, zorder=3,
                             gid=ring_id))
    if text:
        ax.text(c[0], c[1], text, ha="center", va="center", multialignment="center", color=fg,
                fontsize=_FONT_SIZE * scale, zorder=4, parse_math=False,
                bbox=dict(boxstyle="round,pad=0.15", facecolor=colour, edgecolor="none", alpha=0.85)
                if unresolved else None)  # keep the label readable over the hatch
