"""The Ray driver: a pool of long-lived actors fed work units from a queue.

Units already committed in the store are skipped (resume). Each actor holds up to
``UNITS_IN_FLIGHT`` units (one training while the last is written), and only once it has
been placed and started (:mod:`doodl.orchestrator.actor_pool`); ``ray.wait`` hands the next unit
to whichever actor finishes one first. A unit whose actor dies is retried on a fresh
actor up to ``resources.max_retries`` times. After every committed unit the driver (the
only MLflow writer) logs that unit's variants. One driver per sweep at a time
(:mod:`doodl.orchestrator.store.lease`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field

import ray
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from doodl.orchestrator.actor_pool import ActorPool
from doodl.orchestrator.errors import ClusterError
from doodl.orchestrator.expand import WorkUnit, expand, plan_units
from doodl.orchestrator.spec import SweepSpec
from doodl.orchestrator.store import SweepLease, SweepStore, UnitState, sweep_store_for
from doodl.orchestrator.tracking import SweepLog, console, one_line
from doodl.workers.actor import UNITS_IN_FLIGHT, UnitTrainer

POLL_S = 1.0  # how long the driver waits on results before looking at the pool again

@dataclass
class SweepOutcome:
    """What a ``doodl sweep`` call did."""

    sweep_id: str
    n_variants: int
    n_units: int
    trained_units: int = 0
    skipped_units: int = 0
    failed_units: dict[str, str] = field(default_factory=dict)
    logged_runs: int = 0
    mlflow_error: str | None = None
    mlflow_seconds: float = 0.0  # the logging thread's busy time (it overlaps training)
    seconds: float = 0.0
    train_seconds: float = 0.0  # from starting the actors to the last unit committed
    n_actors: int = 0  # the most actors training at once


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it),
    else start a new local Ray; reuse a session that is already connected.

    Without an address this never joins a cluster found on the machine (Ray's own default
    would, even a dead one whose address file was left behind): ``--address auto`` does.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        # Ray starts its workers at niceness 15, below this driver: on a machine whose
        # cores all train, the driver's MLflow logging would take them first. At 0 the
        # actors train at the driver's priority and its logger (tracking.LOGGER_NICE) yields.
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    except (ConnectionError, ray.exceptions.AuthenticationError) as exc:
        hint, chain = "", ""
        cause: BaseException | None = exc
        while cause is not None:  # ray wraps the AuthenticationError in a ConnectionError
            chain += str(cause).lower()
            cause = cause.__cause__ or cause.__context__
        if "authentication" in chain or "auth_token" in chain:
            hint = ("; the cluster uses token authentication: set RAY_AUTH_MODE=token and provide the token "
                    "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token)")
        raise ClusterError(f"cannot connect to the Ray cluster at {address}{hint}") from None


def progress_bar(what: str, show: bool) -> Progress:
    """A progress bar of ``what`` done / total with rate (a ``rate`` field) and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(what),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        transient=False,
    )


def run_sweep(
    spec: SweepSpec,
    *,
    store_uri: str,
    tracking_uri: str,
    address: str | None = None,
    show_progress: bool = True,
    new_sweep: bool = False,
    sweep_id: str | None = None,
    verify: str = "size",
) -> SweepOutcome:
    """Train every variant of ``spec`` not yet in the store, then log it to MLflow.

    A sweep of the same name but a different spec is refused, unless ``new_sweep``: then
    the spec gets its own sweep id (:func:`doodl.orchestrator.store.derived_sweep_id`). An explicit
    ``sweep_id`` (a fresh audit) stores the sweep under that id instead of the spec's name.
    Committed units are trusted when their shards have the sizes their markers record
    (``verify="full"``: when their checksums match).
    """
    start = time.perf_counter()
    variants = expand(spec)
    store = sweep_store_for(spec, store_uri, new_sweep=new_sweep, sweep_id=sweep_id)  # before a lease is written
    if store.sweep_id != (sweep_id or spec.name):
        console.print(f"sweep {spec.name!r} exists with a different spec: this spec is sweep {store.sweep_id!r}")
    store.check_writable()
    with SweepLease(store, "training"):  # a second driver on this sweep refuses (exit 2)
        return _run_sweep(spec, store, variants, tracking_uri, address, show_progress, verify, start)


