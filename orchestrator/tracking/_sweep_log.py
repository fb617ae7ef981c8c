"""MLflow as an observer of committed work: it is told what the store holds, and a tracking
store that is down, slow or locked defers logging (``doodl sync`` catches up), never training.

Only what MLflow and the network raise (:func:`tracking_errors`) counts as "tracking is
unavailable"; anything else is a programming error and is raised.
"""

from __future__ import annotations

import os
import queue
import sys
import threading

from rich.console import Console

from doodl.orchestrator.store import SweepMutex, SweepStore
from doodl.orchestrator.tracking._probe import TrackingUnavailable, is_server, one_line, probe, tracking_errors, \
    use_short_http_timeouts
from doodl.orchestrator.tracking._sink import MlflowSink
from doodl.orchestrator.tracking._views import CURVES, HELD_OUT_CURVES, varying_axes
from doodl.workers.faults import hold_logging
from doodl.workers.shards import FINAL_METRICS

console = Console(stderr=True)
_STATE = {"down": "is unreachable", "refused": "refuses the API", "broken": "is broken"}  # by TrackingUnavailable.kind


def timed(fn):
    """Add the seconds ``fn`` takes to its ``outcome`` argument's ``mlflow_seconds`` (the
    time a command spends in MLflow, reported beside its wall time)."""
    import functools
    import inspect
    import time

    position = list(inspect.signature(fn).parameters).index("outcome")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            outcome = kwargs.get("outcome", args[position] if len(args) > position else None)
            if outcome is not None and hasattr(outcome, "mlflow_seconds"):
                outcome.mlflow_seconds += time.perf_counter() - start

    return wrapper


def defer(outcome, exc: BaseException, what: str = "MLflow logging failed") -> None:
    """Record a tracking failure on ``outcome`` and say once how to catch up."""
    outcome.mlflow_error = one_line(exc)
    sweep = getattr(outcome, "sweep_id", None) or "SWEEP"
    console.print(f"[yellow]warning:[/] {what} ({outcome.mlflow_error}); the work goes on and logging is "
                  f"deferred: run `doodl sync {sweep}` later to log it.")


CREATION_LOCK = "tracking"  # the purpose of the sweep's lease held around creating MLflow runs


@timed
def open_sink(tracking_uri: str, experiment: str, sweep_id: str, outcome,
              store: SweepStore | None = None) -> MlflowSink | None:
    """The sweep's MLflow view, or None (with one warning, in ``outcome.mlflow_error``) when
    the tracking store cannot be reached within :data:`PROBE_TIMEOUT_S`. With the sweep's
    ``store``, runs are created under its :data:`CREATION_LOCK`, so processes of one sweep
    logging at once never create a run twice."""
    use_short_http_timeouts()
    lock = SweepMutex(store, CREATION_LOCK) if store is not None else None
    try:
        probe(tracking_uri)
        return MlflowSink(tracking_uri, experiment, sweep_id, creation_lock=lock)
    except TrackingUnavailable as exc:
        defer(outcome, exc, f"MLflow at {tracking_uri} {_STATE[exc.kind]}")
        return None
    except tracking_errors() as exc:
        defer(outcome, exc, f"MLflow at {tracking_uri} is unreachable")
        return None


@timed
def log_units(sink: MlflowSink | None, store: SweepStore, rows_by_unit: dict[str, list[dict]],
              unit_ids: list[str], outcome) -> None:
    """Log the not-yet-logged variants of committed units. After a failure nothing more is
    tried in this command (each try could wait on a dead server): ``doodl sync`` catches up."""
    if sink is None or not unit_ids or outcome.mlflow_error:
        return
    wanted = [v for u in unit_ids for v in rows_by_unit[u] if v["run_id"] not in sink.logged]
    if not wanted:
        return
    try:
        traj = store.read_unit_rows("trajectories", unit_ids, ["run_id", "step", *CURVES])
        snaps = store.read_snapshot_rows(unit_ids, ["run_id", "step", *HELD_OUT_CURVES])
        fin = store.read_unit_rows(
            "finals", unit_ids,
            ["run_id", "status", "steps", *FINAL_METRICS],
        )
        varying = varying_axes(v for rows in rows_by_unit.values() for v in rows)
        outcome.logged_runs += sink.log_variants(wanted, traj, fin, snaps, varying)
    except tracking_errors() as exc:
        defer(outcome, exc)


@timed
def log_sweep_done(sink: MlflowSink, store: SweepStore, unit_ids: list[str], outcome) -> None:
    """Mark the parent run finished, with the counts of done, diverged and stopped variants."""
    if outcome.mlflow_error:
        return
    try:
        status = store.read_unit_rows("finals", unit_ids, ["status"]).column("status").to_pylist()
        sink.log_parent({}, {"n_variants_done": len(status), "n_diverged": status.count("diverged"),
                             "n_stopped": status.count("stopped")},
                        finished=True)
    except tracking_errors() as exc:
        defer(outcome, exc)


RETRY_S = 30.0  # while the tracking server is down, it is probed again this often (in the background)
# The logging thread's niceness: against training processes at 0 it gets about 5% of a busy
# machine (the kernel's weights: 110 against 1024 per process), all of an idle one.
LOGGER_NICE = 10


