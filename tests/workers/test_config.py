"""VariantConfig: identities and the facts other parts read from it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from doodl.workers.config import VariantConfig, axes, later_labels, shown_axes

BASE = dict(dataset="blobs", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0, model="mlp",
            width=8, depth=1, optimizer="sgd", lr=0.1, batch_size=16, weight_decay=0.0, steps=20)


@pytest.mark.parametrize("fields, memory", [
    (dict(optimizer="sgd", momentum=0.9), 10.0),
    (dict(optimizer="sgd", momentum=0.0), 0.0),
    (dict(optimizer="sgd", momentum=0.99), 100.0),
    (dict(optimizer="adam", beta1=0.8, momentum=0.0), 5.0),  # Adam's first moment, not SGD's momentum
])
def test_optimizer_memory_is_one_over_one_minus_beta(fields, memory):
    assert VariantConfig(**{**BASE, **fields}).optimizer_memory == pytest.approx(memory)


def test_from_dict_reads_a_variants_row_with_options_as_json():
    cfg = VariantConfig(**BASE, dataset_options=(("centers", 3), ("n_samples", 200)))
    row = {**cfg.to_dict(), "run_id": cfg.run_id, "unit_id": "u0",
           "dataset_options": json.dumps(dict(cfg.dataset_options), sort_keys=True)}
    back = VariantConfig.from_dict(row)
    assert back == cfg and back.run_id == cfg.run_id
    assert VariantConfig.from_dict(cfg.to_dict()) == cfg


def test_run_ids_of_first_release_configs_do_not_change():
    """Fields added later stay out of the ids at their defaults: sweeps written before them
    resume and log to the same MLflow runs (ids computed with the first release's code)."""
    cfg = VariantConfig(dataset="digits", test_fraction=0.2, split_seed=0, label_noise=0.1, train_fraction=0.5,
                        model="mlp", width=8, depth=2, optimizer="sgd", lr=0.05, batch_size=16, weight_decay=0.0,
                        steps=2000, record_every=50, seed=2)
    assert (cfg.run_id, cfg.group_id) == ("781de33f4ec22621", "171eec2a78db796c")
    assert replace(cfg, input_noise=0.1).run_id != cfg.run_id
    assert replace(cfg, schedule="cosine").group_id != cfg.group_id


def test_axes_registry_drives_labels_and_columns():
    assert list(axes())[:2] == ["width", "depth"]  # the default phase-diagram axes come first
    assert all(f.metadata["section"] in ("model", "data", "optimizer") for f in axes().values())
    base = {**BASE, "seed": 0}
    assert later_labels(base) == []
    assert later_labels({**base, "input_noise": 0.3, "schedule": "cosine"}) == [("inoise", 0.3), ("sched", "cosine")]
    shown = shown_axes([base, {**base, "augment": True}])
    assert "augment" in shown and "input_noise" not in shown and "width" in shown


def test_variants_differing_only_in_per_variant_fields_share_a_unit():
    a = VariantConfig(**BASE)
    assert replace(a, lr=0.5, seed=3, schedule="step", input_noise=0.2).shape_key == a.shape_key
    assert replace(a, width=16).shape_key != a.shape_key
    assert replace(a, heads=2).shape_key != a.shape_key


def test_every_config_field_is_declared_once_with_where_it_comes_from():
    """The config-field registry: every field is an axis or a setting, and the lists the
    orchestrator uses (MLflow params, audit matching, what expansion reads from the spec)
    are derived from it, with the members they had when they were written by hand."""
    from dataclasses import fields

    from doodl.workers.config import VariantConfig, axes, match_fields, param_fields, spec_fields

    for f in fields(VariantConfig):
        assert "section" in f.metadata or "source" in f.metadata, f"{f.name} is declared with neither axis nor setting"
    assert param_fields() == ("dataset", "test_fraction", "split_seed", "model", "optimizer", "steps", "momentum",
                              "record_every", "projection_dim", "seed", *axes())
    assert set(match_fields()) == {"dataset", "dataset_path", "test_fraction", "split_seed", "model", "optimizer",
                                   "steps", "momentum", *axes()}
    assert set(spec_fields()) == {f.name for f in fields(VariantConfig)} - set(axes()) - {"seed"}
