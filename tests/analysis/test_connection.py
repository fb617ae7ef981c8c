"""Morse sets, Conley ranks and connection matrices (pychomp) of maps with known answers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from doodl.analysis._connection import (
    OUTSIDE,
    connection_matrix,
    data_images,
    grid_images,
    set_of_points,
)

BOX = ([-2.0, -2.0], [2.0, 2.0])


def double_well(p, h=0.25):
    """Gradient descent on V = (x^2 - 1)^2 / 4 + y^2 / 2: minima (+-1, 0), saddle (0, 0)."""
    return np.stack([p[:, 0] - h * (p[:, 0] ** 3 - p[:, 0]), p[:, 1] - h * p[:, 1]], axis=1)


def limit_cycle(p):
    """r -> r + 0.2 r (1 - r^2), angle + 0.3: the unit circle attracts, the origin repels."""
    r = np.hypot(p[:, 0], p[:, 1])
    a = np.arctan2(p[:, 1], p[:, 0]) + 0.3
    r = r + 0.2 * r * (1 - r**2)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def on_grid(f, lower, upper, n, widen=None):
    ranges, leaves = grid_images(f, lower, upper, n, widen)
    return connection_matrix(ranges, n, len(lower), leaves)


def reaches(res, u, v):
    """Flow goes from Morse set u down to v (transitive closure of the Hasse diagram)."""
    todo, seen = [u], set()
    while todo:
        w = todo.pop()
        for a, b in res.order:
            if a == w and b not in seen:
                seen.add(b)
                todo.append(b)
    return v in seen


def test_double_well_two_attracting_minima_and_a_saddle_joined_to_both():
    res = on_grid(double_well, *BOX, 32)
    points = np.array([[-1.0, 0], [1, 0], [0, 0], [-1.7, 1.7]])
    left, right, middle, transient = set_of_points(res, points, *BOX, 32)
    assert sorted(res.attractors) == sorted([left, right]) and left != right
    assert res.conley_ranks[left] == res.conley_ranks[right] == [1, 0, 0]
    assert res.conley_ranks[middle] == [0, 1, 0]
    assert sorted(res.nontrivial) == sorted([left, right, middle])  # the rest have all-zero ranks
    # the connection matrix forces the saddle's unstable manifold onto both minima
    assert res.boundary == sorted([(middle, left, 1), (middle, right, 1)])
    assert reaches(res, middle, left) and reaches(res, middle, right)
    assert not reaches(res, left, right) and not reaches(res, right, left)
    assert transient == -1 and not any(res.leaves) and res.stray_generators == 0


def test_contraction_to_the_origin_has_one_nontrivial_set_and_no_connections():
    res = on_grid(lambda p: 0.5 * p, [-1, -1], [1, 1], 32)
    (m,) = res.nontrivial
    assert res.conley_ranks[m] == [1, 0, 0] and res.attractors == [m] and res.boundary == []
    assert set_of_points(res, np.zeros((1, 2)), [-1, -1], [1, 1], 32)[0] == m
    assert res.stray_generators == 0  # no homology left on transient cells
    # cells around the origin that partly map into themselves are trivial sets flowing into it
    assert all(reaches(res, u, m) for u in range(len(res.morse_sets)) if u != m)


def test_limit_cycle_attracts_and_the_repeller_inside_connects_to_it():
    res = on_grid(limit_cycle, *BOX, 32)
    assert len(res.nontrivial) == 2 and len(res.attractors) == 1
    (orbit,) = res.attractors
    (repeller,) = set(res.nontrivial) - {orbit}
    assert res.conley_ranks[orbit] == [1, 1, 0]  # a circle
    assert res.conley_ranks[repeller] == [0, 0, 1]  # a repeller in the plane
    assert res.boundary == [(repeller, orbit, 2)] and res.order == [(repeller, orbit)]
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert (set_of_points(res, circle, *BOX, 32) == orbit).all()
    assert set_of_points(res, np.zeros((1, 2)), *BOX, 32)[0] == repeller


def test_double_well_from_sampled_trajectories_alone():
    rng = np.random.default_rng(0)
    runs = [rng.uniform(-2, 2, size=(40, 2))]
    for _ in range(30):
        runs.append(double_well(runs[-1]))
    runs = np.stack(runs)  # (31 snapshots, 40 runs, 2)
    images = data_images(runs[:-1].reshape(-1, 2), runs[1:].reshape(-1, 2), *BOX, 32)
    res = connection_matrix(images, 32, 2)
    left, right = set_of_points(res, np.array([[-1.0, 0.0], [1.0, 0.0]]), *BOX, 32)
    assert sorted(res.attractors) == sorted([left, right]) and left != right
    assert res.conley_ranks[left] == res.conley_ranks[right] == [1, 0, 0]
    # cells no run visited have empty images and are in no Morse set
    visited = {c for c, img in enumerate(images) if len(img)}
    assert all(set(cells) <= visited for cells in res.morse_sets)


def test_data_images_cells_and_outside():
    x = np.array([[-0.9, -0.9], [0.1, -0.9], [0.1, -0.95], [5.0, 0.0]])
    y = np.array([[0.1, -0.9], [0.9, 0.9], [3.0, 0.0], [0.0, 0.0]])
    images = data_images(x, y, [-1, -1], [1, 1], 2)  # cells 0 1 / 2 3, axis 0 fastest
    # the pair whose x is outside the box is dropped; cells 2 and 3 have no data
    assert [list(i) for i in images] == [[1], [OUTSIDE, 3], [], []]


def test_maps_leaving_the_box_give_sets_that_leave_and_no_attractor():
    res = on_grid(lambda p: 2 * p, [-1, -1], [1, 1], 32)
    (m,) = res.nontrivial
    assert res.conley_ranks[m] == [0, 0, 1] and res.leaves[m] and res.attractors == []
    # slower: no cell's image is wholly outside, the box boundary itself must be the exit
    ranges, leaves = grid_images(lambda p: 1.2 * p, [-1, -1], [1, 1], 8)
    assert leaves.any() and (ranges[:, 2:] >= ranges[:, :2]).all()
    res = connection_matrix(ranges, 8, 2, leaves)
    (m,) = res.nontrivial
    assert res.conley_ranks[m] == [0, 0, 1] and res.leaves[m] and res.attractors == []

    # x: the double well; y: expanding, so the minima become saddles and the origin repels
    lower, upper = [-2, -1], [2, 1]
    res = on_grid(lambda p: np.stack([double_well(p)[:, 0], 1.5 * p[:, 1]], 1), lower, upper, 32)
    points = np.array([[-1.0, 0], [1, 0], [0, 0]])
    left, right, middle = set_of_points(res, points, lower, upper, 32)
    assert res.conley_ranks[left] == res.conley_ranks[right] == [0, 1, 0]
    assert res.conley_ranks[middle] == [0, 0, 1]
    assert res.boundary == sorted([(middle, left, 2), (middle, right, 2)])
    assert res.attractors == [] and all(res.leaves[m] for m in (left, right, middle))


def test_a_box_face_is_an_exit_only_where_the_map_leaves():
    """(x, y) -> (x/2, 3y/2) on [0, 1] x [-1, 1]: a saddle on the box's left face. Flow
    leaves through the top and bottom only; were the whole boundary an exit, the index
    would come out trivial."""
    lower, upper = [0, -1], [1, 1]
    res = on_grid(lambda p: p * [0.5, 1.5], lower, upper, 32)
    (m,) = res.nontrivial
    assert res.conley_ranks[m] == [0, 1, 0] and res.leaves[m] and res.attractors == []
    assert set_of_points(res, np.zeros((1, 2)), lower, upper, 32)[0] == m


def test_non_finite_images_count_as_outside_and_do_not_disturb_the_rest():
    def f(p):
        out = double_well(p)
        out[p[:, 0] > 1.5] = np.nan  # say training diverged there
        return out

    ranges, leaves = grid_images(f, *BOX, 32)
    assert leaves.sum() > 0 and (ranges[leaves, 2:] < ranges[leaves, :2]).any(axis=1).all()
    res = connection_matrix(ranges, 32, 2, leaves)
    assert len(res.attractors) == 2 and sorted(res.conley_ranks[m] for m in res.nontrivial) == [
        [0, 1, 0],
        [1, 0, 0],
        [1, 0, 0],
    ]
    assert (set_of_points(res, np.array([[1.8, 0.0], [1.6, 1.0]]), *BOX, 32) == -1).all()


def test_grid_images_ranges_order_and_widening():
    n, h = 4, 0.5  # box [-1, 1]^2
    shift = lambda p: p + [h / 2, 0.0]  # noqa: E731
    ranges, leaves = grid_images(shift, [-1, -1], [1, 1], n)
    assert ranges.shape == (n * n, 4)
    # cell 1 is (i0, i1) = (1, 0) (axis 0 fastest): its image [-0.25, 0.25] x [-1, -0.5]
    # meets the closed cells 1..2 x 0..1
    assert ranges[1].tolist() == [1, 0, 2, 1]
    assert leaves.tolist() == [i % n == n - 1 for i in range(n * n)]  # the right column leaves
    assert ranges[n - 1].tolist() == [3, 0, 3, 1]  # clipped to the grid
    radius = lambda c: np.tile([0.0, 0.6], (len(c), 1))  # noqa: E731  per axis
    wide, _ = grid_images(shift, [-1, -1], [1, 1], n, widen=radius)
    assert wide[5].tolist() == [1, 0, 2, 3] and (wide[:, [0, 2]] == ranges[:, [0, 2]]).all()
    with pytest.raises(ValueError, match="nonnegative"):
        grid_images(shift, [-1, -1], [1, 1], n, widen=lambda c: -np.ones(len(c)))


def test_result_is_plain_picklable_data_and_inputs_are_checked():
    ranges, leaves = grid_images(lambda p: 0.5 * p, [-1, -1], [1, 1], 8)
    res = connection_matrix(ranges, 8, 2, leaves)
    assert pickle.loads(pickle.dumps(res)) == res
    with pytest.raises(ValueError, match="shape"):
        connection_matrix(ranges[:, :3], 8, 2)
    with pytest.raises(ValueError, match="outside the grid"):
        connection_matrix([[64]] + [[]] * 63, 8, 2)
