"""Test-only fault injection in the actor: a plan read once from the environment when the
actor starts, a no-op (:class:`NoFaults`) unless a ``DOODL_FAULT_*`` variable is set.

Never set in real runs: nothing but the tests sets these variables. The actor calls
``faults.before_unit(unit_id, attempt)`` before training each unit and never asks whether a
fault is planned.

- ``DOODL_FAULT_EXIT_UNIT=<unit_id>`` kills the process on the first attempt of that unit,
  as a crashed node would (exit code 17).
- ``DOODL_FAULT_HOLD_FILE=<path>`` holds the unit about to be trained while the sweep's
  store already holds ``DOODL_FAULT_HOLD_AFTER`` (default 1) or more committed units, until
  a file exists at ``<path>`` (polled every 50 ms). A test of a race uses it to hold the
  rest of the work until its signal has arrived: with ``num_actors: 1`` exactly that many
  units are committed and the rest wait, however busy the machine. A file that is never
  created holds until the actor is killed; the hold gives up after
  ``HOLD_GIVE_UP_SECONDS`` so a leaked actor does not poll forever. The unit being written
  (the actor's write lock held) is waited for first, so it counts once it is committed.

One hook is the driver's: ``DOODL_FAULT_HOLD_LOGGING_FILE=<path>`` holds its MLflow logging
thread (:func:`hold_logging`) before it logs committed units, after it has read the MLflow
view, until a file exists at ``<path>``; ``<path>.held`` appears when the hold begins. A test
of two processes logging one sweep uses it to make the logger's view stale on purpose.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow.fs as pafs

from doodl.workers import shards

EXIT_UNIT = "DOODL_FAULT_EXIT_UNIT"
HOLD_FILE = "DOODL_FAULT_HOLD_FILE"
HOLD_AFTER = "DOODL_FAULT_HOLD_AFTER"
HOLD_LOGGING_FILE = "DOODL_FAULT_HOLD_LOGGING_FILE"
HELD_SUFFIX = ".held"
EXIT_CODE = 17
HOLD_POLL_SECONDS = 0.05
HOLD_GIVE_UP_SECONDS = 600.0


class NoFaults:
    """No fault planned: every hook does nothing."""

    def before_unit(self, unit_id: str, attempt: int) -> None:
        pass


@dataclass(frozen=True)
class FaultPlan:
    """The faults one actor injects, bound to its store and its write lock."""

    fs: pafs.FileSystem
    root: str
    writing: threading.Lock
    exit_unit: str | None = None
    hold_file: str | None = None
    hold_after: int = 1

    def before_unit(self, unit_id: str, attempt: int) -> None:
        """Hold, then exit, as the plan says (called with the training lock held)."""
        if self.hold_file:
            self._hold()
        if self.exit_unit == unit_id and attempt == 1:
            os._exit(EXIT_CODE)

    def _hold(self) -> None:
        with self.writing:
            pass
        if len(shards.committed_units(self.fs, self.root)) < self.hold_after:
            return
        deadline = time.monotonic() + HOLD_GIVE_UP_SECONDS
        while not os.path.exists(self.hold_file) and time.monotonic() < deadline:
            time.sleep(HOLD_POLL_SECONDS)


def fault_plan(fs: pafs.FileSystem, root: str, writing: threading.Lock,
               environ: Mapping[str, str] = os.environ) -> FaultPlan | NoFaults:
    """The faults ``environ`` asks for (read now, once), or :class:`NoFaults`."""
    exit_unit = environ.get(EXIT_UNIT) or None
    hold_file = environ.get(HOLD_FILE) or None
    if exit_unit is None and hold_file is None:
        return NoFaults()
    hold_after = int(environ.get(HOLD_AFTER, "1")) if hold_file else 1
    return FaultPlan(fs, root, writing, exit_unit=exit_unit, hold_file=hold_file, hold_after=hold_after)


def hold_logging(environ: Mapping[str, str] = os.environ) -> None:
    """The driver's hook: hold until ``DOODL_FAULT_HOLD_LOGGING_FILE`` exists (no-op unset)."""
    path = environ.get(HOLD_LOGGING_FILE)
    if not path:
        return
    with open(path + HELD_SUFFIX, "a"):
        pass
    deadline = time.monotonic() + HOLD_GIVE_UP_SECONDS
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(HOLD_POLL_SECONDS)
