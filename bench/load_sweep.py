"""Load: a sweep of many tiny variants, with the driver's memory measured while it runs.

Runs ``doodl.orchestrator.driver.run_sweep`` in this process (this process is the driver) on a
generated spec of ``--variants`` tiny MLPs (blobs data, a few steps each), local Ray,
local store, SQLite MLflow. A thread samples the driver's resident set size
(``/proc/self/statm``) every 0.1 s. Reported: wall time, variants/s, MLflow runs logged,
and the driver's RSS before the sweep (after imports and ``ray.init``), at its peak and
at the end. Run two sizes to see whether driver memory grows with the sweep:

    python bench/load_sweep.py --variants 250
    python bench/load_sweep.py --variants 1000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_spec_dict(n_variants: int) -> dict:
    """A grid of exactly ``n_variants`` tiny variants (5 widths x 5 lrs x 4 noise levels x seeds)."""
    seeds = max(1, n_variants // 100)
    assert 100 * seeds == n_variants, "--variants must be a multiple of 100"
    return {
        "name": f"load{n_variants}",
        "dataset": {"name": "blobs", "test_fraction": 0.25, "split_seed": 0,
                    "options": {"n_samples": 200, "n_features": 4, "centers": 3}},
        "data": {"label_noise": [0.0, 0.1, 0.2, 0.3]},
        "model": {"family": "mlp", "width": [2, 3, 4, 5, 6], "depth": 1},
        "optimizer": {"name": "sgd", "lr": [0.01, 0.02, 0.05, 0.1, 0.2], "batch_size": 16, "steps": 20},
        "seeds": seeds,
        "record": {"every": 10},
        "resources": {"variants_per_unit": 50},
    }


def run_load(n_variants: int, workdir: str) -> dict:
    """Run the load sweep in ``workdir``; returns the figures."""
    from doodl.orchestrator.driver import run_sweep
    from doodl.orchestrator.session import connect
    from doodl.orchestrator.spec import parse_spec

    spec = parse_spec(load_spec_dict(n_variants))
    connect(None)
    samples: list[float] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_mb())
            time.sleep(0.1)

    before = rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    outcome = run_sweep(spec, store_uri=f"{workdir}/store", tracking_uri=f"sqlite:///{workdir}/mlflow.db",
                        show_progress=False)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {"variants": outcome.n_variants, "units": outcome.n_units, "failed": len(outcome.failed_units),
            "logged": outcome.logged_runs, "wall_s": wall, "rss_before_mb": before,
            "rss_peak_mb": max(samples + [before]), "rss_end_mb": rss_mb(), "mlflow_error": outcome.mlflow_error}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=1000)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        r = run_load(args.variants, tmp)
    print(f"{r['variants']} variants in {r['units']} units: {r['wall_s']:.1f} s wall "
          f"({r['variants'] / r['wall_s']:.1f} variants/s), failed units {r['failed']}, "
          f"MLflow runs logged {r['logged']}{' (' + r['mlflow_error'] + ')' if r['mlflow_error'] else ''}")
    print(f"driver RSS: {r['rss_before_mb']:.0f} MB before, {r['rss_peak_mb']:.0f} MB peak, "
          f"{r['rss_end_mb']:.0f} MB at the end (+{r['rss_peak_mb'] - r['rss_before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
