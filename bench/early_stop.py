"""Landscape-aware early stopping (``early_stop:``) against ASHA on loss, on an example grid
whose phase diagram the reference sweep gives.

Four things are trained in one run of this script, on one machine:

1. the *predictor* sweep: the example's grid with other seeds (3, 4, 5), reduced with the
   ``early`` analysis and the taxonomy: the rule and the phase model are fitted there;
2. the *reference* sweep: the example as it is (seeds 0, 1, 2), trained to the end and
   reduced with the taxonomy: the phase diagram and the final test accuracies to recover;
3. the *stopped* sweep: the reference with ``early_stop: {at, keep, predictor}``, trained
   for real (doomed runs leave their units at ``at``) and reduced with the taxonomy; a group
   left with fewer than 2 finished seeds gets its phase predicted (the nearest predictor
   group's in mean early features), counted apart;
4. ASHA: Ray Tune's ``AsyncHyperBandScheduler`` on the train loss, one trial per run of the
   reference grid. Its trials replay the reference runs' recorded loss curves (training is
   deterministic, so a trial trained anew reports the same numbers); the groups it leaves
   with fewer seeds get their taxonomy on the seeds it finished.

Figures per method: the model-steps not trained; the groups whose phase is recovered (a group
needs 2 finished seeds for a taxonomy; fewer is counted as not recovered); the share of the
top 10% runs and configurations (by the reference's final test accuracy) trained to the end;
and for doodl the training time against the reference's.

    OMP_NUM_THREADS=1 python bench/early_stop.py --example cnn-digits --keep 0.5

Prints Markdown (BENCHMARKS.md records it with the command).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOP = 0.1


def doodl(*args: str, store: str, db: str) -> str:
    """Run a doodl command; return its output."""
    done = subprocess.run([sys.executable, "-m", "doodl.orchestrator.cli", *args, "--store", store,
                           "--tracking-uri", f"sqlite:///{db}", "--no-progress"], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"doodl {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def train(spec: dict, directory: Path, store: str, db: str) -> tuple[float, str]:
    """Train a spec; (its training seconds as the sweep reports them, the output). A sweep
    the store already holds keeps the seconds its first training took (``seconds.json``
    beside the store)."""
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = doodl("sweep", str(path), store=store, db=db)
    seconds = re.search(r"training ([0-9.]+)s", out)
    record = Path(store).parent / "seconds.json"
    known = json.loads(record.read_text()) if record.exists() else {}
    if seconds:
        known[spec["name"]] = float(seconds.group(1))
        record.write_text(json.dumps(known))
    return known.get(spec["name"], float("nan")), out


def finals_of(store: str, sweep: str) -> dict[str, dict]:
    from doodl.orchestrator.store import SweepStore

    s = SweepStore(store, sweep)
    units = sorted(set(s.read_variants()["unit_id"].to_pylist()))
    rows = s.read_unit_rows("finals", units, ["run_id", "status", "steps", "final_test_acc"]).to_pylist()
    return {r["run_id"]: r for r in rows}


def phases_of(store: str, sweep: str) -> dict[str, str | None]:
    import pyarrow.parquet as pq

    from doodl.orchestrator.store import SweepStore

    s = SweepStore(store, sweep)
    return {r["group_id"]: r["phase"] for r in pq.read_table(s.layout.reduction_table("taxonomy")).to_pylist()}


def asha(store: str, sweep: str, every: int, steps: int, grace: float, eta: int) -> dict[str, int]:
    """Each reference run's last step under ASHA on its train loss (mean over each recorded
    interval), trials replaying the recorded curves."""
    import ray
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from doodl.orchestrator.store import SweepStore

    s = SweepStore(store, sweep)
    units = sorted(set(s.read_variants()["unit_id"].to_pylist()))
    traj = s.read_unit_rows("trajectories", units, ["run_id", "step", "train_loss"]).to_pydict()
    curves: dict[str, list[float]] = {}
    for rid, loss in zip(traj["run_id"], traj["train_loss"]):
        curves.setdefault(rid, []).append(loss)
    rungs = steps // every
    # the mean minibatch loss of each interval of `every` steps: what a trial reports
    reports = {rid: [float(np.mean(c[1 + k * every: 1 + (k + 1) * every])) for k in range(rungs)]
               for rid, c in curves.items()}

    def trial(config):
        for loss in config["reports"]:
            tune.report({"loss": loss})

    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        scheduler = AsyncHyperBandScheduler(time_attr="training_iteration", metric="loss", mode="min", max_t=rungs,
                                            grace_period=max(1, math.ceil(grace * rungs)), reduction_factor=eta)
        space = {"run": tune.grid_search(sorted(reports))}
        tuner = tune.Tuner(
            tune.with_resources(lambda c: trial({"reports": reports[c["run"]]}), {"cpu": 0.25}),
            param_space=space,
            tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=8),
            run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), verbose=0))
        results = tuner.fit()
        return {r.config["run"]: int(r.metrics["training_iteration"]) * every for r in results}
    finally:
        ray.shutdown()


def subset_phase(store: str, sweep: str, group_id: str, run_ids: set[str], settings: dict) -> str | None:
    """The group's taxonomy phase on the runs ``run_ids`` only (None: fewer than 2)."""
    from doodl.analysis.taxonomy import taxonomy_for_group
    from doodl.orchestrator.store import SweepStore

    s = SweepStore(store, sweep)
    variants = [v for v in s.read_variants().to_pylist() if v["group_id"] == group_id and v["run_id"] in run_ids]
    if len(variants) < 2:
        return None
    return taxonomy_for_group(s.root, group_id, sorted({v["unit_id"] for v in variants}), variants,
                              settings)["row"].get("phase")


