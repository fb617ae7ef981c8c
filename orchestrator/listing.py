"""``doodl ls``: the sweeps of a store, one line each, read from the store alone.

A sweep's state is what its files say, the furthest it has got:

- ``training``: a driver holds its training lease, or some unit has no sound commit marker
  (a sweep still running, or stopped before the end: ``doodl sweep`` finishes it);
- ``trained``: every unit is committed;
- ``reduced``: trained, and some analysis's table ``reduction/NAME.parquet`` exists;
- ``audited``: trained, and an audit's record ``audits/AUDIT_ID/report.json`` exists.

The last change is the newest modification time of the sweep's files, from one recursive
listing of its directory (any ``pyarrow.fs`` filesystem: nothing is downloaded).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow.fs as pafs

from doodl.orchestrator.spec import ReduceSpec
from doodl.orchestrator.store import StoreError, SweepStore, UnitState, live_holder, sweep_ids
from doodl.workers.timestamps import utc_timestamp


@dataclass(frozen=True)
class SweepListing:
    """One sweep of a store: its size, state and last change (``problem``: why it could not be read)."""

    sweep_id: str
    n_variants: int = 0
    n_units: int = 0
    committed_units: int = 0
    state: str = "unreadable"  # training | trained | reduced | audited | unreadable
    last_change: dt.datetime | None = None
    problem: str | None = None


def sweep_listing(store: SweepStore) -> SweepListing:
    """The state of one sweep (see the module docstring); sizes are checked, not checksums."""
    try:
        variants = store.read_variants()
    except StoreError as exc:  # one broken sweep must not hide the others
        return SweepListing(store.sweep_id, problem=str(exc), last_change=_newest(_files(store)))
    unit_ids = sorted(set(variants.column("unit_id").to_pylist()))
    states = store.unit_states(unit_ids, "size")
    committed = sum(s.state == UnitState.COMMITTED for s in states.values())
    files = _files(store)
    paths = {i.path for i in files}
    tables = {store.layout.reduction_table(name) for name in ReduceSpec.model_fields}
    if committed < len(unit_ids) or live_holder(store, "training") is not None:
        state = "training"
    elif any(store.layout.is_audit_record(p) for p in paths):
        state = "audited"
    elif paths & tables:
        state = "reduced"
    else:
        state = "trained"
    return SweepListing(store.sweep_id, variants.num_rows, len(unit_ids), committed, state, _newest(files))


def list_store(store_uri: str) -> list[SweepListing]:
    """Every sweep of the store, sorted by id; an empty or missing store gives none."""
    return [sweep_listing(SweepStore(store_uri, s)) for s in sweep_ids(store_uri)]


def format_listing(rows: list[SweepListing]) -> list[str]:
    """Aligned lines: a header, then one line per sweep."""
    table = [("SWEEP", "VARIANTS", "STATE", "UNITS", "LAST CHANGE")]
    for r in rows:
        when = utc_timestamp(r.last_change) if r.last_change else "-"
        if r.problem:
            table.append((r.sweep_id, "-", r.state, "-", f"{when}  {r.problem}"))
        else:
            table.append((r.sweep_id, str(r.n_variants), r.state, f"{r.committed_units}/{r.n_units}", when))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]) for row in table]


def _files(store: SweepStore) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(store.root, recursive=True, allow_not_found=True)
    return [i for i in store.fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _newest(files: list[pafs.FileInfo]) -> dt.datetime | None:
    # object stores give directories no time; files always have one
    times = [i.mtime if i.mtime.tzinfo else i.mtime.replace(tzinfo=dt.timezone.utc)
             for i in files if i.mtime is not None]
    return max(times).astimezone(dt.timezone.utc) if times else None
