"""A writer killed mid-write never breaks a reader of the store's Parquet dataset folders:
pandas, ``pyarrow.dataset`` (and Polars, where installed) read every folder whatever a killed
write left in it, and the next sweep sweeps a retrained unit's leftovers away."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pyarrow.dataset as ds
import pytest

from doodl.orchestrator.store import SweepStore
from doodl.workers import shards
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec

# a process that writes as the store does (a unit's shards, a group's reduction parts) and
# dies (os._exit: no cleanup runs) halfway through its Nth file write
KILLED_WRITER = textwrap.dedent("""
    import os, sys

    import numpy as np
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from doodl.orchestrator.store.reduction import ReductionStore
    from doodl.workers import shards
    from doodl.workers.engine import UnitResult

    what, root, ident, die_at, pristine = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    local = pafs.LocalFileSystem()
    writes = []

    class Dies:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            writes.append(1)
            if len(writes) < die_at:
                return self.stream.write(data)
            self.stream.write(data[: len(data) // 2])
            self.stream.flush()
            os._exit(9)

    class Killed:  # the local filesystem, but the writer dies in the middle of a write
        type_name = local.type_name

        def __getattr__(self, name):
            return getattr(local, name)

        def open_output_stream(self, p):
            return Dies(local.open_output_stream(p))

    if what == "unit":  # another attempt at a committed unit, of its shapes (from an intact copy)
        paths = shards.unit_paths(pristine, ident)
        finals = pq.read_table(paths[shards.FINALS]).to_pylist()
        snaps = pq.read_table(paths[shards.SNAPSHOTS]).to_pylist()
        V, T, S, P, D = len(finals), 3, 2, len(finals[0]["theta"]), len(snaps[0]["theta"])
        z = np.zeros((V, T + 1), np.float32)
        result = UnitResult([r["run_id"] for r in finals], z, z, z, z, z.astype(np.int32),
                            np.full(V, T), ["ok"] * V, np.array([0, T]), np.zeros((S, V, D), np.float32),
                            np.zeros((S, V), np.float32), np.zeros((S, V), np.float32),
                            np.zeros((V, P), np.float32),
                            {k: np.zeros(V, np.float32) for k in shards.FINAL_METRICS})
        shards.write_unit(Killed(), root, ident, result, attempt=2)
    else:  # a group reduced again
        rstore = ReductionStore(Killed(), root, "morse")
        row = pq.read_table(rstore.group_part(ident)).to_pylist()[0]
        runs = pq.read_table(rstore.run_part(ident)).to_pylist()
        rstore.write_group(row, runs, {})
    sys.exit("the writer was never killed")
""")


@pytest.fixture(scope="module")
def store(tmp_path_factory, ray_session):
    """A trained and reduced sweep (8 variants in 3 units, Morse reduction)."""
    tmp = tmp_path_factory.mktemp("killed")
    spec = write_spec(tmp, tiny_spec_dict(name="killed", reduce=FAST_REDUCE))
    db = f"sqlite:///{tmp / 'm.db'}"
    store_args = ["--store", str(tmp / "store")]
    code, _, err = run_cli(["sweep", str(spec), *store_args, "--no-progress", "--tracking-uri", db])
    assert code == 0, err
    code, _, err = run_cli(["reduce", "killed", *store_args, "--no-progress", "--tracking-uri", db,
                            "--only", "morse"])
    assert code == 0, err
    return tmp, spec, SweepStore(str(tmp / "store"), "killed")


def _dataset_folders(store: SweepStore) -> list[str]:
    """Every Parquet dataset folder of the sweep: the unit shards' and the reduction parts'."""
    layout = store.layout
    return [f"{store.root}/{kind}" for kind in (shards.TRAJECTORIES, shards.SNAPSHOTS, shards.FINALS)] + [
        layout.reduction_parts_dir("morse", kind) for kind in ("groups", "runs")]


def _read_everywhere(folder: str) -> None:
    assert len(pd.read_parquet(folder)) > 0, folder
    assert ds.dataset(folder, format="parquet", partitioning="hive").to_table().num_rows > 0, folder
    try:
        import polars as pl
    except ImportError:  # not a dependency: checked where installed
        return
    assert pl.read_parquet(folder).height > 0, folder


def test_every_dataset_folder_reads_after_a_writer_is_killed_at_each_write_point(store, tmp_path):
    import shutil

    shutil.copytree(store[0] / "store", tmp_path / "store")
    pristine, store = store[2].root, SweepStore(str(tmp_path / "store"), "killed")
    variants = store.read_variants().to_pylist()
    unit, group = variants[0]["unit_id"], variants[0]["group_id"]
    # the unit's trajectories, snapshots, finals; the group's runs part, then its group part
    points = [("unit", unit, n) for n in (1, 2, 3)] + [("group", group, n) for n in (1, 2)]
    for what, ident, n in points:  # each writer killed halfway: its temporary stays where it put it
        done = subprocess.run([sys.executable, "-c", KILLED_WRITER, what, store.root, ident, str(n), pristine],
                              capture_output=True, text=True)
        assert done.returncode == 9, done.stderr
    for folder in _dataset_folders(store):
        _read_everywhere(folder)
    assert [p for p in os.listdir(f"{store.root}/{shards.TMP}")]  # the leftovers are there, outside


def test_the_next_sweep_sweeps_a_killed_units_leftovers(store, tmp_path):
    """A unit whose writer died before its marker (its temporary left in ``_tmp``, and one of
    the older naming inside its folder) is retrained, and no leftover of it stays."""
    import shutil

    src, spec, _ = store
    shutil.copytree(src / "store", tmp_path / "store")
    copy = SweepStore(str(tmp_path / "store"), "killed")
    unit = copy.read_variants().column("unit_id")[0].as_py()
    files = copy.layout.unit_files(unit)
    os.remove(files[shards.COMMITS])
    os.makedirs(f"{copy.root}/{shards.TMP}", exist_ok=True)
    for leftover in (f"{files[shards.FINALS]}.tmp-0123456789abcdef",
                     f"{shards.unit_tmp_prefix(copy.root, unit, shards.FINALS)}.tmp-0123456789abcdef"):
        with open(leftover, "wb") as f:
            f.write(open(files[shards.FINALS], "rb").read()[:100])

    code, out, err = run_cli(["sweep", str(spec), "--store", str(tmp_path / "store"), "--no-progress",
                              "--tracking-uri", f"sqlite:///{src / 'm.db'}"])  # it holds the other runs
    assert code == 0, err
    assert "trained 1, already done 2" in out
    for kind in (shards.TRAJECTORIES, shards.SNAPSHOTS, shards.FINALS):
        folder = os.path.dirname(files[kind])
        assert os.listdir(folder) == [shards.PART], folder
    assert os.listdir(f"{copy.root}/{shards.TMP}") == []
    for folder in _dataset_folders(copy):
        _read_everywhere(folder)
