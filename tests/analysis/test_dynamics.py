"""The per-group Morse pipeline against answers the maths gives (the known-answer suite).

Every test runs ``group_morse`` with ``MorseSettings()`` defaults (or the next grid depth
up, or tau 2) and checks, run by run: as many attractors as wells the runs ended in, every
run ending in the attractor of its own well, distinct wells in distinct attractors; the
outcome modes (the runs' end states clustered without the graph) are the wells; end basins
match them (adjusted Rand index 1); and held-out outcome accuracy is 1.0 (every run's early
state, in a graph fitted without it, lies in a basin whose runs ended in its own well)
wherever every well holds at least ``MIN_RUNS_PER_BASIN`` runs; below that (8 runs in 3
wells) accuracy above chance and a warning. Starts keep a grid box away from the
separatrices (``known_dynamics.MARGIN``); starts on them are tested on their own: there the
right answer at the grid's resolution is "no basin", never the wrong one.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from doodl.analysis._coordinates import fit_coordinates, pca
from doodl.analysis._pair_map import PairMap
from doodl.analysis.dynamics import MIN_RUNS, MIN_RUNS_PER_BASIN, MorseSettings, RunTrajectory, group_morse, snapshot_pairs
from doodl.analysis.morse import SEVERAL
from tests.analysis.known_dynamics import LANDSCAPES, MARGIN, descend

DEFAULTS = MorseSettings()
DEEPER = MorseSettings(subdiv_min=DEFAULTS.subdiv_min + 1, subdiv_max=DEFAULTS.subdiv_max + 1)
TAU2 = MorseSettings(tau=2)

CASES = {
    "bowl": dict(landscape="bowl"),
    "double_well": dict(landscape="double_well"),
    "three_wells_line": dict(landscape="three_wells_line"),
    "two_wells_plane": dict(landscape="two_wells_plane"),
    "three_wells_plane": dict(landscape="three_wells_plane"),
    "double_well_sgd": dict(landscape="double_well", noise=0.3),
    "three_wells_momentum": dict(landscape="three_wells_line", lr=0.002, momentum=0.9),
}


def assert_known_answer(result, wells: np.ndarray) -> None:
    g = result.graph
    k = len(set(wells.tolist()))
    ends = np.array([v.end_attractor for v in result.verdicts])
    assert len(g.attractors) == k, f"{len(g.attractors)} attractors for {k} wells"
    assert (ends >= 0).all(), f"runs ended in no basin: {ends.tolist()}"
    for w in set(wells.tolist()):  # each well is one attractor, a different one each
        assert len(set(ends[wells == w].tolist())) == 1
    assert len({ends[wells == w][0] for w in set(wells.tolist())}) == k
    # the outcomes, defined without the graph, are the wells; the end basins are the outcomes
    assert adjusted_rand_score(wells, result.outcomes.labels) == 1.0
    assert result.ari == 1.0
    if np.bincount(wells).min() >= MIN_RUNS_PER_BASIN:
        assert result.outcome_accuracy == 1.0, [(v.predicted_outcome, v.outcome) for v in result.verdicts]
        assert result.self_basin_accuracy == 1.0
        assert result.n_transit == 0 and result.n_undecided == 0
        assert result.versus_baseline in ("beats", "matches")
        assert not any("hold fewer than" in w for w in result.warnings)
    else:  # 2-3 runs a well: held out, one is left (BENCHMARKS.md); doodl says so
        assert result.outcome_accuracy > result.outcome_chance
        assert any(f"hold fewer than {MIN_RUNS_PER_BASIN} runs" in w for w in result.warnings)


@functools.cache
def _known_case(case: str, n_runs: int, settings: MorseSettings = DEFAULTS):
    """A case's runs (seed ``n_runs``), their wells and ``group_morse`` on them, computed once
    per module: ``test_momentum_needs_the_burn_in`` checks the same fit as the suite's
    ``three_wells_momentum-16`` before its own. Results are only read, never changed."""
    kw = dict(CASES[case])
    runs, wells = descend(kw.pop("landscape"), n_runs, seed=n_runs, **kw)
    return runs, wells, group_morse(runs, settings)


def _params(sizes, slow=()):
    return [pytest.param(case, n, id=f"{case}-{n}", marks=[pytest.mark.slow] if n in slow else [])
            for case in CASES for n in sizes]


# 64 runs: slow (nightly). The same cells (defaults, 64 runs, seed 64, every case) are run by
# bench/morse_known_answers.py's default command; the default run keeps every case at 8, 16
# and 32 runs with these assertions, and a 64-run group at the defaults in
# test_states_on_a_separatrix_are_undecided_never_in_the_wrong_basin.
@pytest.mark.parametrize("case, n_runs", _params([8, 16, 32, 64], slow=(64,)))
def test_known_answers_with_the_defaults(case, n_runs):
    _, wells, result = _known_case(case, n_runs)
    assert_known_answer(result, wells)


@pytest.mark.parametrize("case, n_runs", _params([16]))
def test_known_answers_one_grid_depth_deeper(case, n_runs):
    kw = dict(CASES[case])
    runs, wells = descend(kw.pop("landscape"), n_runs, seed=n_runs, **kw)
    assert_known_answer(group_morse(runs, DEEPER), wells)


@pytest.mark.parametrize("case, n_runs", _params([16]))
def test_known_answers_at_tau_two(case, n_runs):
    kw = dict(CASES[case])
    runs, wells = descend(kw.pop("landscape"), n_runs, seed=n_runs, **kw)
    assert_known_answer(group_morse(runs, TAU2), wells)


def test_states_on_a_separatrix_are_undecided_never_in_the_wrong_basin():
    """Starts uniform in every coordinate, separatrix included (issue 10's failing case):
    a held-out run whose early state lies near x0 = 0 may be undecided, but no early state is
    placed in the other well's basin, and the rest are all right. Near means within
    ``MARGIN`` (0.15, a tenth of the wells' distance): the pair map follows the runs nearest
    a box's corners, so a state is decided only as finely as the runs around it are spaced."""
    runs, wells = descend("double_well", 64, seed=64, stratified=False)
    result = group_morse(runs)
    assert len(result.graph.attractors) == 2 and len({v.end_attractor for v in result.verdicts}) == 2
    near = LANDSCAPES["double_well"].separatrix_distance(np.stack([r.theta[r.early, :2] for r in runs])) < MARGIN
    for v, close in zip(result.verdicts, near):
        assert v.heldout_end >= 0 and v.end_attractor >= 0
        if close:
            assert v.predicted_outcome in (v.outcome, SEVERAL), v  # both wells reachable
        else:
            assert v.outcome_correct, v
    assert near.any() and result.n_undecided >= 1  # the case does test the separatrix


def test_momentum_runs_are_judged_past_the_burn_in():
    """Heavy ball starts with zero velocity: pairs from the first steps follow another map.
    The early state (where pairs start, and from which runs are judged) is past the burn-in
    when 10% of training comes before it, and the known answer holds from there."""
    assert CASES["three_wells_momentum"] == dict(landscape="three_wells_line", lr=0.002, momentum=0.9)
    runs, wells, result = _known_case("three_wells_momentum", 16)  # seed 16, the defaults
    assert runs[0].settled == 5 and runs[0].early == 5  # 5 memories of 10 steps, snapshots every 10
    assert RunTrajectory("r", runs[0].steps, runs[0].theta).early == 3  # without memory: 10% of 30
    assert_known_answer(result, wells)


def test_below_the_minimum_of_runs_there_is_no_verdict():
    """Three runs, one per well (as with 3 seeds that each end apart): a graph fitted without
    a run has no trajectory into its well, so nothing can predict where it goes. The graph is
    still computed (to be drawn), but the group is below ``MIN_RUNS``: no held-out figure is
    computed and the warning says why."""
    runs, wells = descend("three_wells_plane", 3, seed=0)
    result = group_morse(runs)
    assert sorted(wells.tolist()) == [0, 1, 2] and not result.enough_runs
    assert all(v.predicted_outcome is None and v.fold == -1 for v in result.verdicts)  # no folds were fitted
    assert any(f"at least {MIN_RUNS} needed" in w for w in result.warnings)
    assert result.graph.nodes  # the picture has a graph to show


def test_chance_is_the_share_of_the_largest_outcome_and_the_bowl_is_trivially_predictable():
    runs, wells = descend("bowl", 12, seed=3)
    result = group_morse(runs)
    assert result.outcome_chance == 1.0 and result.outcome_accuracy == 1.0  # one outcome: nothing to predict
    assert result.ari == 1.0  # one attractor, one outcome
    runs, wells = descend("three_wells_line", 12, seed=3)
    result = group_morse(runs)
    assert result.outcome_chance == pytest.approx(np.bincount(wells).max() / 12)


def test_the_validity_figure_fails_when_the_graph_is_blind_to_the_outcomes():
    """Fault 2 of issue 21: graded against its own attractors, a graph that merges every
    outcome into one attractor scores 1.0 against a chance of 1.0. Here the coordinates drop
    the axis of the wells (the runs' states without x0, so every run ends in one bowl), while
    the outcomes come from the runs' real end states: the figure must notice."""
    runs, wells = descend("double_well", 16, seed=4)
    blind = [RunTrajectory(r.run_id, r.steps, r.theta[:, 1:], outputs=r.theta[:, :1]) for r in runs]
    result = group_morse(blind, MorseSettings(coordinates="late_pca"))
    assert len(result.graph.attractors) == 1 and result.outcomes.n_modes == 2
    assert adjusted_rand_score(wells, result.outcomes.labels) == 1.0  # outcomes: the wells, from the ends
    assert result.self_basin_accuracy == 1.0 and result.self_basin_chance == 1.0  # the old figure: perfect
    assert result.ari == 0.0
    assert result.outcome_accuracy <= result.outcome_chance  # the figure can fail, and does
    assert result.versus_baseline == "matches" or result.outcome_accuracy < result.baseline_accuracy
    assert any("1 attractor(s) for 2 outcome mode(s)" in w for w in result.warnings)


def test_itineraries_follow_the_runs_through_the_graph():
    runs, wells = descend("double_well", 16, seed=5)
    result = group_morse(runs)
    for v in result.verdicts:
        assert v.itinerary and v.itinerary[-1] == v.final_node and v.end_attractor >= 0
        assert all(a != b for a, b in zip(v.itinerary, v.itinerary[1:]))  # consecutive repeats merged


def test_diverged_runs_leave_the_coordinates_the_pairs_and_the_box():
    runs, wells = descend("double_well", 16, seed=7)
    clean = group_morse(runs)
    far = RunTrajectory("blown", runs[0].steps, runs[0].theta * 1e3, status="diverged")
    result = group_morse(runs + [far])
    assert np.allclose(result.graph.lower, clean.graph.lower) and np.allclose(result.graph.upper, clean.graph.upper)
    assert result.verdicts[-1].status == "diverged" and result.verdicts[-1].end_attractor < 0
    assert result.outcome_accuracy == clean.outcome_accuracy  # judged on the non-diverged runs
    assert result.outcomes.labels.tolist() == clean.outcomes.labels.tolist()


def test_too_few_runs_are_warned_about():
    runs, _ = descend("double_well", 4, seed=1)
    assert any("at least 8" in w for w in group_morse(runs).warnings)
    runs, _ = descend("double_well", 8, seed=1)
    assert not any("at least 8" in w for w in group_morse(runs).warnings)


def test_late_pca_separates_the_wells_that_pca_of_every_snapshot_merges():
    """The failure the defaults fix: 32 runs of a 40-D double well from starts spread in every
    coordinate. All-snapshot PCA is dominated by the starts' spread; late PCA finds x0."""
    runs, wells = descend("double_well", 32, seed=11, stratified=False)
    states = [r.theta for r in runs]
    late = fit_coordinates("late_pca", states, states[0][:-1], states[0][1:], 2)
    ends = np.stack([late(r.theta[-1:])[0] for r in runs])
    gap = abs(ends[wells == 0, 0].mean() - ends[wells == 1, 0].mean())
    assert gap > 10 * ends[:, 1].std()  # the first late axis is the axis of the wells


def test_pca_shares_coordinates_and_keeps_explained_variance():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(8, 2)))
    x = rng.normal(size=(50, 2)) @ basis.T + rng.normal(size=8)
    proj = pca(x, 2)
    assert proj.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-9)  # the data are planar
    assert np.array_equal(proj(x), pca(x, 2)(x))  # signs are fixed


