"""The NTK task's choices: which recorded steps get a kernel, which probe points, and how
seeds' curves make a group's."""

import numpy as np
import pytest

from doodl.analysis.ntk import KernelPath
from doodl.analysis.ntk_task import _group_curves, probe_training_inputs, thin
from doodl.workers.datasets import dataset_split
from doodl.workers.config import VariantConfig


def test_thinning_is_dense_early_sparse_late_and_keeps_first_and_last():
    assert thin(5, 16).tolist() == [0, 1, 2, 3, 4]
    picked = thin(41, 12)
    assert len(picked) == 12 and picked[0] == 0 and picked[-1] == 40
    assert picked[:4].tolist() == [0, 1, 2, 3]  # every early recording
    assert picked[6] < 40 / 4  # half the kernels fall in the first quarter of the run


def _variant(seed: int) -> dict:
    return {"dataset": "digits", "test_fraction": 0.2, "split_seed": 0, "label_noise": 0.2, "train_fraction": 0.5,
            "model": "mlp", "width": 8, "depth": 1, "optimizer": "sgd", "lr": 0.1, "batch_size": 32,
            "weight_decay": 0.0, "steps": 10, "seed": seed}


def test_every_seed_gets_the_same_probe_points_from_the_training_split():
    a, b = probe_training_inputs(_variant(0), 50, seed=0), probe_training_inputs(_variant(7), 50, seed=0)
    np.testing.assert_array_equal(a, b)  # the run's own seed plays no part
    x_train = dataset_split(VariantConfig.from_dict(_variant(0))).x_train
    rows = {r.tobytes() for r in x_train}
    assert a.shape == (50, x_train.shape[1]) and all(r.tobytes() in rows for r in a)
    assert not np.array_equal(a, probe_training_inputs(_variant(0), 50, seed=1))


def test_group_curves_average_seeds_at_their_common_steps():
    nan = np.nan
    p1 = KernelPath(np.array([0, 10, 20]), np.array([0.0, 0.2, 0.4]), np.array([0.4, 0.1, 0.0]),
                    np.array([nan, 0.02, 0.02]), 10)
    p2 = KernelPath(np.array([0, 10, 20, 30]), np.array([0.0, 0.4, 0.6, 0.7]), np.array([0.7, 0.3, 0.1, 0.0]),
                    np.array([nan, 0.04, 0.02, 0.01]), 20)
    out = _group_curves([p1, p2])
    assert out["steps"] == [0, 10, 20]  # step 30 only one seed recorded
    assert out["distance_init"] == pytest.approx([0.0, 0.3, 0.5])
    assert out["velocity"][0] is None and out["velocity"][1:] == pytest.approx([0.03, 0.02])
    assert out["transition_step"] == 15 and out["transition_steps"] == [10, 20]
    assert out["final_distance_init"] == pytest.approx(0.55)  # each seed's own last step
