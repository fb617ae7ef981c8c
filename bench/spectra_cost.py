"""What Koopman spectra and NTK evolution add to a reduction: seconds per group against
the taxonomy's, on example sweeps (trained into a temporary store first).

For each group, in this process, one thread, one after another: the three per-group
tasks ``doodl reduce`` runs as Ray tasks (:func:`doodl.analysis.taxonomy.taxonomy_for_group`,
:func:`doodl.analysis.koopman_task.koopman_for_group`, :func:`doodl.analysis.ntk_task.ntk_for_group`)
with the spec's settings, reading the group from the store as they do. The ratio
(Koopman + NTK) / taxonomy is the issue's budget: at most 1.

    python bench/spectra_cost.py                                  # quickstart and taxonomy examples
    python bench/spectra_cost.py --example morse --store ./doodl-store
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import yaml
from _sweeps import ROOT, ensure_sweep, groups_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", action="append", help="example spec name (repeatable); default quickstart, taxonomy")
    ap.add_argument("--store", default=None, help="store holding the sweeps (default: train into a temp store)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from doodl.analysis.koopman_task import koopman_for_group
    from doodl.analysis.ntk_task import ntk_for_group
    from doodl.analysis.taxonomy import taxonomy_for_group
    from doodl.orchestrator.spec import ReduceSpec

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; torch threads 1")
    for name in args.example or ["quickstart", "taxonomy"]:
        spec_path = ROOT / "examples" / f"{name}.yaml"
        doc = yaml.safe_load(spec_path.read_text())
        root, tmp = ensure_sweep(args.store, doc["name"], str(spec_path))
        reduce = ReduceSpec.model_validate(doc.get("reduce", {}))
        settings = {"taxonomy": {k: v for k, v in reduce.taxonomy.model_dump(mode="json").items() if k != "axes"},
                    "koopman": reduce.koopman.model_dump(mode="json"), "ntk": reduce.ntk.model_dump(mode="json")}
        seconds = {k: [] for k in settings}
        for gid, rows in sorted(groups_of(root).items()):
            units = sorted({r["unit_id"] for r in rows})
            for analysis, fn in (("taxonomy", taxonomy_for_group), ("koopman", koopman_for_group),
                                 ("ntk", ntk_for_group)):
                t0 = time.perf_counter()
                result = fn(root, gid, units, rows, settings[analysis])
                seconds[analysis].append(time.perf_counter() - t0)
                if result["row"]["error"]:
                    print(f"  {analysis} {gid}: {result['row']['error']}")
        n = len(seconds["taxonomy"])
        med = {k: statistics.median(v) for k, v in seconds.items()}
        tot = {k: sum(v) for k, v in seconds.items()}
        ratio = (tot["koopman"] + tot["ntk"]) / tot["taxonomy"]
        print(json.dumps({"example": name, "groups": n, "median_s": {k: round(v, 3) for k, v in med.items()},
                          "total_s": {k: round(v, 2) for k, v in tot.items()},
                          "koopman_plus_ntk_over_taxonomy": round(ratio, 2)}))
        tmp.cleanup()


if __name__ == "__main__":
    main()
