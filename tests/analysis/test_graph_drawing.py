"""The Morse graph layout and drawing: layers, crossings, cycles, and pictures without graphviz."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from doodl.analysis._graph_drawing import _KEY_MIN_WIDTH, _layout, draw_morse_graph, layered_layout

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which always comes first."""
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


def random_hasse(n: int, p: float, seed: int) -> list[tuple[int, int]]:
    """The Hasse diagram (transitive reduction) of a random order on ``range(n)``: i -> j, j < i."""
    rng = random.Random(seed)
    succ = {i: {j for j in range(i) if rng.random() < p} for i in range(n)}
    below: dict[int, set[int]] = {}
    for i in range(n):
        below[i] = set().union(*[{j} | below[j] for j in succ[i]])
    return [(i, j) for i in range(n) for j in sorted(succ[i])
            if not any(j in below[k] for k in succ[i] if k != j)]


def segments_cross(p, q, r, s) -> bool:
    """Whether segments pq and rs cross at a point inside both (shared ends do not count)."""
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2, d3, d4 = orient(r, s, p), orient(r, s, q), orient(p, q, r), orient(p, q, s)
    return d1 * d2 < 0 and d3 * d4 < 0


def drawn_crossings(routes: dict) -> int:
    """Crossings between the drawn polylines of different edges."""
    segs = [(e, a, b) for e, pts in routes.items() for a, b in zip(pts, pts[1:])]
    return sum(segments_cross(a, b, c, d) for i, (e, a, b) in enumerate(segs)
               for f, c, d in segs[i + 1:] if e != f)


def sinks_of(nodes, edges) -> set[int]:
    return set(nodes) - {u for u, _ in edges}


# --- layout ---------------------------------------------------------------------------


def test_every_edge_points_down_and_sinks_are_at_the_bottom():
    nodes = list(range(30))
    edges = random_hasse(30, 0.15, seed=1)
    pos = layered_layout(nodes, edges)
    assert set(pos) == set(nodes)
    assert all(pos[u][1] > pos[v][1] for u, v in edges)
    assert all(pos[u][1] == 0 for u in sinks_of(nodes, edges))


def test_layer_is_the_longest_path_to_a_sink():
    # 6 -> 5 -> 4 -> 0 is the longest path from 6; the shortcut 6 -> 0 must not pull 6 down
    edges = [(6, 5), (5, 4), (4, 0), (6, 0), (5, 1), (3, 1), (3, 2), (7, 3)]
    pos = layered_layout(list(range(8)), edges)
    assert {u: pos[u][1] for u in pos} == {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 3, 7: 2}


def test_the_double_well_saddle_sits_centred_above_its_two_minima():
    pos = layered_layout([0, 1, 2], [(2, 0), (2, 1)])
    assert pos[0][1] == pos[1][1] == 0 and pos[2][1] == 1
    assert pos[0][0] < pos[2][0] < pos[1][0]
    assert pos[2][0] == pytest.approx((pos[0][0] + pos[1][0]) / 2)


def test_a_single_node_and_no_nodes():
    assert layered_layout([7], []) == {7: (0.0, 0.0)}
    assert layered_layout([], []) == {}


def test_crossing_reduction_finds_the_planar_drawing():
    # Input order puts the top layer's children in reverse order of the bottom layer's, so
    # a drawing in input order crosses; reversing one layer removes every crossing.
    nodes = [0, 1, 2, 3, 4, 5, 6, 7, 8]
    edges = [(4, 2), (4, 3), (5, 1), (6, 0), (7, 4), (7, 5), (8, 6)]
    in_input_order = {u: (float(i), 0.0) for i, u in enumerate([0, 1, 2, 3])}
    in_input_order.update({u: (float(i), 1.0) for i, u in enumerate([4, 5, 6])})
    in_input_order.update({7: (0.0, 2.0), 8: (1.0, 2.0)})
    assert drawn_crossings({e: [in_input_order[e[0]], in_input_order[e[1]]] for e in edges}) > 0

    pos = layered_layout(nodes, edges)
    assert drawn_crossings({e: [pos[e[0]], pos[e[1]]] for e in edges}) == 0


def test_crossing_reduction_routes_a_long_edge_without_crossings():
    # 3 -> 0 skips a layer; in input order its dummy point would sit right of 2 and cross 2 -> 1
    nodes = [0, 1, 2, 3]
    edges = [(2, 1), (3, 2), (3, 0)]
    layout = _layout(nodes, edges)
    assert len(layout.routes[(3, 0)]) == 3  # one bend, in layer 1
    assert drawn_crossings(layout.routes) == 0


def test_a_cycle_raises_a_clear_error():
    with pytest.raises(ValueError, match=r"cycle 0 -> 1 -> 2 -> 0"):
        layered_layout([0, 1, 2, 3], [(0, 1), (1, 2), (2, 0), (2, 3)])
    with pytest.raises(ValueError, match="cycle"):
        layered_layout([0], [(0, 0)])
    with pytest.raises(ValueError, match="not in the graph"):
        layered_layout([0], [(0, 1)])


def test_components_sit_side_by_side_in_input_order():
    nodes = [0, 1, 2, 3, 4, 5]
    edges = [(2, 0), (2, 1), (4, 3)]  # {0, 1, 2}, {3, 4} and the lone 5
    pos = layered_layout(nodes, edges)
    comps = [[0, 1, 2], [3, 4], [5]]
    spans = [(min(pos[u][0] for u in c), max(pos[u][0] for u in c)) for c in comps]
    for (_, right), (left, _) in zip(spans, spans[1:]):
        assert right + 1 <= left  # at least a node width apart, never interleaved


