"""The reduction's part of the store: ``SWEEP/reduction/``.

::

    reduction/morse/groups/GROUP_ID.parquet   one row: a group's Morse graph (per-group, resumable)
    reduction/morse/runs/GROUP_ID.parquet     one row per run of the group: its final-point verdict
    reduction/plots/GROUP_ID/morse_graph.{dot,svg,png}, morse_sets.png
    reduction/morse.parquet                   all groups (rebuilt from the parts after each reduce)
    reduction/morse_runs.parquet              all runs

Each part is written to a temporary name and moved into place, so a part that exists is
whole; a group counts as reduced once its group part exists without an error.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

REDUCTION = "reduction"

MORSE_GROUP_SCHEMA = pa.schema([
    ("group_id", pa.string()),
    ("n_runs", pa.int32()),
    ("error", pa.string()),
    ("n_morse_sets", pa.int32()),
    ("n_attractors", pa.int32()),
    ("n_nontrivial", pa.int32()),
    ("fidelity", pa.float64()),
    ("nodes", pa.list_(pa.int32())),
    ("edges", pa.list_(pa.list_(pa.int32()))),
    ("attractors", pa.list_(pa.int32())),
    ("conley_strings", pa.list_(pa.list_(pa.string()))),
    ("conley_ranks", pa.list_(pa.list_(pa.int32()))),
    ("n_boxes", pa.list_(pa.int32())),
    ("boxes", pa.list_(pa.list_(pa.float64()))),  # per node: its boxes' bounds, flattened
    ("lower", pa.list_(pa.float64())),
    ("upper", pa.list_(pa.float64())),
    ("explained_variance", pa.list_(pa.float64())),
    ("n_pairs", pa.int32()),
    ("kernel", pa.string()),
    ("dot", pa.string()),
    ("run_ids", pa.list_(pa.string())),
    ("final_nodes", pa.list_(pa.int32())),
    ("final_in_attractor", pa.list_(pa.bool_())),
    ("project_s", pa.float64()),
    ("fit_s", pa.float64()),
    ("morse_s", pa.float64()),
    ("total_s", pa.float64()),
    ("seconds", pa.float64()),
    ("param_dims", pa.int32()),
    ("param_tau", pa.int32()),
    ("param_subdiv_min", pa.int32()),
    ("param_subdiv_max", pa.int32()),
    ("param_padding", pa.float64()),
    ("param_far_field", pa.float64()),
    ("param_max_pairs", pa.int32()),
])

MORSE_RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("group_id", pa.string()),
    ("status", pa.string()),  # ok | diverged | error (the group's reduction failed)
    ("final_point", pa.list_(pa.float64())),
    ("final_node", pa.int32()),  # -1: the final point lies in no Morse set
    ("in_attractor", pa.bool_()),
])


class ReductionStore:
    """Reads and writes ``SWEEP/reduction`` through the sweep store's filesystem."""

    def __init__(self, fs: pafs.FileSystem, sweep_root: str):
        self.fs = fs
        self.root = f"{sweep_root}/{REDUCTION}"

    def _write(self, path: str, payload: bytes) -> None:
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(payload)
        self.fs.move(tmp, path)

    def _write_table(self, path: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self._write(path, sink.getvalue().to_pybytes())

    def group_part(self, group_id: str) -> str:
        return f"{self.root}/morse/groups/{group_id}.parquet"

    def write_group(self, row: dict, runs: list[dict], pictures: dict[str, bytes]) -> dict[str, str]:
        """Write a group's pictures, its runs and then its row (last: it marks the group done).

        Returns the store paths of the pictures by file name.
        """
        gid = row["group_id"]
        paths = {}
        for name, payload in pictures.items():
            paths[name] = f"{self.root}/plots/{gid}/{name}"
            self._write(paths[name], payload)
        self._write_table(f"{self.root}/morse/runs/{gid}.parquet", pa.Table.from_pylist(runs, MORSE_RUN_SCHEMA))
        full = {name: row.get(name) for name in MORSE_GROUP_SCHEMA.names}
        self._write_table(self.group_part(gid), pa.Table.from_pylist([full], MORSE_GROUP_SCHEMA))
        return paths

    def reduced_groups(self) -> dict[str, dict]:
        """Rows of the groups already reduced (errors included), by group id."""
        table = self._read_parts("morse/groups", MORSE_GROUP_SCHEMA)
        return {r["group_id"]: r for r in table.to_pylist()}

    def _read_parts(self, sub: str, schema: pa.Schema) -> pa.Table:
        selector = pafs.FileSelector(f"{self.root}/{sub}", allow_not_found=True)
        files = [i.path for i in self.fs.get_file_info(selector)
                 if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
        if not files:
            return schema.empty_table()
        return ds.dataset(files, filesystem=self.fs, format="parquet", schema=schema).to_table()

    def consolidate(self) -> tuple[pa.Table, pa.Table]:
        """Rebuild ``morse.parquet`` and ``morse_runs.parquet`` from the parts."""
        groups = self._read_parts("morse/groups", MORSE_GROUP_SCHEMA).sort_by("group_id")
        runs = self._read_parts("morse/runs", MORSE_RUN_SCHEMA).sort_by([("group_id", "ascending"),
                                                                          ("run_id", "ascending")])
        self._write_table(f"{self.root}/morse.parquet", groups)
        self._write_table(f"{self.root}/morse_runs.parquet", runs)
        return groups, runs
