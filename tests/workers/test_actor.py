"""The Ray actor: one torch thread, CPU without a GPU, writes a committed unit."""

from __future__ import annotations

import dataclasses

from workers import shards
from workers.actor import UnitTrainer, pick_device
from workers.config import VariantConfig

CFG = VariantConfig(dataset="iris", test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                    model="mlp", width=4, depth=1, optimizer="adam", lr=0.01, batch_size=8,
                    weight_decay=0.0, steps=9, record_every=3)


def test_actor_trains_a_unit_with_one_thread_and_commits_it(tmp_path, ray_session):
    actor = ray_session.remote(UnitTrainer).options(num_cpus=1).remote(str(tmp_path / "sweep"))
    info = ray_session.get(actor.ping.remote())
    assert info["threads"] == 1 and info["device"] == "cpu"
    configs = [dataclasses.replace(CFG, seed=s).to_dict() for s in range(4)]
    summary = ray_session.get(actor.run_unit.remote("u7", configs, 1))
    assert summary["rows"] == 4 * 10 and summary["pid"] == info["pid"] and summary["diverged"] == 0
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    found = shards.committed_units(fs, root, verify="full")
    assert list(found) == ["u7"] and found["u7"].problem is None
    assert found["u7"].marker["runs"] == [dataclasses.replace(CFG, seed=s).run_id for s in range(4)]
    ray_session.kill(actor)


def test_device_is_cpu_outside_ray_and_without_gpus():
    assert str(pick_device()) == "cpu"
