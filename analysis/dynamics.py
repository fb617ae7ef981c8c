"""Per-group Morse graphs of the training dynamics (DOODL3, see ``METHODS.md`` section 2).

For one group (all seeds of one config) :func:`group_morse`:

1. projects every snapshot of every run to ``dims`` coordinates with one PCA fitted on
   them all, so the runs share coordinates (explained-variance ratio kept);
2. fits a surrogate of the training map ``x_t -> x_{t+tau}`` (``tau`` in snapshots) to the
   snapshot pairs (:mod:`analysis._surrogate`: a Gaussian process with a contracting far
   field);
3. computes the Morse graph of the surrogate with CMGDB on the data's bounding box padded
   by ``padding`` times its extent on each side (:func:`analysis.morse.morse_graph`);
4. gives every run a verdict: the Morse set holding its final point, if any, and whether
   that set is an attractor. The group's *fidelity* is the fraction of its (non-diverged)
   runs whose final point lies in an attractor: the figure that says whether the graph
   describes where training actually ends.

:func:`morse_for_group` does the same from a sweep's committed shards and adds the
pictures; it returns plain data only, so it can run as a Ray task.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis._projection import Projection, fit_pca
from analysis._surrogate import TrainingMapSurrogate
from analysis.morse import MorseGraph, morse_graph

METHOD_VERSION = 1  # bump when a change alters results: stored results of older versions are redone


@dataclass(frozen=True)
class MorseSettings:
    """How a group's Morse graph is computed (the ``reduce.morse`` section of a spec)."""

    dims: int = 2
    tau: int = 1
    subdiv_min: int = 10
    subdiv_max: int = 16
    padding: float = 0.1
    far_field: float = 0.5
    max_pairs: int = 600

    def __post_init__(self):
        if not 2 <= self.dims <= 4:
            raise ValueError(f"dims must be 2, 3 or 4, got {self.dims}")
        if self.tau < 1:
            raise ValueError(f"tau must be at least 1, got {self.tau}")


@dataclass
class RunTrajectory:
    """One run's snapshots: steps, flattened parameters (T, P) and its final status."""

    run_id: str
    steps: np.ndarray
    theta: np.ndarray
    status: str = "ok"


@dataclass
class RunVerdict:
    run_id: str
    status: str
    final_point: list[float]
    final_node: int  # -1 when the final point lies in no Morse set
    in_attractor: bool


@dataclass
class GroupMorse:
    """Everything computed for one group, as plain data."""

    graph: MorseGraph
    projection: Projection
    verdicts: list[RunVerdict]
    projected: dict[str, np.ndarray]  # run_id -> (T, dims) projected snapshots
    n_pairs: int
    kernel: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fidelity(self) -> float:
        """Fraction of non-diverged runs whose final point lies in an attractor (NaN if none)."""
        ok = [v.in_attractor for v in self.verdicts if v.status == "ok"]
        return float(np.mean(ok)) if ok else float("nan")


def snapshot_pairs(runs: list[RunTrajectory], tau: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Index pairs ``(i, i + tau)`` per run over equally spaced snapshots.

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
        i = np.arange(len(s) - tau)
        ok = (s[i + tau] - s[i]) == tau * spacing
        firsts.append(i[ok])
        seconds.append(i[ok] + tau)
    return firsts, seconds


def group_morse(runs: list[RunTrajectory], settings: MorseSettings = MorseSettings()) -> GroupMorse:
    """Project, fit the map, compute the Morse graph and judge every run's end point."""
    t0 = time.perf_counter()
    runs = [r for r in runs if len(r.steps) > 0]
    if not runs:
        raise ValueError("the group has no snapshots (is record.every larger than the number of steps?)")
    if all(r.status == "diverged" for r in runs):
        raise ValueError("every run of the group diverged; there is no training dynamics to reduce")
    all_theta = np.concatenate([r.theta for r in runs])
    if not np.all(np.isfinite(all_theta)):
        raise ValueError("snapshots contain NaN or infinite parameters")
    proj = fit_pca(all_theta, settings.dims)
    projected = {r.run_id: proj(r.theta) for r in runs}
    firsts, seconds = snapshot_pairs(runs, settings.tau)
    x = np.concatenate([projected[r.run_id][i] for r, i in zip(runs, firsts)])
    y = np.concatenate([projected[r.run_id][j] for r, j in zip(runs, seconds)])
    if len(x) < 3:
        raise ValueError(f"only {len(x)} snapshot pairs at tau={settings.tau}; record more often or lower tau")
    t1 = time.perf_counter()
    surrogate = TrainingMapSurrogate(settings.far_field, settings.max_pairs).fit(x, y)
    t2 = time.perf_counter()
    pts = np.concatenate(list(projected.values()))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9 * max(1.0, float(np.abs(pts).max())))
    lower, upper = lo - settings.padding * extent, hi + settings.padding * extent
    graph = morse_graph(surrogate, lower, upper, subdiv_min=settings.subdiv_min, subdiv_max=settings.subdiv_max)
    t3 = time.perf_counter()
    finals = np.stack([projected[r.run_id][-1] for r in runs])
    nodes = graph.node_of(finals)
    attractors = set(graph.attractors)
    verdicts = [
        RunVerdict(r.run_id, r.status, finals[k].tolist(), int(nodes[k]), bool(nodes[k] in attractors))
        for k, r in enumerate(runs)
    ]
    return GroupMorse(
        graph=graph,
        projection=proj,
        verdicts=verdicts,
        projected=projected,
        n_pairs=surrogate.n_pairs_,
        kernel=surrogate.kernel,
        timings={"project_s": t1 - t0, "fit_s": t2 - t1, "morse_s": t3 - t2, "total_s": t3 - t0},
    )


