"""A unit's memory estimate: exact counts where the engine's allocations are known, and
within 25% of the peak measured while an MLP unit and a CNN unit train and are written
(units other than the ones its constants were fitted on, bench/unit_memory.py)."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from bench.unit_memory import measure, unit_configs
from doodl.workers.unit_memory import FLOAT, OVERHEAD, estimate_memory, estimate_unit_memory, human_bytes


def test_parameter_sized_terms_are_exact_counts():
    """Softmax regression on digits (64 inputs, 10 classes: 650 parameters), SGD without
    momentum, 5 steps recorded every step: every parameter-sized buffer the engine makes."""
    cfg = dataclasses.replace(unit_configs("mlp", 8, 0, 1, 32, "sgd", 5, 1)[0], momentum=0.0)
    est = estimate_memory(cfg, 16)
    P, V, S = 650, 16, 6
    assert est.parameters == 3 * V * P * FLOAT  # parameters, gradients, the per-layer gradient buffers
    assert est.optimiser == V * P * FLOAT  # plain SGD: one scratch tensor
    assert estimate_memory(dataclasses.replace(cfg, momentum=0.9), 16).optimiser == 2 * V * P * FLOAT
    assert est.snapshots == S * V * P * FLOAT + 4 * V * (5 + 1) * FLOAT
    assert est.result == S * V * P * FLOAT + V * P * FLOAT
    assert est.training_bytes - est.snapshots - est.parameters - est.optimiser - OVERHEAD == max(
        est.activations, est.evaluation)


def test_the_estimate_grows_with_the_unit_and_its_model():
    small = estimate_memory(unit_configs("mlp", 64, 2, 1, 32, "sgd", 10, 5)[0], 8)
    double = estimate_memory(unit_configs("mlp", 64, 2, 1, 32, "sgd", 10, 5)[0], 16)
    adam = estimate_memory(unit_configs("mlp", 64, 2, 1, 32, "adam", 10, 5)[0], 8)
    assert double.parameters == 2 * small.parameters and double.snapshots > small.snapshots
    assert adam.optimiser == 5 * small.optimiser // 2  # Adam: 5 parameter-sized tensors, SGD momentum 2
    assert estimate_unit_memory(unit_configs("mlp", 64, 2, 8, 32, "sgd", 10, 5)) == small


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc (Linux)")
@pytest.mark.parametrize("case", [("mlp", 512, 3, 32, 128, "sgd", 4, 1), ("cnn", 24, 2, 24, 256, "sgd", 3, 1)],
                         ids=["mlp", "cnn"])
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(case):
    m = measure(case)
    assert m["measured"] > 250e6  # a unit whose own memory decides the figure, not the allocator's slack
    assert 0.75 <= m["estimate"] / m["measured"] <= 1.25, (
        f"estimate {human_bytes(m['estimate'])} against {human_bytes(m['measured'])} measured")


def test_human_bytes_never_rounds_into_the_next_unit():
    assert human_bytes(999_600_000) == "1 GB" and human_bytes(1_500) == "1.5 kB"