def test_layout_is_deterministic():
    edges = random_hasse(20, 0.2, seed=4)
    assert layered_layout(list(range(20)), edges) == layered_layout(list(range(20)), list(edges))


# --- drawing --------------------------------------------------------------------------


def double_well_args():
    labels = {0: "0: CI (1, 0, 0)\n198 boxes", 1: "1: CI (1, 0, 0)\n69 boxes", 2: "2: CI (0, 1, 0)\n29 boxes"}
    return [0, 1, 2], [(2, 0), (2, 1)], labels, {0: "#1f77b4", 1: "#e6550d", 2: "#31a354"}, {0, 1}


def test_draws_a_png_that_grows_with_the_graph(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no external program (graphviz's dot) can run
    small = png_bytes(draw_morse_graph(*double_well_args(), title="double well"))

    nodes = list(range(32))
    edges = random_hasse(32, 0.12, seed=5)
    sinks = sinks_of(nodes, edges)
    big = png_bytes(draw_morse_graph(
        nodes, edges, {u: f"{u}: CI (0, 1, 0)\n{10 * u} boxes" for u in nodes},
        {u: "#80b1d3" for u in nodes}, sinks - {3}, unresolved={3}, title="32 Morse sets"))
    (w0, h0), (w1, h1) = png_size(small), png_size(big)
    assert w1 > 2 * w0 and h1 > 2 * h0


def test_draws_single_node_empty_graph_and_into_a_given_axes():
    assert png_bytes(draw_morse_graph([0], [], {0: "0: CI (1, 0, 0)"}, {0: "#1f77b4"}, [0]))[:8] == PNG_MAGIC
    assert png_bytes(draw_morse_graph([], [], {}, {}, []))[:8] == PNG_MAGIC

    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    assert draw_morse_graph(*double_well_args(), unresolved={2}, ax=ax) is fig
    assert png_bytes(fig)[:8] == PNG_MAGIC


def patches(fig, prefix: str) -> dict[str, object]:
    """The patches whose id (``gid``) starts with ``prefix``, by id."""
    return {p.get_gid(): p for p in fig.axes[0].patches if (p.get_gid() or "").startswith(prefix)}


def test_every_node_keeps_its_colour_and_the_style_shows_in_the_border():
    from matplotlib.colors import to_rgba

    nodes, edges, labels, colours, attractors = double_well_args()
    fig = draw_morse_graph(nodes, edges, labels, colours, attractors, unresolved={2})
    fills = patches(fig, "node-")
    assert {g: p.get_facecolor() for g, p in fills.items()} == {f"node-{u}": to_rgba(colours[u]) for u in nodes}
    assert set(patches(fig, "ring-")) == {"ring-0", "ring-1"}  # attractors only
    dashed = [p for p in fig.axes[0].patches if p.get_linestyle() == "--"]
    assert len(dashed) == 1  # the unresolved node's border


def key_rows(verdict: bool = True):
    rows = [(None, "too few runs: an illustration")] if not verdict else [("attractor", "attractor: a sink")]
    return rows + [("nontrivial", "saddle or other"), ("unresolved", "unresolved: trivial or undefined"),
                   (None, "CI (a, b, c): ranks of the Conley index in dimensions 0, 1, 2; " * 3)]


def test_the_key_shows_a_sample_of_each_style_and_wraps_long_notes():
    args = double_well_args()
    fig = draw_morse_graph(*args, unresolved={2}, key=key_rows())
    assert set(patches(fig, "key-")) == {"key-attractor", "key-attractor-ring", "key-nontrivial", "key-unresolved"}
    texts = [t for t in fig.axes[0].texts if t.get_gid() == "key-text"]
    assert [t.get_text().split()[0] for t in texts] == ["attractor:", "saddle", "unresolved:", "CI"]
    assert "\n" in texts[-1].get_text()  # the long note is wrapped ...
    assert fig.get_size_inches()[0] < _KEY_MIN_WIDTH + 1  # ... so the figure stays narrow
    # the key sits below the graph and the figure grew for it
    plain = draw_morse_graph(*args, unresolved={2})
    assert fig.get_size_inches()[1] > plain.get_size_inches()[1] + 0.5
    lowest_node = min(p.get_y() for p in patches(fig, "node-").values())
    assert all(t.get_position()[1] < lowest_node for t in texts)

    without = draw_morse_graph(*args[:4], set(), unresolved={2}, key=key_rows(verdict=False))
    assert not patches(without, "ring-") and "key-attractor" not in patches(without, "key-")
    with pytest.raises(ValueError, match="key style"):
        draw_morse_graph(*args, key=[("sink", "?")])


def test_a_graph_without_nodes_still_shows_the_key_notes():
    fig = draw_morse_graph([], [], {}, {}, [], key=key_rows(verdict=False))
    text = " ".join(" ".join(t.get_text() for t in fig.axes[0].texts).split())
    assert "(no Morse sets)" in text and "too few runs: an illustration" in text


def test_drawing_raises_on_a_cycle():
    with pytest.raises(ValueError, match="cycle"):
        draw_morse_graph([0, 1], [(0, 1), (1, 0)], {}, {}, [])


def test_fresh_import_and_drawing_never_import_graphviz(tmp_path):
    code = (
        "import sys\n"
        "from doodl.analysis._graph_drawing import draw_morse_graph\n"
        "fig = draw_morse_graph([0, 1, 2], [(2, 0), (2, 1)], {}, {}, {0, 1})\n"
        f"fig.savefig({str(tmp_path / 'g.png')!r})\n"
        "print('graphviz' in sys.modules, 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {**os.environ, "PATH": "/nonexistent", "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG_MAGIC
