"""The shard format: a unit's trajectories and finals as Parquet, then its commit marker.

Layout under a sweep root (any ``pyarrow.fs`` filesystem)::

    trajectories/unit=UNIT_ID/part-0.parquet
    finals/unit=UNIT_ID/part-0.parquet
    _commits/UNIT_ID.json     written last, atomically

A unit's data counts only once its marker exists and matches its files (sizes, row counts
and SHA-256 checksums); readers go through :func:`committed_units` and ignore the rest.

``theta`` is a ``fixed_size_list<float32>[D]`` to readers, null on rows without a
snapshot. pyarrow < 26 cannot read null fixed-size lists back from Parquet
(apache/arrow#35692) and MLflow 3.17 pins pyarrow < 26, so on disk the column is a plain
``list<float32>`` (``D`` also in the file's key-value metadata), and :func:`read_units`
casts it back. Float columns use zstd with byte-stream-split encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from workers.store_files import write_atomic

if TYPE_CHECKING:  # the shard format reads a result's arrays; it needs no torch to do so
    from workers.engine import UnitResult

TRAJECTORIES = "trajectories"
FINALS = "finals"
COMMITS = "_commits"
PART = "part-0.parquet"
FLOAT_COLUMNS = ["train_loss", "train_acc", "grad_norm", "lr"]
HELD_OUT_COLUMNS = ["test_loss", "test_acc"]  # null except at recorded steps
FORMAT_VERSION = 1
VERIFY_LEVELS = ("none", "size", "full")


class ShardError(ValueError):
    """A shard or commit marker that is missing, torn or inconsistent."""


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or any URI ``pyarrow.fs`` knows."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def trajectory_schema(theta_dim: int) -> pa.Schema:
    """Schema of trajectory rows; ``theta`` is null except at recording steps."""
    return pa.schema(
        [
            ("run_id", pa.string()),
            ("step", pa.int32()),
            ("epoch", pa.int32()),
            ("train_loss", pa.float32()),
            ("train_acc", pa.float32()),
            ("grad_norm", pa.float32()),
            ("lr", pa.float32()),
            ("test_loss", pa.float32()),
            ("test_acc", pa.float32()),
            ("theta", pa.list_(pa.float32(), theta_dim)),
            ("status", pa.string()),
        ]
    )


def finals_schema(n_params: int) -> pa.Schema:
    """Schema of final rows: full flattened parameters and end-of-training metrics."""
    return pa.schema(
        [
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("steps", pa.int32()),
            ("final_train_loss", pa.float32()),
            ("final_train_acc", pa.float32()),
            ("final_test_loss", pa.float32()),
            ("final_test_acc", pa.float32()),
            ("theta", pa.list_(pa.float32(), n_params)),
        ]
    )


def trajectory_table(result: UnitResult) -> pa.Table:
    """Rows ``step = 0..last_step`` per variant; theta at the recorded steps."""
    V, D = result.snapshots.shape[1], result.snapshots.shape[2]
    cols: dict[str, list] = {k: [] for k in ("run_id", "step", "epoch", *FLOAT_COLUMNS, *HELD_OUT_COLUMNS, "status")}
    theta_chunks, theta_valid = [], []
    for v in range(V):
        n = int(result.last_step[v]) + 1
        steps = np.arange(n)
        cols["run_id"].append(np.full(n, result.run_ids[v], dtype=object))
        cols["step"].append(steps.astype(np.int32))
        cols["epoch"].append(result.epoch[v, :n])
        cols["train_loss"].append(result.loss[v, :n])
        cols["train_acc"].append(result.acc[v, :n])
        cols["grad_norm"].append(result.grad_norm[v, :n])
        cols["lr"].append(result.lr[v, :n].astype(np.float32))
        status = np.full(n, "ok", dtype=object)
        if result.status[v] == "diverged":
            status[-1] = "diverged"
        cols["status"].append(status)
        theta = np.zeros((n, D), dtype=np.float32)
        has = np.zeros(n, dtype=bool)
        keep = result.snapshot_steps < n
        theta[result.snapshot_steps[keep]] = result.snapshots[keep, v]
        has[result.snapshot_steps[keep]] = True
        theta_chunks.append(theta)
        theta_valid.append(has)
        for name, values in (("test_loss", result.test_loss), ("test_acc", result.test_acc)):
            col = np.full(n, np.nan, dtype=np.float32)
            col[result.snapshot_steps[keep]] = values[keep, v]
            cols[name].append(col)
    theta = np.concatenate(theta_chunks).reshape(-1)
    valid = np.concatenate(theta_valid)
    theta_arr = pa.FixedSizeListArray.from_arrays(pa.array(theta, pa.float32()), D, mask=pa.array(~valid))
    schema = trajectory_schema(D)
    # held-out metrics exist at recorded steps only: null elsewhere (from_pandas: NaN -> null)
    arrays = [theta_arr if f.name == "theta" else
              pa.array(np.concatenate(cols[f.name]), f.type, from_pandas=f.name in HELD_OUT_COLUMNS) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def finals_table(result: UnitResult) -> pa.Table:
    """One row per variant with its final parameters and metrics."""
    V, P = result.final_params.shape
    schema = finals_schema(P)
    data = {
        "run_id": pa.array(result.run_ids, pa.string()),
        "status": pa.array(result.status, pa.string()),
        "steps": pa.array(result.last_step.astype(np.int32)),
        **{k: pa.array(result.final_metrics[k].astype(np.float32)) for k in schema.names if k.startswith("final_")},
        "theta": pa.FixedSizeListArray.from_arrays(pa.array(result.final_params.reshape(-1), pa.float32()), P),
    }
    return pa.Table.from_pydict(data, schema=schema)


THETA_DIM_KEY = b"doodl.theta_dim"


def _storage_table(table: pa.Table) -> pa.Table:
    """The on-disk form: ``theta`` as a variable list, its size in the metadata."""
    dim = table.schema.field("theta").type.list_size
    fields = [pa.field("theta", pa.list_(pa.float32())) if f.name == "theta" else f for f in table.schema]
    schema = pa.schema(fields, metadata={THETA_DIM_KEY: str(dim).encode()})
    return table.cast(schema)


def _logical_table(table: pa.Table) -> pa.Table:
    """Undo :func:`_storage_table` on rows read back: ``theta`` becomes a fixed-size list
    again when all its rows have one size (units of different model shapes read together
    keep a variable list, since one column cannot hold two fixed sizes)."""
    if "theta" not in table.column_names:
        return table
    sizes = pc.unique(pc.drop_null(pc.list_value_length(table["theta"]))).to_pylist()
    if len(sizes) != 1:
        return table
    fields = [pa.field("theta", pa.list_(pa.float32(), sizes[0])) if f.name == "theta" else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    table = _storage_table(table)
    float_cols = [f.name for f in table.schema if pa.types.is_float32(f.type)] + ["theta.list.element"]
    string_cols = [f.name for f in table.schema if pa.types.is_string(f.type)]
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=string_cols,  # dictionary encoding would pre-empt byte-stream-split
        use_byte_stream_split=float_cols,
    )
    return sink.getvalue().to_pybytes()


def unit_paths(root: str, unit_id: str) -> dict[str, str]:
    """Paths of a unit's trajectory shard, finals shard and commit marker."""
    return {
        TRAJECTORIES: f"{root}/{TRAJECTORIES}/unit={unit_id}/{PART}",
        FINALS: f"{root}/{FINALS}/unit={unit_id}/{PART}",
        COMMITS: f"{root}/{COMMITS}/{unit_id}.json",
    }


