"""The store: one interface over a sweep's files on any ``pyarrow.fs`` filesystem, in the
manner of Optuna's storages. The driver, the reduction, audits, ``ls``, ``status`` and the
MLflow view go through it; nothing else knows a path.

- :mod:`.layout`: every path of the store (:class:`SweepLayout`); the shard layout below a
  unit is :mod:`doodl.workers.shards`' (the workers write it in Ray actors), imported from there;
- :mod:`.sweep`: a sweep's directory (:class:`SweepStore`): ``sweep.json``, ``variants.parquet``,
  the state of each unit (:class:`UnitState`);
- :mod:`.lease`: one driver per sweep and purpose (:class:`SweepLease`), a lock shared by the
  processes of one sweep (:class:`SweepMutex`);
- :mod:`.reduction`: the reduction's tables and pictures (:class:`ReductionStore`).
"""

from doodl.orchestrator.store.layout import SweepLayout, sweep_root
from doodl.orchestrator.store.lease import (HEARTBEAT_S, SETTLE_S, TTL_S, Holder, LeaseHeld, SweepLease, SweepMutex,
                                            live_holder)
from doodl.orchestrator.store.reduction import ReductionStore
from doodl.orchestrator.store.sweep import (CONFIG_COLUMNS, DEFAULT_STORE, ID_PATTERN, StoredUnit, StoreError,
                                            SweepStore, UnitState, derived_sweep_id, doodl_version, sweep_ids,
                                            sweep_store_for, variants_table)

__all__ = [
    "CONFIG_COLUMNS", "DEFAULT_STORE", "HEARTBEAT_S", "ID_PATTERN", "SETTLE_S", "TTL_S", "Holder",
    "LeaseHeld", "ReductionStore", "StoreError", "StoredUnit", "SweepLayout", "SweepLease", "SweepMutex", "SweepStore",
    "UnitState", "derived_sweep_id", "doodl_version", "live_holder", "sweep_ids", "sweep_root",
    "sweep_store_for", "variants_table",
]
