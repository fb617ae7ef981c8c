"""A committed shard whose bytes rotted (its size unchanged, so only reading finds it;
issue 25): ``doodl reduce`` names the unit, marks it torn and finishes the other groups, and
a plain ``doodl sweep`` retrains it."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict, write_spec
from tests.orchestrator.stores import train_in_process


def test_reduce_names_a_rotten_unit_marks_it_torn_and_a_plain_sweep_retrains_it(tmp_path, ray_session):
    spec = tiny_spec_dict("rot", resources={"variants_per_unit": 2, "num_actors": 1}, reduce=FAST_REDUCE)
    path = write_spec(tmp_path, spec)
    store_uri, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'm.db'}"
    store = train_in_process(store_uri, spec)
    variants = store.read_variants().to_pylist()
    rotten = variants[0]["unit_id"]
    shard = tmp_path / "store" / "rot" / "finals" / f"unit={rotten}" / "part-0.parquet"
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])  # same size, other bytes
    shard.write_bytes(bytes(data))
    n_groups = len({v["group_id"] for v in variants})
    hit = {v["group_id"] for v in variants if v["unit_id"] == rotten}

    code, out, err = run_cli(["reduce", "rot", "--store", store_uri, "--tracking-uri", db, "--no-progress",
                              "--only", "taxonomy"])
    text = " ".join(err.split())
    assert f"unit {rotten}: its finals shard cannot be read" in text and "marked torn" in text
    assert "Traceback" not in err
    assert f"taxonomy: reduced {n_groups - len(hit)}, already done 0, failed 0" in out
    assert code == 0 and f"waiting for training {len(hit)}" in out
    assert store.unit_states([rotten])[rotten].state == "torn"

    code, out, err = run_cli(["sweep", str(path), "--store", store_uri, "--tracking-uri", db, "--no-progress"])
    assert code == 0, err
    assert "trained 1," in out
    assert store.unit_states([rotten])[rotten].state == "committed"


@pytest.mark.slow  # in the nightly run (.ci/nightly): the reduction path is tested in the default run
def test_a_group_task_that_meets_a_rotten_shard_marks_its_unit_torn(tmp_path, ray_session):
    """Without MLflow nothing reads the shards before the tasks: the group's task finds it."""
    from doodl.orchestrator.reduce import run_reduce

    spec = tiny_spec_dict("rot2", resources={"variants_per_unit": 2, "num_actors": 1}, reduce=FAST_REDUCE)
    store = train_in_process(str(tmp_path / "store"), spec)
    variants = store.read_variants().to_pylist()
    rotten = variants[0]["unit_id"]
    hit = {v["group_id"] for v in variants if v["unit_id"] == rotten}
    shard = tmp_path / "store" / "rot2" / "finals" / f"unit={rotten}" / "part-0.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    shard.write_bytes(bytes(data))

    outcome = run_reduce(store, tracking_uri=None, analyses=("taxonomy",), show_progress=False)
    failed = outcome.counts["taxonomy"].failed
    assert set(failed) == hit and outcome.counts["taxonomy"].reduced == len({v["group_id"] for v in variants}) - len(hit)
    assert all(e.startswith(f"UnreadableShard: unit {rotten}: its finals shard cannot be read") for e in failed.values())
    assert store.unit_states([rotten])[rotten].state == "torn"
