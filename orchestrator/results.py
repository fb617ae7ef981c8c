"""What a reduction leaves in the store, read back without Ray or torch: the analyses, the
pictures each draws, Koopman's sweep-wide classes and the Morse graphs' sweep-wide validity.
``doodl reduce`` writes these (:mod:`doodl.orchestrator.reduce`); ``doodl sync``, ``report`` and
the MLflow view read them."""

from __future__ import annotations

from collections import Counter

import numpy as np

from doodl.orchestrator.spec import ReduceSpec

ANALYSES = tuple(ReduceSpec.model_fields)  # morse, taxonomy, koopman, ntk: one settings section each
# per analysis, the pictures a group's task draws (in reduction/plots/GROUP_ID/)
GROUP_PICTURES = {"morse": ("morse_graph.png", "morse_graph.dot", "morse_sets.png", "connection_matrix.png"),
                  "ntk": ("ntk.png",)}
KOOPMAN_PICTURE = "koopman_classes.png"  # sweep-wide, in reduction/plots/


def koopman_classes(groups_table) -> dict[str, int]:
    """Group id -> Koopman equivalence class, from a consolidated koopman table."""
    return {g: c for g, c in zip(groups_table.column("group_id").to_pylist(),
                                 groups_table.column("koopman_class").to_pylist()) if c is not None}


def sweep_validity(morse_groups, morse_runs, groups) -> dict[str, float]:
    """The Morse graphs' validity over the sweep's non-diverged runs in groups with a
    verdict (enough runs): held-out outcome accuracy, its chance level (each group's chance
    weighted by its runs), the nearest-neighbour baseline's accuracy in the same folds, and
    the adjusted Rand index between end basins and outcomes (each group's, weighted by its
    runs). NaN where no group has a verdict."""
    per_group = {r["group_id"]: r for r in morse_groups.to_pylist()
                 if r["error"] is None and not r.get("no_verdict") and r["group_id"] in groups}
    ok = [r for r in morse_runs.to_pylist() if r["status"] == "ok" and r["group_id"] in per_group
          and r.get("outcome_correct") is not None]
    names = ("outcome_accuracy", "outcome_chance", "baseline_accuracy", "ari")
    if not ok:
        return dict.fromkeys(names, float("nan"))
    n_ok = Counter(r["group_id"] for r in ok)  # one pass: sweeps have thousands of runs

    def weighted(column: str) -> float:
        return float(sum(per_group[g][column] * n for g, n in n_ok.items()) / len(ok))

    return {"outcome_accuracy": float(np.mean([r["outcome_correct"] for r in ok])),
            "outcome_chance": weighted("outcome_chance"),
            "baseline_accuracy": float(np.mean([r["baseline_correct"] for r in ok])),
            "ari": weighted("ari")}


def sweep_pictures_in_store(stores) -> dict[str, str]:
    """The sweep-wide pictures already in the store (name -> path)."""
    import pyarrow.fs as pafs

    rstore = next(iter(stores.values()), None)
    if rstore is None:
        return {}
    infos = rstore.fs.get_file_info(pafs.FileSelector(rstore.plots_dir, allow_not_found=True))
    return {i.base_name: i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".png")}


def stored_tables(rstore):
    """An analysis's all-groups tables (groups, runs) rebuilt from its parts in the store.
    Koopman's sweep-wide classes are read back from the last consolidated ``koopman.parquet``
    (``doodl reduce`` works them out; nothing here recomputes an analysis)."""
    import pyarrow.parquet as pq

    if rstore.name != "koopman":
        return rstore.consolidate()
    try:
        with rstore.fs.open_input_file(rstore.table_paths()[0]) as f:
            classes = koopman_classes(pq.read_table(f, columns=["group_id", "koopman_class"]))
    except FileNotFoundError:
        classes = {}
    return rstore.consolidate({"koopman_class": classes})