# --- from the store --------------------------------------------------------------------

def read_group_runs(sweep_root_uri: str, unit_ids: list[str], run_ids: list[str]) -> list[RunTrajectory]:
    """The snapshots of the given runs, read from their units' committed shards.

    Only trajectory rows with parameters are read (``theta`` not null), through the shard
    reader's ``pyarrow.dataset`` scan with a filter on ``run_id``; a run's status
    (``ok``/``diverged``) comes from its finals row. Snapshots with non-finite parameters
    are dropped.
    """
    import pyarrow.compute as pc

    from workers import shards

    fs, root = shards.resolve_filesystem(sweep_root_uri)
    wanted = pc.field("run_id").isin(run_ids)
    table = shards.read_units(fs, root, shards.TRAJECTORIES, unit_ids, ["run_id", "step", "theta"],
                              filter=wanted & pc.field("theta").is_valid()
                              ).sort_by([("run_id", "ascending"), ("step", "ascending")])
    finals = shards.read_units(fs, root, shards.FINALS, unit_ids, ["run_id", "status"], filter=wanted)
    status = dict(zip(finals.column("run_id").to_pylist(), finals.column("status").to_pylist()))
    rid_col = table.column("run_id").to_numpy(zero_copy_only=False)
    steps = table.column("step").to_numpy()
    theta = table.column("theta").combine_chunks()
    n = len(theta)
    flat = theta.flatten().to_numpy(zero_copy_only=False) if n else np.empty(0, dtype=np.float32)
    theta_np = flat.reshape(n, len(flat) // n) if n else np.empty((0, 0), dtype=np.float32)
    out = []
    for rid in run_ids:
        idx = np.flatnonzero(rid_col == rid)
        th = theta_np[idx]
        finite = np.isfinite(th).all(axis=1)
        run_status = "diverged" if status.get(rid) == "diverged" or not finite.all() else "ok"
        out.append(RunTrajectory(rid, steps[idx][finite], th[finite], run_status))
    return out


def morse_for_group(
    sweep_root_uri: str,
    group_id: str,
    unit_ids: list[str],
    run_ids: list[str],
    settings: dict,
    title: str = "",
) -> dict:
    """Run :func:`group_morse` on one group of a sweep and draw its pictures.

    Returns plain data (safe to return from a Ray task): a ``row`` for the group table,
    ``runs`` (one verdict per run), and ``pictures`` (file name -> bytes). Errors are
    reported in ``row["error"]`` rather than raised, so one group cannot stop the others.
    """
    started = time.perf_counter()
    cfg = MorseSettings(**settings)
    row: dict = {"group_id": group_id, "n_runs": len(run_ids), "error": None, **{f"param_{k}": v
                 for k, v in asdict(cfg).items()}}
    try:
        runs = read_group_runs(sweep_root_uri, unit_ids, run_ids)
        result = group_morse(runs, cfg)
    except Exception as exc:  # reported per group; the reduction goes on
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        row.update(seconds=time.perf_counter() - started, run_ids=list(run_ids))
        return {"row": row, "runs": [{"run_id": r, "group_id": group_id, "status": "error", "final_node": -1,
                                      "in_attractor": False, "final_point": []} for r in run_ids],
                "pictures": {}}
    g = result.graph
    rec = g.to_record()
    row.update(
        n_morse_sets=len(g.nodes),
        n_attractors=len(g.attractors),
        n_nontrivial=sum(1 for u in g.nodes if not g.is_trivial(u)),
        fidelity=result.fidelity,
        explained_variance=result.projection.explained_variance_ratio.tolist(),
        n_pairs=result.n_pairs,
        kernel=result.kernel,
        dot=g.to_dot(),
        **rec,
        **result.timings,
    )
    runs_out = [{**asdict(v), "group_id": group_id} for v in result.verdicts]
    row.update(run_ids=[v.run_id for v in result.verdicts], final_nodes=[v.final_node for v in result.verdicts],
               final_in_attractor=[v.in_attractor for v in result.verdicts])
    pictures = _pictures(result, title or group_id)
    row["seconds"] = time.perf_counter() - started
    return {"row": row, "runs": runs_out, "pictures": pictures}


def _pictures(result: GroupMorse, title: str) -> dict[str, bytes]:
    """The Morse graph as DOT text and, when graphviz's ``dot`` is installed, SVG and PNG;
    the Morse sets over the projected trajectories as PNG."""
    import graphviz
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.morse import plot_morse_sets

    dot = result.graph.to_dot()
    pics = {"morse_graph.dot": dot.encode()}
    try:
        src = graphviz.Source(dot)
        pics["morse_graph.svg"] = src.pipe(format="svg")
        pics["morse_graph.png"] = src.pipe(format="png")
    except graphviz.ExecutableNotFound:
        pass  # the driver has said once that `dot` is missing; the DOT text is kept
    evr = result.projection.explained_variance_ratio
    fig = plot_morse_sets(
        result.graph,
        list(result.projected.values()),
        title=f"{title}\nfidelity {result.fidelity:.2f}; PCA explains {evr.sum():.0%}",
        axis_labels=(f"PC1 ({evr[0]:.0%})", f"PC2 ({evr[1]:.0%})"),
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    pics["morse_sets.png"] = buf.getvalue()
    return pics
