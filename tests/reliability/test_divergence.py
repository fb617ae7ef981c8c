"""A variant whose loss turns NaN or infinite stops, is marked diverged, keeps its
trajectory up to there, and does not disturb the other variants of its batched unit."""

from __future__ import annotations

import dataclasses

import numpy as np

from doodl.workers import shards
from doodl.workers.config import VariantConfig
from doodl.workers.engine import train_unit

BASE = VariantConfig(dataset="iris", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                     model="mlp", width=5, depth=1, optimizer="sgd", lr=0.05, batch_size=16,
                     weight_decay=0.0, steps=17, record_every=4)


def test_diverging_variant_is_frozen_and_does_not_disturb_the_others(tmp_path):
    ok = [dataclasses.replace(BASE, seed=s) for s in range(2)]
    wild = dataclasses.replace(BASE, seed=5, lr=1e6)
    alone = train_unit(ok)
    mixed = train_unit([ok[0], wild, ok[1]])
    assert mixed.status == ["ok", "diverged", "ok"]
    stop = mixed.last_step[1]
    assert stop < 17
    # the others end bit-identical to a unit without the diverging variant
    np.testing.assert_array_equal(mixed.final_params[[0, 2]], alone.final_params)
    np.testing.assert_array_equal(mixed.loss[[0, 2]], alone.loss)

    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    shards.write_unit(fs, root, "u", mixed)
    rows = shards.read_units(fs, root, "trajectories", ["u"]).to_pylist()
    wild_rows = sorted((r for r in rows if r["run_id"] == wild.run_id), key=lambda r: r["step"])
    assert [r["step"] for r in wild_rows] == list(range(stop + 1))  # kept up to the divergence
    assert wild_rows[-1]["status"] == "diverged" and {r["status"] for r in wild_rows[:-1]} == {"ok"}
    assert all(np.isfinite(r["train_loss"]) for r in wild_rows[:-1])
    finals = {r["run_id"]: r for r in shards.read_units(fs, root, "finals", ["u"]).to_pylist()}
    assert finals[wild.run_id]["status"] == "diverged" and finals[ok[0].run_id]["status"] == "ok"