def figures(name: str, last_step: dict[str, int], steps: int, reference: dict, ref_phases: dict,
            phases: dict, groups: dict[str, list[str]]) -> dict:
    """A method's row: model-steps saved, phases recovered, top runs and configurations kept."""
    finished = {rid for rid, s in last_step.items() if s >= steps}
    acc = {rid: r["final_test_acc"] for rid, r in reference.items()}
    top_runs = sorted(acc, key=acc.get, reverse=True)[: max(1, math.ceil(TOP * len(acc)))]
    mean = {g: float(np.mean([acc[r] for r in rids])) for g, rids in groups.items()}
    top_groups = sorted(mean, key=mean.get, reverse=True)[: max(1, math.ceil(TOP * len(mean)))]
    same = sum(1 for g in groups if phases.get(g) is not None and phases.get(g) == ref_phases.get(g))
    return {"method": name, "saved": 1.0 - sum(min(s, steps) for s in last_step.values()) / (steps * len(last_step)),
            "stopped": sum(1 for s in last_step.values() if s < steps), "n": len(last_step),
            "phases": same, "groups": len(groups),
            "top_runs": sum(r in finished for r in top_runs) / len(top_runs), "n_top_runs": len(top_runs),
            "top_groups": sum(any(r in finished for r in groups[g]) for g in top_groups) / len(top_groups),
            "n_top_groups": len(top_groups)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default="cnn-digits")
    ap.add_argument("--at", type=float, default=0.1)
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor")
    ap.add_argument("--store", default=None, help="reuse the sweeps of an earlier run in this store "
                    "(its MLflow database m.db beside it)")
    args = ap.parse_args()

    base = yaml.safe_load((ROOT / "examples" / f"{args.example}.yaml").read_text())
    tmp = Path(tempfile.mkdtemp())
    store = args.store or str(tmp / "store")
    db = str(Path(store).parent / "m.db")  # the store's own MLflow database when it is reused
    name = base["name"]
    predictor = {**base, "name": f"{name}-predictor", "seeds": [3, 4, 5]}
    reference = {**base, "name": f"{name}-reference"}
    stopped = {**base, "name": f"{name}-stopped-at{args.at:g}-keep{args.keep:g}",
               "early_stop": {"at": args.at, "keep": args.keep, "predictor": predictor["name"]}}
    train(predictor, tmp, store, db)
    doodl("reduce", predictor["name"], "--only", "early", "--only", "taxonomy", store=store, db=db)
    ref_seconds, _ = train(reference, tmp, store, db)
    stop_seconds, said = train(stopped, tmp, store, db)
    for sweep in (reference["name"], stopped["name"]):
        doodl("reduce", sweep, "--only", "taxonomy", store=store, db=db)
    lines = said.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.startswith("early stop at")), len(lines))
    rule = []  # the console wraps the rule's line: its continuations up to the next message
    for ln in lines[first:]:
        if rule and (not ln.strip() or ln.startswith(("sweep ", "training ", "doodl", "20", "Token"))):
            break
        rule.append(ln.strip())
    rule_line = " ".join(rule)

    steps, every = base["optimizer"]["steps"], base["record"]["every"]
    ref_finals = finals_of(store, reference["name"])
    ref_phases = phases_of(store, reference["name"])
    from doodl.orchestrator.store import SweepStore

    groups: dict[str, list[str]] = {}
    for v in SweepStore(store, reference["name"]).read_variants().to_pylist():
        groups.setdefault(v["group_id"], []).append(v["run_id"])

    from doodl.orchestrator.early_stop import read_stopped_phases

    rows = []
    stop_finals = finals_of(store, stopped["name"])
    measured = phases_of(store, stopped["name"])
    predicted = {g: r["predicted_phase"] for g, r in read_stopped_phases(SweepStore(store, stopped["name"])).items()}
    last = {rid: (steps if r["status"] == "ok" else r["steps"]) for rid, r in stop_finals.items()}
    rows.append(figures(f"doodl early_stop (at {args.at}, keep {args.keep}), measured phases", last, steps,
                        ref_finals, ref_phases, measured, groups))
    rows[-1]["seconds"] = stop_seconds / ref_seconds
    rows.append(figures("the same, stopped groups' phases predicted", last, steps, ref_finals, ref_phases,
                        {g: measured.get(g) or predicted.get(g) for g in groups}, groups))
    rows[-1]["seconds"] = stop_seconds / ref_seconds
    started = time.perf_counter()
    asha_last = asha(store, reference["name"], every, steps, args.at, args.eta)
    asha_seconds = time.perf_counter() - started
    settings = yaml.safe_load(yaml.safe_dump(base.get("reduce", {}).get("taxonomy", {})))
    from doodl.orchestrator.spec import SweepSpec

    tax_settings = SweepSpec.model_validate({**base, "reduce": {"taxonomy": settings}}).reduce.taxonomy.model_dump()
    asha_phases = {}
    for g, rids in groups.items():
        done = {r for r in rids if asha_last[r] >= steps}
        asha_phases[g] = ref_phases.get(g) if done == set(rids) else subset_phase(store, reference["name"], g, done,
                                                                                 tax_settings)
    rows.append(figures(f"ASHA on train loss (grace {args.at}, eta {args.eta})", asha_last, steps, ref_finals,
                        ref_phases, asha_phases, groups))
    rows[-1]["seconds"] = float("nan")

    print(f"\n{args.example}: {len(ref_finals)} runs in {len(groups)} groups, {steps} steps; reference training "
          f"{ref_seconds:.1f} s, stopped sweep {stop_seconds:.1f} s; ASHA replay {asha_seconds:.1f} s")
    print(f"\n{rule_line}\n")
    print("| method | runs stopped | model-steps saved | groups with the reference phase | top-10% runs kept "
          "| top-10% configs kept | training time vs reference |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['stopped']}/{r['n']} | {r['saved']:.0%} | {r['phases']}/{r['groups']} | "
              f"{r['top_runs']:.0%} of {r['n_top_runs']} | {r['top_groups']:.0%} of {r['n_top_groups']} | "
              + (f"{r['seconds']:.2f}x" if np.isfinite(r["seconds"]) else "(replayed)") + " |")
    for g in sorted(groups):
        if g in predicted or ref_phases.get(g) != measured.get(g):
            print(f"- group {g[:8]}: reference {ref_phases.get(g)}, stopped sweep measured {measured.get(g)}, "
                  f"predicted {predicted.get(g)}, ASHA {asha_phases.get(g)}")


if __name__ == "__main__":
    main()
