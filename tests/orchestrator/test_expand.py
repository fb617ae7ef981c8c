"""Expansion into variants (stable ids) and packing into batched work units."""

from __future__ import annotations

from collections import Counter

from doodl.orchestrator.expand import expand, pack, swept_axes
from doodl.orchestrator.spec import parse_spec
from tests.conftest import tiny_spec_dict


def test_grid_size_is_the_product_of_axes_and_seeds():
    spec = parse_spec(tiny_spec_dict(model={"width": [4, 8, 16]}, seeds=3))
    variants = expand(spec)
    assert len(variants) == 3 * 2 * 2 * 3  # widths x noise x lr x seeds
    assert len({v.run_id for v in variants}) == len(variants)
    assert swept_axes(spec) == ["width", "label_noise", "lr"]


def test_run_ids_are_stable_and_group_ids_ignore_the_seed():
    a = expand(parse_spec(tiny_spec_dict()))
    b = expand(parse_spec(tiny_spec_dict(resources={"variants_per_unit": 7, "num_actors": 1})))
    assert [v.run_id for v in a] == [v.run_id for v in b]  # resources do not change identity
    groups = Counter(v.group_id for v in a)
    assert len(groups) == 4 and set(groups.values()) == {2}  # 4 configs x 2 seeds
    c = expand(parse_spec(tiny_spec_dict(optimizer={"steps": 24})))
    assert not {v.run_id for v in a} & {v.run_id for v in c}


def test_units_only_mix_variants_of_equal_shapes_and_batch_size():
    spec = parse_spec(tiny_spec_dict(model={"width": [4, 8]}, optimizer={"batch_size": [8, 16]}, seeds=3))
    variants = expand(spec)
    units = pack(variants, variants_per_unit=5)
    assert sorted(r for u in units for r in u.run_ids) == sorted(v.run_id for v in variants)
    for u in units:
        assert len({(v.width, v.depth, v.batch_size) for v in u.variants}) == 1
        assert 1 <= len(u.variants) <= 5
    # 4 shape classes of 12 variants, each split into 3 balanced units of 4
    assert sorted(len(u.variants) for u in units) == [4] * 12
    assert [u.unit_id for u in units] == [u.unit_id for u in pack(expand(spec), 5)]


def _digits_mlps(width: int, batch: int, seeds: int) -> list:
    return expand(parse_spec({"name": "auto", "dataset": {"name": "digits"},
                              "model": {"family": "mlp", "width": width, "depth": 2},
                              "optimizer": {"batch_size": batch, "steps": 10}, "seeds": seeds}))


def test_auto_unit_size_keeps_a_units_working_set_near_the_budget():
    from doodl.orchestrator.expand import UNIT_WORKING_SET, auto_unit_size

    # per variant: parameters + batch x activations; digits MLP 64-W-W-10 at batch 128
    #   width 8:     682 + 128 * 42   =   6,058 -> 2**20 / 6,058  = 173 -> 128
    #   width 64:  8,970 + 128 * 266  =  43,018 -> 24 -> 16
    #   width 256: 85,002 + 128 * 1034 = 217,354 -> 4.8 -> 4, raised to the smallest size, 8
    assert UNIT_WORKING_SET == 2**20
    assert [auto_unit_size(_digits_mlps(w, 128, 1)[0]) for w in (8, 64, 256)] == [128, 16, 8]
    # a bigger batch is a bigger working set: smaller units
    assert auto_unit_size(_digits_mlps(64, 32, 1)[0]) == 32  # 8,970 + 32 * 266 = 17,482 -> 60 -> 32
    assert auto_unit_size(_digits_mlps(64, 512, 1)[0]) == 8


def test_auto_packing_splits_units_until_every_actor_can_get_work():
    variants = _digits_mlps(8, 128, 24)  # one shape class; auto size 128: one unit
    assert [len(u.variants) for u in pack(variants, "auto")] == [24]
    # four units wanted: split 24 -> 12 -> 8 per unit, then stop (8 is the smallest size)
    assert sorted(len(u.variants) for u in pack(variants, "auto", min_units=4)) == [8, 8, 8]
    assert sorted(len(u.variants) for u in pack(variants, "auto", min_units=2)) == [12, 12]
    again = pack(_digits_mlps(8, 128, 24), "auto", min_units=4)  # deterministic: resume relies on it
    assert [u.unit_id for u in again] == [u.unit_id for u in pack(variants, "auto", min_units=4)]


def test_auto_unit_sizes_fit_the_memory_an_actor_may_use():
    """A wide MLP whose working set alone would pack 8 variants a unit: with 600 MB per
    actor the units shrink until each one's estimate fits; a model that fits nowhere
    is left to the pre-flight refusal (units of one)."""
    from doodl.workers.unit_memory import estimate_memory, estimate_unit_memory

    spec = parse_spec({**tiny_spec_dict(), "dataset": {"name": "digits"}, "seeds": 16,
                       "model": {"family": "mlp", "width": 1024, "depth": 2},
                       "optimizer": {"name": "sgd", "lr": 0.1, "batch_size": 32, "steps": 20},
                       "record": {"every": 2}})
    variants = expand(spec)
    free = pack(variants, "auto")
    budget = 600_000_000
    fitted = pack(variants, "auto", memory_per_actor=budget)
    assert max(len(u.variants) for u in free) == 8
    assert all(estimate_unit_memory(u.variants).actor_bytes <= budget for u in fitted)
    assert max(len(u.variants) for u in fitted) < 8
    size = max(len(u.variants) for u in fitted)
    assert estimate_memory(variants[0], 2 * size).actor_bytes > budget  # the largest size that fits
    assert {len(u.variants) for u in pack(variants, "auto", memory_per_actor=1)} == {1}
