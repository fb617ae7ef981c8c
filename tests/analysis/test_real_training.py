"""The Morse graph on real training whose outcomes are known (``real_training``), with the
default settings: the suite issue 21 asked for, next to the synthetic known answers.

For groups whose seeds split between outcomes (a dead hidden unit, or a solved task), each
case asserts: the outcome modes are the real outcomes (the dead runs at loss ln 2, the
solved ones at train accuracy 1), as many attractors as outcome modes, end basins that
match them (adjusted Rand index at least 0.8), and held-out outcome accuracy at least 0.85
and at least chance + 0.15, never below the nearest-neighbour baseline. For groups whose
seeds all learn one function: one mode, one attractor holding every run.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from doodl.analysis.dynamics import group_morse
from tests.analysis.real_training import DEAD_LOSS, train_group

SPLIT = [pytest.param(seeds, batch, id=f"{seeds}-seeds-{'gd' if batch is None else f'sgd{batch}'}")
         for seeds in (32, 64) for batch in (None, 32)]


@pytest.mark.parametrize("seeds, batch", SPLIT)
def test_a_dead_unit_and_a_solved_task_are_two_attractors_that_held_out_runs_are_placed_in(seeds, batch):
    runs, acc = train_group(1, seeds, batch)
    solved = acc == 1.0
    assert 0.1 < 1 - solved.mean() < 0.5, "the seeds must split between the outcomes"
    dead_loss = np.array([r.final_loss for r, s in zip(runs, solved) if not s])
    assert np.allclose(dead_loss, DEAD_LOSS, atol=0.01)  # the dead unit's minimum: the class prior
    result = group_morse(runs)
    o = result.outcomes
    assert o.n_modes == 2 and adjusted_rand_score(solved, o.labels) == 1.0  # modes = the real outcomes
    assert len(result.graph.attractors) == o.n_modes
    assert result.ari >= 0.8
    assert result.outcome_accuracy >= 0.85 and result.outcome_accuracy >= result.outcome_chance + 0.15, \
        (result.outcome_accuracy, result.outcome_chance)
    assert result.versus_baseline in ("beats", "matches")


@pytest.mark.parametrize("batch", [None, 32], ids=["gd", "sgd32"])
def test_seeds_that_all_solve_the_task_end_in_one_attractor(batch):
    runs, acc = train_group(8, 32, batch)
    assert (acc == 1.0).all()
    result = group_morse(runs)
    assert result.outcomes.n_modes == 1
    assert len(result.graph.attractors) == 1
    assert {v.end_attractor for v in result.verdicts} == set(result.graph.attractors)  # holding every run
    assert result.outcome_accuracy == 1.0 and result.ari == 1.0
