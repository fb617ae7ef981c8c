"""Every path of the store: the one place that says where a sweep's files live.

::

    STORE/SWEEP_ID/                               sweep_root(base, sweep_id)
      sweep.json                                  resolved spec, doodl version, created time, early-stopping rule
      variants.parquet                            one row per variant: ids and config columns
      trajectories/unit=UNIT_ID/part-0.parquet    ┐
      snapshots/unit=UNIT_ID/part-0.parquet       │ a unit's shards and commit marker: declared by
      finals/unit=UNIT_ID/part-0.parquet          │ doodl.workers.shards (the Ray actors write them),
      _commits/UNIT_ID.json                       ┘ re-exported here
      _leases/PURPOSE.json                        one driver per sweep and purpose (training, reducing, auditing)
      _leases/PURPOSE.handoff.json                a shared lock's last holder (tracking: MLflow run creation)
      _failures/UNIT_ID.json                      a unit's failed attempts: cause, attempt, time (doodl status)
      _tmp/                                       files being written into the dataset folders above and below
      reduction/NAME/groups/GROUP_ID.parquet      an analysis's row of one group (NAME: morse, taxonomy, ...)
      reduction/NAME/runs/GROUP_ID.parquet        its rows of the group's runs
      reduction/NAME.parquet                      all groups
      reduction/NAME_runs.parquet                 all runs
      reduction/TABLE.parquet                     other sweep-wide tables (koopman_pairs, stopped_phases)
      reduction/plots/GROUP_ID/PICTURE            a group's pictures
      reduction/plots/PICTURE                     sweep-wide pictures
      audits/AUDIT_ID/report.json                 an audit's verdict (its presence: the sweep was audited)
      audits/AUDIT_ID/report.md, phase_diagrams.png

The shard layout below a unit stays in :mod:`doodl.workers.shards`, as the design contract
says: the workers write it inside Ray actors and ``workers`` imports nothing of the
orchestrator. This module imports those names from there, so each path is still declared
once. Nothing outside the store package and ``workers/shards.py`` builds a path of the store
(``tests/orchestrator/store/test_layout.py`` checks it); callers ask :class:`SweepLayout`.
Picture names (``phase_diagram.png``, ``morse_graph.png``) are the analyses' own: the layout
only says where pictures go.
"""

from __future__ import annotations

from doodl.workers.shards import COMMITS, FINALS, PART, SNAPSHOTS, TMP, TRAJECTORIES, unit_paths

__all__ = ["AUDITS", "AUDIT_PICTURE", "AUDIT_RECORD", "AUDIT_REPORT", "COMMITS", "FINALS", "GROUPS",
           "FAILURES", "LEASES", "PART", "PLOTS", "REDUCTION", "RUNS", "SNAPSHOTS", "SWEEP_JSON",
           "SweepLayout", "TMP", "TRAJECTORIES", "VARIANTS", "sweep_root"]

SWEEP_JSON = "sweep.json"
VARIANTS = "variants.parquet"
LEASES = "_leases"
FAILURES = "_failures"  # a unit's failed attempts, kept by the driver
LEASE_SUFFIX = ".json"
HANDOFF_SUFFIX = ".handoff.json"
REDUCTION = "reduction"
PARQUET = ".parquet"
GROUPS = "groups"  # reduction/NAME/groups/: one part per group
RUNS = "runs"  # reduction/NAME/runs/: the group's runs, one part per group
RUNS_TABLE_SUFFIX = "_runs"  # reduction/NAME_runs.parquet
PLOTS = "plots"
AUDITS = "audits"
AUDIT_RECORD = "report.json"  # the audit's verdict and findings; its presence means the sweep was audited
AUDIT_REPORT = "report.md"
AUDIT_PICTURE = "phase_diagrams.png"  # the two sweeps' phase diagrams side by side


def sweep_root(base: str, sweep_id: str) -> str:
    """The directory of sweep ``sweep_id`` in the store at ``base`` (a filesystem path)."""
    return f"{base.rstrip('/')}/{sweep_id}"


