"""The Ray actor that trains work units: long-lived, one torch thread, many units.

The driver creates a pool of these (``ray.remote(UnitTrainer).options(...)``) and feeds
them units. The actor trains a unit as one batched model, writes its shards and commit
marker itself, and returns only a small summary, so no trajectory crosses the object store.

Writing is off the training path: the actor runs ``UNITS_IN_FLIGHT`` calls at once (a Ray
threaded actor), one training at a time under a lock, so the next unit trains while the
last one's shards are written (pyarrow releases the GIL while it encodes and writes).
"""

from __future__ import annotations

import os
import threading
import time

import torch

from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.early_stop import StopRule
from doodl.workers.engine import train_unit
from doodl.workers.faults import fault_plan

# units an actor holds at once: one training, one being written (the actor's max_concurrency)
UNITS_IN_FLIGHT = 2


def pick_device() -> torch.device:
    """The one place that chooses where training runs: the GPU Ray gave this actor, if any.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for an actor that holds GPUs, so ``cuda`` is the
    first of them; an actor without GPUs trains on the CPU even where CUDA exists.
    """
    try:
        import ray

        gpu_ids = ray.get_gpu_ids() if ray.is_initialized() else []
    except Exception:  # outside a Ray worker
        gpu_ids = []
    if gpu_ids and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class UnitTrainer:
    """Trains units of one sweep and writes them to the sweep's root in the store."""

    def __init__(self, sweep_root_uri: str, threads: int = 1):
        # tiny models: intra-op threads cost more than they give; parallelism comes
        # from more actors and from batching variants
        torch.set_num_threads(threads)
        self.fs, self.root = shards.resolve_filesystem(sweep_root_uri)
        self.device = pick_device()
        self._training = threading.Lock()  # one unit trains at a time (one torch thread, one device)
        self._writing = threading.Lock()  # one unit is written at a time: at most two results in memory
        self._faults = fault_plan(self.fs, self.root, self._writing)  # test-only; read once, a no-op unless set

    def run_unit(self, unit_id: str, configs: list[dict], attempt: int = 1, stop: dict | None = None) -> dict:
        """Train one unit, write its shards and marker, return a summary for the driver.

        Training holds the training lock; the write that follows does not, so a second call
        trains its unit meanwhile. The write lock is taken before the training lock is let
        go: writes keep the order of training, and a unit's summary means it is committed.
        ``stop``: the sweep's early-stopping rule (:meth:`StopRule.to_dict`), if any.
        """
        start = time.perf_counter()
        with self._training:
            self._faults.before_unit(unit_id, attempt)
            result = train_unit([VariantConfig.from_dict(c) for c in configs], self.device,
                                stop=None if stop is None else StopRule.from_dict(stop))
            self._writing.acquire()
        try:
            marker = shards.write_unit(self.fs, self.root, unit_id, result, attempt=attempt)
        finally:
            self._writing.release()
        return {
            "unit_id": unit_id,
            "runs": marker["runs"],
            "rows": marker["rows"],
            "diverged": sum(s == "diverged" for s in result.status),
            "stopped": sum(s == "stopped" for s in result.status),
            "attempt": attempt,
            "seconds": time.perf_counter() - start,
            "pid": os.getpid(),
            "device": str(self.device),
        }

    def ping(self) -> dict:
        """Where and how this actor trains: process id, torch threads, device."""
        return {"pid": os.getpid(), "threads": torch.get_num_threads(), "device": str(self.device)}

