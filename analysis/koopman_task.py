"""Koopman spectra of a sweep's groups (Ray task per group) and the sweep's dynamical
equivalence classes (on the driver, from every group's seed spectra).

Per group, from the committed snapshots (full or projected parameters) of its runs that
did not diverge: the spectrum of the group (snapshot pairs of all its runs stacked) and,
where a run has at least ``2 * rank`` snapshot pairs, the spectrum of each run alone.
Across the sweep, :func:`doodl.analysis.koopman.conjugacy` compares seeds with seeds: two groups
are conjugate when their seeds are no further apart across the groups than within the
more spread of the two; classes are the average-linkage clusters of that ratio cut at 1.
"""

from __future__ import annotations

import time

import numpy as np

from doodl.analysis.koopman import conjugacy, koopman_eigenvalues, spectral_distance
from doodl.analysis.registry import error_runs, task_error

LEADING = 3  # eigenvalue moduli reported as columns and metrics


def _window(steps: np.ndarray, theta: np.ndarray, snapshots: str, early_fraction: float) -> np.ndarray:
    """The snapshots the spectrum is estimated from: all, or those of the early phase
    (recorded at or before ``early_fraction`` of the run's last recorded step)."""
    if snapshots == "all" or not len(steps):
        return theta
    return theta[steps <= early_fraction * steps.max()]


def _eigs_columns(eigs: np.ndarray | None) -> dict:
    if eigs is None:
        return {"eig_real": None, "eig_imag": None}
    return {"eig_real": eigs.real.tolist(), "eig_imag": eigs.imag.tolist()}


