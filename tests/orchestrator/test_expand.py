"""Expansion into variants (stable ids) and packing into batched work units."""

from __future__ import annotations

from collections import Counter

from orchestrator.expand import expand, pack, swept_axes
from orchestrator.spec import parse_spec
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
