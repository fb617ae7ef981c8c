"""Torn writes: every kind is detected, reported by `doodl status`, never read by
`doodl reduce` (the unit's groups wait) and retrained by the next `doodl sweep`."""

from __future__ import annotations

import json
import shutil

import pytest

from doodl.orchestrator.store import SweepStore
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec
from doodl.workers import shards


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, ray_session):
    """A finished sweep (8 variants in 3 units; 4 groups of 2 seeds), copied per test."""
    tmp = tmp_path_factory.mktemp("torn")
    # the reduce below checks which groups wait, not the Morse graphs: cheap settings
    spec = write_spec(tmp, tiny_spec_dict(name="torn", resources={"variants_per_unit": 3, "num_actors": 2},
                                          reduce=FAST_REDUCE))
    code, out, err = run_cli(["sweep", str(spec), "--store", str(tmp / "store"), "--no-progress",
                             "--tracking-uri", f"sqlite:///{tmp / 'm.db'}"])
    assert code == 0, err
    return tmp, spec


def _tear(root: str, unit: str, kind: str) -> None:
    paths = shards.unit_paths(root, unit)
    shard = paths[shards.TRAJECTORIES]
    if kind == "no-marker":  # the shards were written, the driver died before the marker
        import os

        os.remove(paths[shards.COMMITS])
    elif kind == "row-count":
        marker = json.loads(open(paths[shards.COMMITS]).read())
        marker["files"][shards.TRAJECTORIES]["rows"] += 1
        open(paths[shards.COMMITS], "w").write(json.dumps(marker))
    elif kind == "checksum":  # same length, one byte changed in the middle
        data = bytearray(open(shard, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(shard, "wb").write(bytes(data))
    elif kind == "truncated":
        data = open(shard, "rb").read()
        open(shard, "wb").write(data[: len(data) // 3])


@pytest.mark.parametrize("kind, problem, verify", [
    ("no-marker", "without a commit marker", []),
    ("truncated", "bytes, marker says", []),  # sizes: found without downloading a shard
    ("row-count", "marker says", ["--verify"]),  # same sizes: found by the full check
    ("checksum", "checksum mismatch", ["--verify"]),
])
def test_torn_unit_is_reported_skipped_by_reduce_and_retrained(pristine, tmp_path, kind, problem, verify):
    src, spec = pristine
    shutil.copytree(src / "store", tmp_path / "store")
    store_args = ["--store", str(tmp_path / "store")]
    store = SweepStore(str(tmp_path / "store"), "torn")
    variants = store.read_variants().to_pylist()
    unit = variants[0]["unit_id"]
    _tear(store.root, unit, kind)
    n_groups_hit = len({v["group_id"] for v in variants if v["unit_id"] == unit})

    if verify:  # the default check trusts a shard of the recorded size
        code, out, _ = run_cli(["status", "torn", *store_args])
        assert code == 0 and f"unit {unit}: " not in out and "8 ok of 8 variants" in out
    code, out, _ = run_cli(["status", "torn", *store_args, *verify])
    n_torn = sum(v["unit_id"] == unit for v in variants)
    assert code == 0 and f"{8 - n_torn} ok, {n_torn} torn of 8 variants" in out
    assert f"unit {unit}: " in out and problem in out

    db = f"sqlite:///{tmp_path / 'm.db'}"
    if not verify:  # a unit the default check finds torn is never read
        code, out, err = run_cli(["reduce", "torn", *store_args, "--tracking-uri", db, "--no-progress",
                                  "--only", "morse"])
        assert code == 0, err
        assert f"waiting for training {n_groups_hit}" in out
        parts = {p.stem for p in (tmp_path / "store" / "torn" / "reduction" / "morse" / "groups").glob("*.parquet")}
        assert not parts & {v["group_id"] for v in variants if v["unit_id"] == unit}

    code, out, err = run_cli(["sweep", str(spec), *store_args, "--tracking-uri", db, "--no-progress", *verify])
    assert code == 0, err
    assert "trained 1, already done 2, failed 0" in out and "retraining it" in err
    assert store.unit_states([unit])[unit].state == "committed"
