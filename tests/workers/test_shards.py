"""The shard format: rows per step, theta snapshots, commit markers that catch torn writes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet
import pytest

from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.engine import snapshot_steps, train_unit

BASE = VariantConfig(dataset="iris", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                     model="mlp", width=5, depth=1, optimizer="sgd", lr=0.05, batch_size=16,
                     weight_decay=0.0, steps=17, record_every=4)


@pytest.fixture(scope="module")
def unit():
    cfgs = [dataclasses.replace(BASE, seed=s, label_noise=n) for s, n in [(0, 0.0), (1, 0.1), (2, 0.2)]]
    return cfgs, train_unit(cfgs)


def test_rows_per_step_and_snapshots_at_recorded_steps(tmp_path, unit):
    cfgs, result = unit
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    marker = shards.write_unit(fs, root, "u1", result, attempt=2)
    assert marker["rows"] == 3 * (17 + 1) and marker["attempt"] == 2 and marker["format"] == 2
    assert marker["files"]["snapshots"]["rows"] == 3 * len(snapshot_steps(17, 4))
    table = shards.read_units(fs, root, "trajectories", ["u1"])
    assert "theta" not in table.column_names and table.schema.field("step").type == pa.int32()
    snaps = shards.read_snapshots(fs, root, ["u1"])
    assert snaps.schema.field("theta").type == pa.list_(pa.float32(), 5 * 4 + 5 + 5 * 3 + 3)
    for v, cfg in enumerate(cfgs):
        rows = table.filter(pa.compute.equal(table["run_id"], cfg.run_id)).sort_by("step")
        assert rows["step"].to_pylist() == list(range(18))
        assert set(rows["status"].to_pylist()) == {"ok"}
        np.testing.assert_array_equal(rows["train_loss"].to_numpy(), result.loss[v])
        recorded = snaps.filter(pa.compute.equal(snaps["run_id"], cfg.run_id)).sort_by("step")
        assert recorded["step"].to_pylist() == [0, 4, 8, 12, 16, 17] == list(snapshot_steps(17, 4))
        np.testing.assert_array_equal(np.stack(recorded["theta"].to_numpy(zero_copy_only=False)),
                                      result.snapshots[:, v])
        np.testing.assert_array_equal(recorded["test_acc"].to_numpy(), result.test_acc[:, v])
    # a column a unit was written without (an older doodl) reads as nulls
    old = shards.read_units(fs, root, "trajectories", ["u1"], ["run_id", "no_such_metric"])
    assert old["no_such_metric"].null_count == old.num_rows
    finals = shards.read_units(fs, root, "finals", ["u1"])
    last = snaps.filter(pa.compute.equal(snaps["step"], 17)).sort_by("run_id")
    fin = finals.sort_by("run_id")
    np.testing.assert_array_equal(np.stack(last["theta"].to_numpy(zero_copy_only=False)),
                                  np.stack(fin["theta"].to_numpy(zero_copy_only=False)))


def test_snapshots_of_format_1_units_are_read_from_their_trajectories(tmp_path, unit):
    """A unit written before snapshots had rows of their own (theta a mostly-null trajectory
    column) reads back as the same snapshot rows, held-out metrics as nulls."""
    cfgs, result = unit
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    shards.write_unit(fs, root, "new", result)
    snaps = shards.read_snapshots(fs, root, ["new"]).sort_by([("run_id", "ascending"), ("step", "ascending")])
    # rewrite it as format 1 did: theta on the trajectory rows, no snapshots shard
    traj = shards.read_units(fs, root, "trajectories", ["new"])
    by_key = {(r, s): t for r, s, t in zip(snaps["run_id"].to_pylist(), snaps["step"].to_pylist(),
                                           snaps["theta"].to_pylist())}
    theta = [by_key.get(k) for k in zip(traj["run_id"].to_pylist(), traj["step"].to_pylist())]
    old = traj.append_column("theta", pa.array(theta, pa.list_(pa.float32())))
    paths = shards.unit_paths(root, "old")
    fs.create_dir(paths["trajectories"].rsplit("/", 1)[0])
    pa.parquet.write_table(old, paths["trajectories"])
    fs.create_dir(paths["_commits"].rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(paths["_commits"]) as f:
        f.write(json.dumps({"format": 1, "files": {"trajectories": {"path": "x", "rows": old.num_rows}}}).encode())
    back = shards.read_snapshots(fs, root, ["old"]).sort_by([("run_id", "ascending"), ("step", "ascending")])
    assert back["step"].to_pylist() == snaps["step"].to_pylist()
    assert back["theta"].to_pylist() == snaps["theta"].to_pylist()
    assert back["test_acc"].null_count == back.num_rows


def test_projection_records_seeded_low_dimensional_theta(tmp_path):
    cfgs = [dataclasses.replace(BASE, seed=s, projection_dim=3, projection_seed=9) for s in range(2)]
    result = train_unit(cfgs)
    assert result.snapshots.shape == (6, 2, 3)
    assert result.final_params.shape == (2, 43)  # finals keep the full parameters
    again = train_unit(cfgs)
    np.testing.assert_array_equal(result.snapshots, again.snapshots)


def test_commit_marker_catches_torn_units(tmp_path, unit):
    _, result = unit
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    for u in ("good", "truncated", "rowcount", "nomarker"):
        shards.write_unit(fs, root, u, result)
    paths = shards.unit_paths(root, "truncated")
    data = open(paths["trajectories"], "rb").read()
    open(paths["trajectories"], "wb").write(data[: len(data) // 2])
    mpath = shards.unit_paths(root, "rowcount")["_commits"]
    marker = json.load(open(mpath))
    marker["files"]["trajectories"]["rows"] += 1
    json.dump(marker, open(mpath, "w"))
    (tmp_path / "sweep" / "_commits" / "nomarker.json").unlink()

    found = shards.committed_units(fs, root, verify="full")
    assert set(found) == {"good", "truncated", "rowcount"}
    assert found["good"].problem is None
    assert "checksum mismatch" in found["truncated"].problem
    assert "marker says" in found["rowcount"].problem


def test_size_checks_find_torn_shards_without_reading_them(tmp_path, unit, monkeypatch):
    """What a resume and `doodl status` check: sizes from one listing, no shard downloaded.
    A same-size corruption is left to the full check (`doodl status --verify`)."""
    _, result = unit
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    for u in ("good", "truncated", "flipped", "missing"):
        shards.write_unit(fs, root, u, result)
    paths = {u: shards.unit_paths(root, u)["trajectories"] for u in ("truncated", "flipped", "missing")}
    data = open(paths["truncated"], "rb").read()
    open(paths["truncated"], "wb").write(data[:-10])
    data = bytearray(open(paths["flipped"], "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(paths["flipped"], "wb").write(bytes(data))
    (tmp_path / "sweep" / "trajectories" / "unit=missing" / "part-0.parquet").unlink()

    def no_download(*args, **kwargs):
        raise AssertionError("a size check downloaded a shard")

    with monkeypatch.context() as patch:
        patch.setattr(shards, "_check_full", no_download)  # the one place that reads a shard's bytes
        found = shards.committed_units(fs, root, verify="size")
    assert found["good"].problem is None and found["flipped"].problem is None
    assert f"bytes, marker says {len(data)}" in found["truncated"].problem
    assert "shard missing" in found["missing"].problem
    full = shards.committed_units(fs, root, verify="full")
    assert "checksum mismatch" in full["flipped"].problem and full["good"].problem is None
    with pytest.raises(ValueError, match="verify level"):
        shards.verify_unit(fs, root, found["good"].marker, "sizes")


def test_a_marker_without_sizes_is_checked_in_full(tmp_path, unit):
    """Stores written before markers recorded sizes stay correctly checked."""
    _, result = unit
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    marker = shards.write_unit(fs, root, "old", result)
    for meta in marker["files"].values():
        del meta["bytes"]
    path = shards.unit_paths(root, "old")["trajectories"]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    assert "checksum mismatch" in shards.verify_unit(fs, root, marker, "size")


def test_float16_snapshots_take_half_the_bytes_and_read_back_exactly(tmp_path):
    cfgs = [dataclasses.replace(BASE, seed=s, width=64) for s in range(3)]
    wide = train_unit(cfgs)
    half_cfgs = [dataclasses.replace(c, record_dtype="float16") for c in cfgs]
    half = train_unit(half_cfgs)
    assert half.snapshots.dtype == np.float16
    np.testing.assert_array_equal(half.final_params, wide.final_params)  # training itself is unchanged
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    m32, m16 = shards.write_unit(fs, root, "u32", wide), shards.write_unit(fs, root, "u16", half)
    assert m16["files"]["snapshots"]["bytes"] < 0.6 * m32["files"]["snapshots"]["bytes"]
    back = shards.read_snapshots(fs, root, ["u16"]).sort_by([("run_id", "ascending"), ("step", "ascending")])
    assert back.schema.field("theta").type == pa.list_(pa.float32(), half.snapshots.shape[2])
    order = np.argsort([c.run_id for c in half_cfgs], kind="stable")
    expected = np.concatenate([half.snapshots[:, v].astype(np.float32) for v in order])
    np.testing.assert_array_equal(np.stack(back["theta"].to_numpy(zero_copy_only=False)), expected)