def _run_sweep(spec: SweepSpec, store: SweepStore, variants, tracking_uri: str, address: str | None,
               show_progress: bool, verify: str, start: float) -> SweepOutcome:
    store.initialise(spec, variants, plan_units(spec, variants))
    units = store.recorded_units(variants)  # a rerun with other resources keeps the store's units
    rows_by_unit: dict[str, list[dict]] = {}
    for row in store.read_variants().to_pylist():  # indexed once: logging looks up a unit at a time
        rows_by_unit.setdefault(row["unit_id"], []).append(row)
    states = store.unit_states([u.unit_id for u in units], verify)
    done = [u for u in units if states[u.unit_id].state == UnitState.COMMITTED]
    todo = [u for u in units if states[u.unit_id].state != UnitState.COMMITTED]
    for u in todo:
        if states[u.unit_id].state == UnitState.TORN:
            console.print(f"[yellow]unit {u.unit_id} is torn ({states[u.unit_id].problem}); retraining it[/]")
    outcome = SweepOutcome(store.sweep_id, len(variants), len(units), skipped_units=len(done))

    log = SweepLog(tracking_uri, spec.name, store, rows_by_unit, outcome=outcome,
                   parent_params={"n_variants": len(variants), "n_units": len(units), "dataset": spec.dataset.name,
                                  "store": store.uri})
    log.units_committed([u.unit_id for u in done])
    try:
        if todo:
            connect(address)
            train_start = time.perf_counter()
            _train(spec, store, todo, log, outcome,
                   already=sum(len(u.variants) for u in done), total=len(variants), show_progress=show_progress)
            outcome.train_seconds = time.perf_counter() - train_start
            if log.backlog():
                console.print(f"training done in {outcome.train_seconds:.1f}s; logging {log.backlog()} "
                              "committed units to MLflow ...")
    finally:
        log.finish([u.unit_id for u in units], complete=not outcome.failed_units and outcome.trained_units == len(todo))
    outcome.seconds = time.perf_counter() - start
    return outcome


def _train(spec, store, todo: list[WorkUnit], log: SweepLog, outcome, *, already: int, total: int,
           show_progress: bool) -> None:
    res = spec.resources
    actor_cls = ray.remote(UnitTrainer).options(
        num_cpus=res.cpus_per_actor, num_gpus=res.gpus_per_actor, max_restarts=0, max_concurrency=UNITS_IN_FLIGHT
    )
    pool = ActorPool(actor_cls, (store.uri,), res, len(todo))
    queue = deque(todo)
    attempts = {u.unit_id: 0 for u in todo}
    by_id = {u.unit_id: u for u in todo}
    inflight: dict[ray.ObjectRef, tuple[object, str]] = {}

    def submit(actor) -> None:
        """Give a ready actor a unit; a second one (up to ``UNITS_IN_FLIGHT``) only while
        every actor can still get one, so the last units do not queue behind each other
        while another actor idles. Retire the actor once it holds none and none is left."""
        held = sum(a is actor for a, _ in inflight.values())
        if not queue and not held:
            pool.retire(actor, was_ready=True)
        while queue and (not held or (held < UNITS_IN_FLIGHT and len(queue) >= len(pool.live))):
            unit = queue.popleft()
            attempts[unit.unit_id] += 1
            ref = actor.run_unit.remote(unit.unit_id, [v.to_dict() for v in unit.variants], attempts[unit.unit_id])
            inflight[ref] = (actor, unit.unit_id)
            held += 1

    progress = progress_bar("variants", show_progress)
    t0 = time.perf_counter()
    trained_variants = 0
    try:
        with progress:
            task = progress.add_task(f"sweep {store.sweep_id}", total=total, completed=already, rate="")
            while inflight or queue:
                ready, _ = ray.wait([*inflight, *pool.pending], num_returns=1, timeout=POLL_S)
                if not ready:  # nothing finished: look for new capacity and for actors never placed
                    pool.grow()
                    pool.give_up_unplaced(busy=len(inflight))
                    continue
                ref = ready[0]
                if ref in pool.pending:
                    actor = pool.became_ready(ref)
                    if actor is None:
                        pool.add()
                    else:
                        submit(actor)
                    continue
                actor, unit_id = inflight.pop(ref)
                try:
                    summary = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError,
                        ray.exceptions.WorkerCrashedError) as exc:
                    reason = one_line(exc)
                    actor_lives = (isinstance(exc, ray.exceptions.RayTaskError)
                                   and not isinstance(exc, ray.exceptions.RayActorError))
                    if attempts[unit_id] <= res.max_retries:
                        console.print(f"[yellow]unit {unit_id} failed ({reason}); retry {attempts[unit_id]}"
                                      f"/{res.max_retries}[/]")
                        queue.appendleft(by_id[unit_id])
                    else:
                        console.print(f"[red]unit {unit_id} failed after {attempts[unit_id]} attempts: {reason}[/]")
                        outcome.failed_units[unit_id] = reason
                    if actor_lives:  # only the unit failed
                        submit(actor)
                    elif actor in pool.live:  # its units go to a fresh actor once it is placed
                        pool.retire(actor, was_ready=True)
                        if queue:
                            pool.add()
                    continue
                outcome.trained_units += 1
                trained_variants += len(summary["runs"])
                rate = trained_variants / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, advance=len(summary["runs"]), rate=f"{rate:.1f}/s")
                submit(actor)
                log.units_committed([unit_id])
    except KeyboardInterrupt:
        pool.shutdown()
        console.print(
            f"[red]cancelled[/]: {outcome.trained_units + outcome.skipped_units}/{outcome.n_units} units are "
            "committed; run the same command again to finish the rest."
        )
        raise
    finally:
        outcome.n_actors = pool.max_ready
        pool.shutdown()