def koopman_for_group(sweep_root_uri: str, group_id: str, unit_ids: list[str], variants: list[dict],
                      settings: dict) -> dict:
    """One group's Koopman spectra from the store. ``settings``: the ``reduce.koopman``
    section (``delays``, ``rank``, ``snapshots``, ``early_fraction``, ``seed``). Returns
    plain data (a Ray task result): ``row`` for the group table, ``runs`` (one row per
    seed: its own spectrum, when its data suffice); errors go in ``row["error"]``."""
    from doodl.analysis.morse_task import read_group_runs

    started = time.perf_counter()
    run_ids = [v["run_id"] for v in variants]
    row: dict = {"group_id": group_id, "run_ids": run_ids, "n_runs": len(variants), "error": None, "warnings": []}
    runs = error_runs(group_id, run_ids)
    delays, rank, seed = int(settings["delays"]), int(settings["rank"]), int(settings["seed"])
    try:
        trajectories = read_group_runs(sweep_root_uri, unit_ids, variants)
        ok = [t for t in trajectories if t.status == "ok"]
        if not ok:
            raise ValueError("no run trained to the end (diverged or stopped): no dynamics to decompose")
        windows = [_window(t.steps, t.theta.astype(np.float64), settings["snapshots"], settings["early_fraction"])
                   for t in ok]
        pooled = koopman_eigenvalues(windows, delays=delays, rank=rank, seed=seed)
        own = {}
        for t, w in zip(ok, windows):
            if len(w) - delays - 1 >= 2 * rank:  # the data suffice: twice as many pairs as eigenvalues
                own[t.run_id] = koopman_eigenvalues([w], delays=delays, rank=rank, seed=seed)
        if len(own) < len(ok):
            row["warnings"].append(f"{len(ok) - len(own)} of {len(ok)} runs have fewer than {2 * rank} snapshot "
                                   "pairs in the window: no spectrum of their own")
        seeds = list(own.values())
        pairs = [spectral_distance(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
        moduli = np.abs(pooled)
        row.update(
            n_spectra=len(own), n_pairs=int(sum(max(len(w) - delays - 1, 0) for w in windows)),
            spread=float(np.mean(pairs)) if pairs else None,
            **_eigs_columns(pooled),
            **{f"modulus_{k + 1}": float(moduli[k]) if k < len(moduli) else None for k in range(LEADING)},
        )
        status = {t.run_id: t.status for t in trajectories}
        runs = []
        for rid in run_ids:
            eigs = own.get(rid)
            runs.append({"run_id": rid, "group_id": group_id, "status": status.get(rid, "error"),
                         **_eigs_columns(eigs), "modulus_1": float(np.abs(eigs[0])) if eigs is not None else None})
    except Exception as exc:  # reported per group; the reduction goes on
        row["error"] = task_error(exc)
    row["seconds"] = time.perf_counter() - started
    return {"row": row, "runs": runs, "pictures": {}}


def _spectrum(r: dict) -> np.ndarray:
    return np.asarray(r["eig_real"], dtype=float) + 1j * np.asarray(r["eig_imag"], dtype=float)


def sweep_conjugacy(group_rows: list[dict], run_rows: list[dict]) -> tuple[dict[str, int], list[dict]]:
    """Equivalence classes of the groups reduced without error: group id -> class, and the
    numbers the verdicts used, one row per ordered pair of groups (``distance``, both
    ``spread``s, ``ratio``, ``conjugate``)."""
    gids = sorted(r["group_id"] for r in group_rows if r["error"] is None)
    per_seed = {g: [] for g in gids}
    for r in run_rows:
        if r["group_id"] in per_seed and r.get("eig_real") is not None:
            per_seed[r["group_id"]].append(_spectrum(r))
    if not gids:
        return {}, []
    result = conjugacy([per_seed[g] for g in gids])
    spread = np.diag(result.distance)
    pairs = []
    for i, a in enumerate(gids):
        for j, b in enumerate(gids):
            if i != j:
                pairs.append({"group_a": a, "group_b": b, "distance": _finite(result.distance[i, j]),
                              "spread_a": _finite(spread[i]), "spread_b": _finite(spread[j]),
                              "ratio": _finite(result.ratio[i, j]), "conjugate": bool(result.conjugate[i, j])})
    return dict(zip(gids, (int(c) for c in result.classes))), pairs


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def plot_conjugacy(group_rows: list[dict], classes: dict[str, int], pairs: list[dict], labels: dict[str, str],
                   title: str = "") -> bytes | None:
    """The seed-level distance matrix ordered by class (spreads on the diagonal, class
    boundaries drawn) beside each class's group spectra in the unit disc."""
    from doodl.analysis.figures import png, pyplot

    order = sorted(classes, key=lambda g: (classes[g], g))
    if not order:
        return None
    index = {g: k for k, g in enumerate(order)}
    n = len(order)
    dist = np.full((n, n), np.nan)
    for p in pairs:
        if p["group_a"] in index and p["group_b"] in index and p["distance"] is not None:
            dist[index[p["group_a"]], index[p["group_b"]]] = p["distance"]
            if p["spread_a"] is not None:
                dist[index[p["group_a"]], index[p["group_a"]]] = p["spread_a"]
    if n == 1:
        dist[0, 0] = next((r.get("spread") for r in group_rows if r["group_id"] == order[0]), None) or np.nan
    plt = pyplot()
    fig, (ax_d, ax_e) = plt.subplots(1, 2, figsize=(13, 5.6), dpi=110, gridspec_kw={"wspace": 0.35})
    im = ax_d.imshow(dist, cmap="viridis")
    fig.colorbar(im, ax=ax_d, fraction=0.046, pad=0.02).set_label("seed-to-seed distance", fontsize=8)
    bounds = [k for k in range(1, n) if classes[order[k]] != classes[order[k - 1]]]
    for b in bounds:
        ax_d.axhline(b - 0.5, color="white", lw=1.5)
        ax_d.axvline(b - 0.5, color="white", lw=1.5)
    if n <= 30:
        names = [f"[{classes[g]}] {labels.get(g, g)}" for g in order]
        ax_d.set_yticks(range(n), names, fontsize=7)
        ax_d.set_xticks(range(n), [str(classes[g]) for g in order], fontsize=7)
    ax_d.set_title("distances ordered by class (diagonal: spread between a group's seeds)", fontsize=9)
    cmap = plt.get_cmap("tab10")
    theta = np.linspace(0, 2 * np.pi, 200)
    ax_e.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.8, ls="--")
    rows = {r["group_id"]: r for r in group_rows}
    shown, points = set(), []
    for g in order:
        r = rows[g]
        if r.get("eig_real") is None:
            continue
        c = classes[g]
        eigs = _spectrum(r)
        points.append(eigs)
        ax_e.scatter(eigs.real, eigs.imag, s=14, color=cmap(c % 10), alpha=0.7,
                     label=f"class {c}" if c not in shown else None)
        shown.add(c)
    ax_e.set_aspect("equal")
    # zoomed onto the eigenvalues (training's cluster near 1), the unit circle dashed
    allp = np.concatenate(points) if points else np.array([1.0 + 0j])
    centre = complex((allp.real.min() + allp.real.max()) / 2, (allp.imag.min() + allp.imag.max()) / 2)
    half = max(np.ptp(allp.real), np.ptp(allp.imag), 0.05) / 2 * 1.15
    ax_e.set_xlim(centre.real - half, centre.real + half)
    ax_e.set_ylim(centre.imag - half, centre.imag + half)
    ax_e.set_xlabel("Re $\\lambda$")
    ax_e.set_ylabel("Im $\\lambda$")
    ax_e.set_title("Koopman eigenvalues of each group (seeds stacked), by class;\ndashed: the unit circle",
                   fontsize=9)
    if shown:
        ax_e.legend(fontsize=7, loc="lower left", ncol=2)
    fig.suptitle(title, fontsize=10)
    return png(fig)


KOOPMAN_PICTURE = "koopman_classes.png"  # sweep-wide, beside the other sweep pictures


def sweep_step(rstore, groups: dict[str, list[dict]], title: str = ""):
    """Koopman's sweep-wide results, once every group has its spectra: each group's
    equivalence class (a column of ``koopman.parquet``), the verdict of every pair of groups
    with its numbers (``koopman_pairs.parquet``) and ``koopman_classes.png``. ``rstore`` is
    the analysis's reduction store; returns the consolidated (groups, runs) tables."""
    from doodl.analysis.schemas import KOOPMAN_PAIRS_SCHEMA
    from doodl.workers.config import group_label

    group_rows, run_rows = (t.to_pylist() for t in rstore.consolidate())
    group_rows = [r for r in group_rows if r["group_id"] in groups]
    classes, pairs = sweep_conjugacy(group_rows, [r for r in run_rows if r["group_id"] in groups])
    rstore.write_table("koopman_pairs", pairs, KOOPMAN_PAIRS_SCHEMA)
    picture = plot_conjugacy(group_rows, classes, pairs, {g: group_label(rows[0]) for g, rows in groups.items()},
                             title=f"{title}: dynamical equivalence classes (Koopman spectra)")
    if picture is not None:
        rstore.write_file(KOOPMAN_PICTURE, picture)
    return rstore.consolidate({"koopman_class": classes})
