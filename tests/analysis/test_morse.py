"""Morse graphs and Conley indices of maps whose answer is known analytically."""

from __future__ import annotations

import numpy as np
import pytest

from doodl.analysis.morse import (
    CONLEY_NOTATION,
    NO_VERDICT_NOTE,
    NODE_STYLES,
    OUTSIDE,
    SEVERAL,
    MorseError,
    MorseGraph,
    _node_colour,
    conley_ranks,
    graph_figure,
    morse_graph,
    node_styles,
    plot_morse_sets,
    render_graph,
)


def double_well(h: float = 0.25):
    """Gradient descent on V = (x^2 - 1)^2 / 4 + y^2 / 2: minima (+-1, 0), saddle (0, 0)."""
    return lambda p: np.stack([p[:, 0] - h * (p[:, 0] ** 3 - p[:, 0]), p[:, 1] - h * p[:, 1]], axis=1)


def limit_cycle(p):
    """In polar coordinates r -> r + 0.2 r (1 - r^2), angle + 0.3: the unit circle attracts,
    the origin repels."""
    r = np.hypot(p[:, 0], p[:, 1])
    a = np.arctan2(p[:, 1], p[:, 0]) + 0.3
    r = r + 0.2 * r * (1 - r**2)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def by_index(mg):
    return {u: tuple(mg.conley_index(u)) for u in mg.nodes}


