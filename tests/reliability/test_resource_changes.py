"""Resources change how fast a sweep trains, never which variants share a unit: a rerun
with other ``resources`` (as when moving from a laptop to a GPU node) finishes only the
units the store lacks, under the store's unit ids, and the reduction reads all of them.
Also: a grid far larger than intended (a typo in ``seeds``) is refused before expansion."""

from __future__ import annotations

import shutil

import pytest

from doodl.orchestrator.expand import expand, pack
from doodl.orchestrator.spec import parse_spec
from doodl.orchestrator.store import SweepStore
from tests.conftest import run_cli, tiny_spec_dict, write_spec
from doodl.workers import shards

# each rerun changes one field of ``resources`` (gpus_per_actor stays 0: there are no GPUs here,
# and a GPU request the cluster cannot meet is the driver's placement problem, tested elsewhere)
CHANGES = {
    "variants_per_unit": 2,
    "num_actors": 1,
    "cpus_per_actor": 0.5,
    "max_retries": 0,
    "max_variants": 9,
}


def _sweep(tmp_path, spec: dict) -> tuple[int, str, str]:
    path = write_spec(tmp_path, spec, f"{spec['name']}-{len(list(tmp_path.glob('*.yaml')))}.yaml")
    return run_cli(["sweep", str(path), "--store", str(tmp_path / "store"), "--no-progress",
                    "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])


def _drop_unit(store: SweepStore, unit_id: str) -> None:
    """Leave a unit untrained, as an interrupted first run would."""
    for kind, path in shards.unit_paths(store.root, unit_id).items():
        if kind == shards.COMMITS:
            store.fs.delete_file(path)
        else:
            store.fs.delete_dir(path.rsplit("/", 1)[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_session):
    """A finished sweep of 8 variants in 3 units; each test works on a copy of its store."""
    tmp_path = tmp_path_factory.mktemp("moved")
    code, out, err = _sweep(tmp_path, tiny_spec_dict(name="moved", resources={"variants_per_unit": 3,
                                                                                "num_actors": 2}))
    assert code == 0, err
    return tmp_path / "store"


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_a_rerun_with_other_resources_finishes_the_stores_units(tmp_path, trained, field):
    shutil.copytree(trained, tmp_path / "store")
    store = SweepStore(str(tmp_path / "store"), "moved")
    recorded = sorted(set(store.read_variants()["unit_id"].to_pylist()))
    assert len(recorded) == 3
    _drop_unit(store, recorded[1])

    changed = tiny_spec_dict(name="moved", resources={"variants_per_unit": 3, "num_actors": 2, field: CHANGES[field]})
    if field == "variants_per_unit":  # the spec alone would now pack other units
        fresh = {u.unit_id for u in pack(expand(parse_spec(changed)), CHANGES[field])}
        assert fresh.isdisjoint(recorded)
    code, out, err = _sweep(tmp_path, changed)
    assert code == 0, err
    assert "8 variants in 3 units; trained 1, already done 2, failed 0" in out
    on_disk = sorted(info.base_name.removesuffix(".json") for info in store.fs.get_file_info(
        shards.pafs.FileSelector(f"{store.root}/{shards.COMMITS}")))
    assert on_disk == recorded  # no unit directory the reduction would never read
    states = store.unit_states(recorded)
    assert {s.state for s in states.values()} == {"committed"}
    assert store.read_unit_rows("finals", recorded, ["run_id"]).num_rows == 8


def test_a_rerun_with_other_resources_trains_nothing_when_the_store_is_complete(tmp_path, ray_session):
    code, _, err = _sweep(tmp_path, tiny_spec_dict(name="done"))
    assert code == 0, err
    code, out, err = _sweep(tmp_path, tiny_spec_dict(name="done", resources={"variants_per_unit": 8}))
    assert code == 0, err
    assert "8 variants in 3 units; trained 0, already done 3, failed 0" in out


def test_a_store_that_lost_variants_parquet_rows_is_refused(tmp_path, ray_session):
    import pyarrow.parquet as pq

    code, _, err = _sweep(tmp_path, tiny_spec_dict(name="cut"))
    assert code == 0, err
    path = tmp_path / "store" / "cut" / "variants.parquet"
    pq.write_table(pq.read_table(path).slice(0, 7), path)
    code, out, err = _sweep(tmp_path, tiny_spec_dict(name="cut"))
    assert code == 2 and "holds 7 variants, the spec 8" in err


def test_a_grid_beyond_the_limit_is_refused_before_it_is_expanded(tmp_path):
    code, out, err = _sweep(tmp_path, tiny_spec_dict(name="typo", seeds=100_000_000))
    assert code == 2
    assert "the grid has 400,000,000 variants, more than resources.max_variants (100,000)" in err
    assert not (tmp_path / "store").exists()  # nothing written
    code, _, err = _sweep(tmp_path, tiny_spec_dict(name="typo", seeds=3, resources={"max_variants": 11}))
    assert code == 2 and "the grid has 12 variants" in err


def test_the_limit_is_a_resource_so_raising_it_keeps_the_sweep(tmp_path, ray_session):
    code, _, err = _sweep(tmp_path, tiny_spec_dict(name="limit", resources={"max_variants": 8}))
    assert code == 0, err
    shutil.rmtree(tmp_path / "store" / "limit" / "_commits")  # retrain all: still the same sweep
    code, out, err = _sweep(tmp_path, tiny_spec_dict(name="limit", resources={"max_variants": 1000}))
    assert code == 0, err
    assert "trained 3, already done 0" in out
