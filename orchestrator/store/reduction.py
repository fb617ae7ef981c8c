"""The reduction's part of the store: ``SWEEP/reduction/``, one set of files per analysis
(``morse``, ``taxonomy``, ``koopman``, ``ntk``)::

    reduction/NAME/groups/GROUP_ID.parquet    one row: the group's results (per group, resumable)
    reduction/NAME/runs/GROUP_ID.parquet      one row per run of the group
    reduction/NAME.parquet                    all groups (rebuilt from the parts after each reduce)
    reduction/NAME_runs.parquet               all runs
    reduction/koopman_pairs.parquet           the conjugacy verdict of every pair of groups, with its numbers
    reduction/plots/GROUP_ID/...              a group's pictures (morse_graph.{png,dot}, morse_sets.png,
                                              connection_matrix.png, ntk.png)
    reduction/plots/*.png                     sweep-wide pictures (phase diagram, metric heatmaps,
                                              koopman_classes.png)

Each part is written to a temporary name and moved into place, so a part that exists is
whole; a group counts as reduced once its group part exists without an error. The paths are
:class:`.layout.SweepLayout`'s.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from doodl.analysis.registry import REGISTRY
from doodl.orchestrator.store.layout import GROUPS, PARQUET, RUNS, SweepLayout
from doodl.workers.store_files import remove_leftovers, write_atomic

class ReductionStore:
    """Reads and writes one analysis's files in ``SWEEP/reduction`` (any ``pyarrow.fs``)."""

    def __init__(self, fs: pafs.FileSystem, sweep_root: str, name: str = "morse"):
        self.fs = fs
        self.layout = SweepLayout(sweep_root)
        self.root = self.layout.reduction_dir
        self.name = name
        self.group_schema, self.run_schema = REGISTRY[name].schemas

    def _write(self, path: str, payload: bytes) -> None:
        write_atomic(self.fs, path, payload)

    def _write_table(self, path: str, table: pa.Table, tmp_prefix: str | None = None) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        write_atomic(self.fs, path, sink.getvalue().to_pybytes(), tmp_prefix=tmp_prefix)

    def _write_part(self, kind: str, group_id: str, table: pa.Table) -> None:
        """A group's part, its temporary outside the parts' dataset folder; a group is reduced
        by one task at a time, so an earlier attempt's leftovers are swept first."""
        tmp_prefix = self.layout.reduction_part_tmp(self.name, kind, group_id)
        remove_leftovers(self.fs, tmp_prefix)
        self._write_table(self.layout.reduction_part(self.name, kind, group_id), table, tmp_prefix)

    def group_part(self, group_id: str) -> str:
        return self.layout.reduction_part(self.name, GROUPS, group_id)

    def run_part(self, group_id: str) -> str:
        return self.layout.reduction_part(self.name, RUNS, group_id)

    @property
    def plots_dir(self) -> str:
        """``reduction/plots``: the sweep-wide pictures, and a folder of each group's."""
        return self.layout.plots_dir

    def picture_path(self, name: str, group_id: str | None = None) -> str:
        """A sweep-wide picture, or with ``group_id`` one of that group's."""
        return self.layout.picture(name, group_id)

    def table_path(self, name: str) -> str:
        """A sweep-wide table ``reduction/NAME.parquet`` (e.g. Koopman's ``koopman_pairs``)."""
        return self.layout.reduction_table(name)

    def write_file(self, name: str, payload: bytes) -> str:
        """A sweep-wide file (a picture) under ``reduction/plots``; returns its path."""
        path = self.picture_path(name)
        self._write(path, payload)
        return path

    def write_group(self, row: dict, runs: list[dict], pictures: dict[str, bytes]) -> dict[str, str]:
        """Write a group's pictures, its runs and then its row (last: it marks the group done).

        Returns the store paths of the pictures by file name.
        """
        gid = row["group_id"]
        paths = {}
        for name, payload in pictures.items():
            paths[name] = self.picture_path(name, gid)
            self._write(paths[name], payload)
        self._write_part(RUNS, gid, pa.Table.from_pylist(runs, self.run_schema))
        full = {name: row.get(name) for name in self.group_schema.names}
        self._write_part(GROUPS, gid, pa.Table.from_pylist([full], self.group_schema))
        return paths

    def reduced_groups(self) -> dict[str, dict]:
        """Rows of the groups already reduced (errors included), by group id."""
        table = self._read_parts(GROUPS, self.group_schema)
        return {r["group_id"]: r for r in table.to_pylist()}

    def _read_parts(self, kind: str, schema: pa.Schema) -> pa.Table:
        selector = pafs.FileSelector(self.layout.reduction_parts_dir(self.name, kind), allow_not_found=True)
        files = [i.path for i in self.fs.get_file_info(selector)
                 if i.type == pafs.FileType.File and i.path.endswith(PARQUET)]
        if not files:
            return schema.empty_table()
        return ds.dataset(files, filesystem=self.fs, format="parquet", schema=schema).to_table()

    def table_paths(self) -> list[str]:
        """The analysis's all-groups and all-runs tables."""
        return [self.layout.reduction_table(self.name), self.layout.reduction_runs_table(self.name)]

    def write_table(self, name: str, rows: list[dict], schema: pa.Schema) -> str:
        """A sweep-wide table ``reduction/NAME.parquet`` (e.g. Koopman's pairs); returns its path."""
        path = self.table_path(name)
        self._write_table(path, pa.Table.from_pylist(rows, schema))
        return path

    def consolidate(self, group_columns: dict[str, dict] | None = None) -> tuple[pa.Table, pa.Table]:
        """Rebuild ``NAME.parquet`` and ``NAME_runs.parquet`` from the parts; ``group_columns``
        (column -> group id -> value) fills sweep-wide columns the parts leave empty."""
        groups = self._read_parts(GROUPS, self.group_schema).sort_by("group_id")
        for column, values in (group_columns or {}).items():
            filled = pa.array([values.get(g) for g in groups.column("group_id").to_pylist()],
                              self.group_schema.field(column).type)
            groups = groups.set_column(groups.schema.get_field_index(column), column, filled)
        runs = self._read_parts(RUNS, self.run_schema).sort_by([("group_id", "ascending"),
                                                                                ("run_id", "ascending")])
        paths = self.table_paths()
        self._write_table(paths[0], groups)
        self._write_table(paths[1], runs)
        return groups, runs
