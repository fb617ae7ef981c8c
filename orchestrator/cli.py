"""The ``doodl`` command line.

Exit codes: 0 success, 1 the work ran but some of it failed, 2 bad input (one line on
stderr naming the field or file; nothing written), 130 cancelled with Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
import sys

from doodl.orchestrator.tracking import DEFAULT_TRACKING_URI
from doodl.analysis.registry import analyses
from doodl.orchestrator.store import DEFAULT_STORE
from doodl.orchestrator.store.layout import AUDIT_REPORT
from doodl.orchestrator.store.sweep import doodl_version

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
EXIT_VIEW_INCOMPLETE = 3  # the store is complete, the MLflow view is not (`doodl sync` catches up)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doodl", description="Loss-landscape sweeps on Ray, recorded in Parquet and MLflow.")
    p.add_argument("--version", action="version", version=f"doodl {doodl_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def store_args(sp):
        sp.add_argument("--store", default=os.environ.get("DOODL_STORE", DEFAULT_STORE),
                        help="store directory or URI (s3://, gs://, ...); default %(default)s")

    def run_args(sp):
        """Where to log and where to compute, and whether to show progress."""
        store_args(sp)
        sp.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
                        help="MLflow tracking URI; default %(default)s")
        sp.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. 'auto' or host:port); default: start a local Ray")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    sw = sub.add_parser("sweep", help="train every variant of a spec not yet in the store")
    sw.add_argument("spec", help="sweep spec (YAML)")
    run_args(sw)
    sw.add_argument("--reduce", action="store_true", help="run `doodl reduce` on the sweep after training")
    sw.add_argument("--verify", action="store_true",
                    help="check every committed shard's checksum before skipping it (reads the whole sweep; "
                         "default: sizes only)")
    sw.add_argument("--new-sweep", action="store_true",
                    help="if a sweep of this name exists with a different spec, start a new sweep "
                         "(id NAME-HASH) instead of refusing")
    sw.add_argument("--predictor", metavar="SWEEP", default=None,
                    help="early stopping with a rule fitted on SWEEP (a reduced sweep in the store): sets the "
                         "spec's early_stop.predictor, with the section's defaults if the spec has none")
    sw.add_argument("--dry-run", action="store_true",
                    help="validate the spec and print what the sweep would train (variants, units, parameters, "
                         "estimated store size and training time); writes nothing, starts no Ray")

    rd = sub.add_parser("reduce", help="compute each group's Morse graph, taxonomy, Koopman spectrum and NTK "
                                       "evolution from the stored sweep")
    rd.add_argument("sweep", help="sweep id (the spec's name)")
    run_args(rd)
    rd.add_argument("--force", action="store_true", help="reduce groups again even if already reduced")
    rd.add_argument("--only", choices=analyses(), action="append",
                    help="run only this analysis (repeatable); default: all")
    for flag, what in (("dims", "projected dimensions (2-4)"), ("tau", "map step, in snapshots"),
                       ("subdiv-min", "grid depth where Morse sets are reported"),
                       ("subdiv-max", "grid depth to which Morse sets are refined")):
        rd.add_argument(f"--{flag}", type=int, default=None,
                        help=f"override reduce.morse.{flag.replace('-', '_')} of the sweep's spec: {what}")
    rd.add_argument("--coordinates", choices=["auto", "pca", "late_pca", "function", "dmd", "latent"], default=None,
                    help="override reduce.morse.coordinates of the sweep's spec (auto: function space when full "
                         "parameters are recorded, else late_pca)")

    au = sub.add_parser("audit", help="train and reduce a spec's sweep and compare it with a baseline (exit 1: drift)")
    au.add_argument("spec", help="sweep spec (YAML)")
    au.add_argument("--baseline", help="a sweep id in the store, or 'last' (the sweep this spec's previous audit looked at, "
                         "never the audited sweep itself)")
    au.add_argument("--history", action="store_true", help="print the past audits of this spec and exit")
    au.add_argument("--fresh", action="store_true",
                    help="train the spec anew under NAME-TIMESTAMP instead of reusing its sweep (scheduled audits)")
    run_args(au)

    sy = sub.add_parser("sync", help="log to MLflow what the store holds and MLflow lacks (after an outage)")
    sy.add_argument("sweep", help="sweep id")
    store_args(sy)
    sy.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
                    help="MLflow tracking URI; default %(default)s")

    st = sub.add_parser("status", help="how far a sweep is: variants per state, over the sweep and per group")
    st.add_argument("sweep", help="sweep id (the spec's name)")
    store_args(st)
    st.add_argument("--verify", action="store_true",
                    help="check every shard's checksum (reads the whole sweep); default: sizes only")
    st.add_argument("--all", action="store_true", help="also print every variant: config, state, final metrics")

    ls = sub.add_parser("ls", help="the sweeps in a store: variants, state and last change of each")
    store_args(ls)

    rp = sub.add_parser("report", help="write a sweep as one static web page (index.html + images), also logged "
                                       "on its MLflow parent run")
    rp.add_argument("sweep", help="sweep id")
    store_args(rp)
    rp.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
                    help="MLflow tracking URI (run links, and where the report is logged); default %(default)s")
    rp.add_argument("--out", default=None, help="directory to write (default: SWEEP-report)")
    rp.add_argument("--mlflow-ui", default=None,
                    help="the MLflow web address runs link to (default: the tracking URI when it is a server, "
                         "else mlflow ui's http://127.0.0.1:5000)")
    return p


def _bad_input(message: str) -> int:
    print(f"doodl: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _view_checked(code: int, store, args, *, audit_report=None) -> int:
    """``code``, or :data:`EXIT_VIEW_INCOMPLETE` when it is OK and MLflow does not show
    everything the store holds (one line says what, why and the command that catches up)."""
    from doodl.orchestrator.tracking import view_gap

    gap = view_gap(args.tracking_uri, store.read_sweep().get("name", store.sweep_id), store)
    complete = gap.complete
    if not complete:
        print(f"doodl: {gap.line(args.tracking_uri, args.store)}", file=sys.stderr)
    if audit_report is not None and audit_report.mlflow_run is None:
        complete = False  # `doodl sync` does not log audits: the report in the store is the record
        print(f"doodl: MLflow at {args.tracking_uri} lacks this audit's run (its report is in the store: "
              f"{audit_report.files.get(AUDIT_REPORT)})", file=sys.stderr)
    return EXIT_VIEW_INCOMPLETE if code == EXIT_OK and not complete else code


def _reduce(store, args, settings) -> int:
    """Run the reduction and print its summary line; the exit code says if a group failed."""
    from doodl.orchestrator.reduce import recorded_settings, run_reduce
    from doodl.analysis.settings import MorseSettings
    from doodl.orchestrator.spec import SpecError

    settings = settings or recorded_settings(store)
    overrides = {k: getattr(args, k) for k in ("dims", "tau", "subdiv_min", "subdiv_max", "coordinates")
                 if getattr(args, k, None) is not None}
    if overrides:
        from pydantic import ValidationError

        try:
            morse = MorseSettings.model_validate({**settings.morse.model_dump(), **overrides})
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "reduce.morse"
            raise SpecError(f"--{loc.replace('_', '-')}: {first['msg'].removeprefix('Value error, ')}") from None
        settings = settings.model_copy(update={"morse": morse})
    analyses = tuple(getattr(args, "only", None) or ()) or None
    outcome = run_reduce(store, tracking_uri=args.tracking_uri, settings=settings, analyses=analyses,
                         address=args.address, force=getattr(args, "force", False),
                         show_progress=not args.no_progress)
    parts = [f"{name}: reduced {c.reduced}, already done {c.skipped}, failed {len(c.failed)}"
             for name, c in outcome.counts.items()]
    extra = []
    if "morse" in outcome.counts:
        v = outcome.validity
        extra.append(f"Morse graphs: held-out outcome accuracy {v['outcome_accuracy']:.2f} (chance "
                     f"{v['outcome_chance']:.2f}, nearest-neighbour baseline {v['baseline_accuracy']:.2f}), "
                     f"end basins vs outcomes ARI {v['ari']:.2f}" if v and v["outcome_accuracy"] == v["outcome_accuracy"]
                     else "Morse graphs: no group has enough runs for a verdict")
    if "taxonomy" in outcome.counts:
        extra.append("phases " + (", ".join(f"{p} {n}" for p, n in sorted(outcome.phases.items())) or "none"))
    if "koopman" in outcome.counts:
        extra.append(f"Koopman equivalence classes {outcome.koopman_classes}")
    parts += [f"waiting for training {outcome.waiting}",
              *([f"stopped early {outcome.stopped}"] if outcome.stopped else []), *extra,
              f"logged {outcome.logged_runs} MLflow results in {outcome.seconds:.1f}s "
              f"(MLflow {outcome.mlflow_seconds:.1f}s)"]
    print(f"reduce {outcome.sweep_id}: {outcome.n_groups} groups; " + "; ".join(parts))
    if outcome.mlflow_error:
        print(f"MLflow logging deferred: {outcome.mlflow_error}", file=sys.stderr)
    return _view_checked(EXIT_FAILED if outcome.failed else EXIT_OK, store, args)


def _audit(args) -> int:
    from doodl.orchestrator.audit import audit_history, run_audit
    from doodl.orchestrator.spec import load_spec

    spec = load_spec(args.spec)
    if args.history:
        rows = audit_history(spec.name, args.tracking_uri)
        if not rows:
            print(f"no audits of {spec.name!r} in MLflow at {args.tracking_uri}")
        for r in rows:
            print(f"{r['started']}  {r['verdict']:<5}  sweep {r['sweep_id']}  baseline {r['baseline']}  "
                  f"drifted groups {r['drifted']}  (run {r['run_id']})")
        return EXIT_OK
    if not args.baseline:
        return _bad_input("audit: --baseline SWEEP_OR_last is required (or --history)")
    report = run_audit(spec, args.baseline, store_uri=args.store, tracking_uri=args.tracking_uri,
                       address=args.address, show_progress=not args.no_progress, fresh=args.fresh)
    print(f"audit {report.sweep_id} against {report.baseline}: {report.verdict}; "
          f"{len(report.drifted)} of {len(report.groups)} groups drifted"
          + (f", {len(report.unmatched)} without a counterpart" if report.unmatched else "")
          + ("; setup change: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in report.setup_change.items())
             if report.setup_change else ""))
    for g in report.drifted:
        label = ", ".join(f"{k} {v}" for k, v in g.key.items())
        print(f"  {label}: {'; '.join(g.findings)}")
    print(f"report: {report.files.get(AUDIT_REPORT)}")
    from doodl.orchestrator.store import SweepStore

    return _view_checked(EXIT_FAILED if report.verdict == "drift" else EXIT_OK, SweepStore(args.store, report.sweep_id),
                         args, audit_report=report)


def _sweep(args) -> int:
    from doodl.orchestrator.spec import load_spec, with_predictor
    from doodl.orchestrator.store import SweepStore

    spec = load_spec(args.spec)
    if args.predictor:
        spec = with_predictor(spec, args.predictor)
    if args.dry_run:
        from doodl.orchestrator.dry_run import format_plan, plan_sweep

        print("\n".join(format_plan(plan_sweep(spec, store_uri=args.store, new_sweep=args.new_sweep), spec)))
        return EXIT_OK
    from doodl.orchestrator.driver import run_sweep

    outcome = run_sweep(spec, store_uri=args.store, tracking_uri=args.tracking_uri,
                        address=args.address, show_progress=not args.no_progress,
                        new_sweep=args.new_sweep, verify="full" if args.verify else "size")
    print(
        f"sweep {outcome.sweep_id}: {outcome.n_variants} variants in {outcome.n_units} units; "
        f"trained {outcome.trained_units}, already done {outcome.skipped_units}, "
        f"failed {len(outcome.failed_units)}{_named(outcome.failed_units)}; logged {outcome.logged_runs} MLflow runs "
        f"in {outcome.seconds:.1f}s" + (f" (training {outcome.train_seconds:.1f}s, MLflow {outcome.mlflow_seconds:.1f}s)"
                                        if outcome.trained_units else "")
    )
    if outcome.mlflow_error:
        print(f"MLflow logging deferred: {outcome.mlflow_error}", file=sys.stderr)
    store = SweepStore(args.store, outcome.sweep_id)
    if outcome.failed_units:
        return EXIT_FAILED
    if args.reduce:
        return _reduce(store, args, None)  # the sweep's recorded settings; checks the MLflow view at its end
    return _view_checked(EXIT_OK, store, args)


def _named(failed: dict[str, str]) -> str:
    """The failed units in the summary line (the first few; ``doodl status`` has them all)."""
    if not failed:
        return ""
    shown = ", ".join(sorted(failed)[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    return f" (unit {shown}: see `doodl status`)"


def _sync(args) -> int:
    from doodl.orchestrator.store import SweepStore
    from doodl.orchestrator.tracking import sync_sweep

    outcome = sync_sweep(SweepStore(args.store, args.sweep), args.tracking_uri)
    if outcome.mlflow_error:
        print(f"doodl: error: MLflow logging still failing: {outcome.mlflow_error}", file=sys.stderr)
        return EXIT_FAILED
    merged = f"; merged {outcome.merged_runs} duplicate runs" if outcome.merged_runs else ""
    print(f"sync {outcome.sweep_id}: logged {outcome.logged_runs} MLflow runs and results{merged} "
          f"in {outcome.seconds:.1f}s")
    return EXIT_OK


def _status(args) -> int:
    from doodl.orchestrator.status import print_status
    from doodl.orchestrator.store import SweepStore

    print_status(SweepStore(args.store, args.sweep), verify="full" if args.verify else "size", show_all=args.all)
    return EXIT_OK


def _ls(args) -> int:
    from doodl.orchestrator.listing import format_listing, list_store

    rows = list_store(args.store)
    print("\n".join(format_listing(rows)) if rows else f"no sweeps in store {args.store}")
    return EXIT_OK


def _report(args) -> int:
    from doodl.orchestrator.report import write_report
    from doodl.orchestrator.store import SweepStore

    store = SweepStore(args.store, args.sweep)
    store.read_sweep()  # an unknown sweep is refused before anything is written
    out = Path(args.out or f"{args.sweep}-report")
    try:  # refused in one line before any work: a place the report cannot be written
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError(13, "Permission denied", str(out))
    except OSError as exc:
        return _bad_input(f"cannot write the report to {out}: {exc.strerror or exc}")
    outcome = write_report(store, out, tracking_uri=args.tracking_uri, ui_url=args.mlflow_ui)
    logged = f"; logged on MLflow run {outcome.mlflow_artifact}" if outcome.mlflow_artifact else ""
    print(f"report {args.sweep}: {outcome.n_groups} groups, {outcome.n_runs} runs, {outcome.n_pictures} pictures "
          f"in {outcome.index}{logged}")
    if outcome.mlflow_error:
        print(f"MLflow left out (no run links, not logged): {outcome.mlflow_error}", file=sys.stderr)
    return EXIT_OK


def _reduce_command(args) -> int:
    from doodl.orchestrator.store import SweepStore

    return _reduce(SweepStore(args.store, args.sweep), args, None)


# one handler per subcommand: it gets the parsed arguments and returns the exit code
COMMANDS = {"sweep": _sweep, "reduce": _reduce_command, "audit": _audit, "sync": _sync, "status": _status,
            "ls": _ls, "report": _report}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``doodl`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from doodl.orchestrator.errors import ClusterError, PlacementError
    from doodl.orchestrator.spec import SpecError
    from doodl.orchestrator.store import StoreError

    try:
        return COMMANDS[args.command](args)
    except (SpecError, StoreError) as exc:
        return _bad_input(str(exc))
    except (ClusterError, PlacementError) as exc:
        print(f"doodl: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the store's disk or network failing (a full disk): one line, not a traceback
        print(f"doodl: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
