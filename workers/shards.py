"""The shard format: a unit's trajectories, snapshots and finals as Parquet, then its
commit marker.

Layout under a sweep root (any ``pyarrow.fs`` filesystem)::

    trajectories/unit=UNIT_ID/part-0.parquet   one row per variant and step
    snapshots/unit=UNIT_ID/part-0.parquet      one row per variant and recorded step
    finals/unit=UNIT_ID/part-0.parquet         one row per variant
    _commits/UNIT_ID.json     written last, atomically
    _tmp/UNIT_ID.KIND.tmp-*   a shard being written (outside the dataset folders, so that
                              a killed writer's leftover never breaks a reader of a folder)

A unit's data counts only once its marker exists and matches its files (sizes, row counts
and SHA-256 checksums); readers go through :func:`committed_units` and ignore the rest.

Snapshots (``theta``: the recorded parameters or their projection, with the held-out loss
and accuracy at that step) are rows of their own, only at recorded steps; units written by
format 1 kept ``theta`` as a mostly-null trajectory column, and :func:`read_snapshots`
reads either. ``theta`` is a ``fixed_size_list<float32>[D]`` to readers; on disk it is a
plain ``list<float32>`` (``D`` in the file's key-value metadata) because pyarrow < 26 cannot
read null fixed-size lists back (apache/arrow#35692) and MLflow 3.17 pins pyarrow < 26.
Float columns use zstd with byte-stream-split encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from doodl.workers.store_files import remove_leftovers, write_atomic
from doodl.workers.timestamps import utc_timestamp

if TYPE_CHECKING:  # the shard format reads a result's arrays; it needs no torch to do so
    from doodl.workers.engine import UnitResult

TRAJECTORIES = "trajectories"
SNAPSHOTS = "snapshots"
FINALS = "finals"
COMMITS = "_commits"
TMP = "_tmp"  # temporaries of writes into dataset folders (reduction parts too)
PART = "part-0.parquet"
FLOAT_COLUMNS = ["train_loss", "train_acc", "grad_norm", "lr"]
HELD_OUT_COLUMNS = ["test_loss", "test_acc"]  # in snapshot rows: measured at recorded steps
FORMAT_VERSION = 2  # 1: theta and held-out metrics were trajectory columns, null between recordings
VERIFY_LEVELS = ("none", "size", "full")


class ShardError(ValueError):
    """A shard or commit marker that is missing, torn or inconsistent."""


class UnreadableShard(ShardError):
    """A committed unit's shard whose bytes cannot be decoded (bit rot, a hand edit): its
    size matched its marker, so only reading it finds out."""

    def __init__(self, unit_id: str, kind: str, cause: str):
        self.unit_id, self.kind = unit_id, kind
        super().__init__(f"unit {unit_id}: its {kind} shard cannot be read ({cause})")


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or any URI ``pyarrow.fs`` knows."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def trajectory_schema() -> pa.Schema:
    """Schema of trajectory rows: one per variant and step."""
    return pa.schema(
        [
            ("run_id", pa.string()),
            ("step", pa.int32()),
            ("epoch", pa.int32()),
            ("train_loss", pa.float32()),
            ("train_acc", pa.float32()),
            ("grad_norm", pa.float32()),
            ("lr", pa.float32()),
            ("status", pa.string()),
        ]
    )


def snapshot_schema(theta_dim: int, dtype: pa.DataType | None = None) -> pa.Schema:
    """Schema of snapshot rows: one per variant and recorded step (``theta`` stored in
    ``dtype``: float32 by default, or float16 with ``record.dtype``; read back as float32)."""
    dtype = pa.float32() if dtype is None else dtype
    return pa.schema(
        [
            ("run_id", pa.string()),
            ("step", pa.int32()),
            ("test_loss", pa.float32()),
            ("test_acc", pa.float32()),
            ("theta", pa.list_(dtype, theta_dim)),
        ]
    )


# a run's end-of-training metrics, the columns of its finals row (and its MLflow metrics)
FINAL_METRICS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc")


def finals_schema(n_params: int) -> pa.Schema:
    """Schema of final rows: full flattened parameters and end-of-training metrics."""
    return pa.schema(
        [
            ("run_id", pa.string()),
            ("status", pa.string()),
            ("steps", pa.int32()),
            *((name, pa.float32()) for name in FINAL_METRICS),
            ("theta", pa.list_(pa.float32(), n_params)),
        ]
    )


def trajectory_table(result: UnitResult) -> pa.Table:
    """Rows ``step = 0..last_step`` per variant."""
    V = len(result.run_ids)
    n = result.last_step.astype(np.int64) + 1
    T1 = result.loss.shape[1]
    keep = np.arange(T1)[None, :] < n[:, None]  # (V, T+1): each variant's steps up to its last
    status = np.full((V, T1), "ok", dtype=object)
    status[np.arange(V), n - 1] = result.status  # a run's last row says how it ended: ok, diverged or stopped
    cols = {
        "run_id": np.repeat(np.array(result.run_ids, dtype=object), n),
        "step": np.broadcast_to(np.arange(T1, dtype=np.int32), (V, T1))[keep],
        "epoch": result.epoch[keep],
        "train_loss": result.loss[keep],
        "train_acc": result.acc[keep],
        "grad_norm": result.grad_norm[keep],
        "lr": result.lr.astype(np.float32)[keep],
        "status": status[keep],
    }
    schema = trajectory_schema()
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in schema], schema=schema)


def snapshot_table(result: UnitResult) -> pa.Table:
    """Rows at each variant's recorded steps up to its last step: theta and held-out metrics."""
    S, V, D = result.snapshots.shape
    recorded = result.snapshot_steps[:, None] <= result.last_step[None, :]  # (S, V)
    order = np.argwhere(recorded.T)  # (variant, snapshot) pairs, variant-major
    v_idx, s_idx = order[:, 0], order[:, 1]
    theta = np.ascontiguousarray(result.snapshots[s_idx, v_idx])
    value_type = pa.from_numpy_dtype(theta.dtype)
    schema = snapshot_schema(D, value_type)
    arrays = [
        pa.array(np.array(result.run_ids, dtype=object)[v_idx], pa.string()),
        pa.array(result.snapshot_steps[s_idx].astype(np.int32)),
        pa.array(result.test_loss[s_idx, v_idx].astype(np.float32)),
        pa.array(result.test_acc[s_idx, v_idx].astype(np.float32)),
        pa.FixedSizeListArray.from_arrays(pa.array(theta.reshape(-1), value_type), D),
    ]
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
    if "theta" not in table.column_names:
        return table
    theta = table.schema.field("theta").type
    dim = theta.list_size
    fields = [pa.field("theta", pa.list_(theta.value_type)) if f.name == "theta" else f for f in table.schema]
    schema = pa.schema(fields, metadata={THETA_DIM_KEY: str(dim).encode()})
    return table.cast(schema)


