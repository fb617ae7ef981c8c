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
from doodl.workers.engine import train_unit

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

    def run_unit(self, unit_id: str, configs: list[dict], attempt: int = 1) -> dict:
        """Train one unit, write its shards and marker, return a summary for the driver.

        Training holds the training lock; the write that follows does not, so a second call
        trains its unit meanwhile. The write lock is taken before the training lock is let
        go: writes keep the order of training, and a unit's summary means it is committed.
        """
        start = time.perf_counter()
        with self._training:
            _maybe_hold(self.fs, self.root, self._writing)
            _maybe_fault(unit_id, attempt)
            result = train_unit([VariantConfig.from_dict(c) for c in configs], self.device)
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
            "attempt": attempt,
            "seconds": time.perf_counter() - start,
            "pid": os.getpid(),
            "device": str(self.device),
        }

    def ping(self) -> dict:
        """Where and how this actor trains: process id, torch threads, device."""
        return {"pid": os.getpid(), "threads": torch.get_num_threads(), "device": str(self.device)}


def _maybe_fault(unit_id: str, attempt: int) -> None:
    """Test-only fault hook: ``DOODL_FAULT_EXIT_UNIT=<unit_id>`` kills the process on the
    first attempt of that unit, as a crashed node would."""
    if os.environ.get("DOODL_FAULT_EXIT_UNIT") == unit_id and attempt == 1:
        os._exit(17)


HOLD_POLL_SECONDS = 0.05
HOLD_GIVE_UP_SECONDS = 600.0


def _maybe_hold(fs, root: str, writing: threading.Lock) -> None:
    """Test-only fault hook: ``DOODL_FAULT_HOLD_FILE=<path>`` holds the unit about to be
    trained while the sweep's store already holds ``DOODL_FAULT_HOLD_AFTER`` (default 1) or
    more committed units, until a file exists at ``<path>`` (polled every 50 ms).

    A test of a race uses it to hold the rest of the work until its signal has arrived:
    with ``num_actors: 1`` exactly that many units are committed and the rest wait, however
    busy the machine. A file that is never created holds until the actor is killed; the
    hold gives up after ``HOLD_GIVE_UP_SECONDS`` so a leaked actor does not poll forever.
    Never set in real runs: nothing but the tests reads these variables. The unit being
    written (``writing`` held) is waited for first, so it counts once it is committed.
    """
    path = os.environ.get("DOODL_FAULT_HOLD_FILE")
    if not path:
        return
    with writing:
        pass
    after = int(os.environ.get("DOODL_FAULT_HOLD_AFTER", "1"))
    if len(shards.committed_units(fs, root)) < after:
        return
    deadline = time.monotonic() + HOLD_GIVE_UP_SECONDS
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(HOLD_POLL_SECONDS)