class SweepLayout:
    """The paths of one sweep's files, below its root ``root`` (a path of the store's
    filesystem, as :func:`sweep_root` gives). Builds strings only: nothing is read."""

    def __init__(self, root: str):
        self.root = root

    # --- sweep level ----------------------------------------------------------------
    @property
    def sweep_json(self) -> str:
        return f"{self.root}/{SWEEP_JSON}"

    @property
    def variants(self) -> str:
        return f"{self.root}/{VARIANTS}"

    def unit_files(self, unit_id: str) -> dict[str, str]:
        """A unit's shards and commit marker by kind (:func:`doodl.workers.shards.unit_paths`)."""
        return unit_paths(self.root, unit_id)

    # --- leases -------------------------------------------------------------------------
    @property
    def leases_dir(self) -> str:
        return f"{self.root}/{LEASES}"

    def lease(self, purpose: str) -> str:
        """The lease of the sweep for ``purpose`` (``training``, ``reducing``, ``auditing``)."""
        return f"{self.leases_dir}/{purpose}{LEASE_SUFFIX}"

    def lease_handoff(self, purpose: str) -> str:
        """Who last held the sweep's lock for ``purpose`` (:class:`.lease.SweepMutex`)."""
        return f"{self.leases_dir}/{purpose}{HANDOFF_SUFFIX}"

    @property
    def failures_dir(self) -> str:
        return f"{self.root}/{FAILURES}"

    def failure(self, unit_id: str) -> str:
        """The record of a unit's failed attempts (cause, attempt, time)."""
        return f"{self.failures_dir}/{unit_id}.json"

    # --- reduction ------------------------------------------------------------------------
    @property
    def reduction_dir(self) -> str:
        return f"{self.root}/{REDUCTION}"

    def reduction_table(self, name: str) -> str:
        """A sweep-wide table of the reduction: ``reduction/NAME.parquet`` (an analysis's
        all-groups table, or another sweep-wide table an analysis declares)."""
        return f"{self.reduction_dir}/{name}{PARQUET}"

    def reduction_runs_table(self, analysis: str) -> str:
        """An analysis's all-runs table: ``reduction/NAME_runs.parquet``."""
        return self.reduction_table(f"{analysis}{RUNS_TABLE_SUFFIX}")

    def reduction_parts_dir(self, analysis: str, kind: str) -> str:
        """The folder of an analysis's per-group parts, ``kind`` :data:`GROUPS` or :data:`RUNS`."""
        return f"{self.reduction_dir}/{analysis}/{kind}"

    def reduction_part(self, analysis: str, kind: str, group_id: str) -> str:
        """One group's part (``kind`` :data:`GROUPS` or :data:`RUNS`) of an analysis."""
        return f"{self.reduction_parts_dir(analysis, kind)}/{group_id}{PARQUET}"

    def reduction_part_tmp(self, analysis: str, kind: str, group_id: str) -> str:
        """Where a part is written before it is moved into place: outside its dataset folder."""
        return f"{self.root}/{TMP}/{analysis}.{kind}.{group_id}"

    @property
    def plots_dir(self) -> str:
        """Where the reduction's pictures go: sweep-wide ones at the top, a group's in a folder."""
        return f"{self.reduction_dir}/{PLOTS}"

    def picture(self, name: str, group_id: str | None = None) -> str:
        """A sweep-wide picture, or with ``group_id`` one of that group's pictures."""
        folder = self.plots_dir if group_id is None else f"{self.plots_dir}/{group_id}"
        return f"{folder}/{name}"

    # --- audits ---------------------------------------------------------------------------
    @property
    def audits_dir(self) -> str:
        return f"{self.root}/{AUDITS}"

    def audit_dir(self, audit_id: str) -> str:
        return f"{self.audits_dir}/{audit_id}"

    def audit_file(self, audit_id: str, name: str) -> str:
        """A file of one audit (:data:`AUDIT_RECORD`, :data:`AUDIT_REPORT`, :data:`AUDIT_PICTURE`)."""
        return f"{self.audit_dir(audit_id)}/{name}"

    def audit_record(self, audit_id: str) -> str:
        return self.audit_file(audit_id, AUDIT_RECORD)

    def is_audit_record(self, path: str) -> bool:
        """True for the record of some audit of this sweep (a path from a listing)."""
        return path.startswith(f"{self.audits_dir}/") and path.endswith(f"/{AUDIT_RECORD}")
