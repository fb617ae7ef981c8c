"""Real training whose outcomes are known: tiny ReLU networks on small 2-D data sets, trained
by doodl's own batched engine (``doodl.workers.engine.train_unit``), many seeds per group.

Two blobs, one class each (centres (-1, 0) and (1, 0), spread 0.15, 200 points, written as
an ``.npz`` data set), classified by a one-hidden-layer ReLU network:

- with **one hidden unit** the loss has a known spurious local minimum: a unit that is off on
  every training point at initialisation gets no gradient and stays off (a dead unit); the
  network then computes a constant, the class prior (train accuracy 0.5, loss ln 2), while a
  unit that is on somewhere separates the blobs (accuracy 1, loss -> 0). The seeds split
  between the two outcomes (about one in five dead, decided at initialisation);
- with **eight hidden units** every seed solves the task: one outcome.

Each run is trained with full-batch gradient descent (``batch=None``) or minibatch SGD, no
momentum, lr 0.1, 2,000 steps, a snapshot every 20; each run carries its model's outputs on
the probe set (function-space coordinates, as ``doodl reduce`` computes them) and its final
train loss and accuracy. The known answer is each run's final train accuracy: the outcome it
really had, defined without any Morse graph.
"""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path

import numpy as np

from doodl.analysis.dynamics import RunTrajectory

# blob centres and their labels; bench/morse_real_training.py also runs the harder sets
DATASETS = {
    "two_blobs": (np.array([[-1.0, 0.0], [1.0, 0.0]]), np.array([0, 1])),
    # XOR: a width-2 network has several stuck minima, one region misclassified each
    "xor": (np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]), np.array([0, 0, 1, 1])),
    # three blobs on a line, the middle one the other class: one unit can cut off one side only
    "three_on_a_line": (np.array([[-2.0, 0.0], [0.0, 0.0], [2.0, 0.0]]), np.array([0, 1, 0])),
}
SPREAD = 0.15
STEPS, EVERY, LR = 2000, 20, 0.1
DEAD_LOSS = math.log(2)  # a dead unit leaves the class prior: balanced classes, ln 2


@functools.cache
def data_file(name: str = "two_blobs") -> str:
    """A data set's path (written once per process into a temporary directory): 200 points,
    cycling over the blobs, spread ``SPREAD`` around their centres."""
    centres, labels = DATASETS[name]
    rng = np.random.default_rng(0)
    k = np.arange(200) % len(centres)
    x = centres[k] + SPREAD * rng.standard_normal((200, 2))
    path = Path(tempfile.mkdtemp(prefix="doodl-real-training-")) / f"{name}.npz"
    np.savez(path, x=x, y=labels[k])
    return str(path)


@functools.cache
def train_result(width: int, seeds: int, batch: int | None = None, data: str = "two_blobs"):
    """The configs and the engine's result (:class:`doodl.workers.engine.UnitResult`) of one
    group, as :func:`train_group` describes it. Cached per process."""
    from doodl.workers.config import VariantConfig
    from doodl.workers.datasets import load_split
    from doodl.workers.engine import train_unit

    path = data_file(data)
    n_train = len(load_split(path, 0.2, 0).x_train)
    cfgs = [VariantConfig(dataset=path, test_fraction=0.2, split_seed=0, label_noise=0.0, train_fraction=1.0,
                          model="mlp", width=width, depth=1, optimizer="sgd", lr=LR, momentum=0.0,
                          batch_size=batch or n_train, weight_decay=0.0, steps=STEPS, record_every=EVERY, seed=s)
            for s in range(seeds)]
    return cfgs, train_unit(cfgs)


@functools.cache
def train_group(width: int, seeds: int, batch: int | None = None,
                data: str = "two_blobs") -> tuple[list[RunTrajectory], np.ndarray]:
    """One group: ``seeds`` runs of a one-hidden-layer ReLU network of ``width`` units on the
    data set ``data`` (``batch=None``: full-batch gradient descent). Returns the runs (outputs
    on the probe set, final train loss and accuracy attached) and their final train
    accuracies. Cached per process: the results are only read."""
    from doodl.analysis._function_space import output_features, probe_inputs
    from doodl.analysis.morse_task import PROBE_POINTS, PROBE_SEED

    cfgs, result = train_result(width, seeds, batch, data)
    probe = probe_inputs(cfgs[0].to_dict(), PROBE_POINTS, PROBE_SEED)
    acc = result.final_metrics["final_train_acc"].astype(np.float64)
    loss = result.final_metrics["final_train_loss"].astype(np.float64)
    runs = []
    for k, cfg in enumerate(cfgs):
        theta = result.snapshots[:, k, :].astype(np.float64)
        runs.append(RunTrajectory(cfg.run_id, result.snapshot_steps, theta, result.status[k],
                                  output_features(cfg.to_dict(), theta, probe), cfg.optimizer_memory,
                                  final_loss=float(loss[k]), final_acc=float(acc[k])))
    return runs, acc