def test_double_well_has_two_attracting_minima_below_one_saddle():
    mg = morse_graph(double_well(), [-2, -2], [2, 2], subdiv_min=10, subdiv_max=16)
    assert len(mg.nodes) == 3
    assert len(mg.attractors) == 2
    idx = by_index(mg)
    assert sorted(idx.values()) == [(0, 1, 0), (1, 0, 0), (1, 0, 0)]
    saddle = next(u for u, ci in idx.items() if ci == (0, 1, 0))
    assert sorted(mg.successors(saddle)) == sorted(mg.attractors)  # the saddle's unstable manifold
    left, right, middle = mg.node_of(np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    assert {left, right} == set(mg.attractors) and left != right and middle == saddle
    assert mg.node_of(np.array([[-1.7, 1.7]]))[0] == -1  # a transient point is in no Morse set


def test_basins_of_the_double_well_are_its_two_half_planes():
    mg = morse_graph(double_well(), [-2, -2], [2, 2], subdiv_min=10, subdiv_max=16)
    left, right = mg.node_of(np.array([[-1.0, 0.0], [1.0, 0.0]]))
    pts = np.array([[-1.7, 1.5], [-0.4, -1.0], [0.4, 1.9], [1.9, -1.9], [0.0, 0.5], [2.5, 0.0]])
    assert mg.basin_of(pts).tolist() == [left, left, right, right, SEVERAL, OUTSIDE]


def test_widened_images_blur_the_separatrix_and_keep_the_minima():
    mg = morse_graph(double_well(), [-2, -2], [2, 2], subdiv_min=10, subdiv_max=16,
                     widen=lambda c: np.full((len(c), 2), 0.05))
    assert len(mg.attractors) == 2
    near = np.array([[0.1, 0.0], [-0.1, 0.3]])  # the enclosure reaches both wells from here
    assert (mg.basin_of(near) == SEVERAL).all()
    assert (mg.basin_of(np.array([[-1.5, 0.0], [1.5, 0.0]])) >= 0).all()


def test_a_sink_with_trivial_index_is_unresolved_not_an_attractor():
    """x -> x + 0.1 (x - x^3) ... on [0.2, 2]: the minimum at 1 attracts; cut the box at
    [1.2, 2] and the sink against the lower face has images leaving the box: undefined index."""
    mg = morse_graph(lambda p: p - 0.25 * (p**3 - p), [1.2], [2.0], subdiv_min=6, subdiv_max=10)
    assert mg.attractors == []
    assert all(u in mg.unresolved for u in mg.sinks)


def test_single_globally_attracting_fixed_point():
    mg = morse_graph(lambda p: 0.5 * p, [-1, -1], [1, 1], subdiv_min=10, subdiv_max=16)
    assert mg.nodes == [0] and mg.attractors == [0] and mg.edges == []
    assert mg.conley_index(0) == [1, 0, 0]
    assert mg.node_of(np.zeros((1, 2)))[0] == 0


def test_attracting_periodic_orbit_around_a_repelling_fixed_point():
    mg = morse_graph(limit_cycle, [-2, -2], [2, 2], subdiv_min=10, subdiv_max=16)
    assert len(mg.nodes) == 2 and len(mg.attractors) == 1
    orbit = mg.attractors[0]
    repeller = next(u for u in mg.nodes if u != orbit)
    assert mg.conley_index(orbit) == [1, 1, 0]  # the index of a circle
    assert mg.conley_index(repeller) == [0, 0, 1]  # a repeller in the plane
    assert mg.edges == [(repeller, orbit)]
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    assert (mg.node_of(np.stack([np.cos(angles), np.sin(angles)], 1)) == orbit).all()
    assert mg.node_of(np.zeros((1, 2)))[0] == repeller


def test_period_two_orbit_has_rank_two_index():
    """x -> -x (1.5 - 0.5 x^2): 0 repels, {-1, 1} is an attracting 2-cycle (index 'x^2-1')."""
    mg = morse_graph(lambda p: -p * (1.5 - 0.5 * p**2), [-1.6], [1.6], subdiv_min=8, subdiv_max=14)
    assert len(mg.nodes) == 2
    orbit = mg.attractors[0]
    assert mg.conley_index(orbit)[0] == 2 and mg.conley_strings[orbit][0] == "x^2-1"
    assert mg.node_of(np.array([[1.0], [-1.0]])).tolist() == [orbit, orbit]


@pytest.mark.parametrize(
    "strings, ranks",
    [
        (["x-1", "0", "0"], [1, 0, 0]),
        (["0", "x-1x-1", "0"], [0, 2, 0]),  # two invariant factors, concatenated
        (["x^2-1", "0"], [2, 0]),
        (["0", "x+1"], [0, 1]),
        (["x^2+x+1"], [2]),
        (["x-1x^2-2x+1"], [3]),
        ([], None),  # undefined: images left the domain
    ],
)
def test_conley_ranks_from_cmgdb_strings(strings, ranks):
    assert conley_ranks(strings) == ranks


def test_nan_images_are_refused_instead_of_giving_an_empty_graph():
    def f(p):
        out = 0.5 * p
        out[p[:, 0] > 0.5] = np.nan
        return out

    with pytest.raises(MorseError, match="NaN"):
        morse_graph(f, [-1, -1], [1, 1], subdiv_min=6, subdiv_max=8)


@pytest.mark.parametrize(
    "f, lower, upper, match",
    [
        (lambda p: p[:, :1], [-1, -1], [1, 1], "shape"),
        (lambda p: p, [-1, -1], [1], "same length"),
        (lambda p: p, [1, -1], [-1, 1], "upper > lower"),
    ],
)
def test_bad_maps_and_boxes_are_refused(f, lower, upper, match):
    with pytest.raises(MorseError, match=match):
        morse_graph(f, lower, upper, subdiv_min=4, subdiv_max=6)


def test_pictures_and_plain_data(tmp_path):
    mg = morse_graph(double_well(), [-2, -2], [2, 2], subdiv_min=8, subdiv_max=12)
    dot = mg.to_dot()
    assert dot.count("->") == len(mg.edges) and "CI (0, 1, 0)" in dot
    png = render_graph(mg, tmp_path / "g.png", title="double well")
    assert png[:4] == b"\x89PNG" and (tmp_path / "g.png").read_bytes() == png
    plot_morse_sets(mg, [np.array([[1.8, 1.5], [1.2, 0.5], [1.0, 0.1]])], path=tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    rec = mg.to_record()
    assert rec["attractors"] == mg.attractors and sum(rec["n_boxes"]) == sum(len(b) for b in mg.boxes.values())
    assert len(rec["boxes"][0]) == 4 * rec["n_boxes"][0]  # d lower + d upper bounds per box
    # without a verdict the same graph still draws, as an illustration
    assert render_graph(mg, title="double well", verdict=False)[:4] == b"\x89PNG"
    plot_morse_sets(mg, path=tmp_path / "s2.png", verdict=False)
    assert (tmp_path / "s2.png").read_bytes()[:4] == b"\x89PNG"


def drawn_well() -> MorseGraph:
    """A double well as CMGDB reports it on a coarse grid, made by hand (no CMGDB run): two
    minima (0, 1) below a saddle (2), and an unresolved set (3, undefined index) above it."""
    box = {u: np.array([[x, -0.2, x + 0.4, 0.2]]) for u, x in zip(range(4), (-1.2, 0.8, -0.2, 1.4))}
    return MorseGraph(lower=np.array([-2.0, -2.0]), upper=np.array([2.0, 2.0]), nodes=[0, 1, 2, 3],
                      edges=[(2, 0), (2, 1), (3, 2)], boxes=box, subdiv_min=6, subdiv_max=8,
                      conley_strings={0: ["x-1", "0", "0"], 1: ["x-1", "0", "0"], 2: ["0", "x-1", "0"], 3: []})


def all_text(fig) -> str:
    """Every text of a figure (legends and keys included), whitespace normalised: wrapped
    lines read as one."""
    from matplotlib.text import Text

    return " ".join(" ".join(t.get_text() for t in fig.findobj(Text)).split())


def by_gid(fig, prefix: str) -> dict[int, tuple]:
    """Face colour (RGB) of each artist whose id is ``prefix`` followed by a node."""
    from matplotlib.colors import to_rgb

    out = {}
    for artist in fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix)):
        face = artist.get_facecolor()
        out[int(artist.get_gid().removeprefix(prefix))] = to_rgb(face[0] if np.ndim(face) == 2 else face)
    return out


