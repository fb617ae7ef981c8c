"""MLflow, doodl's view of the store: the only package that talks to MLflow.

The store is the source of truth and MLflow an observer of it. The driver hands committed
units to :class:`SweepLog`; the reduction, audits and ``doodl sync`` log through the
functions here. A tracking store that is down, refuses the API or is locked defers logging
(``doodl sync`` catches up), never training. :func:`probe` says which of these it is.

Layout: ``tags`` (every tag name), ``_probe`` (is the store usable), ``_views`` (what each
kind of run shows), ``_sink`` (runs, idempotent by tags), ``_sweep_log`` (the driver's
observer), ``_reduction_log``, ``_audit_log``, ``_queries`` (reading the view back),
``_sync`` (``doodl sync``), ``_reconcile`` (does the view show what the store holds).
"""

from doodl.orchestrator.tracking._audit_log import log_audit
from doodl.orchestrator.tracking._probe import (PROBE_TIMEOUT_S, TrackingUnavailable, is_server, one_line, probe,
                                          tracking_errors, use_short_http_timeouts)
from doodl.orchestrator.tracking._queries import audit_history, log_report, sweep_run_ids
from doodl.orchestrator.tracking._reconcile import ViewGap, view_gap
from doodl.orchestrator.tracking._reduction_log import log_group, log_summaries, open_group_runs
from doodl.orchestrator.tracking._sink import DEFAULT_TRACKING_URI, MlflowSink
from doodl.orchestrator.tracking._sweep_log import SweepLog, console, defer, log_sweep_done, log_units, open_sink
from doodl.orchestrator.tracking._sync import SyncOutcome, sync_sweep

__all__ = ["DEFAULT_TRACKING_URI", "PROBE_TIMEOUT_S", "MlflowSink", "SweepLog", "SyncOutcome", "TrackingUnavailable",
           "audit_history", "console", "defer", "is_server", "log_audit", "log_group", "log_report", "log_summaries",
           "log_sweep_done", "log_units", "one_line", "open_group_runs", "open_sink", "probe", "sweep_run_ids",
           "sync_sweep", "tracking_errors", "use_short_http_timeouts", "ViewGap", "view_gap"]
