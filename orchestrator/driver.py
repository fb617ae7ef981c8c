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
import re
import time
from collections import deque
from dataclasses import dataclass, field

import ray

from doodl.orchestrator.actor_pool import ActorPool
from doodl.orchestrator.early_stop import describe, stop_rule_for
from doodl.orchestrator.expand import WorkUnit, expand, plan_units
from doodl.orchestrator.session import Meter, connect
from doodl.orchestrator.spec import SweepSpec
from doodl.orchestrator.memory import check_fits, cluster_node_memory, largest_units, local_memory
from doodl.orchestrator.store import SweepLease, SweepStore, UnitState, sweep_store_for
from doodl.orchestrator.tracking import SweepLog, console
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
    planned = plan_units(spec, variants)
    if not store.exists():  # refused before the sweep is recorded, so a smaller unit size can follow
        _check_memory(planned, address)
    stop = stop_rule_for(spec, store)  # a resumed sweep's recorded rule; refused before anything is written
    if not store.initialise(spec, variants, planned):
        _reduce_settings_changed(store, spec)
    if stop is not None:
        if store.stop_rule() is None:
            store.record_stop_rule(stop)
        console.print(describe(stop, spec.early_stop.at))
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
            _check_memory(todo, address)  # before an actor allocates
            train_start = time.perf_counter()
            _train(spec, store, todo, log, outcome, stop=stop and stop["rule"],
                   already=sum(len(u.variants) for u in done), total=len(variants), show_progress=show_progress)
            outcome.train_seconds = time.perf_counter() - train_start
            if log.backlog():
                console.print(f"training done in {outcome.train_seconds:.1f}s; logging {log.backlog()} "
                              "committed units to MLflow ...")
    finally:
        log.finish([u.unit_id for u in units], complete=not outcome.failed_units and outcome.trained_units == len(todo))
    outcome.seconds = time.perf_counter() - start
    return outcome


def _check_memory(units: list, address: str | None) -> None:
    """Refuse (exit 2) units whose actor needs more memory than a node has: this machine's
    for a local run, else the cluster's largest node (joined for it)."""
    if address is None and not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
        check_fits(largest_units(units), local_memory(), "this machine")
        return
    connect(address)
    check_fits(largest_units(units), cluster_node_memory(), "the largest node")


def failure_cause(exc: BaseException) -> str:
    """Why a unit failed, in one line: the worker's own exception (``No space left on
    device``, ``can't allocate memory``), not Ray's wrapper with its process id and colour
    codes; for a dead actor, Ray's first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        exc = cause
    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(exc).__name__}: {exc}").strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("ray::")]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _reduce_settings_changed(store: SweepStore, spec: SweepSpec) -> None:
    """Record the spec's ``reduce`` section as the sweep's, saying what changed and which
    analyses' stored results the next reduction redoes."""
    from doodl.analysis.registry import REGISTRY

    changed = store.record_reduce_settings(spec)
    if not changed:
        return
    redone = []
    for path in changed:  # a presentation field (the phase diagram's axes) redoes no result
        name, _, rest = path.partition(".")
        if name in REGISTRY and rest.split(".")[0] not in REGISTRY[name].settings.presentation and name not in redone:
            redone.append(name)
    console.print(f"reduce settings of sweep {store.sweep_id} changed ({', '.join(changed)}); recorded for "
                  f"`doodl reduce`" + (f": it redoes {', '.join(redone)}" if redone else ": pictures only"))


def _train(spec, store, todo: list[WorkUnit], log: SweepLog, outcome, *, stop: dict | None, already: int, total: int,
           show_progress: bool) -> None:
    """Train ``todo`` on a pool of actors, showing progress; on Ctrl-C the committed units stay.
    ``stop``: the early-stopping rule (:class:`doodl.workers.early_stop.StopRule` as a dict)."""
    training = _Training(spec, store, todo, log, outcome, stop)
    try:
        with Meter(f"sweep {store.sweep_id}", "variants", total, already=already, show=show_progress) as meter:
            training.run(meter)
    except KeyboardInterrupt:
        training.pool.shutdown()
        console.print(
            f"[red]cancelled[/]: {outcome.trained_units + outcome.skipped_units}/{outcome.n_units} units are "
            "committed; run the same command again to finish the rest."
        )
        raise
    finally:
        outcome.n_actors = training.pool.max_ready
        training.pool.shutdown()


