"""``doodl report`` on a large sweep: seconds to write the page and the size of its index.

Trains and reduces ``bench/specs/sweep1000.yaml`` (1,000 variants, 25 groups, every
analysis) into ``--store`` unless it is there already, then times
:func:`doodl.orchestrator.report.write_report` (the store read, every group's pictures copied,
the page rendered) and reports the index's size beside the issue's limits (30 s, 5 MB).

    python bench/report_scale.py --store /tmp/s1000    # about 10 minutes the first time
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="/tmp/s1000")
    ap.add_argument("--sweep", default="sweep1000")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from doodl.orchestrator.report import write_report
    from doodl.orchestrator.store import SweepStore

    db = f"sqlite:///{Path(args.store).resolve()}-mlflow.db"
    if not Path(SweepStore(args.store, args.sweep).layout.reduction_table("ntk")).exists():
        spec = ROOT / "bench" / "specs" / f"{args.sweep}.yaml"
        for cmd in (["sweep", str(spec)], ["reduce", args.sweep]):
            subprocess.run([sys.executable, "-m", "doodl.orchestrator.cli", *cmd, "--store", args.store,
                            "--tracking-uri", db, "--no-progress"], check=True, cwd=ROOT)
    store = SweepStore(args.store, args.sweep)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        outcome = write_report(store, Path(out) / "report", tracking_uri=db)
        seconds = time.perf_counter() - t0
        size = outcome.index.stat().st_size
        total = sum(p.stat().st_size for p in outcome.index.parent.rglob("*") if p.is_file())
    print(json.dumps({"variants": outcome.n_runs, "groups": outcome.n_groups, "pictures": outcome.n_pictures,
                      "seconds": round(seconds, 2), "index_mb": round(size / 1e6, 3),
                      "with_images_mb": round(total / 1e6, 1), "limits": {"seconds": 30, "index_mb": 5}}))


if __name__ == "__main__":
    main()
