"""Per-group Morse graphs of the training dynamics (DOODL3, see ``METHODS.md`` section 2).

For one group (all seeds of one config) :func:`group_morse`:

1. fits ``dims`` coordinates to the states of its non-diverged runs (``coordinates``: by
   default function space when the runs carry the model's outputs on a probe set, else
   PCA of the late snapshots; see :mod:`analysis._coordinates`);
2. fits a surrogate of the training map ``x_t -> x_{t+tau}`` (``tau`` in snapshots) to the
   snapshot pairs (:mod:`analysis._surrogate`: a Gaussian process with a contracting far
   field);
3. computes the Morse graph of the surrogate with CMGDB on the runs' bounding box padded
   by ``padding`` of its extent per side, each box image widened by ``uncertainty`` times the
   GP's posterior standard deviation (an outer enclosure of what the data allow);
4. judges it out of sample. The runs are split into ``folds``; for each fold, steps 1-3 are
   redone without its runs, and each held-out run's early state (its first snapshot, and the
   snapshot at 10% of training) is placed in the basin of an attractor of that graph and
   compared with the attractor whose basin holds its real end. ``basin_accuracy`` is the
   share of runs predicted right (a run whose end lies in no basin counts as wrong and as
   *ended in transit*); its chance level is the share of runs in the largest basin;
5. gives every run its itinerary (the Morse sets its snapshots pass through, in order) and
   the attractor whose basin holds its end.

What the graph can say: which regions trajectories settle in (attractors, with a non-trivial
Conley index), which recurrent sets they pass between (saddles and unresolved sets), and
which starts lead where. What it cannot: anything about directions the coordinates drop,
or about states no run visited (the far field there is a modelling choice).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from analysis._coordinates import KINDS, Coordinates, fit_coordinates
from analysis._surrogate import TrainingMapSurrogate
from analysis.morse import NO_ATTRACTOR, MorseGraph, morse_graph

METHOD_VERSION = 3  # bump when a change alters results: stored results of older versions are redone
COORDINATES = ("auto", *KINDS)
MIN_RUNS = 8  # fewer non-diverged runs than this cannot resolve basins reliably (BENCHMARKS.md)
# a basin holding fewer runs than this leaves too few trajectories there once one is held
# out: the held-out figure is then pessimistic (measured: 2-3 runs a well, BENCHMARKS.md)
MIN_RUNS_PER_BASIN = 4
EARLY_FRACTION = 0.1  # the "early state" judged out of sample: the snapshot at 10% of training
BURN_IN_MEMORIES = 5  # pairs start this many optimiser memories into a run (momentum 0.9: 50 steps)


@dataclass(frozen=True)
class MorseSettings:
    """How a group's Morse graph is computed (the ``reduce.morse`` section of a spec)."""

    coordinates: str = "auto"
    dims: int = 2
    tau: int = 1
    late_from: float = 0.5
    subdiv_min: int = 10
    subdiv_max: int = 16
    padding: float = 0.1
    far_field: float = 0.9
    max_pairs: int = 600
    compose: int = 8
    uncertainty: float = 1.0
    folds: int = 8

    def __post_init__(self):
        if self.coordinates not in COORDINATES:
            raise ValueError(f"coordinates must be one of {', '.join(COORDINATES)}, got {self.coordinates!r}")
        if not 2 <= self.dims <= 4:
            raise ValueError(f"dims must be 2, 3 or 4, got {self.dims}")
        if self.tau < 1:
            raise ValueError(f"tau must be at least 1, got {self.tau}")
        if not 0.0 <= self.late_from < 1.0:
            raise ValueError(f"late_from must be in [0, 1), got {self.late_from}")
        if self.compose < 1:
            raise ValueError(f"compose must be at least 1, got {self.compose}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")


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
    snapshot pairs and the early state judged out of sample therefore start
    ``BURN_IN_MEMORIES`` memories into the run (3 memories left held-out runs undecided or
    wrong, 5 did not: ``BENCHMARKS.md``)."""

    run_id: str
    steps: np.ndarray
    theta: np.ndarray
    status: str = "ok"
    outputs: np.ndarray | None = None
    memory: float = 0.0

    @property
    def burn_in(self) -> int:
        """Index of the first snapshot past the optimiser's burn-in (may be past the end)."""
        s = np.asarray(self.steps)
        return int(np.searchsorted(s, s[0] + np.ceil(BURN_IN_MEMORIES * self.memory - 1e-9))) if len(s) else 0

    @property
    def settled(self) -> int:
        """Where the run's pairs start: past the burn-in, but no later than half the run's
        snapshots (a run too short for its optimiser's memory is warned about)."""
        return min(self.burn_in, (len(self.steps) - 1) // 2)

    @property
    def early(self) -> int:
        """Index of the early state judged out of sample: the snapshot at
        ``EARLY_FRACTION`` of the run, or the first one past the burn-in if later."""
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


@dataclass
class FittedMap:
    """Coordinates, surrogate and Morse graph fitted to some of a group's runs."""

    coordinates: Coordinates
    surrogate: TrainingMapSurrogate
    graph: MorseGraph
    projected: dict[str, np.ndarray]  # run_id -> (T, dims), for every run given (fitted or not)


@dataclass
class GroupMorse:
    """Everything computed for one group, as plain data."""

    fitted: FittedMap
    coordinates: str  # the kind used (``auto`` resolved)
    verdicts: list[RunVerdict]
    n_pairs: int
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
    def basin_accuracy(self) -> float:
        """Out of sample: share of runs whose early state (10% of training), in a graph fitted
        without them, lies in the basin of an attractor that leads where their end lies in
        this graph (NaN if none). Labels and predictions are both this graph's attractors,
        so the figure and its chance level are in one frame (see :func:`_cross_validate`)."""
        ok = self._ok()
        return float(np.mean([v.heldout_correct for v in ok])) if ok else float("nan")

    @property
    def basin_accuracy_start(self) -> float:
        """The same from the first snapshot (the initialisation)."""
        ok = self._ok()
        return float(np.mean([v.heldout_start_correct for v in ok])) if ok else float("nan")

    @property
    def chance(self) -> float:
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
        """Runs whose end lies in a basin but whose early state, in the graph fitted without
        them, lies in none (on a separatrix, where several attractors are reachable, or
        where no attractor is): counted wrong by ``basin_accuracy``, never a wrong basin."""
        return sum(1 for v in self._ok() if v.end_attractor >= 0 and (v.predicted_early is None or v.predicted_early < 0))

    @property
    def fidelity(self) -> float:
        """In sample (secondary): share of runs whose final point lies in an attractor."""
        ok = self._ok()
        return float(np.mean([v.in_attractor for v in ok])) if ok else float("nan")


def snapshot_pairs(runs: list[RunTrajectory], tau: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Index pairs ``(i, i + tau)`` per run over equally spaced snapshots, from the end of
    the optimiser's burn-in on (:attr:`RunTrajectory.settled`).

    The last snapshot of a run whose step count is not a multiple of the recording
    interval is closer to the one before; pairs across that shorter gap are left out so
    every pair spans the same number of training steps.
    """
    firsts, seconds = [], []
    for r in runs:
        s = np.asarray(r.steps)
        if len(s) <= tau:
            firsts.append(np.empty(0, dtype=np.int64))
            seconds.append(np.empty(0, dtype=np.int64))
            continue
        spacing = np.median(np.diff(s))
        i = np.arange(min(r.settled, len(s) - tau), len(s) - tau)
        ok = (s[i + tau] - s[i]) == tau * spacing
        firsts.append(i[ok])
        seconds.append(i[ok] + tau)
    return firsts, seconds


def _states(run: RunTrajectory, kind: str) -> np.ndarray:
    return run.outputs if kind == "function" else run.theta


def fit_map(fit_runs: list[RunTrajectory], all_runs: list[RunTrajectory], kind: str,
            settings: MorseSettings) -> FittedMap:
    """Fit coordinates and surrogate to ``fit_runs`` and compute the Morse graph on the box
    holding every run of ``all_runs`` (the held-out runs' states set the domain of the
    question, never the map)."""
    states = [_states(r, kind) for r in fit_runs]
    firsts, seconds = snapshot_pairs(fit_runs, settings.tau)
    xs = np.concatenate([s[i] for s, i in zip(states, firsts)])
    ys = np.concatenate([s[j] for s, j in zip(states, seconds)])
    if len(xs) < 3:
        raise ValueError(f"only {len(xs)} snapshot pairs at tau={settings.tau}; record more often or lower tau")
    coords = fit_coordinates(kind, states, xs, ys, settings.dims, late_from=settings.late_from)
    projected = {r.run_id: coords(_states(r, kind)) for r in all_runs}
    x = np.concatenate([projected[r.run_id][i] for r, i in zip(fit_runs, firsts)])
    y = np.concatenate([projected[r.run_id][j] for r, j in zip(fit_runs, seconds)])
    surrogate = TrainingMapSurrogate(settings.far_field, settings.max_pairs).fit(x, y)
    pts = np.concatenate(list(projected.values()))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9 * max(1.0, float(np.abs(pts).max())))
    lower, upper = lo - settings.padding * extent, hi + settings.padding * extent
    widen = None
    if settings.uncertainty > 0:
        field_ = surrogate.std_field(lower, upper)
        widen = lambda c: settings.uncertainty * field_(c)  # noqa: E731
    graph = morse_graph(_composed(surrogate, settings.compose), lower, upper, subdiv_min=settings.subdiv_min, subdiv_max=settings.subdiv_max,
                        widen=widen)
    return FittedMap(coords, surrogate, graph, projected)


def _composed(f, times: int):
    """``f`` applied ``times`` times: the box map of a higher iterate. Near a stable fixed
    point a box within ``w / (1 - rate)`` of it overlaps its own image and becomes a Morse
    set of its own with a trivial index; composing makes the contraction per box map
    stronger, so those artefacts vanish, while fixed points, their basins and the order
    between them stay those of ``f``."""
    if times == 1:
        return f

    def composed(points: np.ndarray) -> np.ndarray:
        for _ in range(times):
            points = f(points)
        return points

    return composed


def _usable(runs: list[RunTrajectory], kind: str) -> tuple[list[RunTrajectory], str]:
    """The runs the map is fitted on (non-diverged, finite) and the coordinates' kind."""
    runs = [r for r in runs if len(r.steps) > 0]
    if not runs:
        raise ValueError("the group has no snapshots (is record.every larger than the number of steps?)")
    ok = [r for r in runs if r.status == "ok"]
    if not ok:
        raise ValueError("every run of the group diverged; there is no training dynamics to reduce")
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
    import sklearn.gaussian_process  # noqa: F401
    from threadpoolctl import threadpool_limits

    # one BLAS thread: parallelism comes from Ray tasks, and a second thread spinning on a
    # busy core made small Cholesky factorisations 100x slower here
    with threadpool_limits(1):
        return _group_morse(runs, settings)


def _group_morse(runs: list[RunTrajectory], settings: MorseSettings) -> GroupMorse:
    t0 = time.perf_counter()
    ok, kind = _usable(runs, settings.coordinates)
    warnings = []
    if any(r.burn_in > r.settled for r in ok):
        warnings.append("runs are too short for the optimiser's memory: snapshot pairs start at half of each run, "
                        f"before {BURN_IN_MEMORIES} memories (the velocity may still be settling); train longer")
    if len(ok) < MIN_RUNS:
        warnings.append(f"only {len(ok)} non-diverged runs: at least {MIN_RUNS} are needed to resolve basins "
                        "(raise seeds)")
    fitted = fit_map(ok, ok, kind, settings)
    t1 = time.perf_counter()
    g = fitted.graph
    verdicts = {}
    for r in ok:
        z = fitted.projected[r.run_id]
        nodes = g.node_of(z)
        visited = [int(u) for u in nodes if u >= 0]
        itinerary = [u for k, u in enumerate(visited) if k == 0 or u != visited[k - 1]]
        verdicts[r.run_id] = RunVerdict(r.run_id, "ok", z[-1].tolist(), int(nodes[-1]), int(g.basin_of(z[-1:])[0]),
                                        itinerary)
    _cross_validate(ok, kind, settings, verdicts)
    t2 = time.perf_counter()
    out = [verdicts.get(r.run_id) or RunVerdict(r.run_id, "diverged", [], -1, -1, []) for r in runs]
    result = GroupMorse(fitted, kind, out, fitted.surrogate.n_pairs_, warnings,
                        {"fit_s": t1 - t0 - g.seconds, "morse_s": g.seconds, "validate_s": t2 - t1,
                         "total_s": t2 - t0})
    if result.n_transit:
        warnings.append(f"{result.n_transit} run(s) ended in transit: their end lies in no basin of the graph "
                        "fitted without them (still moving, or near a separatrix)")
    sparse = sorted(a for a, n in Counter(v.end_attractor for v in result.verdicts if v.status == "ok").items()
                    if a >= 0 and n < MIN_RUNS_PER_BASIN)
    if sparse:
        warnings.append(f"attractor(s) {', '.join(map(str, sparse))} hold fewer than {MIN_RUNS_PER_BASIN} runs: "
                        "a graph fitted without one of them has too few trajectories there to place it, so "
                        "basin_accuracy is unreliable there (raise seeds)")
    return result


def _cross_validate(ok: list[RunTrajectory], kind: str, settings: MorseSettings,
                    verdicts: dict[str, RunVerdict]) -> None:
    """Refit without each fold of runs; place each held-out run's first, early and final
    snapshot in the basins of the fold's graph, and translate the fold's basins into the
    group graph's attractors.

    The translation goes through the runs, not the coordinates (each fold fits its own):
    a fold basin stands for the attractor (of the group graph) where the fold's training
    runs whose ends lie in it ended, the most common one; a basin that holds no training
    run's end, or as many of two attractors', stands for none. Without it, a fold graph that
    merged two attractors would score a held-out run right by placing its start and its end
    in the one merged basin, while chance is measured on the group graph's basins: with 3
    seeds, one attractor per seed looked like accuracy 1.0 against chance 0.33."""
    k = min(settings.folds, len(ok))
    if k < 2:
        return
    for fold in range(k):
        held = [r for i, r in enumerate(ok) if i % k == fold]
        rest = [r for i, r in enumerate(ok) if i % k != fold]
        try:
            fitted = fit_map(rest, ok, kind, settings)
        except ValueError:
            continue  # too few pairs without this fold: its runs stay unjudged (counted wrong)
        g = fitted.graph
        landed = g.basin_of(np.stack([fitted.projected[r.run_id][-1] for r in rest]))
        outcomes: dict[int, Counter] = {}
        for r, b in zip(rest, landed):
            outcomes.setdefault(int(b), Counter())[verdicts[r.run_id].end_attractor] += 1

        def translate(basin: int) -> int:
            if basin < 0:
                return basin  # SEVERAL / NO_ATTRACTOR / OUTSIDE as they are
            top = (outcomes.get(basin) or Counter()).most_common(2)
            if not top or top[0][0] < 0 or (len(top) == 2 and top[1][1] == top[0][1]):
                return NO_ATTRACTOR
            return int(top[0][0])

        for r in held:
            z = fitted.projected[r.run_id]
            start, at_early, end = (int(b) for b in g.basin_of(np.stack([z[0], z[r.early], z[-1]])))
            v = verdicts[r.run_id]
            v.heldout_start, v.heldout_early, v.heldout_end, v.fold = start, at_early, end, fold
            v.predicted_start, v.predicted_early = translate(start), translate(at_early)
