"""The Ray actor: one torch thread, CPU without a GPU, writes a committed unit."""

from __future__ import annotations

import dataclasses

from doodl.workers import shards
from doodl.workers.actor import UnitTrainer, pick_device
from doodl.workers.config import VariantConfig

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


def test_next_unit_trains_while_the_last_is_written_and_writes_keep_training_order(tmp_path, monkeypatch):
    """The race is controlled: unit a's write is held until unit b has trained (b's
    training would never finish if it waited for a's write: the test would time out)."""
    import threading

    from doodl.workers import actor as actor_module

    trainer = UnitTrainer(str(tmp_path / "sweep"))
    trained_b, events = threading.Event(), []
    real_train, real_write = actor_module.train_unit, actor_module.shards.write_unit

    def train(configs, device, stop=None):
        result = real_train(configs, device, stop=stop)
        events.append(("trained", configs[0].seed))
        if configs[0].seed == 10:
            trained_b.set()
        return result

    def write(fs, root, unit_id, result, attempt):
        if unit_id == "a":
            assert trained_b.wait(timeout=60), "unit b did not train while unit a was being written"
        events.append(("written", unit_id))
        return real_write(fs, root, unit_id, result, attempt=attempt)

    monkeypatch.setattr(actor_module, "train_unit", train)
    monkeypatch.setattr(actor_module.shards, "write_unit", write)
    configs = {"a": [dataclasses.replace(CFG, seed=0).to_dict()], "b": [dataclasses.replace(CFG, seed=10).to_dict()]}
    summaries = {}
    first = threading.Thread(target=lambda: summaries.setdefault("a", trainer.run_unit("a", configs["a"])))
    first.start()
    while ("trained", 0) not in events and first.is_alive():  # a trains first: the order of the calls is fixed
        first.join(timeout=0.01)
    second = threading.Thread(target=lambda: summaries.setdefault("b", trainer.run_unit("b", configs["b"])))
    second.start()
    first.join(timeout=120)
    second.join(timeout=120)
    assert events == [("trained", 0), ("trained", 10), ("written", "a"), ("written", "b")]
    fs, root = shards.resolve_filesystem(str(tmp_path / "sweep"))
    assert sorted(shards.committed_units(fs, root, verify="full")) == ["a", "b"]
    assert summaries["a"]["runs"] == [dataclasses.replace(CFG, seed=0).run_id]