def write_unit(
    fs: pafs.FileSystem, root: str, unit_id: str, result: UnitResult, *, attempt: int = 1
) -> dict:
    """Write a unit's shards, then its commit marker (atomically, last). Returns the marker."""
    paths = unit_paths(root, unit_id)
    tables = {TRAJECTORIES: trajectory_table(result), FINALS: finals_table(result)}
    marker: dict = {
        "format": FORMAT_VERSION,
        "unit_id": unit_id,
        "runs": list(result.run_ids),
        "attempt": int(attempt),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {},
    }
    for kind, table in tables.items():
        payload = _parquet_bytes(table)
        write_atomic(fs, paths[kind], payload)
        marker["files"][kind] = {
            "path": paths[kind][len(root) + 1 :],
            "rows": table.num_rows,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
    marker["rows"] = marker["files"][TRAJECTORIES]["rows"]
    write_atomic(fs, paths[COMMITS], json.dumps(marker, indent=1).encode())  # last: the unit now counts
    return marker


@dataclass(frozen=True)
class CommittedUnit:
    """A unit whose marker exists; ``problem`` says why it cannot be trusted, if so."""

    unit_id: str
    marker: dict
    problem: str | None = None


def read_marker(fs: pafs.FileSystem, root: str, unit_id: str) -> dict | None:
    """The commit marker of a unit, or None when the unit is not committed."""
    path = unit_paths(root, unit_id)[COMMITS]
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def _shard_sizes(fs: pafs.FileSystem, root: str) -> dict[str, int]:
    """Size of every shard under the sweep root, from one listing (one LIST on S3, not a
    request per file)."""
    sizes = {}
    for kind in (TRAJECTORIES, FINALS):
        for info in fs.get_file_info(pafs.FileSelector(f"{root}/{kind}", recursive=True, allow_not_found=True)):
            if info.type == pafs.FileType.File:
                sizes[info.path[len(root) + 1:]] = info.size
    return sizes


def _check_full(fs: pafs.FileSystem, root: str, kind: str, meta: dict) -> str | None:
    """Download a shard and check its checksum and row count against the marker."""
    path = f"{root}/{meta['path']}"
    try:
        with fs.open_input_stream(path) as f:
            payload = f.read()
    except FileNotFoundError:
        return f"{kind} shard missing: {meta['path']}"
    if hashlib.sha256(payload).hexdigest() != meta["sha256"]:
        return f"{kind} shard checksum mismatch: {meta['path']}"
    try:
        rows = pq.read_metadata(pa.BufferReader(payload)).num_rows
    except (pa.ArrowInvalid, OSError) as exc:  # what pyarrow raises on a torn footer
        return f"{kind} shard unreadable ({exc}): {meta['path']}"
    if rows != meta["rows"]:
        return f"{kind} shard has {rows} rows, marker says {meta['rows']}: {meta['path']}"
    return None


def verify_unit(fs: pafs.FileSystem, root: str, marker: dict, level: str = "full",
                sizes: dict[str, int] | None = None) -> str | None:
    """Check a unit's files against its marker; return a problem or None when sound.

    ``level`` ``"size"`` compares each shard's size with the marker's (from ``sizes``, a
    listing, when given): it catches missing and torn shards without reading them, which is
    what a resume or ``doodl status`` can afford on S3. ``"full"`` downloads each shard and
    checks its SHA-256 and row count (``doodl status --verify``). Markers written before
    sizes were recorded are checked in full.
    """
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify level {level!r}: one of {VERIFY_LEVELS}")
    for kind, meta in marker.get("files", {}).items():
        if level == "size" and "bytes" in meta:
            size = sizes.get(meta["path"]) if sizes is not None else _size(fs, f"{root}/{meta['path']}")
            if size is None:
                return f"{kind} shard missing: {meta['path']}"
            if size != meta["bytes"]:
                return f"{kind} shard has {size} bytes, marker says {meta['bytes']}: {meta['path']}"
        elif level != "none":
            problem = _check_full(fs, root, kind, meta)
            if problem:
                return problem
    return None


def _size(fs: pafs.FileSystem, path: str) -> int | None:
    info = fs.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else None


def committed_units(fs: pafs.FileSystem, root: str, *, verify: str = "none") -> dict[str, CommittedUnit]:
    """All units with a commit marker, each checked against its files at level ``verify``
    (``"none"``, ``"size"`` or ``"full"``: see :func:`verify_unit`)."""
    selector = pafs.FileSelector(f"{root}/{COMMITS}", allow_not_found=True)
    sizes = _shard_sizes(fs, root) if verify == "size" else None
    out: dict[str, CommittedUnit] = {}
    for info in fs.get_file_info(selector):
        name = info.base_name
        if info.type != pafs.FileType.File or not name.endswith(".json"):
            continue  # skips the temporary files of a marker being written
        unit_id = name[: -len(".json")]
        try:
            marker = read_marker(fs, root, unit_id)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            out[unit_id] = CommittedUnit(unit_id, {}, f"commit marker unreadable: {exc}")
            continue
        problem = verify_unit(fs, root, marker, verify, sizes)
        out[unit_id] = CommittedUnit(unit_id, marker, problem)
    return out


def read_units(
    fs: pafs.FileSystem, root: str, kind: str, unit_ids, columns: list[str] | None = None, filter=None
) -> pa.Table:
    """Read the ``trajectories`` or ``finals`` rows of the given (committed) units; ``filter``
    is a ``pyarrow.dataset`` expression pushed down to the Parquet scan."""
    import pyarrow.dataset as ds

    paths = [unit_paths(root, u)[kind] for u in unit_ids]
    if not paths:
        raise ShardError(f"no committed units to read under {root}/{kind}")
    dataset = ds.dataset(paths, filesystem=fs, format="parquet")
    # units written before a column existed read it as nulls
    missing = [c for c in columns or [] if c not in dataset.schema.names]
    scan = dataset.to_table(columns=[c for c in columns if c not in missing] if columns else None, filter=filter)
    for c in missing:
        scan = scan.append_column(c, pa.nulls(scan.num_rows, pa.float32()))
    return _logical_table(scan)
