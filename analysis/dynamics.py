"""Per-group Morse graphs of the training dynamics (DOODL3; ``docs/methods.md``, "Morse graphs").

For one group (all seeds of one config) :func:`group_morse`:

1. defines each run's *outcome* without the graph: its end state (final function on the
   probe set, final train accuracy and loss) clustered into outcome modes
   (:mod:`doodl.analysis._outcomes`);
2. fits ``dims`` coordinates to the states of its non-diverged runs (``coordinates``: by
   default function space when the runs carry the model's outputs on a probe set, else
   PCA of the late snapshots; see :mod:`doodl.analysis._coordinates`);
3. builds the training map over ``tau x compose`` snapshots from the runs' snapshot pairs,
   from each run's early state on (:mod:`doodl.analysis._pair_map`: a box maps to the images of
   the pairs in it and of the pairs nearest its corners) and computes its Morse graph with
   CMGDB on the runs' bounding box padded by ``padding`` of its extent per side;
4. judges it out of sample, against the outcomes. The runs are split into ``folds``; for
   each fold, steps 2-3 are redone without its runs, and each held-out run's early state
   (the snapshot at 10% of training, past the optimiser's burn-in) is placed in a basin of
   that graph, which stands for the outcome of the fold's runs that ended in it.
   ``outcome_accuracy`` is the share of runs predicted right, beside its chance level (the
   largest mode's share) and a nearest-neighbour baseline in the same folds and coordinates;
   the adjusted Rand index compares every run's end basin with its outcome;
5. gives every run its itinerary (the Morse sets its snapshots pass through, in order) and
   the attractor whose basin holds its end.

What the graph can say: which regions trajectories settle in (attractors, with a non-trivial
Conley index), which recurrent sets they pass between (saddles and unresolved sets), and
which early states lead where. What it cannot: anything about directions the coordinates
drop (states they merge that have different futures lie in no basin), or about states no
run visited (there a box maps onto the data nearest it, a modelling choice).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from doodl.analysis._coordinates import Coordinates, fit_coordinates
from doodl.analysis._outcomes import Outcomes, end_features, outcome_modes
from doodl.analysis._pair_map import PairMap
from doodl.analysis.morse import NO_ATTRACTOR, MorseGraph, morse_graph
from doodl.analysis.settings import MorseSettings

METHOD_VERSION = 4  # bump when a change alters results: stored results of older versions are redone
MIN_RUNS = 8  # fewer non-diverged runs than this cannot resolve basins reliably (BENCHMARKS.md)
# a basin holding fewer runs than this leaves too few trajectories there once one is held
# out: the held-out figure is then pessimistic (measured: 2-3 runs a well, BENCHMARKS.md)
MIN_RUNS_PER_BASIN = 4
EARLY_FRACTION = 0.1  # the "early state" judged out of sample: the snapshot at 10% of training
BURN_IN_MEMORIES = 5  # pairs start this many optimiser memories into a run (momentum 0.9: 50 steps)


@dataclass
class RunTrajectory:
    """One run's snapshots: steps, flattened parameters (T, P), its final status,
    for function-space coordinates the model's outputs on a probe set (T, F), and the
    optimiser's memory in steps (``VariantConfig.optimizer_memory``; 0 for plain SGD).

    With momentum or Adam the state of training is the parameters *and* a velocity that
    starts at zero, so the map on parameters alone is not the same function at the start
    as later. Once the velocity has settled onto what the parameters dictate, it is (on
    the slow manifold). Heavy ball's transient decays as ``beta**t`` in most directions but
    only as ``sqrt(beta)**t`` in critically damped ones, about ``2 / (1 - beta)`` steps;
    snapshot pairs and the early state judged out of sample therefore start at least
    ``BURN_IN_MEMORIES`` memories into the run (3 memories left held-out runs undecided or
    wrong, 5 did not: ``BENCHMARKS.md``)."""

    run_id: str
    steps: np.ndarray
    theta: np.ndarray
    status: str = "ok"
    outputs: np.ndarray | None = None
    memory: float = 0.0
    final_loss: float | None = None  # final train loss and accuracy (the run's finals row), when known
    final_acc: float | None = None

    @property
    def burn_in(self) -> int:
        """Index of the first snapshot past the optimiser's burn-in (may be past the end)."""
        s = np.asarray(self.steps)
        return int(np.searchsorted(s, s[0] + np.ceil(BURN_IN_MEMORIES * self.memory - 1e-9))) if len(s) else 0

    @property
    def settled(self) -> int:
        """The first snapshot past the burn-in, but no later than half the run's snapshots
        (a run too short for its optimiser's memory is warned about)."""
        return min(self.burn_in, (len(self.steps) - 1) // 2)

    @property
    def early(self) -> int:
        """Index of the early state, where the run's snapshot pairs start and from which it
        is judged out of sample: the snapshot at ``EARLY_FRACTION`` of the run, or the first
        one past the burn-in if later."""
        return min(max(int(round(EARLY_FRACTION * (len(self.steps) - 1))), self.settled), len(self.steps) - 1)


@dataclass
class RunVerdict:
    """What the group's graph says about one run (node ids are those of the group's graph)."""

    run_id: str
    status: str
    final_point: list[float]
    final_node: int  # the Morse set holding the final point, -1 if none
    end_attractor: int  # the attractor whose basin holds the final point; < 0: ended in transit
    itinerary: list[int]  # Morse sets the snapshots pass through, in order
    heldout_start: int | None = None  # out of sample: basin of the first snapshot (fold graph's id)
    heldout_early: int | None = None  # ... of the early state (10% of training, past the burn-in)
    heldout_end: int | None = None  # ... of the final point, in the same fold graph
    # the fold graph's verdicts in this graph's terms: the attractor (of this graph) where the
    # fold's training runs that ended in the predicted fold basin ended; < 0: none or ambiguous
    predicted_start: int | None = None
    predicted_early: int | None = None
    fold: int = -1
    outcome: int = -1  # the run's outcome mode (doodl.analysis._outcomes: its end state, without the graph)
    # out of sample, from the early state: the outcome the fold graph's basin stands for (the
    # outcome of the fold's training runs that ended in that basin; < 0: none or ambiguous),
    # and the baseline's (the outcome of the nearest training run's early state)
    predicted_outcome: int | None = None
    baseline_outcome: int | None = None

    @property
    def in_attractor(self) -> bool:
        return self.final_node >= 0 and self.final_node == self.end_attractor

    @property
    def heldout_correct(self) -> bool:
        """Its early state, in a graph fitted without it, leads where its end really lies."""
        return self.predicted_early is not None and self.predicted_early >= 0 and self.predicted_early == self.end_attractor

    @property
    def heldout_start_correct(self) -> bool:
        return self.predicted_start is not None and self.predicted_start >= 0 and self.predicted_start == self.end_attractor

    @property
    def outcome_correct(self) -> bool:
        """Its early state, in a graph fitted without it, lies in a basin whose runs ended
        as it really did."""
        return self.predicted_outcome is not None and self.predicted_outcome >= 0 and self.predicted_outcome == self.outcome

    @property
    def baseline_correct(self) -> bool:
        return self.baseline_outcome is not None and self.baseline_outcome == self.outcome


@dataclass
class FittedMap:
    """Coordinates, pair map and Morse graph fitted to some of a group's runs."""

    coordinates: Coordinates
    pair_map: PairMap
    graph: MorseGraph
    projected: dict[str, np.ndarray]  # run_id -> (T, dims), for every run given (fitted or not)


@dataclass
class GroupMorse:
    """Everything computed for one group, as plain data."""

    fitted: FittedMap
    coordinates: str  # the kind used (``auto`` resolved)
    verdicts: list[RunVerdict]
    n_pairs: int
    outcomes: Outcomes  # of the non-diverged runs, in their order in ``verdicts``
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def graph(self) -> MorseGraph:
        return self.fitted.graph

    @property
    def projected(self) -> dict[str, np.ndarray]:
        return self.fitted.projected

    def _ok(self) -> list[RunVerdict]:
        return [v for v in self.verdicts if v.status == "ok"]

    @property
    def enough_runs(self) -> bool:
        """Whether the group has the ``MIN_RUNS`` non-diverged runs a verdict on basins needs."""
        return len(self._ok()) >= MIN_RUNS

    @property
    def no_verdict(self) -> str | None:
        """Why the graph makes no claim about attractors and basins (too few runs), or None."""
        n = len(self._ok())
        return None if n >= MIN_RUNS else (f"too few runs to resolve basins: {n} non-diverged, at least {MIN_RUNS} "
                                           "needed (raise seeds); the graph is an illustration")

    @property
    def outcome_accuracy(self) -> float:
        """Out of sample, against outcomes the graph did not define: share of runs whose
        early state, in a graph fitted without them, lies in a basin whose (training) runs
        ended in the run's own outcome mode (NaN if no run). See :func:`_cross_validate`."""
        return self._share(lambda v: v.outcome_correct)

    @property
    def outcome_chance(self) -> float:
        """The share of runs in the largest outcome mode."""
        return self.outcomes.chance

    @property
    def baseline_accuracy(self) -> float:
        """The trivial baseline in the same folds: the outcome of the training run whose
        early state is nearest the held-out run's, in the fold's coordinates."""
        return self._share(lambda v: v.baseline_correct)

    @property
    def ari(self) -> float:
        """Adjusted Rand index between the runs' end basins (every run whose end lies in no
        basin in one class) and their outcome modes: 1 when the graph's basins are the
        outcomes, about 0 when they are unrelated, and 0 when one attractor holds runs of
        several outcomes."""
        from sklearn.metrics import adjusted_rand_score

        ok = self._ok()
        if not ok:
            return float("nan")
        return float(adjusted_rand_score([v.outcome for v in ok], [max(v.end_attractor, -1) for v in ok]))

    @property
    def versus_baseline(self) -> str:
        """``beats``, ``matches`` or ``below`` the baseline: held-out outcome accuracy
        against the baseline's, equal within one run (a single run is noise)."""
        n = len(self._ok())
        diff = round((self.outcome_accuracy - self.baseline_accuracy) * n)
        return "beats" if diff > 1 else ("below" if diff < -1 else "matches")

    def _share(self, correct) -> float:
        ok = self._ok()
        return float(np.mean([correct(v) for v in ok])) if ok else float("nan")

    @property
    def self_basin_accuracy(self) -> float:
        """Secondary, graded against the graph itself: share of runs whose early state, in
        a graph fitted without them, lies in a basin leading to the attractor of this graph
        where their end lies. A graph that merges every outcome into one attractor scores
        1.0 here against a chance of 1.0: it cannot notice a blind graph (use
        :attr:`outcome_accuracy`)."""
        return self._share(lambda v: v.heldout_correct)

    @property
    def self_basin_accuracy_start(self) -> float:
        """The same from the first snapshot (the initialisation)."""
        return self._share(lambda v: v.heldout_start_correct)

    @property
    def self_basin_chance(self) -> float:
        """The share of runs in the largest basin of the group's graph: what always guessing
        that basin would score."""
        ok = self._ok()
        if not ok:
            return float("nan")
        ends = Counter(v.end_attractor for v in ok if v.end_attractor >= 0)
        return max(ends.values(), default=0) / len(ok)

    @property
    def n_transit(self) -> int:
        """Runs whose end lies in no basin of the graph fitted without them."""
        return sum(1 for v in self._ok() if v.heldout_end is None or v.heldout_end < 0)

    @property
    def n_undecided(self) -> int:
        """Runs whose early state, in the graph fitted without them, predicts no outcome (it
        lies on a separatrix, where several attractors are reachable, where no attractor
        is, or in a basin that holds no training run's end): counted wrong by
        :attr:`outcome_accuracy`, never a wrong outcome."""
        return sum(1 for v in self._ok() if v.predicted_outcome is None or v.predicted_outcome < 0)

    @property
    def fidelity(self) -> float:
        """In sample (secondary): share of runs whose final point lies in an attractor."""
        ok = self._ok()
        return float(np.mean([v.in_attractor for v in ok])) if ok else float("nan")


def snapshot_pairs(runs: list[RunTrajectory], span: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Index pairs ``(i, i + span)`` per run over equally spaced snapshots, from the run's
    early state on (:attr:`RunTrajectory.early`: 10% of training, past the optimiser's
    burn-in).

    Why not from the start: the map on the recorded coordinates is one function of the state
    only once training has left its initial transient. Before that, states the coordinates
    cannot tell apart have different futures: in function space a network whose ReLUs all
    died at initialisation computes the same (nearly constant) function as a live network
    at initialisation, 0.003 apart in a box 6.6 wide (``BENCHMARKS.md``); pairs from the
    start made the dead runs' end a point that other runs leave, never an attractor. The
    held-out validation predicts from the early state, the first state the map covers.

    The last snapshot of a run whose step count is not a multiple of the recording
    interval is closer to the one before; pairs across that shorter gap are left out so
    every pair spans the same number of training steps.
    """
    firsts, seconds = [], []
    for r in runs:
        s = np.asarray(r.steps)
        if len(s) <= span:
            firsts.append(np.empty(0, dtype=np.int64))
            seconds.append(np.empty(0, dtype=np.int64))
            continue
        spacing = np.median(np.diff(s))
        i = np.arange(min(r.early, len(s) - span), len(s) - span)
        ok = (s[i + span] - s[i]) == span * spacing
        firsts.append(i[ok])
        seconds.append(i[ok] + span)
    return firsts, seconds


def _states(run: RunTrajectory, kind: str) -> np.ndarray:
    return run.outputs if kind == "function" else run.theta


def span_for(runs: list[RunTrajectory], settings: MorseSettings) -> int:
    """The span the pairs are taken at: ``tau x compose`` snapshots, shortened (never below
    ``tau``) so that every run's pairs start at half its snapshots past the early state or
    more; a run recorded 10 times then still gives pairs instead of none."""
    room = min(len(r.steps) - 1 - r.early for r in runs)
    return int(max(settings.tau, min(settings.span, room // 2)))


def fit_map(fit_runs: list[RunTrajectory], all_runs: list[RunTrajectory], kind: str,
            settings: MorseSettings, span: int | None = None) -> FittedMap:
    """Fit coordinates to ``fit_runs``, build the map of their snapshot pairs ``span``
    snapshots apart (default ``settings.span``) and compute its Morse graph on the box holding
    every run of ``all_runs`` (the held-out runs' states set the domain of the question, never
    the map)."""
    span = span or settings.span
    states = [_states(r, kind) for r in fit_runs]
    firsts, seconds = snapshot_pairs(fit_runs, span)
    xs = np.concatenate([s[i] for s, i in zip(states, firsts)])
    ys = np.concatenate([s[j] for s, j in zip(states, seconds)])
    if len(xs) < 3:
        raise ValueError(f"only {len(xs)} snapshot pairs {span} snapshots apart; record more often, "
                         "train longer or lower tau")
    coords = fit_coordinates(kind, states, xs, ys, settings.dims, late_from=settings.late_from)
    projected = {r.run_id: coords(_states(r, kind)) for r in all_runs}
    x = np.concatenate([projected[r.run_id][i] for r, i in zip(fit_runs, firsts)])
    y = np.concatenate([projected[r.run_id][j] for r, j in zip(fit_runs, seconds)])
    owner = np.concatenate([np.full(len(i), k) for k, i in enumerate(firsts)])
    pts = np.concatenate(list(projected.values()))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9 * max(1.0, float(np.abs(pts).max())))
    lower, upper = lo - settings.padding * extent, hi + settings.padding * extent
    pair_map = PairMap(x, y, lower, upper, owner)
    graph = morse_graph(pair_map, lower, upper, subdiv_min=settings.subdiv_min, subdiv_max=settings.subdiv_max)
    return FittedMap(coords, pair_map, graph, projected)


def _usable(runs: list[RunTrajectory], kind: str) -> tuple[list[RunTrajectory], str]:
    """The runs the map is fitted on (non-diverged, finite) and the coordinates' kind."""
    runs = [r for r in runs if len(r.steps) > 0]
    if not runs:
        raise ValueError("the group has no snapshots (is record.every larger than the number of steps?)")
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        raise ValueError("no run of the group trained to the end (diverged or stopped); there is no training "
                         "dynamics to reduce")
    if kind == "auto":
        kind = "function" if all(r.outputs is not None for r in ok) else "late_pca"
    if kind == "function" and any(r.outputs is None for r in ok):
        raise ValueError("function-space coordinates need the model's outputs on the probe set for every run")
    for r in ok:
        if not np.all(np.isfinite(_states(r, kind))):
            raise ValueError(f"snapshots of run {r.run_id} contain NaN or infinite values")
    return ok, kind


def group_morse(runs: list[RunTrajectory], settings: MorseSettings = MorseSettings()) -> GroupMorse:
    """Fit the group's map and Morse graph, judge it out of sample and give every run its
    verdict. Diverged runs leave the coordinates, the pairs and the box; they get a verdict
    with status ``diverged`` and no basin."""
    import scipy.linalg  # noqa: F401  (loads the BLAS libraries before they are limited)
    from threadpoolctl import threadpool_limits

    # one BLAS thread (the PCAs): parallelism comes from Ray tasks, and a second thread
    # spinning on a busy core made small factorisations 100x slower here
    with threadpool_limits(1):
        return _group_morse(runs, settings)


def _group_morse(runs: list[RunTrajectory], settings: MorseSettings) -> GroupMorse:
    t0 = time.perf_counter()
    ok, kind = _usable(runs, settings.coordinates)
    warnings = []
    if any(r.burn_in > r.settled for r in ok):
        warnings.append("runs are too short for the optimiser's memory: snapshot pairs start at half of each run, "
                        f"before {BURN_IN_MEMORIES} memories (the velocity may still be settling); train longer")
    outcomes = run_outcomes(ok)
    span = span_for(ok, settings)
    if span < settings.span:
        warnings.append(f"runs are short for pairs {settings.span} snapshots apart (tau x compose): the map spans "
                        f"{span}, so settled ends map less far into themselves; record more often")
    fitted = fit_map(ok, ok, kind, settings, span)
    t1 = time.perf_counter()
    g = fitted.graph
    verdicts = {}
    for r, mode in zip(ok, outcomes.labels):
        z = fitted.projected[r.run_id]
        nodes = g.node_of(z)
        visited = [int(u) for u in nodes if u >= 0]
        itinerary = [u for k, u in enumerate(visited) if k == 0 or u != visited[k - 1]]
        verdicts[r.run_id] = RunVerdict(r.run_id, "ok", z[-1].tolist(), int(nodes[-1]), int(g.basin_of(z[-1:])[0]),
                                        itinerary, outcome=int(mode))
    if len(ok) >= MIN_RUNS:  # below, no held-out figure is shown: do not pay for it
        _cross_validate(ok, kind, settings, span, verdicts)
    t2 = time.perf_counter()
    out = [verdicts.get(r.run_id) or RunVerdict(r.run_id, "stopped" if r.status == "stopped" else "diverged", [], -1,
                                                -1, []) for r in runs]
    result = GroupMorse(fitted, kind, out, fitted.pair_map.n_pairs, outcomes, warnings,
                        {"fit_s": t1 - t0 - g.seconds, "morse_s": g.seconds, "validate_s": t2 - t1,
                         "total_s": t2 - t0})
    if not result.enough_runs:
        warnings.insert(0, result.no_verdict)
        return result  # the counts below would be read as verdicts
    if result.n_transit:
        warnings.append(f"{result.n_transit} run(s) ended in transit: their end lies in no basin of the graph "
                        "fitted without them (still moving, or near a separatrix)")
    sparse = [m for m, n in enumerate(outcomes.sizes) if n < MIN_RUNS_PER_BASIN]
    if sparse:
        warnings.append(f"{len(sparse)} outcome mode(s) hold fewer than {MIN_RUNS_PER_BASIN} runs: a graph fitted "
                        "without one of their runs has too few trajectories there to place it (raise seeds)")
    if len(g.attractors) != outcomes.n_modes:
        warnings.append(f"{len(g.attractors)} attractor(s) for {outcomes.n_modes} outcome mode(s) of the runs' ends "
                        f"(adjusted Rand index {result.ari:.2f})")
    in_attractor = sum(v.in_attractor for v in result._ok())
    if in_attractor < len(ok):
        warnings.append(f"{len(ok) - in_attractor} of {len(ok)} runs end outside every attractor")
    if result.versus_baseline == "below":
        warnings.append(f"held-out outcome accuracy {result.outcome_accuracy:.2f} is below the nearest-neighbour "
                        f"baseline's {result.baseline_accuracy:.2f}: the basins predict less than the early states do")
    return result


def run_outcomes(ok: list[RunTrajectory]) -> Outcomes:
    """The outcome modes of non-diverged runs (:mod:`doodl.analysis._outcomes`): their final
    function on the probe set when every run has outputs, else their final state; beside
    the final train accuracy and loss when every run has them."""
    function = all(r.outputs is not None for r in ok)
    if function:
        # root mean square over the outputs (probe points x classes): a scale of its own
        # beside accuracy and loss, whatever the probe set's size
        width = np.sqrt(ok[0].outputs.shape[1])
        finals = np.stack([r.outputs[-1] for r in ok]) / width
        starts = np.stack([r.outputs[0] for r in ok]) / width
    else:
        finals, starts = np.stack([r.theta[-1] for r in ok]), np.stack([r.theta[0] for r in ok])
    extras = []
    if all(r.final_acc is not None and r.final_loss is not None for r in ok):
        extras = [np.array([r.final_acc for r in ok]), np.array([r.final_loss for r in ok])]
    ends, travel = end_features(finals, starts, extras)
    return outcome_modes(ends, travel, "function" if function else "state")


def _basin_label(basins: np.ndarray, labels: list[int]):
    """A function from a fold graph's basin to the label its runs carry: the most common
    label among the runs whose ends lie in that basin; ``NO_ATTRACTOR`` for a basin that
    holds no run's end, or as many runs of two labels (or whose most common label is
    negative); negative basins (several, none, outside) as they are."""
    votes: dict[int, Counter] = {}
    for b, label in zip(basins, labels):
        votes.setdefault(int(b), Counter())[label] += 1

    def label_of(basin: int) -> int:
        if basin < 0:
            return basin
        top = (votes.get(basin) or Counter()).most_common(2)
        if not top or top[0][0] < 0 or (len(top) == 2 and top[1][1] == top[0][1]):
            return NO_ATTRACTOR
        return int(top[0][0])

    return label_of


def _cross_validate(ok: list[RunTrajectory], kind: str, settings: MorseSettings, span: int,
                    verdicts: dict[str, RunVerdict]) -> None:
    """Refit without each fold of runs; place each held-out run's first, early and final
    snapshot in the basins of the fold's graph, and read what the basin of its early state
    predicts: its outcome mode, and (secondary) the group graph's attractor.

    The translation goes through the runs, not the coordinates (each fold fits its own): a
    fold basin stands for the outcome (and the group graph's attractor) of the fold's
    training runs whose ends lie in it, the most common one. Without it, a fold graph that
    merged two attractors would score a held-out run right by placing its start and its end
    in the one merged basin. The baseline, in the same folds and coordinates, gives a
    held-out run the outcome of the training run whose early state is nearest its own."""
    k = min(settings.folds, len(ok))
    if k < 2:
        return
    for fold in range(k):
        held = [r for i, r in enumerate(ok) if i % k == fold]
        rest = [r for i, r in enumerate(ok) if i % k != fold]
        try:
            fitted = fit_map(rest, ok, kind, settings, span)
        except ValueError:
            continue  # too few pairs without this fold: its runs stay unjudged (counted wrong)
        g = fitted.graph
        landed = g.basin_of(np.stack([fitted.projected[r.run_id][-1] for r in rest]))
        attractor_of = _basin_label(landed, [verdicts[r.run_id].end_attractor for r in rest])
        outcome_of = _basin_label(landed, [verdicts[r.run_id].outcome for r in rest])
        rest_early = np.stack([fitted.projected[r.run_id][r.early] for r in rest])
        for r in held:
            z = fitted.projected[r.run_id]
            start, at_early, end = (int(b) for b in g.basin_of(np.stack([z[0], z[r.early], z[-1]])))
            v = verdicts[r.run_id]
            v.heldout_start, v.heldout_early, v.heldout_end, v.fold = start, at_early, end, fold
            v.predicted_start, v.predicted_early = attractor_of(start), attractor_of(at_early)
            v.predicted_outcome = outcome_of(at_early)
            nearest = int(np.argmin(np.linalg.norm(rest_early - z[r.early], axis=1)))
            v.baseline_outcome = verdicts[rest[nearest].run_id].outcome
