"""VariantConfig: identities and the facts other parts read from it."""

from __future__ import annotations

import json

import pytest

from workers.config import VariantConfig

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