def test_dmd_coordinates_recover_the_slow_modes_of_a_linear_map():
    """x -> A x with eigenvalues 0.95, 0.9 (slow) and 0.3 ... (fast): the two DMD coordinates
    span the slow eigenvectors' plane."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = q @ np.diag([0.95, 0.9, 0.3, 0.25, 0.2, 0.1]) @ q.T
    states = []
    for _ in range(10):
        x = [rng.normal(size=6)]
        for _ in range(30):
            x.append(a @ x[-1])
        states.append(np.array(x))
    xs = np.concatenate([s[:-1] for s in states])
    ys = np.concatenate([s[1:] for s in states])
    coords = fit_coordinates("dmd", states, xs, ys, 2)
    fast = q[:, 2:]  # a state in the fast subspace has no slow amplitude
    assert np.abs(coords(fast.T) - coords(np.zeros((1, 6)))).max() < 1e-8
    assert np.linalg.matrix_rank(coords(q[:, :2].T) - coords(np.zeros((1, 6)))) == 2


def test_pairs_skip_the_shorter_last_gap_and_start_at_the_early_state():
    run = RunTrajectory("r", np.array([0, 10, 20, 30, 35]), np.zeros((5, 3)))
    assert run.early == 0  # 10% of 4 snapshots rounds to the first
    first, second = snapshot_pairs([run], span=1)
    assert first[0].tolist() == [0, 1, 2] and second[0].tolist() == [1, 2, 3]
    first, second = snapshot_pairs([run], span=2)
    assert first[0].tolist() == [0, 1] and second[0].tolist() == [2, 3]
    run = RunTrajectory("r", np.arange(31) * 10, np.zeros((31, 3)))
    assert run.early == 3 and snapshot_pairs([run], span=8)[0][0].tolist() == list(range(3, 23))
    assert MorseSettings(tau=2, compose=4).span == 8


def test_the_pair_map_holds_settled_ends_and_maps_empty_boxes_onto_the_data():
    """Two runs settle at (0, 0) (their last pairs stay), one passes from (1, 1) to (2, 2): a
    box around the settled end maps into itself (an attractor); a box far from every pair maps
    onto pair images; a box with a corner between the two runs maps toward both (the two
    nearest runs of each corner)."""
    x = np.array([[0.0, 0.0], [0.001, 0.0], [0.0, 0.001], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    pm = PairMap(x, y, [-1, -1], [3, 3], runs=np.array([0, 0, 1, 2]))
    settled = pm.box_images(np.array([[-0.01, -0.01, 0.01, 0.01]]))[0]
    assert np.allclose(settled, [0, 0, 0, 0])  # both nearest runs stay: maps into itself
    far = pm.box_images(np.array([[2.9, -0.9, 3.0, -0.8]]))[0]
    assert np.allclose(far, [0, 0, 0, 0]) or np.allclose(far, [0, 0, 2, 2])  # onto the data's images
    between = pm.box_images(np.array([[0.6, 0.6, 0.7, 0.7]]))[0]
    assert np.allclose(between, [0, 0, 2, 2])  # the runs disagree: both futures
    assert np.allclose(pm(np.array([[0.9, 0.9]])), [[2, 2]])  # a point: its nearest pair's image
    with pytest.raises(ValueError, match="NaN"):
        PairMap(np.array([[np.nan, 0.0]]), np.zeros((1, 2)), [-1, -1], [1, 1])
    with pytest.raises(ValueError, match="one run per pair"):
        PairMap(x, y, [-1, -1], [3, 3], runs=np.array([0, 1]))


def test_group_morse_refuses_non_finite_snapshots_bad_settings_and_too_few_pairs():
    runs, _ = descend("double_well", 4, seed=1)
    runs[0].theta[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        group_morse(runs)
    runs, _ = descend("double_well", 2, steps=20, every=10, seed=1)
    with pytest.raises(ValueError, match="snapshot pairs"):
        group_morse(runs, MorseSettings(tau=4, compose=1))
    with pytest.raises(ValueError, match="coordinates"):
        MorseSettings(coordinates="tsne")
    with pytest.raises(ValueError, match="outputs"):
        group_morse(descend("double_well", 8, seed=1)[0], MorseSettings(coordinates="function"))


# --- real training whose answer is known ---------------------------------------------------

def _train_softmax_regression(n_seeds: int):
    """16 seeds of softmax regression (``depth: 0``) with weight decay on digits, trained by
    doodl's batched engine: the loss is strongly convex, so there is one minimiser."""
    from doodl.analysis._function_space import output_features, probe_inputs
    from doodl.workers.config import VariantConfig
    from doodl.workers.engine import train_unit

    cfgs = [VariantConfig(dataset="digits", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                          model="mlp", width=8, depth=0, optimizer="sgd", lr=0.05, batch_size=32,
                          weight_decay=1e-3, steps=600, record_every=20, seed=s) for s in range(n_seeds)]
    result = train_unit(cfgs)
    rows = [c.to_dict() for c in cfgs]
    probe = probe_inputs(rows[0], 200)
    runs = []
    for k, row in enumerate(rows):
        theta = result.snapshots[:, k, :].astype(np.float64)
        runs.append(RunTrajectory(f"seed{k}", result.snapshot_steps, theta, "ok",
                                  output_features(row, theta, probe)))
    return runs