class _Training:
    """The training loop as events: an actor is placed, a unit is committed, a unit fails,
    nothing happened for a while. Each handler keeps the queue, the retries and the
    outcome; :meth:`run` only waits for the next event."""

    def __init__(self, spec, store, todo: list[WorkUnit], log: SweepLog, outcome: SweepOutcome,
                 stop: dict | None = None):
        res = spec.resources
        actor_cls = ray.remote(UnitTrainer).options(
            num_cpus=res.cpus_per_actor, num_gpus=res.gpus_per_actor, max_restarts=0,
            max_concurrency=UNITS_IN_FLIGHT)
        self.pool = ActorPool(actor_cls, (store.uri,), res, len(todo))
        self.store = store
        self.max_retries = res.max_retries
        self.log, self.outcome = log, outcome
        self.queue = deque(todo)
        self.attempts = {u.unit_id: 0 for u in todo}
        self.by_id = {u.unit_id: u for u in todo}
        self.inflight: dict[ray.ObjectRef, tuple[object, str]] = {}
        self.stop = stop

    def run(self, meter: Meter) -> None:
        while self.inflight or self.queue:
            ready, _ = ray.wait([*self.inflight, *self.pool.pending], num_returns=1, timeout=POLL_S)
            if not ready:
                self.on_idle()
            elif ready[0] in self.pool.pending:
                self.on_actor_placed(ready[0])
            else:
                actor, unit_id = self.inflight.pop(ready[0])
                try:
                    summary = ray.get(ready[0])
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError,
                        ray.exceptions.WorkerCrashedError) as exc:
                    self.on_unit_failed(actor, unit_id, exc)
                else:
                    self.on_unit_committed(actor, unit_id, summary, meter)

    def submit(self, actor) -> None:
        """Give a ready actor a unit; a second one (up to ``UNITS_IN_FLIGHT``) only while
        every actor can still get one, so the last units do not queue behind each other
        while another actor idles. Retire the actor once it holds none and none is left."""
        held = sum(a is actor for a, _ in self.inflight.values())
        if not self.queue and not held:
            self.pool.retire(actor, was_ready=True)
        while self.queue and (not held or (held < UNITS_IN_FLIGHT and len(self.queue) >= len(self.pool.live))):
            unit = self.queue.popleft()
            self.attempts[unit.unit_id] += 1
            ref = actor.run_unit.remote(unit.unit_id, [v.to_dict() for v in unit.variants],
                                        self.attempts[unit.unit_id], self.stop)
            self.inflight[ref] = (actor, unit.unit_id)
            held += 1

    def on_idle(self) -> None:
        """Nothing finished: look for new capacity and for actors never placed."""
        self.pool.grow()
        self.pool.give_up_unplaced(busy=len(self.inflight))

    def on_actor_placed(self, ref) -> None:
        actor = self.pool.became_ready(ref)
        if actor is None:
            self.pool.add()
        else:
            self.submit(actor)

    def on_unit_committed(self, actor, unit_id: str, summary: dict, meter: Meter) -> None:
        self.outcome.trained_units += 1
        meter.advance(len(summary["runs"]))
        self.submit(actor)
        self.log.units_committed([unit_id])

    def on_unit_failed(self, actor, unit_id: str, exc: Exception) -> None:
        """Retry the unit (first in the queue) up to ``resources.max_retries`` times; an
        actor that died is replaced, one whose task alone failed goes on."""
        actor_lives = (isinstance(exc, ray.exceptions.RayTaskError)
                       and not isinstance(exc, ray.exceptions.RayActorError))
        reason = failure_cause(exc)
        try:
            self.store.record_failure(unit_id, self.attempts[unit_id], reason)
        except OSError as why:  # the store itself failing (a full disk): said here instead
            console.print(f"[yellow]could not record the failure of unit {unit_id} in the store: {why}[/]")
        if self.attempts[unit_id] <= self.max_retries:
            console.print(f"[yellow]unit {unit_id} failed ({reason}); retry {self.attempts[unit_id]}"
                          f"/{self.max_retries}[/]")
            self.queue.appendleft(self.by_id[unit_id])
        else:
            console.print(f"[red]unit {unit_id} failed after {self.attempts[unit_id]} attempts: {reason}[/]")
            self.outcome.failed_units[unit_id] = reason
        if actor_lives:  # only the unit failed
            self.submit(actor)
        elif actor in self.pool.live:  # its units go to a fresh actor once it is placed
            self.pool.retire(actor, was_ready=True)
            if self.queue:
                self.pool.add()
