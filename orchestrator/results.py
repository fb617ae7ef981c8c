"""What a reduction leaves in the store, read back without Ray or torch: each analysis's
tables with the columns of its sweep-wide step, and the sweep's pictures.
``doodl reduce`` writes these (:mod:`doodl.orchestrator.reduce`); ``doodl sync``, ``report`` and
the MLflow view read them."""

from __future__ import annotations

from doodl.analysis.registry import Analysis, REGISTRY


def sweep_columns(analysis: Analysis, groups_table) -> dict[str, dict]:
    """Group id -> the columns an analysis's sweep-wide step gave it (Koopman's class), from
    its consolidated groups table; empty for an analysis without one."""
    if not analysis.sweep_columns or groups_table.num_rows == 0:
        return {}
    ids = groups_table.column("group_id").to_pylist()
    columns = {c: groups_table.column(c).to_pylist() for c in analysis.sweep_columns}
    return {gid: {c: values[i] for c, values in columns.items()} for i, gid in enumerate(ids)}


def sweep_pictures_in_store(stores) -> dict[str, str]:
    """The sweep-wide pictures already in the store (name -> path)."""
    import pyarrow.fs as pafs

    rstore = next(iter(stores.values()), None)
    if rstore is None:
        return {}
    infos = rstore.fs.get_file_info(pafs.FileSelector(rstore.plots_dir, allow_not_found=True))
    return {i.base_name: i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".png")}


def stored_tables(rstore):
    """An analysis's all-groups tables (groups, runs) rebuilt from its parts in the store.
    The columns of a sweep-wide step (Koopman's classes) are read back from the last
    consolidated table (``doodl reduce`` works them out; nothing here recomputes an analysis)."""
    import pyarrow.parquet as pq

    columns = REGISTRY[rstore.name].sweep_columns
    if not columns:
        return rstore.consolidate()
    try:
        with rstore.fs.open_input_file(rstore.table_paths()[0]) as f:
            table = pq.read_table(f, columns=["group_id", *columns])
    except FileNotFoundError:
        return rstore.consolidate({c: {} for c in columns})
    ids = table.column("group_id").to_pylist()
    return rstore.consolidate({c: {g: v for g, v in zip(ids, table.column(c).to_pylist()) if v is not None}
                               for c in columns})