def test_a_convex_model_has_one_attractor_holding_every_run():
    """One minimiser, one outcome. In function space (the default) every held-out run is
    placed right. In weight space SGD's runs are still moving at 600 steps and end in a
    spread cloud: a fold graph may split it, leaving a held-out run undecided (measured: 2
    of 16), but never in a wrong outcome."""
    runs = _train_softmax_regression(16)
    results = {}
    for settings in (MorseSettings(), MorseSettings(coordinates="late_pca")):  # function space, then weights
        result = results[settings.coordinates] = group_morse(runs, settings)
        ends = {v.end_attractor for v in result.verdicts}
        assert len(result.graph.attractors) == 1 and ends == set(result.graph.attractors), settings.coordinates
        assert result.outcomes.n_modes == 1 and result.ari == 1.0
        assert all(v.outcome_correct or v.predicted_outcome < 0 for v in result.verdicts)  # never a wrong outcome
    assert results["auto"].outcome_accuracy == 1.0
    assert results["late_pca"].outcome_accuracy >= 0.85
    # the defaults (group_morse's own default is MorseSettings()) chose function space; the fit
    # above is that call, not repeated (~17 s)
    assert results[MorseSettings().coordinates].coordinates == "function"


def _train_scalar_linear_network(n_runs: int, seed: int = 0):
    """A depth-2 linear network f(x) = a b x fitted to y = x by minibatch SGD with weight decay
    0.1: two minimisers, a = b = +-sqrt(0.9), mirror images under (a, b) -> (-a, -b), which
    compute the same function. Each run's outputs on 8 probe points go with it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=256)
    probe = np.linspace(-2, 2, 8)
    runs, ends = [], []
    for k in range(n_runs):
        a, b = rng.uniform(0.2, 1.5, size=2) * (1 if k % 2 else -1)
        snaps = []
        for t in range(401):
            if t % 10 == 0:
                snaps.append([a, b])
            xb = x[rng.integers(0, 256, size=32)]
            resid = a * b * xb - xb
            ga, gb = (resid * b * xb).mean() + 0.1 * a, (resid * a * xb).mean() + 0.1 * b
            a, b = a - 0.05 * ga, b - 0.05 * gb
        theta = np.array(snaps)
        runs.append(RunTrajectory(f"r{k}", np.arange(len(theta)) * 10, theta, "ok",
                                  (theta[:, :1] * theta[:, 1:]) * probe[None, :]))
        ends.append(int(theta[-1, 0] > 0))
    return runs, np.array(ends)


def test_mirror_symmetric_minima_are_two_attractors_in_weight_space_and_one_in_function_space():
    """Mirror-image minima compute one function, so the runs have one outcome. In weight
    space the graph finds the two minima (each run in its own), and its validity figure says
    they are not two outcomes; in function space one attractor holds every run."""
    runs, side = _train_scalar_linear_network(16)
    weights = group_morse(runs, MorseSettings(coordinates="late_pca"))
    ends = np.array([v.end_attractor for v in weights.verdicts])
    assert len(weights.graph.attractors) == 2 and all(len(set(ends[side == s].tolist())) == 1 for s in (0, 1))
    assert weights.outcomes.n_modes == 1 and weights.ari == 0.0  # two attractors, one outcome: flagged
    function = group_morse(runs)  # auto: the outputs are there
    assert function.coordinates == "function"
    assert len(function.graph.attractors) == 1 and {v.end_attractor for v in function.verdicts} == \
        set(function.graph.attractors)
    assert function.ari == 1.0 and function.outcome_accuracy == 1.0


def test_runs_too_short_for_the_burn_in_start_their_pairs_at_half_and_say_so():
    runs, _ = descend("double_well", 8, steps=40, every=10, lr=0.002, momentum=0.9, seed=1)
    assert runs[0].burn_in == 5 and runs[0].settled == 2  # 50 steps of burn-in; 5 snapshots
    firsts, _ = snapshot_pairs(runs, span=1)
    assert firsts[0].tolist() == [2, 3]
    assert any("too short for the optimiser's memory" in w for w in group_morse(runs, MorseSettings(compose=1, subdiv_min=8, subdiv_max=10)).warnings)


def test_runs_recorded_rarely_get_a_shorter_span_and_a_warning():
    """Ten snapshots a run cannot give pairs 8 apart from 10% of training on: the span is
    shortened (so the group is still reduced, not refused) and the warning says so."""
    runs, wells = descend("double_well", 8, steps=90, every=10, seed=3)
    assert len(runs[0].steps) == 10
    result = group_morse(runs)
    assert any("runs are short for pairs 8 snapshots apart" in w and "spans 4" in w for w in result.warnings)
    assert len(result.graph.attractors) == 2