def _yield_cpu_to_training() -> None:
    """Lower the calling thread's CPU priority to :data:`LOGGER_NICE` (Linux, where a
    thread has a priority of its own; elsewhere this would lower the whole driver: skipped)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:  # never raise it: a driver already run at a lower priority keeps it
        os.setpriority(os.PRIO_PROCESS, tid, max(LOGGER_NICE, os.getpriority(os.PRIO_PROCESS, tid)))
    except OSError:  # not permitted here: log at normal priority
        pass


class SweepLog:
    """The driver's MLflow view of one sweep, fed committed units as they land.

    All MLflow work (opening the tracking store, the parent run, each committed unit's
    runs, the end of the sweep) runs on a logging thread of its own, at a lower CPU priority
    (:data:`LOGGER_NICE`): the driver hands it unit ids and goes on dispatching training, so
    a slow or locked tracking store, or MLflow's own CPU time on a machine whose cores all
    train, slows logging, never training. :meth:`finish` waits for the logging to catch up.

    When the tracking server is down (at the start, or it went down mid-sweep), a background
    thread probes it every :data:`RETRY_S` seconds; once it answers, the next committed unit
    (or the end of the sweep) logs everything committed so far. What is still unlogged when
    the sweep ends is left to ``doodl sync``.
    """

    def __init__(self, tracking_uri: str, experiment: str, store: SweepStore, rows_by_unit: dict[str, list[dict]],
                 parent_params: dict, outcome, retry_every: float | None = None):
        self.tracking_uri, self.experiment, self.store = tracking_uri, experiment, store
        self.rows_by_unit, self.parent_params, self.outcome = rows_by_unit, parent_params, outcome
        self.retry_every = RETRY_S if retry_every is None else retry_every
        self.committed: list[str] = []
        self._back, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self.sink: MlflowSink | None = None
        self._work: queue.Queue = queue.Queue()
        self._pending = 0  # units handed over, not yet through _log_units
        self._count_lock = threading.Lock()
        self._error: Exception | None = None
        self._logger = threading.Thread(target=self._run, daemon=True, name="doodl-mlflow-logger")
        self._logger.start()

    def units_committed(self, unit_ids: list[str]) -> None:
        """Hand newly committed units to the logging thread (returns at once)."""
        with self._count_lock:
            self._pending += len(unit_ids)
        self._work.put(("units", list(unit_ids)))

    def backlog(self) -> int:
        """Committed units handed over and not yet logged (or deferred)."""
        return self._pending

    def finish(self, all_unit_ids: list[str], complete: bool) -> None:
        """Wait for the logging thread to log everything handed to it, then stop probing;
        catch up if the server is back; mark the parent finished when every unit is committed."""
        self._work.put(("finish", (list(all_unit_ids), complete)))
        self._logger.join()
        if self._error is not None:  # a bug, not an outage (those are deferred): surface it
            raise self._error

    def _run(self) -> None:
        _yield_cpu_to_training()
        try:
            self.sink = open_sink(self.tracking_uri, self.experiment, self.store.sweep_id, self.outcome, self.store)
            self._start_parent()
            later = None
            while True:
                kind, payload = later or self._work.get()
                later = None
                if kind == "units":
                    # every unit committed meanwhile goes in one call: one lock, one read of the shards
                    while later is None and not self._work.empty():
                        more = self._work.get()
                        if more[0] == "units":
                            payload = payload + more[1]
                        else:
                            later = more
                    self._log_units(payload)
                    with self._count_lock:
                        self._pending -= len(payload)
                else:
                    self._finish(*payload)
                    return
        except Exception as exc:  # noqa: BLE001 - handed to the driver's thread in finish()
            self._error = exc

    def _start_parent(self) -> None:
        if self.sink is None:
            self._watch()
            return
        try:
            self.sink.log_parent(self.parent_params)
        except tracking_errors() as exc:
            defer(self.outcome, exc)
            self.sink = None
            self._watch()

    def _watch(self) -> None:
        """Probe the server in the background until it answers (servers only: a local
        SQLite store that fails has no health to probe)."""
        if self._thread is not None or not is_server(self.tracking_uri):
            return
        self._back.clear()
        self._thread = threading.Thread(target=self._probe_until_back, daemon=True, name="doodl-mlflow-retry")
        self._thread.start()

    def _probe_until_back(self) -> None:
        while not self._stop.wait(self.retry_every):
            try:
                probe(self.tracking_uri)
            except TrackingUnavailable:
                continue
            self._back.set()
            return

    def _reconnect(self) -> None:
        """The server answered again: open the view and log everything committed so far."""
        self._thread, self.outcome.mlflow_error = None, None
        console.print(f"MLflow at {self.tracking_uri} is back: logging the {len(self.committed)} units committed so far")
        self.sink = open_sink(self.tracking_uri, self.experiment, self.store.sweep_id, self.outcome, self.store)
        self._start_parent()
        log_units(self.sink, self.store, self.rows_by_unit, self.committed, self.outcome)

    def _log_units(self, unit_ids: list[str]) -> None:
        """Log these newly committed units (and catch up, if the server is back)."""
        self.committed += unit_ids
        if self.sink is None:
            if self._back.is_set():
                self._reconnect()
            return
        hold_logging()  # a no-op outside the tests of two processes logging one sweep
        log_units(self.sink, self.store, self.rows_by_unit, unit_ids, self.outcome)
        if self.outcome.mlflow_error:  # it went down mid-sweep
            self.sink = None
            self._watch()

    def _finish(self, all_unit_ids: list[str], complete: bool) -> None:
        self._stop.set()
        if self.sink is None and self._thread is not None:
            try:
                probe(self.tracking_uri)
                self._reconnect()
            except TrackingUnavailable:
                pass
        if self.sink is not None and complete:
            log_sweep_done(self.sink, self.store, all_unit_ids, self.outcome)