def test_node_styles_say_attractor_only_with_a_verdict():
    mg = drawn_well()
    assert node_styles(mg) == {0: "attractor", 1: "attractor", 2: "nontrivial", 3: "unresolved"}
    assert node_styles(mg, verdict=False) == {0: "nontrivial", 1: "nontrivial", 2: "nontrivial", 3: "unresolved"}


def test_a_morse_set_has_one_colour_in_both_pictures():
    """The graph's boxes and the sets' patches take the same colour map, unresolved sets too."""
    from matplotlib.colors import to_rgb

    mg = drawn_well()
    graph = by_gid(graph_figure(mg), "node-")
    sets = by_gid(plot_morse_sets(mg, [np.array([[1.5, 1.5], [1.0, 0.0]])]), "morse-set-")
    expected = {u: to_rgb(_node_colour(u)) for u in mg.nodes}
    assert graph == sets == expected
    assert len(set(expected.values())) == len(mg.nodes)


def test_pictures_carry_a_key_to_the_notation_and_the_styles():
    mg = drawn_well()
    graph, sets = graph_figure(mg, title="well"), plot_morse_sets(mg)
    for fig in (graph, sets):
        text = all_text(fig)
        assert CONLEY_NOTATION in text and all(s in text for s in NODE_STYLES.values())
        assert NO_VERDICT_NOTE not in text
    assert set(by_gid(graph, "ring-")) == {0, 1}  # double borders on the attractors alone
    assert "0: CI (1, 0, 0) attractor" in all_text(sets)


def test_without_a_verdict_no_set_is_an_attractor_and_the_pictures_say_why():
    mg = drawn_well()
    graph, sets = graph_figure(mg, verdict=False), plot_morse_sets(mg, verdict=False)
    assert by_gid(graph, "ring-") == {}  # no double border
    assert by_gid(graph, "node-") == by_gid(sets, "morse-set-")  # the colours stay
    for fig in (graph, sets):
        text = all_text(fig)
        assert NO_VERDICT_NOTE in text and CONLEY_NOTATION in text
        assert "attractor" not in text.replace(NO_VERDICT_NOTE, "")  # in no label, legend or key
    dot = mg.to_dot(verdict=False)
    assert "peripheries=2" not in dot and "rank=sink" not in dot and NO_VERDICT_NOTE in dot
    assert mg.to_dot().count("peripheries=2") == 2


def test_the_map_runs_once_per_distinct_corner():
    """Neighbouring boxes share corners; the (costly) map sees each point once per call,
    and the graph is still the known one: two minima below a saddle."""
    seen = []

    def counting(p):
        seen.append(len(p) - len(np.unique(p, axis=0)))
        return double_well()(p)

    mg = morse_graph(counting, [-2, -2], [2, 2], subdiv_min=10, subdiv_max=16)
    assert seen and max(seen) == 0
    assert sorted(by_index(mg).values()) == [(0, 1, 0), (1, 0, 0), (1, 0, 0)]
