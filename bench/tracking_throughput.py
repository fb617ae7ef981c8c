"""MLflow logging throughput: runs (and reduction results) per second, by tracking backend.

Simulated committed variants (real variant rows of a 10,000-variant grid; trajectories of
``--steps`` steps, held-out curves every 10 steps, finals, as a unit commits them) are logged
through :class:`doodl.orchestrator.tracking.MlflowSink`, unit by unit as ``doodl sweep`` logs
them, to:

* ``sqlite``: a SQLite database, directly, as doodl opens it (WAL journal,
  ``synchronous=NORMAL``: see ``orchestrator/tracking/_sink.py``), one writer;
* ``sqlite-default``: the peer baseline, the same database as MLflow opens it by default
  (rollback journal, a disk sync per commit), one writer;
* ``server-sqlite`` and ``server-postgres``: a local ``mlflow server`` (4 workers, the
  default) on SQLite and on PostgreSQL (PostgreSQL's server programs from
  /usr/lib/postgresql, as ``deploy/local/run.sh`` finds them), ``--workers`` logging
  threads (doodl's default for a server) and, as the peer baseline, one.

Then a reduction's results (four analyses on a group run and its seeds' runs, as ``doodl
reduce`` logs them) for ``--groups`` groups of ``--seeds`` seeds, on the same backends.
Each backend runs in a process of its own (the SQLite settings are per process).

    python bench/tracking_throughput.py                       # 2,000 variants a backend
    python bench/tracking_throughput.py --variants 10000 --backends server-postgres
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UNIT = 64  # variants a unit commits (and doodl logs) at once
BACKENDS = ("sqlite", "sqlite-default", "server-sqlite", "server-postgres")


def _variant_rows(n: int) -> list[dict]:
    from doodl.orchestrator.expand import expand, plan_units
    from doodl.orchestrator.spec import parse_spec
    from doodl.orchestrator.store import variants_table

    spec = parse_spec({"name": "bench", "dataset": {"name": "digits"}, "data": {"label_noise": [0.0, 0.1, 0.2, 0.3]},
                       "model": {"family": "mlp", "width": [8, 16, 32, 64, 128], "depth": 2},
                       "optimizer": {"name": "sgd", "lr": [0.01, 0.02, 0.05, 0.1, 0.2], "batch_size": [32, 64],
                                     "steps": 500},
                       "seeds": 50, "record": {"every": 10}, "resources": {"variants_per_unit": UNIT}}, "bench")
    variants = expand(spec)
    return variants_table(variants, plan_units(spec, variants)).to_pylist()[:n]


def _unit_tables(rows: list[dict], steps: int, rng):
    import numpy as np
    import pyarrow as pa

    n, s = len(rows), np.arange(steps + 1)
    run = np.repeat([r["run_id"] for r in rows], len(s))
    decay = np.exp(-s / (steps / 3))[None, :] * rng.uniform(0.5, 2.0, (n, 1))
    traj = pa.table({"run_id": run, "step": np.tile(s, n), "train_loss": (decay + 0.05).ravel(),
                     "train_acc": (1 - decay / 3).ravel(), "grad_norm": (decay * 4).ravel(),
                     "lr": np.full(n * len(s), 0.05)})
    rec = s[::10]
    snaps = pa.table({"run_id": np.repeat([r["run_id"] for r in rows], len(rec)), "step": np.tile(rec, n),
                      "test_loss": rng.uniform(0.1, 2, n * len(rec)), "test_acc": rng.uniform(0.5, 1, n * len(rec))})
    finals = pa.table({"run_id": [r["run_id"] for r in rows], "status": ["ok"] * n, "steps": [steps] * n,
                       **{k: rng.uniform(0, 1, n) for k in ("final_train_loss", "final_train_acc", "final_test_loss",
                                                             "final_test_acc")}})
    return traj, finals, snaps


def _group_result(name: str, gid: str, run_ids: list[str], rng) -> tuple[dict, list[dict]]:
    """A group's row and its seeds' rows of analysis ``name``, with every field the MLflow
    view shows (values drawn at random: the bench measures logging, not analysis)."""
    steps, curve = list(range(0, 500, 25)), list(rng.uniform(0, 1, 20))
    row = {"group_id": gid, "run_ids": run_ids, "error": None, "settings_key": "bench",
           "coordinates": "function", "no_verdict": None, "versus_baseline": "matches", "n_morse_sets": 3,
           "n_attractors": 2, "n_unresolved": 0, "n_outcomes": 2, "ari": 1.0, "outcome_accuracy": 0.9,
           "outcome_chance": 0.5, "baseline_accuracy": 0.9, "self_basin_accuracy": 1.0, "self_basin_chance": 0.5,
           "n_undecided": 0, "fidelity": 0.9, "phase": "II", "threshold_train_loss": 0.1,
           "threshold_mc_tolerance": 0.1, "threshold_cka": 0.9, "koopman_class": 1, "modulus_1": 0.99,
           "modulus_2": 0.9, "modulus_3": 0.5, "spread": 0.1, "transition_step": 100, "steps": steps,
           "distance_init": curve, "velocity": curve,
           **{k: float(rng.uniform()) for k in ("train_loss", "test_acc", "hessian_top", "hessian_trace", "mc",
                                                "line_mc", "line_barrier", "cka", "l2")}}
    runs = [{"run_id": r, "in_attractor": 1.0, "outcome_correct": 1.0, "baseline_correct": 1.0, "itinerary": [2, 0],
             "end_attractor": 0, "outcome": 0, "hessian_top": 1.0, "hessian_trace": 2.0, "modulus_1": 0.99,
             "transition_step": 100, "steps": steps, "distance_init": curve, "velocity": curve} for r in run_ids]
    return row, runs


def measure(backend: str, uri: str, n: int, steps: int, workers: int, groups: int, seeds: int) -> dict:
    """In this process: log ``n`` variants, then the results of ``groups`` groups."""
    import numpy as np

    from doodl.orchestrator.tracking import MlflowSink
    from doodl.orchestrator.tracking._views import varying_axes

    if backend == "sqlite-default":
        import doodl.orchestrator.tracking._client as client_module

        client_module._SQLITE_TUNED = True  # the peer: MLflow's own SQLite settings
    rng = np.random.default_rng(0)
    rows = _variant_rows(n)
    varying = varying_axes(rows)
    units = [rows[i:i + UNIT] for i in range(0, n, UNIT)]
    tables = [_unit_tables(u, steps, rng) for u in units]
    sink = MlflowSink(uri, f"bench-{backend}-{workers}", "bench", workers=workers)
    t0 = time.perf_counter()
    for unit, (traj, finals, snaps) in zip(units, tables):
        sink.log_variants(unit, traj, finals, snaps, varying)
    variant_s = time.perf_counter() - t0
    by_group: dict[str, list[dict]] = {}
    for r in rows[:groups * seeds]:
        by_group.setdefault(r["group_id"], []).append(r)
    picked = dict(list(by_group.items())[:groups])
    sink.ensure_group_runs(picked, varying)
    results = [(name, *_group_result(name, gid, [r["run_id"] for r in members], rng))
               for gid, members in picked.items() for name in ("morse", "taxonomy", "koopman", "ntk")]
    t0 = time.perf_counter()
    logged = 0
    for name, row, runs in results:
        logged += sink.log_group_results(name, row, runs, {}, "bench")
    result_s = time.perf_counter() - t0
    return {"backend": backend, "workers": workers, "variants": n, "variant_s": variant_s, "runs_per_s": n / variant_s,
            "results": logged, "result_s": result_s, "results_per_s": logged / result_s if logged else float("nan")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Services:
    """PostgreSQL (when its programs are here) and mlflow servers, stopped on exit."""

    def __init__(self, work: Path):
        self.work, self.procs, self.pg = work, [], None

    def postgres(self) -> str | None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            return None
        pg_bin, port, data = bins[-1], _free_port(), self.work / "pg"
        data.mkdir()
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if run_as:
            shutil.chown(self.work, "postgres")
            shutil.chown(data, "postgres")
        subprocess.run([*run_as, str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                       check=True, capture_output=True)
        subprocess.run([*run_as, str(pg_bin / "pg_ctl"), "-D", str(data), "-o",
                        f"-p {port} -k {self.work} -c listen_addresses=127.0.0.1", "-l", str(self.work / "pg.log"),
                        "-w", "start"], check=True, capture_output=True)
        self.pg = (run_as, pg_bin, data)
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-c",
                        "CREATE DATABASE mlflow"], check=True, capture_output=True)
        return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"

    def mlflow_server(self, backend_uri: str, name: str) -> str:
        port = _free_port()
        mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
        proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", backend_uri, "--artifacts-destination",
                                 str(self.work / f"art-{name}"), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                return url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server on {backend_uri} did not start")

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
        if self.pg is not None:
            run_as, pg_bin, data = self.pg
            subprocess.run([*run_as, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4, help="logging threads against a server")
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--one", nargs=3, metavar=("BACKEND", "URI", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        backend, uri, workers = args.one
        print(json.dumps(measure(backend, uri, args.variants, args.steps, int(workers), args.groups, args.seeds)))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.variants} variants of {args.steps} steps, {args.groups} groups x {args.seeds} seeds")
    with tempfile.TemporaryDirectory(prefix="doodl-tracking-bench-") as tmp:
        work = Path(tmp)
        services = _Services(work)
        try:
            plan = []
            for backend in args.backends:
                if backend in ("sqlite", "sqlite-default"):
                    plan.append((backend, f"sqlite:///{work / (backend + '.db')}", 1))
                elif backend == "server-sqlite":
                    url = services.mlflow_server(f"sqlite:///{work / 'server.db'}", "sqlite")
                    plan += [(backend, url, args.workers), (backend, url, 1)]
                else:
                    pg = services.postgres()
                    if pg is None:
                        print("server-postgres: skipped (no PostgreSQL server programs in /usr/lib/postgresql)")
                        continue
                    url = services.mlflow_server(pg, "postgres")
                    plan += [(backend, url, args.workers), (backend, url, 1)]
            print("| backend | logging threads | variants | runs/s | results | results/s |")
            print("|---|---|---|---|---|---|")
            for backend, uri, workers in plan:
                done = subprocess.run([sys.executable, __file__, "--variants", str(args.variants), "--steps",
                                       str(args.steps), "--groups", str(args.groups), "--seeds", str(args.seeds),
                                       "--one", backend, uri, str(workers)], capture_output=True, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"})
                if done.returncode != 0:
                    print(f"| {backend} | {workers} | failed: {done.stderr.strip().splitlines()[-1]} |")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"| {backend} | {workers} | {r['variants']:,} | {r['runs_per_s']:.1f} | {r['results']} | "
                      f"{r['results_per_s']:.1f} |", flush=True)
        finally:
            services.stop()


if __name__ == "__main__":
    main()