def _logical_table(table: pa.Table) -> pa.Table:
    """Undo :func:`_storage_table` on rows read back: ``theta`` becomes a fixed-size list of
    float32 again (float16 values convert exactly) when all its rows have one size (units of
    different model shapes read together keep a variable list, since one column cannot hold
    two fixed sizes)."""
    if "theta" not in table.column_names:
        return table
    sizes = pc.unique(pc.drop_null(pc.list_value_length(table["theta"]))).to_pylist()
    if len(sizes) != 1:
        fields = [pa.field("theta", pa.list_(pa.float32())) if f.name == "theta" else f for f in table.schema]
        return table.cast(pa.schema(fields, metadata=table.schema.metadata))
    fields = [pa.field("theta", pa.list_(pa.float32(), sizes[0])) if f.name == "theta" else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    table = _storage_table(table)
    float_cols = [f.name for f in table.schema if pa.types.is_float32(f.type) or pa.types.is_float16(f.type)]
    if "theta" in table.column_names:
        float_cols.append("theta.list.element")
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
    """Paths of a unit's trajectory, snapshot and finals shards and its commit marker."""
    return {
        TRAJECTORIES: f"{root}/{TRAJECTORIES}/unit={unit_id}/{PART}",
        SNAPSHOTS: f"{root}/{SNAPSHOTS}/unit={unit_id}/{PART}",
        FINALS: f"{root}/{FINALS}/unit={unit_id}/{PART}",
        COMMITS: f"{root}/{COMMITS}/{unit_id}.json",
    }


def unit_tmp_prefix(root: str, unit_id: str, kind: str) -> str:
    """Where a unit's ``kind`` shard is written before it is moved into place."""
    return f"{root}/{TMP}/{unit_id}.{kind}"


def write_unit(
    fs: pafs.FileSystem, root: str, unit_id: str, result: UnitResult, *, attempt: int = 1
) -> dict:
    """Write a unit's shards, then its commit marker (atomically, last). Returns the marker."""
    paths = unit_paths(root, unit_id)
    tables = {TRAJECTORIES: trajectory_table(result), SNAPSHOTS: snapshot_table(result), FINALS: finals_table(result)}
    marker: dict = {
        "format": FORMAT_VERSION,
        "unit_id": unit_id,
        "runs": list(result.run_ids),
        "attempt": int(attempt),
        "written_at": utc_timestamp(),
        "files": {},
    }
    try:
        for kind, table in tables.items():
            payload = _parquet_bytes(table)
            tmp_prefix = unit_tmp_prefix(root, unit_id, kind)
            for prefix in (tmp_prefix, paths[kind]):  # an earlier attempt killed mid-write (and
                remove_leftovers(fs, prefix)  # the temporaries of older versions, inside the folder)
            _delete(fs, paths[kind])  # an earlier attempt's shard: its space first (a full disk)
            write_atomic(fs, paths[kind], payload, tmp_prefix=tmp_prefix)
            marker["files"][kind] = {
                "path": paths[kind][len(root) + 1 :],
                "rows": table.num_rows,
                "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
        marker["rows"] = marker["files"][TRAJECTORIES]["rows"]
        write_atomic(fs, paths[COMMITS], json.dumps(marker, indent=1).encode())  # last: the unit now counts
    except BaseException:
        # a failed attempt leaves nothing of itself (on a full disk its shards would make
        # every retry fail too); without its marker nothing counted them anyway
        for kind in tables:
            _delete(fs, paths[kind])
        raise
    return marker


def _delete(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except OSError:  # absent, or nothing more to do on a failing disk
        pass


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
    for kind in (TRAJECTORIES, SNAPSHOTS, FINALS):
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
    try:
        dataset = ds.dataset(paths, filesystem=fs, format="parquet")
        # units written before a column existed read it as nulls
        missing = [c for c in columns or [] if c not in dataset.schema.names]
        scan = dataset.to_table(columns=[c for c in columns if c not in missing] if columns else None,
                                filter=filter)
    except (OSError, pa.ArrowInvalid) as exc:
        raise _unreadable(fs, root, kind, list(unit_ids), exc) from None
    for c in missing:
        scan = scan.append_column(c, pa.nulls(scan.num_rows, pa.float32()))
    return _logical_table(scan)


def _unreadable(fs: pafs.FileSystem, root: str, kind: str, unit_ids: list[str], exc: Exception) -> Exception:
    """The unit whose ``kind`` shard made a read of many fail, found by reading them one by
    one (only after a failure); the original error when none fails alone."""
    for u in unit_ids:
        try:
            with fs.open_input_file(unit_paths(root, u)[kind]) as f:
                pq.read_table(f)
        except (OSError, pa.ArrowInvalid) as one:
            cause = (str(one).splitlines() or [type(one).__name__])[0][:200]
            return UnreadableShard(u, kind, f"{type(one).__name__}: {cause}")
    return exc


def read_snapshots(fs: pafs.FileSystem, root: str, unit_ids, columns: list[str] | None = None,
                   filter=None) -> pa.Table:
    """Snapshot rows (``run_id``, ``step``, ``test_loss``, ``test_acc``, ``theta``) of the
    given committed units, whichever format wrote them: format 1 kept them as the trajectory
    rows whose ``theta`` is not null (its held-out metrics read as nulls)."""
    current, older = [], []
    for u in unit_ids:
        marker = read_marker(fs, root, u) or {}
        (current if SNAPSHOTS in marker.get("files", {}) else older).append(u)
    parts = []
    if current:
        parts.append(read_units(fs, root, SNAPSHOTS, current, columns, filter))
    if older:
        has_theta = pc.field("theta").is_valid()
        parts.append(read_units(fs, root, TRAJECTORIES, older, columns or snapshot_schema(0).names,
                                has_theta if filter is None else filter & has_theta))
    if not parts:
        raise ShardError(f"no committed units to read under {root}/{SNAPSHOTS}")
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
